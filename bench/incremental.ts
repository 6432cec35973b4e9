// Incremental build benchmark: one block's worth of changes (1,000 entries) on
// a hot lane of 2^20 entries x 32 B (m = 16384), built incrementally and, on
// the same data in the same run, in full; the size of the resulting delta;
// and the time a client takes to apply it.
// Part of `node dist/bench/index.js` (as `incremental`); alone:
//   node dist/bench/incremental.js [--json] [--changes N] [--runs N]
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PirClient } from '../src/pir/client.js';
import { DELTA_HEADER_BYTES } from '../src/pir/delta.js';
import { deltaChain } from '../src/server/delta.js';
import { buildGeneration } from '../src/store/builder.js';
import { type EntrySource, SyntheticSource } from '../src/store/entries.js';
import { loadGeneration } from '../src/store/generation.js';
import { buildIncremental, diffPath } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { type Log, fmt, passFail, round } from './util.js';

export interface IncrementalBenchOptions {
  /** Changed entries per generation (default 1000). */
  changes?: number;
  /** Incremental builds timed (best is reported; default 3). */
  runs?: number;
  log?: Log;
}

const ENTRIES = 1 << 20;
const ES = 32;
const M = 16384;
export const TARGET_INCREMENTAL_MS = 1000;

/** A base source with some entries replaced (the data an incremental build produces, for the full build). */
class OverlaySource implements EntrySource {
  constructor(
    private readonly base: EntrySource,
    private readonly changes: Map<number, Buffer>,
  ) {}
  get entries(): number {
    return this.base.entries;
  }
  get entrySize(): number {
    return this.base.entrySize;
  }
  async fill(start: number, out: Buffer): Promise<void> {
    await this.base.fill(start, out);
    const end = start + out.length / this.entrySize;
    for (const [i, v] of this.changes) if (i >= start && i < end) v.copy(out, (i - start) * this.entrySize);
  }
  describe(): string {
    return `${this.base.describe()} with ${this.changes.size} changes`;
  }
}

function randomChanges(count: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  while (out.size < count) out.set(crypto.randomInt(ENTRIES), crypto.randomBytes(ES));
  return out;
}

export async function runIncrementalBench(opts: IncrementalBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const changes = opts.changes ?? 1000;
  const runs = Math.max(1, opts.runs ?? 3);
  const log = opts.log ?? (() => {});
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-bench-incremental-'));
  try {
    const data = path.join(root, 'data');
    const seed = crypto.randomBytes(16);
    const base = new SyntheticSource('hot', ENTRIES, ES, 1);
    const parent = await buildGeneration({ data, block: 1, lanes: { hot: { source: base, m: M, seed } } });
    log(`  full build of generation 1 (hot ${ENTRIES} x ${ES} B): ${fmt(parent.durationMs, 0)} ms`);

    // Generations 2..runs+1, each from 1 with its own random changes.
    const incrementalMs: number[] = [];
    const sets: Map<number, Buffer>[] = [];
    let stats: Record<string, unknown> = {};
    for (let r = 0; r < runs; r++) {
      const set = randomChanges(changes);
      sets.push(set);
      const res = await buildIncremental({ data, block: 2 + r, from: '1', updates: { hot: set } });
      incrementalMs.push(res.durationMs);
      stats = { ...res.stats.hot };
    }
    log(`  incremental builds (${changes} changes): ${incrementalMs.map((x) => fmt(x, 0)).join(', ')} ms`);

    // The same data as generation 2, built in full.
    const ref = path.join(root, 'ref');
    const full = await buildGeneration({ data: ref, block: 2, lanes: { hot: { source: new OverlaySource(base, sets[0]!), m: M, seed } } });
    const info2 = (await loadGeneration(generationDir(data, 2))).lanes.hot!;
    const identical = full.manifest.lanes.hot!.hint_sha256 === info2.crs.hint_sha256;
    log(`  full build of the same data: ${fmt(full.durationMs, 0)} ms, identical hint: ${identical}`);

    // What a client downloads, and what applying it costs.
    const diffBytes = fs.statSync(diffPath(generationDir(data, 2), 'hot')).size;
    const delta = await deltaChain(data, 'hot', '1', '2');
    const info1 = (await loadGeneration(parent.dir)).lanes.hot!;
    const hintBytes = fs.statSync(info1.hintPath).size;
    const client = await PirClient.create(info1.crs, fs.readFileSync(info1.hintPath), { cacheMatrix: false });
    const t0 = performance.now();
    await client.applyDelta(delta, info2.crs);
    const applyMs = performance.now() - t0;

    const best = Math.min(...incrementalMs);
    const speedup = full.durationMs / best;
    const pass = best < TARGET_INCREMENTAL_MS;
    const figures: Record<string, unknown> = {
      lane: { entries: ENTRIES, entrySize: ES, m: M, hintBytes },
      changes,
      incrementalMs: { best: round(best), runs: incrementalMs.map((x) => round(x)) },
      fullBuildMs: round(full.durationMs),
      fullParentBuildMs: round(parent.durationMs),
      speedup: round(speedup, 1),
      identicalToFullBuild: identical,
      lastRun: stats,
      delta: {
        bytes: delta.byteLength,
        diffFileBytes: diffBytes,
        bytesPerChangedEntry: round(delta.byteLength / changes, 2),
        recordBytesPerChangedEntry: round((delta.byteLength - DELTA_HEADER_BYTES) / changes, 2),
        vsHint: round(delta.byteLength / hintBytes, 6),
      },
      clientApplyMs: round(applyMs),
      targets: {
        incrementalUnder1s: { value: round(best), target: `< ${TARGET_INCREMENTAL_MS} ms (${changes} changed entries)`, pass },
        identicalToFullBuild: { value: identical, target: 'hint equal to a full build of the same data', pass: identical },
      },
      pass: pass && identical,
    };
    const lines = [
      `incremental — hot lane ${ENTRIES} x ${ES} B (${fmt((ENTRIES * ES) / 2 ** 20, 0)} MiB), m ${M}, ${changes} changed entries`,
      `  incremental build: best ${fmt(best, 0)} ms (runs ${incrementalMs.map((x) => fmt(x, 0)).join(', ')} ms; ${String(stats.writtenShards)} shards written, ${String(stats.linkedShards)} linked)`,
      `  full build of the same data: ${fmt(full.durationMs, 0)} ms (${fmt(speedup, 1)}x the incremental best); full build of the parent ${fmt(parent.durationMs, 0)} ms`,
      `  identical hint to the full build: ${identical}`,
      `  delta: ${delta.byteLength} B = ${fmt(delta.byteLength / changes, 1)} B per changed entry (diff.bin ${diffBytes} B); the hint it replaces: ${hintBytes} B (${fmt(hintBytes / 2 ** 20, 1)} MiB, ${fmt(hintBytes / delta.byteLength, 0)}x the delta)`,
      `  client applyDelta: ${fmt(applyMs, 1)} ms`,
      `  ${passFail(pass)} incremental build ${fmt(best, 0)} ms < ${TARGET_INCREMENTAL_MS} ms; ${passFail(identical)} identical to the full build`,
    ];
    return { figures, lines };
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]): IncrementalBenchOptions & { json: boolean } {
  const opts: IncrementalBenchOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') opts.json = true;
    else if (a === '--changes') opts.changes = Number(argv[++i]);
    else if (a === '--runs') opts.runs = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const opts = parseArgs(process.argv.slice(2));
  runIncrementalBench({ ...opts, log: (line) => process.stderr.write(`${line}\n`) }).then(
    ({ figures, lines }) => process.stdout.write(opts.json ? JSON.stringify(figures) + '\n' : lines.join('\n') + '\n'),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
