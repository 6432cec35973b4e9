// Writes a new generation: shards, hint and crs per lane, then the manifest,
// all in a temporary directory that is fsynced and renamed into place, so a
// generation either exists whole or not at all.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { native } from '../native.js';
import { type Crs } from '../pir/crs.js';
import { LWE_N, PLAIN_MODULUS, Q_BITS, SIGMA, checkColumns, defaultColumns, recordRows } from '../pir/params.js';
import { wordsToLittleEndian } from '../pir/prg.js';
import { type EntrySource } from './entries.js';
import { type KeywordLaneSpec, type PlacementCache, buildKeywordLane, checkKeywordSpec, isKeywordSpec } from './keyword-builder.js';
import { type KeywordTable } from './keyword-placement.js';
import { StoreError } from './errors.js';
import { fsyncDir, writeNewFile, exists } from './fsutil.js';
import {
  DEFAULT_SHARD_SIZE,
  FORMAT_VERSION,
  GENERATION_ID,
  LANES,
  type LaneName,
  crsPath,
  currentLink,
  effectiveShardSize,
  generationBlock,
  generationDir,
  generationsDir,
  hintPath,
  laneDir,
  manifestPath,
  shardCount,
  shardPath,
  shardsDir,
} from './layout.js';
import { type LaneSummary, type Manifest } from './manifest.js';
import { type ProgressFn } from './progress.js';

export interface LaneSpec {
  source: EntrySource;
  /** Matrix width; default: defaultColumns(entries). */
  m?: number;
  /** A's seed (16 bytes); default: fresh random. Keep it across generations so hints stay updatable. */
  seed?: Uint8Array;
  /** Bumped whenever (seed, m) change for a lane; default 1. */
  paramsVersion?: number;
  /** Set for keyword lanes (written by buildKeywordLane): the crs then carries layout "keyword". */
  keyword?: KeywordCrsFields;
}

/** A keyword lane's crs fields (docs/FORMAT.md, "Keyword lanes"). */
export interface KeywordCrsFields {
  keySeed: Uint8Array;
  d: number;
}

/** What a generation carries besides its lanes (Ethereum generations: block hash, chain id, hot manifest, slot index). */
export interface GenerationExtras {
  /** 0x + 64 lowercase hex digits; manifest block_hash (null when not given). */
  blockHash?: string | null;
  /** manifest chain_id (null when not given). */
  chainId?: number | null;
  /** 0x + 64 lowercase hex digits: the block's parent hash and state root (follow --rpc); omitted when not given. */
  parentHash?: string | null;
  stateRoot?: string | null;
  /** Writes more files into the generation being built (listing them in `files`), after the lanes. */
  extraFiles?: (tmp: string, files: Manifest['files']) => Promise<void>;
}

export interface BuildOptions extends GenerationExtras {
  data: string;
  block: number;
  lanes: Partial<Record<LaneName, LaneSpec | KeywordLaneSpec>>;
  /** Requested shard size (rounded down to a multiple of the entry size). */
  shardSize?: number;
  /** Threads for the hint kernel (default: all cores). */
  threads?: number;
  /** Point <data>/current at the new generation. */
  publish?: boolean;
  progress?: ProgressFn;
  /** Keeps the keyword lanes' placement tables in memory for the next incremental build. */
  placementCache?: PlacementCache;
}

export interface BuildResult {
  generation: string;
  dir: string;
  manifest: Manifest;
  durationMs: number;
}

export async function buildGeneration(opts: BuildOptions): Promise<BuildResult> {
  const lanes = LANES.filter((l) => opts.lanes[l]);
  if (lanes.length === 0) throw new StoreError('EPARAMS', 'a generation needs at least one lane');
  // Validate every lane's parameters before writing anything.
  for (const lane of lanes) {
    const spec = opts.lanes[lane]!;
    if (isKeywordSpec(spec)) checkKeywordSpec(lane, spec);
    else checkColumns(spec.m ?? defaultColumns(spec.source.entries));
    if (spec.seed && spec.seed.length !== 16) throw new StoreError('EPARAMS', `${lane}: seed must be 16 bytes`);
  }
  const tables: [LaneName, KeywordTable][] = [];
  const result = await commitGeneration(opts, async (tmp, files) => {
    const summaries: Manifest['lanes'] = {};
    for (const lane of lanes) {
      const spec = opts.lanes[lane]!;
      summaries[lane] = isKeywordSpec(spec)
        ? await buildKeywordLane(tmp, lane, spec, opts, files, (table) => tables.push([lane, table]))
        : await buildLane(tmp, lane, spec, opts, files);
    }
    return { lanes: summaries };
  });
  for (const [lane, table] of tables) opts.placementCache?.put(opts.data, result.generation, lane, table);
  return result;
}

export interface CommitOptions extends GenerationExtras {
  data: string;
  block: number;
  /** Generation id (default: the block number; `<block>r<k>` for a rebuild after a reorg). */
  id?: string;
  publish?: boolean;
}

/**
 * The generation write protocol shared by full and incremental builds: `fill`
 * writes the lanes into a fresh temporary directory and lists their files;
 * then the manifest is written, everything fsynced and the directory renamed
 * into place. On any error the temporary directory is removed, so nothing of
 * a failed build remains.
 */
export async function commitGeneration(
  opts: CommitOptions,
  fill: (tmp: string, files: Manifest['files']) => Promise<{ lanes: Manifest['lanes']; parent?: string }>,
): Promise<BuildResult> {
  const started = performance.now();
  if (!Number.isSafeInteger(opts.block) || opts.block < 0) throw new StoreError('EPARAMS', `block must be a non-negative integer, got ${opts.block}`);
  const generation = opts.id ?? String(opts.block);
  if (!GENERATION_ID.test(generation) || generationBlock(generation) !== opts.block) {
    throw new StoreError('EPARAMS', `generation id ${JSON.stringify(generation)} does not name block ${opts.block} (expected ${opts.block} or ${opts.block}r<k>)`);
  }
  const finalDir = generationDir(opts.data, generation);
  if (await exists(finalDir)) {
    throw new StoreError('EEXIST', `generation ${generation} already exists at ${finalDir}; generations are immutable (build a new block)`);
  }
  await fsp.mkdir(generationsDir(opts.data), { recursive: true });
  const tmp = path.join(generationsDir(opts.data), `.tmp-${generation}-${crypto.randomBytes(6).toString('hex')}`);
  await fsp.mkdir(tmp);
  try {
    const files: Manifest['files'] = {};
    const { lanes, parent } = await fill(tmp, files);
    await opts.extraFiles?.(tmp, files);
    const manifest: Manifest = {
      format: 'lanepir-generation',
      format_version: FORMAT_VERSION,
      generation,
      block_number: opts.block,
      block_hash: opts.blockHash ?? null,
      chain_id: opts.chainId ?? null,
      ...(opts.parentHash ? { parent_hash: opts.parentHash } : {}),
      ...(opts.stateRoot ? { state_root: opts.stateRoot } : {}),
      ...(parent !== undefined ? { parent } : {}),
      created_at: new Date().toISOString(),
      lanes,
      files,
    };
    await writeNewFile(manifestPath(tmp), Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
    await fsyncDir(tmp);
    await fsp.rename(tmp, finalDir);
    await fsyncDir(generationsDir(opts.data));
    if (opts.publish) await publishGeneration(opts.data, generation);
    return { generation, dir: finalDir, manifest, durationMs: performance.now() - started };
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** A file's key in the manifest: its path relative to the generation, with '/'. */
export function manifestKey(genDir: string, file: string): string {
  return path.relative(genDir, file).split(path.sep).join('/');
}

export interface LaneParams {
  m: number;
  entries: number;
  entrySize: number;
  seed: Uint8Array;
  hintSha256: string;
  paramsVersion: number;
  shardSize: number;
  keyword?: KeywordCrsFields;
}

/** crs.json of a lane (key order is part of the byte-for-byte contract between full and incremental builds). */
export function laneCrs(p: LaneParams): Crs {
  return {
    scheme: 'simplepir',
    n: LWE_N,
    q_bits: Q_BITS,
    p: PLAIN_MODULUS,
    sigma: SIGMA,
    m: p.m,
    R: recordRows(p.entries, p.m),
    entry_size: p.entrySize,
    entries: p.entries,
    seed: Buffer.from(p.seed).toString('hex'),
    prg: 'aes-128-ctr',
    hint_sha256: p.hintSha256,
    params_version: p.paramsVersion,
    ...(p.keyword ? { layout: 'keyword' as const, key_seed: Buffer.from(p.keyword.keySeed).toString('hex'), bucket_choices: p.keyword.d } : {}),
    shard_size_bytes: p.shardSize,
    shards: shardCount(p.entries, p.entrySize, p.shardSize),
  };
}

export function crsFileBytes(crs: Crs): Buffer {
  return Buffer.from(JSON.stringify(crs, null, 2) + '\n');
}

/** The manifest's summary of a lane, from its crs. */
export function laneSummary(crs: Crs): LaneSummary {
  const shardSize = crs.shard_size_bytes as number;
  return {
    entries: crs.entries,
    entry_size: crs.entry_size,
    m: crs.m,
    R: crs.R,
    shard_size_bytes: shardSize,
    shards: shardCount(crs.entries, crs.entry_size, shardSize),
    bytes: crs.entries * crs.entry_size,
    seed: crs.seed,
    hint_sha256: crs.hint_sha256,
    params_version: crs.params_version ?? 1,
    ...(crs.layout === 'keyword' ? { layout: 'keyword' as const, key_seed: crs.key_seed!, bucket_choices: crs.bucket_choices! } : {}),
  };
}

/** Writes one lane's shards (from spec.source), hint and crs into the generation being built. */
export async function buildLane(
  genDir: string,
  lane: LaneName,
  spec: LaneSpec,
  opts: Pick<BuildOptions, 'shardSize' | 'threads' | 'progress'>,
  files: Manifest['files'],
): Promise<LaneSummary> {
  const { entries, entrySize } = spec.source;
  const m = spec.m ?? defaultColumns(entries);
  const shardSize = effectiveShardSize(opts.shardSize ?? DEFAULT_SHARD_SIZE, entrySize);
  const shards = shardCount(entries, entrySize, shardSize);
  const seed = Buffer.from(spec.seed ?? crypto.randomBytes(16));
  await fsp.mkdir(shardsDir(genDir, lane), { recursive: true });

  const totalBytes = entries * entrySize;
  const shardPaths: string[] = [];
  const buf = Buffer.alloc(shardSize);
  for (let i = 0; i < shards; i++) {
    const offset = i * shardSize;
    const size = Math.min(shardSize, totalBytes - offset);
    const chunk = buf.subarray(0, size);
    await spec.source.fill(offset / entrySize, chunk);
    const file = shardPath(genDir, lane, i);
    files[manifestKey(genDir, file)] = { size, sha256: await writeNewFile(file, chunk) };
    shardPaths.push(file);
    opts.progress?.(`${lane}: shards`, i + 1, shards);
  }
  await fsyncDir(shardsDir(genDir, lane));

  const handle = await native.openLane({ shards: shardPaths, entrySize, entries, shardSize, m, mode: 'mmap' });
  let hint: Uint32Array;
  try {
    hint = await native.hint(handle, seed, LWE_N, {
      ...(opts.threads ? { threads: opts.threads } : {}),
      onProgress: (done, total) => opts.progress?.(`${lane}: hint`, done, total),
    });
  } finally {
    await handle.release();
  }
  const hintSha = await writeNewFile(hintPath(genDir, lane), wordsToLittleEndian(hint));
  files[manifestKey(genDir, hintPath(genDir, lane))] = { size: hint.byteLength, sha256: hintSha };

  const crs = laneCrs({ m, entries, entrySize, seed, hintSha256: hintSha, paramsVersion: spec.paramsVersion ?? 1, shardSize, ...(spec.keyword ? { keyword: spec.keyword } : {}) });
  const crsBytes = crsFileBytes(crs);
  files[manifestKey(genDir, crsPath(genDir, lane))] = { size: crsBytes.length, sha256: await writeNewFile(crsPath(genDir, lane), crsBytes) };
  await fsyncDir(laneDir(genDir, lane));
  return laneSummary(crs);
}

/** Points <data>/current at generation `id`, atomically (symlink + rename). */
export async function publishGeneration(data: string, id: string): Promise<void> {
  if (!GENERATION_ID.test(id)) throw new StoreError('EGENERATION', `invalid generation id ${JSON.stringify(id)}`);
  if (!(await exists(manifestPath(generationDir(data, id))))) {
    throw new StoreError('ENOGEN', `generation ${id} does not exist under ${generationsDir(data)}`);
  }
  const link = currentLink(data);
  const tmpLink = `${link}.tmp-${crypto.randomBytes(6).toString('hex')}`;
  await fsp.symlink(path.join('generations', id), tmpLink);
  try {
    await fsp.rename(tmpLink, link);
  } catch (err) {
    await fsp.rm(tmpLink, { force: true });
    throw err;
  }
  await fsyncDir(data);
}
