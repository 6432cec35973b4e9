// Shared helpers for the benchmarks and the soak: temporary data directories,
// generations built with the real builder, servers and clusters as child
// processes, bounded HTTP load, percentiles and formatting.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/free-port.js';
import { readProcStat } from './proc-stat.js';
import autocannon from 'autocannon';
import { type ConfigInput, loadConfig } from '../src/config.js';
import { segmentName } from '../src/cluster/segment.js';
import { type LaneHandle } from '../src/native.js';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { type GenerationInfo, loadGeneration } from '../src/store/generation.js';
import { DEFAULT_SHARD_SIZE, type LaneName, generationDir } from '../src/store/layout.js';

export type Log = (line: string) => void;

const here = path.dirname(fileURLToPath(import.meta.url));
/** <root>/bin/lanepir.js, from dist/bench/. */
export const LANEPIR_BIN = path.resolve(here, '..', '..', 'bin', 'lanepir.js');

// ---- numbers ----

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(values: number[]): Summary {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    min: values.length ? Math.min(...values) : NaN,
    max: values.length ? Math.max(...values) : NaN,
    mean: values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN,
  };
}

/** Rounds for JSON output (keeps reports readable, loses nothing that matters). */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function roundSummary(s: Summary, digits = 3): Summary {
  return { n: s.n, p50: round(s.p50, digits), p99: round(s.p99, digits), min: round(s.min, digits), max: round(s.max, digits), mean: round(s.mean, digits) };
}

export const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
export const fmtMs = (x: number, digits = 2) => `${fmt(x, digits)} ms`;
export const fmtRatio = (x: number) => `${fmt(x, x >= 100 ? 0 : x >= 10 ? 1 : 2)}x`;
export const passFail = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects when `p` has not settled after `ms` (the benchmarks never wait without bound). */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

// ---- temporary directories ----

export function tempDataDir(prefix = 'lanepir-bench-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---- HTTP ----

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Milliseconds from sending the request to the end of the answer. */
  ms: number;
}

export interface HttpOptions {
  method?: string;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  /** Whole-request limit (default 30 s). */
  timeoutMs?: number;
  /** A keep-alive agent, or false for a fresh connection (node:cluster then may pick any worker). */
  agent?: http.Agent | false;
  /** Aborts the request (it then rejects). */
  signal?: AbortSignal;
}

export function httpRequest(url: string, opts: HttpOptions = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const agent = opts.agent ?? false;
    const headers = { ...(agent === false ? { Connection: 'close' } : {}), ...opts.headers };
    const started = performance.now();
    const req = http.request(url, { method: opts.method ?? 'GET', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const limit = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => req.destroy(new Error(`${opts.method ?? 'GET'} ${url} timed out after ${limit} ms`)), limit);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    if (opts.signal) {
      if (opts.signal.aborted) req.destroy(new Error('aborted'));
      else opts.signal.addEventListener('abort', () => req.destroy(new Error(`${opts.method ?? 'GET'} ${url} aborted`)), { once: true });
    }
    req.end(opts.body);
  });
}

export const parseJson = (r: HttpReply) => JSON.parse(r.body.toString('utf8')) as Record<string, any>;

/** POST /admin/reload {"generation": id}; throws unless the answer is 200. */
export async function postReload(adminUrl: string, generation: string, agent: http.Agent | false, timeoutMs = 120_000) {
  const r = await httpRequest(`${adminUrl}/admin/reload`, {
    method: 'POST',
    body: JSON.stringify({ generation }),
    headers: { 'Content-Type': 'application/json' },
    agent,
    timeoutMs,
  });
  const body = parseJson(r);
  if (r.status !== 200) throw new Error(`reload to ${generation}: HTTP ${r.status} ${JSON.stringify(body)}`);
  return { ms: r.ms, body };
}

export { freePort };

// ---- generations ----

/** The hot-lane shape the issues measure: 2^20 entries of 32 B (32 MiB), m = 16384 -> R = 64. */
export const HOT_SHAPE = { entries: 1_048_576, entrySize: 32, m: 16384 };

export interface LaneShape {
  entries: number;
  entrySize: number;
  m: number;
}

export interface BenchData {
  data: string;
  /** Generation ids in build order; the first is published as <data>/current. */
  generations: string[];
  shardSize: number;
  info(generation: string): Promise<GenerationInfo>;
  /** Lane bytes of one generation (all lanes). */
  bytes: number;
  buildSeconds: number;
  cleanup(): void;
}

/**
 * Builds generations `blocks` (block number = generation id) with the given
 * lanes, keeping each lane's seed and m across them, the way a real
 * deployment builds consecutive blocks.
 */
export async function buildBenchData(opts: {
  lanes: Partial<Record<LaneName, LaneShape>>;
  blocks: number[];
  shardSize?: number;
  log?: Log;
  prefix?: string;
}): Promise<BenchData> {
  const data = tempDataDir(opts.prefix ?? 'lanepir-bench-data-');
  const shardSize = opts.shardSize ?? DEFAULT_SHARD_SIZE;
  const started = performance.now();
  try {
    let seeds: Partial<Record<LaneName, Buffer>> = {};
    for (const [i, block] of opts.blocks.entries()) {
      const t0 = performance.now();
      const lanes: Parameters<typeof buildGeneration>[0]['lanes'] = {};
      for (const [name, shape] of Object.entries(opts.lanes) as [LaneName, LaneShape][]) {
        const seed = seeds[name];
        lanes[name] = { source: new SyntheticSource(name, shape.entries, shape.entrySize, block), m: shape.m, ...(seed ? { seed } : {}) };
      }
      const r = await buildGeneration({ data, block, shardSize, publish: i === 0, lanes });
      seeds = Object.fromEntries(Object.entries(r.manifest.lanes).map(([l, s]) => [l, Buffer.from(s!.seed, 'hex')]));
      opts.log?.(`  built generation ${block} (${describeLanes(opts.lanes)}) in ${fmt((performance.now() - t0) / 1000)} s`);
    }
  } catch (err) {
    removeDir(data);
    throw err;
  }
  const cache = new Map<string, Promise<GenerationInfo>>();
  const bytes = Object.values(opts.lanes).reduce((a, s) => a + s!.entries * s!.entrySize, 0);
  return {
    data,
    generations: opts.blocks.map(String),
    shardSize,
    bytes,
    buildSeconds: (performance.now() - started) / 1000,
    info: (g) => {
      let p = cache.get(g);
      if (!p) cache.set(g, (p = loadGeneration(generationDir(data, g))));
      return p;
    },
    cleanup: () => removeDir(data),
  };
}

/**
 * A new generation id with the same contents as `from`: every file
 * hard-linked, manifest rewritten with the new id and block. Cheap even for
 * 1 GiB lanes; used where a benchmark needs generations a server has never
 * served before.
 */
export function cloneGeneration(data: string, from: string, to: string): void {
  const src = generationDir(data, from);
  const dst = generationDir(data, to);
  const tmp = `${dst}.tmp-clone`;
  const copyTree = (a: string, b: string) => {
    fs.mkdirSync(b, { recursive: true });
    for (const e of fs.readdirSync(a, { withFileTypes: true })) {
      if (e.isDirectory()) copyTree(path.join(a, e.name), path.join(b, e.name));
      else if (e.name !== 'manifest.json') fs.linkSync(path.join(a, e.name), path.join(b, e.name));
    }
  };
  copyTree(src, tmp);
  const manifest = JSON.parse(fs.readFileSync(path.join(src, 'manifest.json'), 'utf8')) as Record<string, unknown>;
  manifest.generation = to;
  manifest.block_number = Number(to);
  fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  fs.renameSync(tmp, dst);
}

export function describeLanes(lanes: Partial<Record<LaneName, LaneShape>>): string {
  return Object.entries(lanes)
    .map(([n, s]) => `${n} ${s!.entries} x ${s!.entrySize} B = ${fmt((s!.entries * s!.entrySize) / 2 ** 20, 0)} MiB, m ${s!.m}`)
    .join('; ');
}

// ---- kernel reference ----

/** Milliseconds of `reps` passes of K queries over the lane (after one warm-up pass). */
export async function timeKernelPasses(handle: LaneHandle, K: number, reps: number): Promise<number[]> {
  const queries = Array.from({ length: K }, () => {
    const q = new Uint32Array(handle.m);
    for (let i = 0; i < q.length; i++) q[i] = (Math.random() * 2 ** 32) >>> 0;
    return q;
  });
  await handle.answer(queries);
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await handle.answer(queries);
    out.push(performance.now() - t0);
  }
  return out;
}

// ---- servers as child processes ----

/** A server process's times so far, ms. */
export interface ServerStats {
  /** Garbage-collection pauses. */
  gcMs: number;
  /** CPU time, user + system, all threads (kernel threads included). */
  cpuMs: number;
  /** CPU time of the JS thread alone (Linux; NaN elsewhere), 10 ms resolution. */
  mainThreadCpuMs: number;
  /** Event-loop active time. */
  activeMs: number;
}

export interface ServerProcess {
  publicUrl: string;
  adminUrl: string;
  pid: number;
  stats(): Promise<ServerStats>;
  stop(): Promise<void>;
}

/**
 * startServer(loadConfig({flags})) in a child process (bench/server-process.ts).
 * The load generator then does not share the server's event loop, as it
 * would not in production, and the cluster comparison is like for like.
 */
export async function startServerProcess(flags: Partial<ConfigInput>, timeoutMs = 120_000): Promise<ServerProcess> {
  const child = fork(path.join(here, 'server-process.js'), [], {
    env: { ...process.env, LANEPIR_BENCH_FLAGS: JSON.stringify(flags) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const ready = await withDeadline(
      new Promise<{ publicUrl: string; adminUrl: string }>((resolve, reject) => {
        child.once('message', (m) => resolve(m as { publicUrl: string; adminUrl: string }));
        child.once('exit', (code) => reject(new Error(`server process exited with code ${code} before it was ready`)));
      }),
      timeoutMs,
      'server start',
    );
    const stats = () =>
      withDeadline(
        new Promise<ServerStats>((resolve) => {
          const on = (m: ServerStats & { t?: string }) => {
            if (m?.t !== 'stats') return;
            child.off('message', on);
            resolve({ gcMs: m.gcMs, cpuMs: m.cpuMs, mainThreadCpuMs: m.mainThreadCpuMs, activeMs: m.activeMs });
          };
          child.on('message', on);
          child.send({ t: 'stats' });
        }),
        10_000,
        'server stats',
      );
    return { ...ready, pid: child.pid!, stats, stop: () => stopChild(child, exited, 20_000) };
  } catch (err) {
    await stopChild(child, exited, 5_000);
    throw err;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>, graceMs: number): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/**
 * CPU time (user + system, ms, all threads) of a process and its descendants
 * alive now, from /proc (Linux; NaN elsewhere). Clock ticks of 10 ms.
 */
export function treeCpuMs(root: number): number {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return NaN;
  }
  const stats = new Map<number, { ppid: number; cpuMs: number }>();
  for (const e of entries) {
    const st = readProcStat(`/proc/${e}/stat`); // null: gone meanwhile
    if (st) stats.set(Number(e), st);
  }
  if (!stats.has(root)) return NaN;
  let total = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    total += stats.get(pid)?.cpuMs ?? 0;
    for (const [child, st] of stats) if (st.ppid === pid) todo.push(child);
  }
  return total;
}

export interface ClusterProcess {
  url: string;
  adminUrl: string;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** `lanepir serve --workers N` on loopback; resolves when every worker is ready. */
export async function startClusterProcess(opts: { data: string; workers: number; shardSize: number; env?: Record<string, string>; timeoutMs?: number; port?: number; adminPort?: number }): Promise<ClusterProcess> {
  const port = opts.port ?? (await freePort());
  const adminPort = opts.adminPort ?? (await freePort());
  const args = [LANEPIR_BIN, 'serve', '--data', opts.data, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--workers', String(opts.workers), '--log-level', 'warn'];
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, LANEPIR_SHARD_SIZE_BYTES: String(opts.shardSize), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const stop = async () => {
    await stopChild(proc, exited, 20_000);
    // A primary that had to be killed leaves its control segment behind.
    const shm = `/dev/shm${segmentName(loadConfig({ flags: { data_dir: opts.data, port } }))}`;
    fs.rmSync(shm, { force: true });
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      await stop(); // reaps it and removes a segment it may have left
      throw new Error(`lanepir serve exited early:\n${out}`);
    }
    try {
      // Ready when every worker is (the first answers before the others listen).
      const r = await httpRequest(`${adminUrl}/admin/generations`, { timeoutMs: 2_000 });
      const body = r.status === 200 ? parseJson(r) : undefined;
      const workers = (body?.workers ?? []) as { ready: boolean }[];
      // ...and the kernel process takes queries.
      if (workers.length === opts.workers && workers.every((w) => w.ready) && body?.executor?.serving) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`lanepir serve did not get ready:\n${out}`);
    }
    await sleep(100);
  }
  return { url, adminUrl, proc, output: () => out, stop };
}

// ---- load ----

export interface LoadResult {
  connections: number;
  seconds: number;
  requests: number;
  qps: number;
  latencyMs: { p50: number; p99: number; mean: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}

/**
 * Bounded POST load with autocannon: stops after `seconds` or `maxRequests`,
 * whichever comes first, and is torn down if it overruns anyway.
 */
export async function postLoad(opts: { url: string; body: Uint8Array; connections: number; seconds: number; maxRequests?: number; timeoutS?: number }): Promise<LoadResult> {
  let instance: autocannon.Instance | undefined;
  const times: number[] = [];
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: opts.url,
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from(opts.body.buffer, opts.body.byteOffset, opts.body.byteLength),
        connections: opts.connections,
        duration: opts.seconds,
        maxOverallRequests: Math.max(opts.connections, opts.maxRequests ?? 200_000),
        timeout: opts.timeoutS ?? 30,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    // autocannon's histogram keeps whole milliseconds; the per-response times are exact.
    instance.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) times.push(ms);
    });
  });
  const guard = setTimeout(() => instance?.stop(), (opts.seconds + (opts.timeoutS ?? 30) + 5) * 1000);
  try {
    const r = await done;
    return {
      connections: opts.connections,
      seconds: r.duration,
      requests: r['2xx'],
      qps: r['2xx'] / r.duration,
      latencyMs: { p50: round(percentile(times, 50)), p99: round(percentile(times, 99)), mean: round(times.reduce((a, b) => a + b, 0) / Math.max(1, times.length)), max: round(times.reduce((a, b) => Math.max(a, b), 0)) },
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
    };
  } finally {
    clearTimeout(guard);
  }
}

export interface ResponseRecord {
  /** performance.now() when the request was sent. */
  sentAt: number;
  /** performance.now() when the answer had arrived. */
  at: number;
  status: number;
  generation: string | undefined;
}

/**
 * A light load generator: `connections` keep-alive connections each POSTing
 * one precomputed body back to back, recording when each answer arrived and
 * which generation it names. Runs until stop().
 */
/** A header by its lower-case name whatever case the server sent it in (autocannon keeps the case). */
function headerValue(headers: Record<string, string | string[] | undefined> | undefined, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  return undefined;
}

export function responseLoad(url: string, body: Uint8Array, connections: number) {
  const records: ResponseRecord[] = [];
  let errors = 0;
  // autocannon (raw sockets, the request bytes prepared once) keeps the load generator light;
  // onResponse sees each answer's headers, the 'response' event right after it its round trip.
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const instance = autocannon({
    url,
    connections,
    duration: 3600,
    maxOverallRequests: Number.MAX_SAFE_INTEGER,
    timeout: 30,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        onResponse: (status, _body, _context, headers) => {
          const at = performance.now();
          records.push({ sentAt: at, at, status, generation: headerValue(headers, 'x-lanepir-generation') });
        },
      },
    ],
  }, () => finish());
  instance.on('response', (_client, _status, _bytes, ms) => {
    const last = records[records.length - 1];
    if (last) last.sentAt = last.at - ms;
  });
  instance.on('reqError', () => errors++);
  return {
    records,
    errors: () => errors,
    /** First answer naming `generation` that arrived at or after `since`. */
    firstAfter(since: number, generation: string): number | undefined {
      let lo = 0, hi = records.length; // records arrive in time order
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (records[mid]!.at < since) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < records.length; i++) if (records[i]!.status === 200 && records[i]!.generation === generation) return records[i]!.at;
      return undefined;
    },
    async stop() {
      instance.stop();
      await finished;
    },
  };
}

/** Sum and count of the lanepir_batch_size histogram for a lane, from /metrics (all series summed). */
export async function batchStats(adminUrl: string, lane: LaneName): Promise<{ sum: number; count: number }> {
  const r = await httpRequest(`${adminUrl}/metrics`, { timeoutMs: 10_000 });
  const text = r.body.toString();
  const total = (name: string) => {
    let acc = 0;
    for (const m of text.matchAll(new RegExp(`^${name}\\{[^}]*lane="${lane}"[^}]*\\} ([0-9.eE+-]+)$`, 'gm'))) acc += Number(m[1]);
    return acc;
  };
  return { sum: total('lanepir_batch_size_sum'), count: total('lanepir_batch_size_count') };
}

/** Mean batch size between two batchStats readings. */
export const meanBatch = (before: { sum: number; count: number }, after: { sum: number; count: number }) =>
  (after.sum - before.sum) / Math.max(1, after.count - before.count);
