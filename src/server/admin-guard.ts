// What the admin API refuses before any handler runs. A browser on any web
// page can reach a loopback admin listener:
// - a "simple" cross-site POST (text/plain, a form, no body) needs no CORS
//   preflight, so admin POSTs must be application/json, which a page can
//   only send after a preflight the admin listener never grants;
// - DNS rebinding points an attacker's name at 127.0.0.1, making the admin
//   listener same-origin with the attacker's page: the Host header then
//   carries the attacker's name, so only names that cannot be rebound (IP
//   literals, localhost), the configured admin_host and admin_allowed_hosts
//   are accepted.
// Bodies larger than an admin route accepts are refused on their
// Content-Length, before a byte is read, and the connection is closed rather
// than drained.
import net from 'node:net';
import type Koa from 'koa';
import { HttpError } from './errors.js';

/** The largest admin request body (a reload's {"generation": …}). */
export const ADMIN_BODY_MAX = 4096;

/** True for names and addresses that only ever mean this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = normalizeHostname(host);
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

function normalizeHostname(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** The hostname of a Host header ("[::1]:3001" -> "::1"), or undefined if it is malformed. */
export function hostnameOf(header: string): string | undefined {
  const h = header.trim();
  if (h === '') return undefined;
  if (h.startsWith('[')) {
    const m = /^\[([0-9a-fA-F:.]+)\](?::\d{1,5})?$/.exec(h);
    return m ? normalizeHostname(m[1]!) : undefined;
  }
  const m = /^([A-Za-z0-9._-]+)(?::\d{1,5})?$/.exec(h);
  return m ? normalizeHostname(m[1]!) : undefined;
}

/** Whether a Host header names this admin listener in a way DNS rebinding cannot forge. */
export function adminHostAllowed(header: string | undefined, adminHost: string, allowed: readonly string[]): boolean {
  const name = header === undefined ? undefined : hostnameOf(header);
  if (name === undefined) return false;
  if (net.isIP(name) !== 0 || name === 'localhost') return true;
  return name === normalizeHostname(adminHost) || allowed.some((a) => normalizeHostname(a) === name);
}

/** For the admin listener: refuse requests whose Host is not an address of it. */
export function adminHostGuard(adminHost: string, allowed: readonly string[]): Koa.Middleware {
  return async (ctx, next) => {
    if (!adminHostAllowed(ctx.get('Host') || undefined, adminHost, allowed)) {
      throw new HttpError(
        403,
        'EHOST_NOT_ALLOWED',
        'the Host header does not name this admin listener (use its address, or list the name in admin_allowed_hosts)',
        {},
        { Connection: 'close' },
      );
    }
    await next();
  };
}

/** For admin routes (on either listener): POST bodies are JSON and small. */
export function adminBodyGuard(ctx: Koa.Context): void {
  if (ctx.method !== 'POST') return;
  const type = ctx.get('Content-Type');
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(
      415,
      'EBAD_CONTENT_TYPE',
      `admin requests are application/json${type ? `, got ${type.slice(0, 64)}` : ' (no Content-Type given)'}`,
      {},
      { Connection: 'close' },
    );
  }
  const declared = ctx.get('Content-Length');
  if (declared && !(/^\d+$/.test(declared) && Number(declared) <= ADMIN_BODY_MAX)) {
    throw new HttpError(413, 'EBODY_TOO_LARGE', `admin request bodies are limited to ${ADMIN_BODY_MAX} bytes`, {}, { Connection: 'close' });
  }
}
