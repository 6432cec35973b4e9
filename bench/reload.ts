// Reload benchmark (issues 3, 12): how long POST /admin/reload takes on one
// process (startServer) serving a large lane, and what the lanes cost in
// memory, by lane memory mode:
//   - mmap, alternating between two retained generations: a pure swap;
//   - mmap with retain_generations 0: every reload maps a generation afresh
//     (and unmaps the old one; its files' checksums come from the inode cache,
//     so this is the map without the hashing, which the validate bench measures);
//   - in-memory: every reload reads the lanes into memory;
//   - cache (the default where THP is available): reloads between two full
//     generations read every shard; per-block generations (incremental
//     builds, a few entries changed) read only the changed shards.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { buildIncremental } from '../src/store/incremental.js';
import { type BenchData, type Log, type Summary, fmt, fmtMs, httpRequest, parseJson, passFail, postReload, round, roundSummary, startServerProcess, summarize } from './util.js';

/** Resident memory of a process, bytes (null where unknown). */
function rssOf(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The server's lane memory: lanes held, the shard cache, its resident size. */
async function memoryOf(server: { adminUrl: string; pid: number }) {
  const g = parseJson(await httpRequest(`${server.adminUrl}/admin/generations`));
  const m = g.mappings as { lanes: number; bytes: number; cache: { liveBytes: number; regionBytes: number; shards: number } };
  return { lanes: m.lanes, laneBytes: m.bytes, cacheLiveBytes: m.cache.liveBytes, cacheRegionBytes: m.cache.regionBytes, rssBytes: rssOf(server.pid) };
}

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
    let server = await startServerProcess(serverFlags(opts.data, { lane_memory: 'mmap' }));
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
    server = await startServerProcess(serverFlags(opts.data, { lane_memory: 'mmap', retain_generations: 0 }));
    let fresh: Series;
    try {
      fresh = await alternate(server.adminUrl, gens, count, agent);
    } finally {
      await server.stop();
    }
    opts.log(`  mmap fresh map: server p50 ${fmtMs(fresh.serverMs.p50)}`);

    // 3. In memory, nothing retained: every reload reads the lanes.
    const t0 = performance.now();
    server = await startServerProcess(serverFlags(opts.data, { lane_memory: 'memory', retain_generations: 0 }));
    const startSeconds = (performance.now() - t0) / 1000;
    let memory: Series;
    let memoryMem;
    try {
      memory = await alternate(server.adminUrl, gens, memCount, agent);
      memoryMem = await memoryOf(server);
    } finally {
      await server.stop();
    }
    opts.log(`  in-memory: server p50 ${fmtMs(memory.serverMs.p50, 0)}`);

    // 4. The shard cache: full generations (every shard new), then per-block generations built
    // incrementally from the first (a few entries changed: the rest hard-linked), retained.
    const t1 = performance.now();
    server = await startServerProcess(serverFlags(opts.data, { lane_memory: 'cache', retain_generations: 0 }));
    const cacheStartSeconds = (performance.now() - t1) / 1000;
    let cacheFull: Series, cacheBlocks!: Series, mmapBlocks!: Series, cacheMem, cacheBlockMem!: Awaited<ReturnType<typeof memoryOf>>, mmapBlockMem!: Awaited<ReturnType<typeof memoryOf>>;
    const blocks: string[] = [];
    try {
      cacheFull = await alternate(server.adminUrl, gens, memCount, agent);
      cacheMem = await memoryOf(server);
    } finally {
      await server.stop();
    }
    try {
      const info = await opts.data.info(gens[0]!);
      const entrySize = info.lanes.cold?.crs.entry_size ?? info.lanes.hot!.crs.entry_size;
      let from = gens[0]!;
      for (let b = 0; b < count; b++) {
        const id = String(500 + b);
        const updates: Record<string, Map<number, Uint8Array>> = {};
        for (const lane of ['hot', 'cold'] as const) {
          const l = info.lanes[lane];
          if (!l) continue;
          const changed = new Map<number, Uint8Array>();
          for (let k = 0; k < (lane === 'hot' ? 20 : 50); k++) changed.set(crypto.randomInt(l.crs.entries), crypto.randomBytes(entrySize));
          updates[lane] = changed;
        }
        await buildIncremental({ data: opts.data.data, block: Number(id), from, updates, publish: false });
        blocks.push(id);
        from = id;
      }
      // The same per-block generations, mapped (mmap) and through the shard cache.
      for (const mode of ['mmap', 'cache'] as const) {
        server = await startServerProcess(serverFlags(opts.data, { lane_memory: mode, retain_generations: 4 }));
        try {
          const httpMs: number[] = [];
          const serverMs: number[] = [];
          for (const id of blocks) {
            const r = await postReload(server.adminUrl, id, agent);
            httpMs.push(r.ms);
            serverMs.push(r.body.reload_duration_ms as number);
          }
          const series = { httpMs: summarize(httpMs), serverMs: summarize(serverMs) };
          if (mode === 'cache') {
            cacheBlocks = series;
            cacheBlockMem = await memoryOf(server);
          } else {
            mmapBlocks = series;
            mmapBlockMem = await memoryOf(server);
          }
        } finally {
          await server.stop();
        }
      }
    } finally {
      for (const id of blocks) fs.rmSync(`${opts.data.data}/generations/${id}`, { recursive: true, force: true });
    }
    opts.log(`  cache: full generation p50 ${fmtMs(cacheFull.serverMs.p50, 0)}, per-block generation p50 ${fmtMs(cacheBlocks.serverMs.p50, 1)} (mmap ${fmtMs(mmapBlocks.serverMs.p50, 1)})`);

    const memS = memory.serverMs.p50 / 1000;
    const figures = {
      laneBytes: opts.data.bytes,
      laneGiB: round(opts.data.bytes / 2 ** 30, 3),
      shardSize: opts.data.shardSize,
      mmapFirstMapMs: firstMap,
      mmapSwap: { httpMs: roundSummary(swap.httpMs), serverMs: roundSummary(swap.serverMs) },
      mmapFreshMap: { httpMs: roundSummary(fresh.httpMs), serverMs: roundSummary(fresh.serverMs) },
      memory: { serverMs: roundSummary(memory.serverMs, 1), httpMs: roundSummary(memory.httpMs, 1), seconds: round(memS), GBps: round(GB / memS, 2), serverStartSeconds: round(startSeconds, 2), memory: memoryMem },
      cache: {
        fullGeneration: { serverMs: roundSummary(cacheFull.serverMs, 1), httpMs: roundSummary(cacheFull.httpMs, 1), memory: cacheMem, serverStartSeconds: round(cacheStartSeconds, 2) },
        perBlockGeneration: {
          changedEntriesPerBlock: { hot: 20, cold: 50 },
          retained: 4,
          serverMs: roundSummary(cacheBlocks.serverMs),
          httpMs: roundSummary(cacheBlocks.httpMs),
          memory: cacheBlockMem,
          mmap: { serverMs: roundSummary(mmapBlocks.serverMs), httpMs: roundSummary(mmapBlocks.httpMs), memory: mmapBlockMem },
        },
      },
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
      `  in memory: ${fmt(memS, 3)} s per reload = ${fmt(GB / memS, 2)} GB/s (shards in page cache; server start ${fmt(startSeconds, 2)} s); RSS ${fmt((memoryMem.rssBytes ?? 0) / 2 ** 20, 0)} MiB`,
      row('cache, full generations:    ', cacheFull, 1),
      `  ${cacheBlocks.httpMs.n} per-block generations (20 hot + 50 cold entries changed each, retain 4; includes checksumming the new files): cache server p50 ${fmtMs(cacheBlocks.serverMs.p50, 2)} p99 ${fmtMs(cacheBlocks.serverMs.p99, 2)}; mmap server p50 ${fmtMs(mmapBlocks.serverMs.p50, 2)} p99 ${fmtMs(mmapBlocks.serverMs.p99, 2)}`,
      `  memory held: in-memory RSS ${fmt((memoryMem.rssBytes ?? 0) / 2 ** 20, 0)} MiB; cache after full reloads ${fmt(cacheMem.cacheLiveBytes / 2 ** 20, 0)} MiB of shards (RSS ${fmt((cacheMem.rssBytes ?? 0) / 2 ** 20, 0)} MiB); cache holding 5 per-block generations ${fmt(cacheBlockMem.cacheLiveBytes / 2 ** 20, 0)} MiB for ${fmt(cacheBlockMem.laneBytes / 2 ** 20, 0)} MiB of lanes (RSS ${fmt((cacheBlockMem.rssBytes ?? 0) / 2 ** 20, 0)} MiB; mmap: RSS ${fmt((mmapBlockMem.rssBytes ?? 0) / 2 ** 20, 0)} MiB, in the page cache)`,
      `  ${passFail(figures.targets.swapServerP99.pass)} swap p99 (server) ${fmtMs(swap.serverMs.p99, 3)} <= ${SWAP_TARGET_MS} ms; ${passFail(figures.targets.swapHttpP99.pass)} swap p99 (POST->answer) ${fmtMs(swap.httpMs.p99, 3)} <= ${SWAP_TARGET_MS} ms`,
      `  ratios: fresh map / swap ${fmt(figures.ratios.freshVsSwapServerP50, 1)}x, in-memory read / fresh map ${fmt(figures.ratios.memoryVsFreshServerP50, 1)}x (server p50)`,
    ];
    return { figures, lines };
  } finally {
    agent.destroy();
  }
}
