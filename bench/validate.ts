// Validation benchmark (issue 8): what checking a generation against its
// manifest costs on POST /admin/reload, on one server process:
//   - the first reload of a fresh generation: every file hashed (per GiB),
//     against sha256 of the same bytes in this process (node:crypto, one
//     thread, bytes already in memory) and the addon's hashFiles on one thread;
//   - a per-block incremental reload (few entries changed, unchanged shards
//     hard-linked): only new inodes hashed, against the same reload in a fresh
//     process whose checksum cache is empty (everything hashed).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { native } from '../src/native.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type ValidationStats } from '../src/store/checksums.js';
import { loadGeneration } from '../src/store/generation.js';
import { generationDir } from '../src/store/layout.js';
import { type BenchData, type Log, fmt, fmtMs, fmtRatio, postReload, round, startServerProcess } from './util.js';

export interface ValidateBenchOptions {
  data: BenchData;
  /** Entries changed per lane in the incremental generation (default 64). */
  changes?: number;
  log: Log;
}

const GiB = 2 ** 30;

export async function runValidateBench(opts: ValidateBenchOptions): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const { data } = opts;
  const fresh = data.generations[1]!;
  const incId = String(Number(fresh) + 1000);
  const changes = opts.changes ?? 64;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const threads = Math.max(1, Math.floor(os.availableParallelism() / 2)); // validate_threads 0 = half the cores
  const flags = {
    data_dir: data.data,
    host: '127.0.0.1',
    admin_host: '127.0.0.1',
    port: 0,
    admin_port: 0,
    log_level: 'silent' as const,
    shard_size_bytes: data.shardSize,
    retain_generations: 0,
  };
  try {
    // The incremental generation: a few entries per lane changed, everything else hard-linked.
    const freshInfo = await loadGeneration(generationDir(data.data, fresh));
    const updates = Object.fromEntries(
      Object.entries(freshInfo.lanes).map(([lane, l]) => [
        lane,
        new Map(Array.from({ length: changes }, () => [crypto.randomInt(l!.crs.entries), crypto.randomBytes(l!.crs.entry_size)] as [number, Buffer])),
      ]),
    );
    const t0 = performance.now();
    await buildIncremental({ data: data.data, block: Number(incId), from: fresh, updates });
    opts.log(`  built incremental generation ${incId} from ${fresh} (${changes} changes per lane) in ${fmt((performance.now() - t0) / 1000)} s`);

    // References: sha256 of the fresh generation's bytes in this process.
    const files = Object.keys(freshInfo.manifest.files).map((name) => path.join(freshInfo.dir, ...name.split('/')));
    let rawBytes = 0;
    let rawMs = 0;
    for (const f of files) {
      const bytes = fs.readFileSync(f); // page cache: the build just wrote it
      const h0 = performance.now();
      crypto.createHash('sha256').update(bytes).digest();
      rawMs += performance.now() - h0;
      rawBytes += bytes.length;
    }
    const n0 = performance.now();
    await native.hashFiles(files, { threads: 1 }).promise;
    const nativeMs = performance.now() - n0;
    const rawMsPerGiB = (rawMs * GiB) / rawBytes;
    const nativeMsPerGiB = (nativeMs * GiB) / rawBytes;
    opts.log(`  sha256 reference: node:crypto ${fmt(rawMsPerGiB, 0)} ms/GiB, addon hashFiles (1 thread, from page cache) ${fmt(nativeMsPerGiB, 0)} ms/GiB`);

    // 1. One process: first reload of the fresh generation, then the incremental one.
    let server = await startServerProcess(flags); // validates `first` (current) at start-up
    let freshReload: { ms: number; body: Record<string, any> };
    let incReload: { ms: number; body: Record<string, any> };
    try {
      freshReload = await postReload(server.adminUrl, fresh, agent);
      incReload = await postReload(server.adminUrl, incId, agent);
    } finally {
      await server.stop();
    }
    // 2. A new process (empty checksum cache) reloading the incremental generation directly.
    server = await startServerProcess(flags);
    let coldCache: { ms: number; body: Record<string, any> };
    try {
      coldCache = await postReload(server.adminUrl, incId, agent);
    } finally {
      await server.stop();
    }
    const fv = freshReload.body.validation as ValidationStats;
    const iv = incReload.body.validation as ValidationStats;
    const cv = coldCache.body.validation as ValidationStats;
    if (fv.hashed_files !== fv.files || iv.cached_files === 0 || cv.cached_files !== 0) {
      throw new Error(`unexpected validation figures: fresh ${JSON.stringify(fv)}, incremental ${JSON.stringify(iv)}, cold cache ${JSON.stringify(cv)}`);
    }
    const validateMsPerGiB = (fv.ms * GiB) / fv.hashed_bytes;
    const figures = {
      generation: { id: fresh, files: fv.files, bytes: fv.bytes, GiB: round(fv.bytes / GiB, 3) },
      validateThreads: threads,
      reference: { nodeCryptoMsPerGiB: round(rawMsPerGiB, 1), addonOneThreadMsPerGiB: round(nativeMsPerGiB, 1) },
      firstReload: {
        validation: fv,
        validationMsPerGiB: round(validateMsPerGiB, 1),
        reloadMs: freshReload.body.reload_duration_ms as number,
        httpMs: round(freshReload.ms),
      },
      incremental: {
        id: incId,
        changesPerLane: changes,
        validation: iv,
        reloadMs: incReload.body.reload_duration_ms as number,
        coldCacheValidation: cv,
        coldCacheReloadMs: coldCache.body.reload_duration_ms as number,
      },
      ratios: {
        validationVsNodeCrypto: round(validateMsPerGiB / rawMsPerGiB, 2),
        validationVsAddonOneThread: round(validateMsPerGiB / nativeMsPerGiB, 2),
        incrementalVsColdCacheReload: round((incReload.body.reload_duration_ms as number) / (coldCache.body.reload_duration_ms as number), 3),
        incrementalHashedBytesShare: round(iv.hashed_bytes / iv.bytes, 4),
        incrementalVsFirstReload: round((incReload.body.reload_duration_ms as number) / (freshReload.body.reload_duration_ms as number), 3),
      },
    };
    const MiB = (b: number) => `${fmt(b / 2 ** 20, 1)} MiB`;
    const lines = [
      `validate — one process, generation ${fresh}: ${fv.files} files, ${MiB(fv.bytes)}; checksum threads ${threads}`,
      `  reference sha256 of the same bytes: node:crypto in memory ${fmt(rawMsPerGiB, 0)} ms/GiB (${fmt(rawBytes / rawMs / 1e6, 2)} GB/s), addon hashFiles 1 thread from page cache ${fmt(nativeMsPerGiB, 0)} ms/GiB`,
      `  first reload of a fresh generation: checksums ${fmtMs(fv.ms, 1)} for ${MiB(fv.hashed_bytes)} = ${fmt(validateMsPerGiB, 0)} ms/GiB (${fmtRatio(figures.ratios.validationVsNodeCrypto)} node:crypto, ${fmtRatio(figures.ratios.validationVsAddonOneThread)} addon 1 thread); whole reload ${fmtMs(freshReload.body.reload_duration_ms, 1)}`,
      `  per-block incremental reload (${changes} changes per lane): hashed ${iv.hashed_files} of ${iv.files} files (${MiB(iv.hashed_bytes)}, ${fmt(100 * figures.ratios.incrementalHashedBytesShare, 2)} % of the bytes), ${iv.cached_files} from the inode cache; checksums ${fmtMs(iv.ms, 1)}, whole reload ${fmtMs(incReload.body.reload_duration_ms, 1)}`,
      `  the same reload in a fresh process (empty cache, all ${cv.hashed_files} files hashed): checksums ${fmtMs(cv.ms, 1)}, whole reload ${fmtMs(coldCache.body.reload_duration_ms, 1)}`,
      `  ratios: incremental / same reload without cache ${fmtRatio(figures.ratios.incrementalVsColdCacheReload)}, incremental / first reload of a fresh generation ${fmtRatio(figures.ratios.incrementalVsFirstReload)}`,
    ];
    return { figures, lines };
  } finally {
    agent.destroy();
    // Leave the shared data set as the other benchmarks expect it.
    fs.rmSync(generationDir(data.data, incId), { recursive: true, force: true });
  }
}
