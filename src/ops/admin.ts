// A small client of a running server's admin API, for operator tooling
// (lanepir reload/prune, follow mode).
import { loadConfig } from '../config.js';
import { describeFetchError } from '../pir/fetch-error.js';

export interface AdminFlags {
  adminUrl?: string;
  adminToken?: string;
  config?: string;
}

/** Admin URL and token: flags, then LANEPIR_ADMIN_URL / LANEPIR_ADMIN_TOKEN, then the server's configuration. */
export function adminTarget(flags: AdminFlags): { url: string; token: string | undefined } {
  const config = loadConfig({ ...(flags.config ? { file: flags.config } : {}), env: process.env });
  const host = config.admin_host === '0.0.0.0' ? '127.0.0.1' : config.admin_host;
  const url = flags.adminUrl ?? process.env.LANEPIR_ADMIN_URL ?? `http://${host.includes(':') ? `[${host}]` : host}:${config.admin_port}`;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new AdminError(`the admin URL must be http://HOST:PORT or https://HOST:PORT, got ${JSON.stringify(url)}`, 'EADMIN_URL');
  }
  return { url: url.replace(/\/$/, ''), token: flags.adminToken ?? config.admin_token };
}

export class AdminError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

/** How long an admin request may take (a reload maps and warms a generation). */
const ADMIN_TIMEOUT_MS = 120_000;

export async function adminRequest(target: { url: string; token: string | undefined }, path: string, init: RequestInit = {}): Promise<unknown> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${target.url}${path}`, {
      ...init,
      headers: { ...(target.token ? { Authorization: `Bearer ${target.token}` } : {}), ...(init.headers ?? {}) },
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    // "fetch failed" alone says nothing: name the cause (ECONNREFUSED 127.0.0.1:3001, a timeout, ...).
    throw new AdminError(`cannot reach the admin API at ${target.url}${path}: ${describeFetchError(err, { timeoutMs: ADMIN_TIMEOUT_MS })}`, 'EADMIN_UNREACHABLE');
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (!res.ok) {
    const b = body as { error?: string; code?: string };
    throw new AdminError(`${path} answered ${res.status}: ${b?.error ?? text}`, b?.code ?? `EHTTP_${res.status}`, body);
  }
  return body;
}

/** Generations any worker of the server still holds (plus the published one). */
export async function heldGenerations(target: { url: string; token: string | undefined }): Promise<Set<string>> {
  const g = (await adminRequest(target, '/admin/generations')) as {
    published?: { generation: string | null } | null;
    workers: { serving?: string | null; generations: { generation: string }[] }[];
  };
  const held = new Set<string>();
  if (g.published?.generation != null) held.add(g.published.generation);
  for (const w of g.workers) {
    for (const h of w.generations) held.add(h.generation);
    if (w.serving != null) held.add(w.serving);
  }
  return held;
}

