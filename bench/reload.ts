// Reload benchmark (issue 3): how long POST /admin/reload takes on one
// process (startServer) serving a large lane, in three cases:
//   - mmap, alternating between two retained generations: a pure swap;
//   - mmap with retain_generations 0: every reload maps a generation afresh
//     (and unmaps the old one; its files' checksums come from the inode cache,
//     so this is the map without the hashing, which the validate bench measures);
//   - in-memory (use_mmap false): every reload reads the lanes into memory.
import http from 'node:http';
import { type BenchData, type Log, type Summary, fmt, fmtMs, passFail, postReload, round, roundSummary, startServerProcess, summarize } from './util.js';

/** The seed's figure for the swap itself. */
export const SWAP_TARGET_MS = 5;

export interface ReloadBenchOptions {
  data: BenchData;
  /** Measured reloads per mmap case (default 20). */
  reloads?: number;
  /** Measured in-memory reloads (default 5). */
  memoryReloads?: number;
  log: Log;
}

interface Series {
  /** Client-side: POST sent to answer received. */
  httpMs: Summary;
  /** The server's reload_duration_ms. */
  serverMs: Summary;
}

export async function alternate(adminUrl: string, gens: string[], count: number, agent: http.Agent): Promise<Series> {
  const httpMs: number[] = [];
  const serverMs: number[] = [];
  for (let i = 0; i < count; i++) {
    // The server serves the first generation: start with the second.
    const target = gens[(i + 1) % 2]!;
    const r = await postReload(adminUrl, target, agent);
    if (r.body.new_generation !== target || r.body.unchanged) throw new Error(`reload to ${target} answered ${JSON.stringify(r.body)}`);
    httpMs.push(r.ms);
    serverMs.push(r.body.reload_duration_ms as number);
  }
  return { httpMs: summarize(httpMs), serverMs: summarize(serverMs) };
}

const serverFlags = (data: BenchData, extra: Record<string, unknown>) => ({
  data_dir: data.data,
  host: '127.0.0.1',
  admin_host: '127.0.0.1',
  port: 0,
  admin_port: 0,
  log_level: 'silent' as const,
  shard_size_bytes: data.shardSize,
  ...extra,
});

export async function runReloadBench(opts: ReloadBenchOptions): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const count = opts.reloads ?? 20;
  const memCount = opts.memoryReloads ?? 5;
  const gens = opts.data.generations.slice(0, 2);
  const GB = opts.data.bytes / 1e9;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // 1. mmap, both generations retained: after the first map of each, a swap.
    let server = await startServerProcess(serverFlags(opts.data, { use_mmap: true }));
    let firstMap: number, swap: Series;
    try {
      firstMap = (await postReload(server.adminUrl, gens[1]!, agent)).body.reload_duration_ms as number;
      await postReload(server.adminUrl, gens[0]!, agent);
      swap = await alternate(server.adminUrl, gens, count, agent);
    } finally {
      await server.stop();
    }
    opts.log(`  mmap swap: server p50 ${fmtMs(swap.serverMs.p50, 3)}, HTTP p50 ${fmtMs(swap.httpMs.p50)}`);

    // 2. mmap, nothing retained: every reload maps the other generation afresh.
    server = await startServerProcess(serverFlags(opts.data, { use_mmap: true, retain_generations: 0 }));
    let fresh: Series;
    try {
      fresh = await alternate(server.adminUrl, gens, count, agent);
    } finally {
      await server.stop();
    }
    opts.log(`  mmap fresh map: server p50 ${fmtMs(fresh.serverMs.p50)}`);

    // 3. In memory, nothing retained: every reload reads the lanes.
    const t0 = performance.now();
    server = await startServerProcess(serverFlags(opts.data, { use_mmap: false, retain_generations: 0 }));
    const startSeconds = (performance.now() - t0) / 1000;
    let memory: Series;
    try {
      memory = await alternate(server.adminUrl, gens, memCount, agent);
    } finally {
      await server.stop();
    }
    opts.log(`  in-memory: server p50 ${fmtMs(memory.serverMs.p50, 0)}`);

    const memS = memory.serverMs.p50 / 1000;
    const figures = {
      laneBytes: opts.data.bytes,
      laneGiB: round(opts.data.bytes / 2 ** 30, 3),
      shardSize: opts.data.shardSize,
      mmapFirstMapMs: firstMap,
      mmapSwap: { httpMs: roundSummary(swap.httpMs), serverMs: roundSummary(swap.serverMs) },
      mmapFreshMap: { httpMs: roundSummary(fresh.httpMs), serverMs: roundSummary(fresh.serverMs) },
      memory: { serverMs: roundSummary(memory.serverMs, 1), httpMs: roundSummary(memory.httpMs, 1), seconds: round(memS), GBps: round(GB / memS, 2), serverStartSeconds: round(startSeconds, 2) },
      targets: {
        swapServerP99: { value: round(swap.serverMs.p99), target: `<= ${SWAP_TARGET_MS} ms`, pass: swap.serverMs.p99 <= SWAP_TARGET_MS },
        swapHttpP99: { value: round(swap.httpMs.p99), target: `<= ${SWAP_TARGET_MS} ms`, pass: swap.httpMs.p99 <= SWAP_TARGET_MS },
      },
      ratios: {
        freshVsSwapServerP50: round(fresh.serverMs.p50 / swap.serverMs.p50, 1),
        memoryVsFreshServerP50: round(memory.serverMs.p50 / fresh.serverMs.p50, 1),
      },
    };
    const row = (label: string, s: Series, d = 3) =>
      `  ${label} server reload_duration_ms p50 ${fmtMs(s.serverMs.p50, d)} p99 ${fmtMs(s.serverMs.p99, d)}; POST->answer p50 ${fmtMs(s.httpMs.p50, d)} p99 ${fmtMs(s.httpMs.p99, d)} (${s.httpMs.n} reloads)`;
    const lines = [
      `reload — one process, generations ${gens.join(' <-> ')}, ${fmt(opts.data.bytes / 2 ** 30, 2)} GiB of lanes each, ${opts.data.shardSize / 1024} KiB shards (${Math.ceil(opts.data.bytes / opts.data.shardSize)} files)`,
      row('mmap, retained (swap):      ', swap),
      row('mmap, retain 0 (fresh map): ', fresh),
      `  mmap first map of a generation: ${fmtMs(firstMap)} (includes checksumming every file: see the validate bench)`,
      row('in memory, retain 0 (read): ', memory, 1),
      `  in memory: ${fmt(memS, 3)} s per reload = ${fmt(GB / memS, 2)} GB/s (shards in page cache; server start ${fmt(startSeconds, 2)} s)`,
      `  ${passFail(figures.targets.swapServerP99.pass)} swap p99 (server) ${fmtMs(swap.serverMs.p99, 3)} <= ${SWAP_TARGET_MS} ms; ${passFail(figures.targets.swapHttpP99.pass)} swap p99 (POST->answer) ${fmtMs(swap.httpMs.p99, 3)} <= ${SWAP_TARGET_MS} ms`,
      `  ratios: fresh map / swap ${fmt(figures.ratios.freshVsSwapServerP50, 1)}x, in-memory read / fresh map ${fmt(figures.ratios.memoryVsFreshServerP50, 1)}x (server p50)`,
    ];
    return { figures, lines };
  } finally {
    agent.destroy();
  }
}
