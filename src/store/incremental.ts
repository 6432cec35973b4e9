// Incremental builds: generation N from generation M plus the entries that
// changed, without rescanning the lanes. Shards without changes are hard
// links to M's files (same inode: no copy, and M's files are only ever read);
// changed shards are rewritten from M's bytes with the changes applied; the
// hint is M's hint plus (new - old) * A[c] for each changed byte. The result
// is byte-for-byte what a full build of the same data with the same seed and
// m would write, and <lane>/diff.bin records the step for client deltas.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { native } from '../native.js';
import { type LaneDelta, accumulateRows, addEntryChange, encodeDelta, growHint, zeroRowFromSum } from '../pir/delta.js';
import { LWE_N, recordRows } from '../pir/params.js';
import { littleEndianWords, wordsToLittleEndian } from '../pir/prg.js';
import { type BuildResult, type GenerationExtras, commitGeneration, crsFileBytes, laneCrs, laneSummary, manifestKey } from './builder.js';
import { StoreError } from './errors.js';
import { fsyncDir, writeNewFile } from './fsutil.js';
import { type LaneInfo, loadGeneration } from './generation.js';
import { GENERATION_ID, LANES, compareGenerationIds, type LaneName, crsPath, generationDir, hintPath, laneDir, shardCount, shardPath, shardsDir } from './layout.js';
import { type LaneSummary, type Manifest } from './manifest.js';
import { type ProgressFn } from './progress.js';
import { type PlacementCache, loadPlacement } from './keyword-builder.js';
import { type KeywordChange, type KeywordChangeStats, planKeywordChanges, writePlacementIncrementally } from './keyword-incremental.js';
import { type KeywordTable } from './keyword-placement.js';

/** Where a lane's diff against the parent generation is recorded. */
export const diffPath = (genDir: string, lane: LaneName) => path.join(laneDir(genDir, lane), 'diff.bin');
/** Hard links to the diffs of earlier generations of the chain (so pruning them keeps deltas possible). */
export const diffHistoryDir = (genDir: string, lane: LaneName) => path.join(laneDir(genDir, lane), 'diffs');
export const diffHistoryPath = (genDir: string, lane: LaneName, id: string) => path.join(diffHistoryDir(genDir, lane), `${id}.bin`);
/** Steps of diffs a generation carries, its own included: clients further behind download the hint. */
export const DEFAULT_DIFF_HISTORY = 64;

export interface EntryUpdate {
  index: number;
  value: Uint8Array;
}

export interface IncrementalOptions extends GenerationExtras {
  data: string;
  /** Block number of the new generation. */
  block: number;
  /** Its id (default: the block number; `<block>r<k>` when rebuilding after a reorg). Must sort after `from`. */
  id?: string;
  /** Generation M to build from. */
  from: string;
  /**
   * Changed entries per lane. Lanes of M not listed are carried over whole by
   * hard links. An index may appear more than once; the last value wins (as
   * in JSON Lines entry files). Indices >= the lane's entry count grow it.
   */
  updates: Partial<Record<LaneName, Iterable<EntryUpdate> | Map<number, Uint8Array>>>;
  /**
   * Keyword lanes: changed keys ({key, value} or {key, value: null} to delete;
   * src/store/keyword-incremental.ts). Keyword lanes take no `updates`.
   */
  keywordChanges?: Partial<Record<LaneName, Iterable<KeywordChange> | AsyncIterable<KeywordChange>>>;
  /** Placement tables kept in memory between builds (follow mode); read from the parent's placement index otherwise. */
  placementCache?: PlacementCache;
  /** Largest number of entries a lane may gain in one generation (default max(entries, 2^20)): guards against a stray huge index. */
  maxGrowth?: number;
  /** Diffs a generation carries, its own included (default DEFAULT_DIFF_HISTORY). */
  diffHistory?: number;
  /** Shard files written at once (overlaps their fsyncs; default 8). */
  concurrency?: number;
  publish?: boolean;
  progress?: ProgressFn;
}

export interface IncrementalResult extends BuildResult {
  /** Per lane: changed entries recorded in the diff, shards linked and written. */
  stats: Partial<Record<LaneName, { changed: number; linkedShards: number; writtenShards: number; grewBy: number; keyword?: KeywordChangeStats }>>;
}

function toMap(updates: Iterable<EntryUpdate> | Map<number, Uint8Array>): Map<number, Uint8Array> {
  if (updates instanceof Map) return updates;
  const out = new Map<number, Uint8Array>();
  for (const u of updates) out.set(u.index, u.value);
  return out;
}

/** Runs fn over items with at most `limit` running at once. */
export async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

/** -128 * sum_c A[c] mod 2^32: the hint row of an all-zero record row. */
export function zeroRow(seed: Uint8Array, m: number, n = LWE_N): Uint32Array {
  const sum = new Uint32Array(n);
  const STEP = 256;
  for (let c0 = 0; c0 < m; c0 += STEP) {
    const count = Math.min(STEP, m - c0);
    accumulateRows(sum, native.expandA(seed, c0, count, n), count, n);
  }
  return zeroRowFromSum(sum);
}

interface PlannedLane {
  lane: LaneName;
  info: LaneInfo;
  updates: Map<number, Uint8Array>;
  newEntries: number;
  /** Keyword lanes: the placement after the changes (absent for a carried lane whose table was not at hand). */
  keyword?: { table?: KeywordTable; placementChanged: Set<number>; stats?: KeywordChangeStats };
}

export async function buildIncremental(opts: IncrementalOptions): Promise<IncrementalResult> {
  if (!GENERATION_ID.test(opts.from)) throw new StoreError('EGENERATION', `invalid generation id ${JSON.stringify(opts.from)}`);
  const id = opts.id ?? String(opts.block);
  // Ids strictly increase along a chain of parents (deltaChain relies on it).
  if (!GENERATION_ID.test(id) || compareGenerationIds(id, opts.from) <= 0) {
    throw new StoreError('EPARAMS', `generation ${id} must be above the generation it is built from (${opts.from})`);
  }
  const fromDir = generationDir(opts.data, opts.from);
  const parent = await loadGeneration(fromDir).catch((err: Error) => {
    throw new StoreError('ENOGEN', `cannot build from generation ${opts.from}: ${err.message}`);
  });

  // Check every update before anything is written.
  const plans: PlannedLane[] = [];
  for (const lane of LANES) {
    const given = opts.updates[lane];
    const info = parent.lanes[lane];
    if (given !== undefined && !info) throw new StoreError('EPARAMS', `generation ${opts.from} has no ${lane} lane to update`);
    const keywordGiven = opts.keywordChanges?.[lane];
    if (keywordGiven !== undefined && !info) throw new StoreError('EPARAMS', `generation ${opts.from} has no ${lane} lane to update`);
    if (!info) continue;
    let keyword: PlannedLane['keyword'];
    let updates = given === undefined ? new Map<number, Uint8Array>() : toMap(given);
    if (info.crs.layout === 'keyword') {
      if (given !== undefined) throw new StoreError('EPARAMS', `${lane} is a keyword lane: its changes are keys (keywordChanges), not entry indices`);
      let table = opts.placementCache?.take(opts.data, opts.from, lane);
      if (keywordGiven !== undefined) {
        table ??= await loadPlacement(info, fromDir);
        const planned = await planKeywordChanges(info, table, keywordGiven);
        updates = planned.updates;
        keyword = { table, placementChanged: planned.placementChanged, stats: planned.stats };
      } else {
        keyword = { ...(table ? { table } : {}), placementChanged: new Set() };
      }
    } else if (keywordGiven !== undefined) {
      throw new StoreError('EPARAMS', `${lane} is an index lane: its changes are entries (updates), not keys`);
    }
    const es = info.crs.entry_size;
    let max = -1;
    for (const [index, value] of updates) {
      if (!Number.isSafeInteger(index) || index < 0) throw new StoreError('EINPUT', `${lane}: update index ${index} is not a non-negative integer`);
      if (value.length !== es) throw new StoreError('EINPUT', `${lane}: update of index ${index} has ${value.length} bytes, the entry size is ${es}`);
      if (index > max) max = index;
    }
    const entries = info.crs.entries;
    const newEntries = Math.max(entries, max + 1);
    const maxGrowth = opts.maxGrowth ?? Math.max(entries, 1 << 20);
    if (newEntries - entries > maxGrowth) {
      throw new StoreError('EINPUT', `${lane}: index ${max} would grow the lane from ${entries} by ${newEntries - entries} entries (at most ${maxGrowth} per generation; build in full instead)`);
    }
    plans.push({ lane, info, updates, newEntries, ...(keyword ? { keyword } : {}) });
  }

  const stats: IncrementalResult['stats'] = {};
  // The chain id is the chain's: inherited unless given (block hashes are per block).
  const chainId = opts.chainId !== undefined ? opts.chainId : parent.manifest.chain_id ?? null;
  if (chainId !== null && parent.manifest.chain_id != null && chainId !== parent.manifest.chain_id) {
    throw new StoreError('EPARAMS', `chain id ${chainId} differs from generation ${opts.from}'s ${parent.manifest.chain_id}`);
  }
  const result = await commitGeneration({ ...opts, chainId }, async (tmp, files) => {
    const lanes: Manifest['lanes'] = {};
    for (const plan of plans) {
      const { summary, ...laneStats } = await buildLaneIncrementally(tmp, plan, parent.manifest, opts, files);
      lanes[plan.lane] = summary;
      stats[plan.lane] = { ...laneStats, ...(plan.keyword?.stats ? { keyword: plan.keyword.stats } : {}) };
    }
    return { lanes, parent: opts.from };
  });
  for (const plan of plans) {
    if (plan.keyword?.table) opts.placementCache?.put(opts.data, result.generation, plan.lane, plan.keyword.table);
  }
  return { ...result, stats };
}

async function buildLaneIncrementally(
  genDir: string,
  plan: PlannedLane,
  parentManifest: Manifest,
  opts: IncrementalOptions,
  files: Manifest['files'],
): Promise<{ summary: LaneSummary; changed: number; linkedShards: number; writtenShards: number; grewBy: number }> {
  const { lane, info, updates, newEntries } = plan;
  const { entry_size: es, m, n, entries: oldEntries } = info.crs;
  const shardSize = info.summary.shard_size_bytes;
  const seed = Buffer.from(info.crs.seed, 'hex');
  const oldBytes = oldEntries * es;
  const newBytes = newEntries * es;
  const oldShards = info.summary.shards;
  const newShards = shardCount(newEntries, es, shardSize);
  const fromDir = generationDir(opts.data, parentManifest.generation);
  const parentFile = (file: string) => {
    const entry = parentManifest.files[manifestKey(fromDir, file)];
    if (!entry) throw new StoreError('EMANIFEST', `generation ${parentManifest.generation} does not list ${manifestKey(fromDir, file)}`);
    return entry;
  };
  /** Hard-links M's file into the new generation and lists it with M's checksum. */
  const link = async (from: string, to: string) => {
    await fsp.link(from, to);
    files[manifestKey(genDir, to)] = parentFile(from);
  };
  await fsp.mkdir(shardsDir(genDir, lane), { recursive: true });

  // Changed indices by shard, ascending.
  const sorted = [...updates.keys()].sort((a, b) => a - b);
  const byShard = new Map<number, number[]>();
  for (const i of sorted) {
    const k = Math.floor((i * es) / shardSize);
    let list = byShard.get(k);
    if (!list) byShard.set(k, (list = []));
    list.push(i);
  }

  // Old values are read from M's shards as they are rewritten.
  const oldValues = new Uint8Array(sorted.length * es);
  const newValues = new Uint8Array(sorted.length * es);
  const position = new Map<number, number>(sorted.map((i, k) => [i, k]));
  let linkedShards = 0;
  let done = 0;
  const shardIds = Array.from({ length: newShards }, (_, k) => k);
  const written = new Map<number, { size: number; sha256: string }>();
  await pool(shardIds, opts.concurrency ?? 8, async (k) => {
    const size = Math.min(shardSize, newBytes - k * shardSize);
    const oldSize = k < oldShards ? Math.min(shardSize, oldBytes - k * shardSize) : 0;
    const changes = byShard.get(k);
    if (!changes && size === oldSize) {
      await fsp.link(info.shardPaths[k]!, shardPath(genDir, lane, k));
      linkedShards++;
    } else {
      const buf = Buffer.alloc(size); // zeros past M's last entry
      if (oldSize > 0) (await fsp.readFile(info.shardPaths[k]!)).copy(buf, 0, 0, oldSize);
      let dirty = size !== oldSize;
      for (const i of changes ?? []) {
        const off = i * es - k * shardSize;
        const p = position.get(i)!;
        const value = updates.get(i)!;
        oldValues.set(buf.subarray(off, off + es), p * es);
        newValues.set(value, p * es);
        if (!buf.subarray(off, off + es).equals(value)) dirty = true;
        buf.set(value, off);
      }
      // Updates that rewrite a value unchanged leave the shard as it was: link it.
      if (dirty) written.set(k, { size, sha256: await writeNewFile(shardPath(genDir, lane, k), buf) });
      else {
        await fsp.link(info.shardPaths[k]!, shardPath(genDir, lane, k));
        linkedShards++;
      }
    }
    opts.progress?.(`${lane}: shards`, ++done, newShards);
  });
  // List the shards in index order, as a full build does.
  for (let k = 0; k < newShards; k++) {
    const file = shardPath(genDir, lane, k);
    files[manifestKey(genDir, file)] = written.get(k) ?? parentFile(info.shardPaths[k]!);
  }
  await fsyncDir(shardsDir(genDir, lane));

  // Entries whose bytes did not change leave no trace in the hint or the diff.
  const keep: number[] = [];
  for (let p = 0; p < sorted.length; p++) {
    const o = oldValues.subarray(p * es, (p + 1) * es);
    const v = newValues.subarray(p * es, (p + 1) * es);
    if (!Buffer.from(o.buffer, o.byteOffset, es).equals(Buffer.from(v.buffer, v.byteOffset, es))) keep.push(p);
  }

  // New hint = M's hint (+ zero rows for new record rows) + sparse changes.
  const oldR = recordRows(oldEntries, m);
  const newR = recordRows(newEntries, m);
  let hint = littleEndianWords(await fsp.readFile(info.hintPath)); // our private copy
  let zero: Uint32Array | undefined;
  if (newR > oldR) {
    zero = zeroRow(seed, m, n);
    hint = growHint(hint, es, n, newR, zero);
  }
  const byColumn = new Map<number, number[]>();
  for (const p of keep) {
    const c = sorted[p]! % m;
    let list = byColumn.get(c);
    if (!list) byColumn.set(c, (list = []));
    list.push(p);
  }
  for (const [c, ps] of byColumn) {
    const row = native.expandA(seed, c, 1, n);
    for (const p of ps) {
      addEntryChange(hint, n, es, m, sorted[p]!, oldValues.subarray(p * es, (p + 1) * es), newValues.subarray(p * es, (p + 1) * es), row);
    }
  }
  const hintBytes = wordsToLittleEndian(hint);
  const hintSha = crypto.createHash('sha256').update(hintBytes).digest('hex');
  if (hintSha === info.crs.hint_sha256) await link(info.hintPath, hintPath(genDir, lane));
  else files[manifestKey(genDir, hintPath(genDir, lane))] = { size: hintBytes.byteLength, sha256: await writeNewFile(hintPath(genDir, lane), hintBytes) };

  const keywordFields = info.crs.layout === 'keyword' ? { keyword: { keySeed: Buffer.from(info.crs.key_seed!, 'hex'), d: info.crs.bucket_choices! } } : {};
  const crs = laneCrs({ m, entries: newEntries, entrySize: es, seed, hintSha256: hintSha, paramsVersion: info.crs.params_version ?? 1, shardSize, ...keywordFields });
  if (plan.keyword) {
    await writePlacementIncrementally(genDir, lane, plan.keyword.table, plan.keyword.placementChanged, { dir: fromDir, manifest: parentManifest, slots: oldEntries }, shardSize, files, opts.concurrency ?? 8);
  }
  const crsBytes = crsFileBytes(crs);
  const fromCrs = crsPath(fromDir, lane);
  if (crsBytes.equals(await fsp.readFile(fromCrs))) await link(fromCrs, crsPath(genDir, lane));
  else files[manifestKey(genDir, crsPath(genDir, lane))] = { size: crsBytes.length, sha256: await writeNewFile(crsPath(genDir, lane), crsBytes) };

  const diff: LaneDelta = {
    entrySize: es,
    m,
    n,
    seed,
    from: parentManifest.generation,
    to: opts.id ?? String(opts.block),
    fromEntries: oldEntries,
    toEntries: newEntries,
    fromHintSha256: info.crs.hint_sha256,
    toHintSha256: hintSha,
    indices: keep.map((p) => sorted[p]!),
    oldValues: pick(oldValues, keep, es),
    newValues: pick(newValues, keep, es),
    ...(zero ? { zeroRow: zero } : {}),
  };
  const diffBytes = encodeDelta(diff);
  files[manifestKey(genDir, diffPath(genDir, lane))] = { size: diffBytes.length, sha256: await writeNewFile(diffPath(genDir, lane), diffBytes) };

  // The parent's diff and the newest of the diffs it carries, as hard links:
  // deltas from an ancestor need only this generation's directory.
  const carried: { id: string; file: string }[] = [];
  const parentKey = manifestKey(fromDir, diffPath(fromDir, lane));
  if (parentManifest.files[parentKey]) carried.push({ id: parentManifest.generation, file: diffPath(fromDir, lane) });
  const historyPrefix = `${manifestKey(fromDir, diffHistoryDir(fromDir, lane))}/`;
  for (const key of Object.keys(parentManifest.files)) {
    const id = key.startsWith(historyPrefix) ? key.slice(historyPrefix.length).replace(/\.bin$/, '') : undefined;
    if (id !== undefined && GENERATION_ID.test(id)) carried.push({ id, file: diffHistoryPath(fromDir, lane, id) });
  }
  carried.sort((a, b) => compareGenerationIds(b.id, a.id));
  const keepHistory = carried.slice(0, Math.max(0, (opts.diffHistory ?? DEFAULT_DIFF_HISTORY) - 1));
  if (keepHistory.length > 0) {
    await fsp.mkdir(diffHistoryDir(genDir, lane));
    for (const { id, file } of keepHistory.reverse()) await link(file, diffHistoryPath(genDir, lane, id));
    await fsyncDir(diffHistoryDir(genDir, lane));
  }
  await fsyncDir(laneDir(genDir, lane));
  return {
    summary: laneSummary(crs),
    changed: keep.length,
    linkedShards,
    writtenShards: newShards - linkedShards,
    grewBy: newEntries - oldEntries,
  };
}

function pick(values: Uint8Array, positions: number[], es: number): Uint8Array {
  const out = new Uint8Array(positions.length * es);
  positions.forEach((p, k) => out.set(values.subarray(p * es, (p + 1) * es), k * es));
  return out;
}
