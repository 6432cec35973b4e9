// Ethereum generations: a full state (--state FILE, --eth-synthetic) or a
// state diff on top of a parent generation (--state-diff FILE, follow mode)
// becomes keyword lanes (hot and cold) plus the generation's Ethereum files:
// hot-manifest.json and the slot index (eth/). Everything is read and checked
// before the generation is committed; a bad line leaves nothing behind.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type BuildResult, buildGeneration } from '../store/builder.js';
import { StoreError } from '../store/errors.js';
import { exists, writeNewFile } from '../store/fsutil.js';
import { loadGeneration } from '../store/generation.js';
import { type IncrementalResult, buildIncremental } from '../store/incremental.js';
import { type KeywordLaneSpec, PlacementCache } from '../store/keyword-builder.js';
import { generationDir, generationsDir } from '../store/layout.js';
import { type Manifest } from '../store/manifest.js';
import { type ProgressFn } from '../store/progress.js';
import { EthError } from './errors.js';
import { readHotManifest } from './generation-files.js';
import { HOT_MANIFEST_FILE, type EthLane, HotManifest } from './hot-manifest.js';
import { ingestDiff, ingestState } from './ingest.js';
import { readLaneValues } from './lane-reader.js';
import { SlotIndex, SlotIndexWriter } from './slot-index.js';
import { RecordSpill } from './spill.js';
import { readStateFile } from './state-file.js';
import { type AccountLine, type BlockHeaderLine } from './state-lines.js';

export interface EthBlockInfo {
  /** 0x + 64 hex digits. */
  blockHash?: string;
  chainId?: number;
  /** The block's parent hash and state root (0x + 64 hex digits), recorded by follow --rpc. */
  parentHash?: string;
  stateRoot?: string;
}

/** Keyword-lane parameters carried from an earlier generation (key_seed, m, A's seed…), per lane. */
export type LaneCarry = Partial<Record<EthLane, Partial<Pick<KeywordLaneSpec, 'keySeed' | 'm' | 'd' | 'seed' | 'paramsVersion' | 'expectedKeys'>>>>;

export interface EthStateBuildOptions extends EthBlockInfo {
  data: string;
  block: number;
  id?: string;
  /** A state file (JSON Lines) or the accounts themselves (the synthetic generator). */
  state: string | AsyncIterable<AccountLine> | Iterable<AccountLine>;
  /** Default: the empty manifest (every key cold). */
  hotManifest?: HotManifest;
  lanes?: LaneCarry;
  shardSize?: number;
  threads?: number;
  publish?: boolean;
  progress?: ProgressFn;
  placementCache?: PlacementCache;
}

export interface EthBuildStats {
  accounts?: number;
  keys?: Record<EthLane, number>;
  /** Storage keys a manifest change moved between lanes. */
  moved?: number;
}

/** Reconciles the block header line of a file with the command's flags (a conflict is an error). */
function mergeHeader(block: number, given: EthBlockInfo, header: BlockHeaderLine | undefined, where: string): EthBlockInfo {
  if (!header) return given;
  if (header.block_number !== undefined && header.block_number !== block) {
    throw new EthError('EINPUT', `${where}: the file is for block ${header.block_number}, the build is for block ${block}`);
  }
  if (header.block_hash && given.blockHash && header.block_hash !== given.blockHash.toLowerCase()) {
    throw new EthError('EINPUT', `${where}: block_hash ${header.block_hash} differs from --block-hash ${given.blockHash}`);
  }
  if (header.chain_id !== undefined && given.chainId !== undefined && header.chain_id !== given.chainId) {
    throw new EthError('EINPUT', `${where}: chain_id ${header.chain_id} differs from --chain-id ${given.chainId}`);
  }
  if (header.state_root && given.stateRoot && header.state_root !== given.stateRoot.toLowerCase()) {
    throw new EthError('EINPUT', `${where}: state_root ${header.state_root} differs from the block's state root ${given.stateRoot}`);
  }
  return {
    ...((header.block_hash ?? given.blockHash) ? { blockHash: (header.block_hash ?? given.blockHash)!.toLowerCase() } : {}),
    ...((header.chain_id ?? given.chainId) !== undefined ? { chainId: (header.chain_id ?? given.chainId)! } : {}),
    ...((header.state_root ?? given.stateRoot) ? { stateRoot: (header.state_root ?? given.stateRoot)!.toLowerCase() } : {}),
  };
}

export function checkBlockInfo(info: EthBlockInfo): void {
  if (info.blockHash !== undefined && !/^0x[0-9a-fA-F]{64}$/.test(info.blockHash)) {
    throw new EthError('EPARAMS', `the block hash must be 0x followed by 64 hex digits, got ${JSON.stringify(info.blockHash)}`);
  }
  for (const [name, v] of [['parent hash', info.parentHash], ['state root', info.stateRoot]] as const) {
    if (v !== undefined && !/^0x[0-9a-fA-F]{64}$/.test(v)) throw new EthError('EPARAMS', `the ${name} must be 0x followed by 64 hex digits, got ${JSON.stringify(v)}`);
  }
  if (info.chainId !== undefined && (!Number.isSafeInteger(info.chainId) || info.chainId < 1)) {
    throw new EthError('EPARAMS', `the chain id must be a positive integer, got ${info.chainId}`);
  }
}

async function writeHotManifest(tmp: string, files: Manifest['files'], manifest: HotManifest): Promise<void> {
  const bytes = Buffer.from(manifest.toJson());
  files[HOT_MANIFEST_FILE] = { size: bytes.length, sha256: await writeNewFile(path.join(tmp, HOT_MANIFEST_FILE), bytes) };
}

/** Generations are immutable: say so before reading a state that may take minutes (the commit checks again). */
async function refuseExisting(data: string, id: string): Promise<void> {
  if (await exists(generationDir(data, id))) {
    throw new StoreError('EEXIST', `generation ${id} already exists at ${generationDir(data, id)}; generations are immutable (build a new block)`);
  }
}

/** A scratch directory beside the generations (same filesystem), removed whatever happens. */
async function withScratch<T>(data: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await fsp.mkdir(generationsDir(data), { recursive: true });
  const dir = path.join(generationsDir(data), `.eth-scratch-${crypto.randomBytes(6).toString('hex')}`);
  await fsp.mkdir(dir);
  try {
    return await fn(dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** A full Ethereum generation from a state. */
export async function buildEthState(opts: EthStateBuildOptions): Promise<BuildResult & { stats: EthBuildStats }> {
  checkBlockInfo(opts);
  await refuseExisting(opts.data, opts.id ?? String(opts.block));
  const started = performance.now();
  const hot = opts.hotManifest ?? HotManifest.empty();
  return withScratch(opts.data, async (scratch) => {
    let header: BlockHeaderLine | undefined;
    const lines =
      typeof opts.state === 'string'
        ? readStateFile(opts.state, 'state', { onHeader: (h) => (header = h), ...(opts.progress ? { progress: opts.progress } : {}) })
        : opts.state;
    const spills = { hot: await RecordSpill.create(path.join(scratch, 'hot.bin')), cold: await RecordSpill.create(path.join(scratch, 'cold.bin')) };
    const slots = await SlotIndexWriter.create(path.join(scratch, 'slots.bin'));
    let ingested;
    try {
      ingested = await ingestState(lines, hot, spills, (address, list) => slots.add(address, list));
    } catch (err) {
      await slots.abort();
      throw err;
    } finally {
      await spills.hot.close();
      await spills.cold.close();
    }
    const info = mergeHeader(opts.block, opts, header, typeof opts.state === 'string' ? opts.state : 'state');
    const laneSpec = (lane: EthLane): KeywordLaneSpec => ({ layout: 'keyword', records: () => spills[lane].read(), ...(opts.lanes?.[lane] ?? {}) });
    let indexed = false;
    const result = await buildGeneration({
      data: opts.data,
      block: opts.block,
      ...(opts.id !== undefined ? { id: opts.id } : {}),
      lanes: { hot: laneSpec('hot'), cold: laneSpec('cold') },
      ...(opts.shardSize !== undefined ? { shardSize: opts.shardSize } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.publish !== undefined ? { publish: opts.publish } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
      ...(opts.placementCache ? { placementCache: opts.placementCache } : {}),
      ...(info.blockHash !== undefined ? { blockHash: info.blockHash } : {}),
      ...(info.chainId !== undefined ? { chainId: info.chainId } : {}),
      ...(opts.parentHash ? { parentHash: opts.parentHash.toLowerCase() } : {}),
      ...(info.stateRoot ? { stateRoot: info.stateRoot.toLowerCase() } : {}),
      extraFiles: async (tmp, files) => {
        await writeHotManifest(tmp, files, hot);
        indexed = true;
        Object.assign(files, await slots.finish(tmp, opts.id ?? String(opts.block)));
      },
    }).finally(() => (indexed ? undefined : slots.abort()));
    // durationMs: the whole build, reading the state included.
    return { ...result, durationMs: performance.now() - started, stats: { accounts: ingested.accounts, keys: ingested.keys } };
  });
}

export interface EthDiffBuildOptions extends EthBlockInfo {
  data: string;
  block: number;
  id?: string;
  /** The parent generation. */
  from: string;
  /** A state-diff file (JSON Lines) or its lines. */
  diff: string | Iterable<AccountLine>;
  /** A new hot manifest (its changes move keys between lanes); default: the parent's. */
  hotManifest?: HotManifest;
  /** Refuse a diff file whose last line is not terminated (follow mode: a file still being written). */
  requireFinalNewline?: boolean;
  publish?: boolean;
  progress?: ProgressFn;
  placementCache?: PlacementCache;
}

/** An Ethereum generation from its parent and a state diff. */
export async function buildEthDiff(opts: EthDiffBuildOptions): Promise<IncrementalResult & { stats: IncrementalResult['stats'] & { eth: EthBuildStats } }> {
  checkBlockInfo(opts);
  await refuseExisting(opts.data, opts.id ?? String(opts.block));
  const started = performance.now();
  const parentDir = generationDir(opts.data, opts.from);
  const parent = await loadGeneration(parentDir).catch((err: Error) => {
    throw new StoreError('ENOGEN', `cannot build from generation ${opts.from}: ${err.message}`);
  });
  const old = await readHotManifest(parentDir, parent.manifest).catch((err: Error) => {
    throw new EthError('ENOT_ETH', `generation ${opts.from} is not an Ethereum generation: ${err.message}`);
  });
  const next = opts.hotManifest ?? old.manifest;
  let header: BlockHeaderLine | undefined;
  let lines: AccountLine[];
  if (typeof opts.diff === 'string') {
    lines = [];
    for await (const l of readStateFile(opts.diff, 'diff', { onHeader: (h) => (header = h), ...(opts.requireFinalNewline ? { requireFinalNewline: true } : {}) })) lines.push(l);
  } else lines = [...opts.diff];
  const info = mergeHeader(opts.block, opts, header, typeof opts.diff === 'string' ? opts.diff : 'state diff');
  const slotIndex = await SlotIndex.open(parentDir);
  // One load of each lane's placement table serves the plaintext reads below and the build.
  const placementCache = opts.placementCache ?? new PlacementCache();
  const ingested = await ingestDiff(lines, {
    oldManifest: old.manifest,
    newManifest: next,
    slots: slotIndex,
    read: (lane, keys) => {
      const laneInfo = parent.lanes[lane];
      if (!laneInfo) throw new EthError('ENOT_ETH', `generation ${opts.from} has no ${lane} lane`);
      return readLaneValues(laneInfo, parentDir, keys, { data: opts.data, generation: opts.from, tables: placementCache });
    },
  });
  const id = opts.id ?? String(opts.block);
  const toList = (m: Map<string, Uint8Array | null>) => [...m].map(([hex, value]) => ({ key: Buffer.from(hex, 'hex'), value }));
  const result = await buildIncremental({
    data: opts.data,
    block: opts.block,
    id,
    from: opts.from,
    updates: {},
    keywordChanges: { hot: toList(ingested.changes.hot), cold: toList(ingested.changes.cold) },
    ...(opts.publish !== undefined ? { publish: opts.publish } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
    placementCache,
    ...(info.blockHash !== undefined ? { blockHash: info.blockHash } : {}),
    ...(info.chainId !== undefined ? { chainId: info.chainId } : {}),
    ...(opts.parentHash ? { parentHash: opts.parentHash.toLowerCase() } : {}),
    ...(info.stateRoot ? { stateRoot: info.stateRoot.toLowerCase() } : {}),
    extraFiles: async (tmp, files) => {
      const nextBytes = Buffer.from(next.toJson());
      if (nextBytes.equals(old.bytes)) {
        await fsp.link(path.join(parentDir, HOT_MANIFEST_FILE), path.join(tmp, HOT_MANIFEST_FILE));
        files[HOT_MANIFEST_FILE] = parent.manifest.files[HOT_MANIFEST_FILE]!;
      } else {
        await writeHotManifest(tmp, files, next);
      }
      Object.assign(files, await slotIndex.writeChild(tmp, id, ingested.slotChanges, parent.manifest.files));
    },
  });
  return { ...result, durationMs: performance.now() - started, stats: { ...result.stats, eth: { moved: ingested.moved } } };
}
