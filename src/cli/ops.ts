// Operator subcommands: publish a generation, ask a running server to reload,
// and prune generations nobody holds. ops/roll-generation chains them.
import { loadConfig } from '../config.js';
import { publishGeneration } from '../store/builder.js';
import { planPrune, removeGenerations } from '../store/prune.js';
import { UsageError, intOption } from './errors.js';

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

export async function adminRequest(target: { url: string; token: string | undefined }, path: string, init: RequestInit = {}): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, {
      ...init,
      headers: { ...(target.token ? { Authorization: `Bearer ${target.token}` } : {}), ...(init.headers ?? {}) },
      signal: AbortSignal.timeout(120_000),
    });
  } catch (err) {
    throw new AdminError(`cannot reach the admin API at ${target.url}: ${(err as Error).message}`, 'EADMIN_UNREACHABLE');
  }
  const text = await res.text();
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

export async function publishCommand(flags: { data: string; generation: string }): Promise<void> {
  await publishGeneration(flags.data, flags.generation);
  process.stdout.write(`published generation ${flags.generation}: ${flags.data}/current -> generations/${flags.generation}\n`);
}

export async function reloadCommand(flags: AdminFlags & { generation?: string }): Promise<void> {
  const target = adminTarget(flags);
  const body = flags.generation !== undefined ? JSON.stringify({ generation: intOption('--generation', flags.generation) }) : '';
  const result = await adminRequest(target, '/admin/reload', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
  process.stdout.write(`${JSON.stringify(result)}\n`);
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

export async function pruneCommand(flags: AdminFlags & { data: string; retain: string; dryRun?: boolean }): Promise<void> {
  const retain = intOption('--retain', flags.retain)!;
  if (retain < 1) throw new UsageError('--retain must be at least 1');
  const held = await heldGenerations(adminTarget(flags));
  const plan = await planPrune(flags.data, held, retain);
  for (const id of plan.keep) process.stdout.write(`keep   ${id} (${plan.reasons[id]})\n`);
  for (const id of plan.remove) process.stdout.write(`${flags.dryRun ? 'would remove' : 'remove'} ${id}\n`);
  if (!flags.dryRun) await removeGenerations(flags.data, plan.remove);
}
