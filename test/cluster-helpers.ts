// Running `lanepir serve` (the cluster) as a child process for tests.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort } from '../src/free-port.js';
import { segmentName } from '../src/cluster/segment.js';
import { loadConfig } from '../src/config.js';
import { SHARD_SIZE } from './server-helpers.js';

export const BIN = path.resolve('bin/lanepir.js');

export { freePort };


export interface Cluster {
  proc: ChildProcess;
  url: string;
  adminUrl: string;
  /** The control segment's file in /dev/shm. */
  segmentFile: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after a grace period; a segment left by a killed primary is removed. Idempotent. */
  stop: () => Promise<void>;
}

/** Every cluster a test started and has not seen exit: stopped when the test process exits, whatever path it took. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGTERM'); // drains and removes its segment on its own
});

export async function startCluster(
  data: string,
  opts: { workers?: number; env?: Record<string, string>; args?: string[]; startTimeoutMs?: number; /** the admin token, when not given by --admin-token */ token?: string } = {},
): Promise<Cluster> {
  const port = await freePort();
  const adminPort = await freePort();
  const tokenAt = opts.args?.indexOf('--admin-token') ?? -1;
  const token = opts.token ?? (tokenAt >= 0 ? opts.args![tokenAt + 1] : undefined);
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--data', data, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--workers', String(opts.workers ?? 2), '--log-level', 'warn', ...(opts.args ?? [])],
    { env: { ...process.env, LANEPIR_SHARD_SIZE_BYTES: String(SHARD_SIZE), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    }),
  );
  const segmentFile = `/dev/shm${segmentName(loadConfig({ flags: { data_dir: data, port } }))}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    const { signal } = await exited;
    clearTimeout(kill);
    // Only a primary killed by a signal it did not handle leaves its segment (and it is this one's, by data dir and port).
    if (signal !== null) fs.rmSync(segmentFile, { force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      await stop();
      throw new Error(`lanepir serve exited early:\n${out}`);
    }
    try {
      // Up when every worker is listening (the first one answers /health before the others are ready).
      const r = await request(`http://127.0.0.1:${adminPort}/admin/generations`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      const body = r.status === 200 ? (JSON.parse(r.body.toString()) as { workers: { ready: boolean }[]; executor?: { serving: boolean } | null }) : undefined;
      const workers = body?.workers ?? [];
      // ...and the kernel process takes queries.
      if (workers.length === (opts.workers ?? 2) && workers.every((w) => w.ready) && body?.executor?.serving) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`lanepir serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, url, adminUrl: `http://127.0.0.1:${adminPort}`, segmentFile, output: () => out, exited, stop };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on its own connection (so node:cluster may hand it to any worker). */
export function request(url: string, opts: { method?: string; body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', agent: false, headers: { Connection: 'close', ...opts.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // A request that hangs is a failure, not a stuck test.
    req.setTimeout(15_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.end(opts.body);
  });
}

export const get = (url: string) => request(url);
export const json = (r: Reply) => JSON.parse(r.body.toString()) as Record<string, any>;
