// A small client of a running server's admin API, for operator tooling
// (lanepir reload/prune, follow mode).
import { loadConfig } from '../config.js';
import { describeFetchFailure } from '../pir/errors.js';

export interface AdminFlags {
  adminUrl?: string;
  adminToken?: string;
  adminTokenFile?: string;
  config?: string;
}

/**
 * Admin URL and token: flags (--admin-token or --admin-token-file), then
 * LANEPIR_ADMIN_URL / LANEPIR_ADMIN_TOKEN / LANEPIR_ADMIN_TOKEN_FILE, then the
 * server's configuration (admin_token or admin_token_file).
 */
export function adminTarget(flags: AdminFlags): { url: string; token: string | undefined } {
  const config = loadConfig({
    ...(flags.config ? { file: flags.config } : {}),
    env: process.env,
    flags: { admin_token: flags.adminToken, admin_token_file: flags.adminTokenFile },
  });
  const host = config.admin_host === '0.0.0.0' ? '127.0.0.1' : config.admin_host === '::' ? '::1' : config.admin_host;
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
  return { url: url.replace(/\/$/, ''), token: config.admin_token };
}

export class AdminError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly body?: unknown,
    /** The HTTP status when the server answered (undefined: no answer, or a client-side refusal). */
    readonly status?: number,
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
    throw new AdminError(`cannot reach the admin API at ${target.url}${path}: ${describeFetchFailure(err, ADMIN_TIMEOUT_MS)}`, 'EADMIN_UNREACHABLE');
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (!res.ok) {
    const b = body as { error?: string; code?: string };
    throw new AdminError(`${path} answered ${res.status}: ${b?.error ?? text}`, b?.code ?? `EHTTP_${res.status}`, body, res.status);
  }
  return body;
}

/**
 * Generations the server holds: the published one, one a reload is mapping,
 * and every one any worker serves, retains, prepared or still answers
 * requests on. Fails closed: if the server cannot vouch that its lists are
 * complete (a worker holds more than its control-segment slot lists, a slot
 * is unreadable, or the answer lacks the fields), this throws EHELD_INCOMPLETE
 * rather than let a caller delete something still in use.
 */
export async function heldGenerations(target: { url: string; token: string | undefined }): Promise<Set<string>> {
  const g = (await adminRequest(target, '/admin/generations')) as {
    published?: { generation: string | null } | null;
    reloading?: string | null;
    held_complete?: unknown;
    workers?: { worker?: string; serving?: string | null; generations?: { generation: string }[]; held_total?: number; held_complete?: unknown }[];
  };
  if (!Array.isArray(g?.workers) || g.held_complete === undefined) {
    throw new AdminError('/admin/generations does not say whether its held-generation lists are complete; refusing to treat any generation as unused', 'EHELD_INCOMPLETE', g);
  }
  const incomplete = g.workers.filter((w) => w.held_complete !== true || !Array.isArray(w.generations));
  if (g.held_complete !== true || incomplete.length > 0) {
    const who = incomplete.map((w) => `${w.worker ?? '?'} holds ${w.held_total ?? '?'} generations, ${w.generations?.length ?? 0} listed`).join('; ');
    throw new AdminError(`the server cannot list every generation it holds (${who || 'incomplete'}); refusing to treat any generation as unused`, 'EHELD_INCOMPLETE', g);
  }
  const held = new Set<string>();
  if (g.published?.generation != null) held.add(g.published.generation);
  if (g.reloading != null) held.add(g.reloading);
  for (const w of g.workers) {
    for (const h of w.generations!) held.add(h.generation);
    if (w.serving != null) held.add(w.serving);
  }
  return held;
}
