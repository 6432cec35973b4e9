// Full builds of keyword lanes (docs/FORMAT.md, "Keyword lanes"): keys and
// values streamed from an (async) iterable are hashed, placed in the lane's
// m x R grid (src/store/keyword-placement.ts) and written as an ordinary lane
// of 40-byte entries (tag || value) through the generation write protocol,
// plus the lane's placement index for later incremental builds.
//
// Memory: the placement table (32 bytes per slot), 8 bytes per slot and key
// for the slot <-> record maps, and one partition of the lane image
// (memoryBudget). Keys and values wait in a spill file inside the generation
// being built (removed before it is committed), so the input is read once.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { native } from '../native.js';
import { KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, KEYWORD_VALUE_BYTES } from '../pir/crs.js';
import { checkColumns } from '../pir/params.js';
import { littleEndianWords, wordsToLittleEndian } from '../pir/prg.js';
import { type BuildOptions, buildLane, manifestKey } from './builder.js';
import { pool } from './incremental.js';
import { type EntrySource } from './entries.js';
import { StoreError } from './errors.js';
import { fsyncDir, writeNewFile } from './fsutil.js';
import { type LaneInfo } from './generation.js';
import { DEFAULT_SHARD_SIZE, type LaneName, effectiveShardSize, placementDir, placementPath, shardCount } from './layout.js';
import { type LaneSummary, type Manifest } from './manifest.js';
import { HASH_WORDS, KeywordTable, TagConflictError, checkTags, planKeywordLane, zeroTag } from './keyword-placement.js';

/** One key of a keyword lane and its 32-byte value. */
export interface KeywordRecord {
  key: Uint8Array;
  value: Uint8Array;
}

export type KeywordInput = AsyncIterable<KeywordRecord> | Iterable<KeywordRecord>;

export interface KeywordLaneSpec {
  layout: 'keyword';
  /**
   * The lane's keys and values (each key once). A function that returns a
   * fresh iterable lets the builder re-seed a fresh lane (new key_seed) when
   * two keys' tags collide; a plain iterable can only be read once.
   */
  records: KeywordInput | (() => KeywordInput);
  /** key_seed (16 bytes); default: fresh random. Give the previous generation's to keep a lane's placement hash. */
  keySeed?: Uint8Array;
  /** Columns; default from planKeywordLane. Keep it across generations. */
  m?: number;
  /** Bucket choices d (1..3); default from planKeywordLane (3, or 2 for lanes of 1024-row columns). */
  d?: number;
  /** Size the lane for at least this many keys (e.g. a lane that starts empty but will fill). */
  expectedKeys?: number;
  /** A's seed (16 bytes); default: fresh random. */
  seed?: Uint8Array;
  paramsVersion?: number;
  /** Bytes of lane image assembled at a time (default 256 MiB). */
  memoryBudget?: number;
}

/** Largest key the builder accepts (Ethereum's are 21 and 53 bytes). */
export const MAX_KEY_BYTES = 1024;
const HASH_BATCH = 4096;
/** A spilled record: hash (32) || value (32). */
const SPILL_RECORD = 64;
const RESEED_ATTEMPTS = 3;
export const DEFAULT_MEMORY_BUDGET = 256 * 2 ** 20;

export function isKeywordSpec(spec: unknown): spec is KeywordLaneSpec {
  return typeof spec === 'object' && spec !== null && (spec as { layout?: unknown }).layout === 'keyword';
}

export function checkKeywordSpec(lane: LaneName, spec: KeywordLaneSpec): void {
  if (spec.keySeed && spec.keySeed.length !== 16) throw new StoreError('EPARAMS', `${lane}: key_seed must be 16 bytes`);
  if (spec.d !== undefined && (!Number.isInteger(spec.d) || spec.d < 1 || spec.d > 3)) throw new StoreError('EPARAMS', `${lane}: bucket choices d must be 1, 2 or 3`);
  if (spec.m !== undefined) checkColumns(spec.m);
}

/** keccak256(keySeed || key) of each key, as table words (HASH_WORDS per key). */
export function hashKeys(keySeed: Uint8Array, keys: Uint8Array[]): Uint32Array {
  let total = 0;
  for (const k of keys) total += k.length;
  const data = new Uint8Array(total);
  const offsets = new Uint32Array(keys.length + 1);
  let at = 0;
  keys.forEach((k, i) => {
    data.set(k, at);
    at += k.length;
    offsets[i + 1] = at;
  });
  const hashes = native.keccakBatch(keySeed, data, offsets);
  return littleEndianWords(hashes).slice();
}

function checkRecord(r: KeywordRecord, n: number): void {
  if (!(r?.key instanceof Uint8Array) || r.key.length < 1 || r.key.length > MAX_KEY_BYTES) {
    throw new StoreError('EINPUT', `record ${n}: key must be 1..${MAX_KEY_BYTES} bytes`);
  }
  if (!(r.value instanceof Uint8Array) || r.value.length !== KEYWORD_VALUE_BYTES) {
    throw new StoreError('EINPUT', `record ${n}: value must be ${KEYWORD_VALUE_BYTES} bytes, got ${r.value?.length}`);
  }
}

class ZeroTagError extends StoreError {
  constructor(record: number) {
    super('EZERO_TAG', `record ${record}: the key's tag is all zero under this key_seed (an empty slot is all zero), so it cannot be stored`);
  }
}

/** Appends fixed-size records to a file through a buffer. */
class SpillWriter {
  private buf = Buffer.alloc(1 << 20);
  private used = 0;
  constructor(private readonly fh: fsp.FileHandle) {}
  async push(bytes: Uint8Array): Promise<void> {
    if (this.used + bytes.length > this.buf.length) await this.flush();
    this.buf.set(bytes, this.used);
    this.used += bytes.length;
  }
  async flush(): Promise<void> {
    let done = 0;
    while (done < this.used) done += (await this.fh.write(this.buf, done, this.used - done)).bytesWritten;
    this.used = 0;
  }
}

/** Reads the spill file's records in order, a chunk at a time (chunks 4-byte aligned for word views). */
async function* spillChunks(file: string, records: number): AsyncGenerator<{ first: number; bytes: Buffer; count: number }> {
  const per = 16384;
  const buf = Buffer.alloc(per * SPILL_RECORD);
  const fh = await fsp.open(file, 'r');
  try {
    for (let first = 0; first < records; first += per) {
      const count = Math.min(per, records - first);
      const want = count * SPILL_RECORD;
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, first * SPILL_RECORD + got);
        if (bytesRead === 0) throw new StoreError('EIO', `spill file ${file} ended early`);
        got += bytesRead;
      }
      yield { first, bytes: buf, count };
    }
  } finally {
    await fh.close();
  }
}

export interface PlacedLane {
  table: KeywordTable;
  keySeed: Uint8Array;
  /** recordOfSlot[slot] = input record number, -1 when empty. */
  recordOfSlot: Int32Array;
  records: number;
  spill: string;
}

/** Streams the records into the spill file (hash || value) and places them; throws on zero tags and tag conflicts. */
async function placeRecords(input: KeywordInput, spec: KeywordLaneSpec, keySeed: Uint8Array, spill: string, progress?: BuildOptions['progress'], label = 'keys'): Promise<PlacedLane> {
  // Pass 1: hash and spill.
  let records = 0;
  const fh = await fsp.open(spill, 'w');
  try {
    const writer = new SpillWriter(fh);
    let batch: KeywordRecord[] = [];
    const rec = new Uint8Array(SPILL_RECORD);
    const flushBatch = async () => {
      const words = hashKeys(keySeed, batch.map((r) => r.key));
      const hashes = wordsToLittleEndian(words);
      for (let i = 0; i < batch.length; i++) {
        if (zeroTag(words, i * HASH_WORDS)) throw new ZeroTagError(records - batch.length + i);
        rec.set(hashes.subarray(i * 32, i * 32 + 32), 0);
        rec.set(batch[i]!.value, 32);
        await writer.push(rec);
      }
      batch = [];
    };
    for await (const r of input) {
      checkRecord(r, records);
      batch.push(r);
      records++;
      if (batch.length === HASH_BATCH) await flushBatch();
    }
    if (batch.length > 0) await flushBatch();
    await writer.flush();
  } finally {
    await fh.close();
  }

  // Pass 2: place, in input order.
  const plan = planKeywordLane(Math.max(records, spec.expectedKeys ?? 0), { ...(spec.m !== undefined ? { m: spec.m } : {}), ...(spec.d !== undefined ? { d: spec.d } : {}) });
  const table = KeywordTable.create(plan.m, plan.d, plan.R);
  let recordOfSlot = new Int32Array(table.slots).fill(-1);
  for await (const { first, bytes, count } of spillChunks(spill, records)) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, (count * SPILL_RECORD) / 4);
    for (let i = 0; i < count; i++) {
      const at = (i * SPILL_RECORD) / 4;
      let placed = table.insert(words, at);
      while (!placed) {
        table.grow(1);
        if (recordOfSlot.length < table.slots) {
          const bigger = new Int32Array(Math.max(table.slots, recordOfSlot.length + table.m * 64)).fill(-1);
          bigger.set(recordOfSlot);
          recordOfSlot = bigger;
        }
        placed = table.insert(words, at);
      }
      for (const mv of placed.moves) {
        recordOfSlot[mv.to] = recordOfSlot[mv.from]!;
        recordOfSlot[mv.from] = -1;
      }
      recordOfSlot[placed.slot] = first + i;
    }
    progress?.(label, first + count, records);
  }
  recordOfSlot = recordOfSlot.subarray(0, table.slots);
  try {
    checkTags(table);
  } catch (err) {
    if (err instanceof TagConflictError) {
      const [a, b] = err.slots;
      throw new TagConflictError(`records ${recordOfSlot[a]} and ${recordOfSlot[b]}: ${err.message}`, err.slots);
    }
    throw err;
  }
  return { table, keySeed, recordOfSlot, records, spill };
}

/** The lane's entries (tag || value per slot) for buildLane, assembled a partition at a time from the spill file. */
class PlacedSource implements EntrySource {
  readonly entrySize = KEYWORD_ENTRY_SIZE;
  readonly entries: number;
  private image: Buffer | undefined;
  private imageStart = 0;
  private readonly perPartition: number;
  private readonly slotOfRecord: Uint32Array;

  constructor(
    private readonly placed: PlacedLane,
    shardSize: number,
    budget: number,
  ) {
    this.entries = placed.table.slots;
    // Whole shards per partition, so a fill() never straddles two.
    const shardEntries = shardSize / KEYWORD_ENTRY_SIZE;
    this.perPartition = Math.max(1, Math.floor(budget / shardSize)) * shardEntries;
    this.slotOfRecord = new Uint32Array(placed.records);
    placed.recordOfSlot.forEach((r, s) => {
      if (r >= 0) this.slotOfRecord[r] = s;
    });
  }

  private async load(start: number): Promise<void> {
    const first = Math.floor(start / this.perPartition) * this.perPartition;
    const count = Math.min(this.perPartition, this.entries - first);
    const image = Buffer.alloc(count * KEYWORD_ENTRY_SIZE);
    for await (const chunk of spillChunks(this.placed.spill, this.placed.records)) {
      for (let i = 0; i < chunk.count; i++) {
        const s = this.slotOfRecord[chunk.first + i]! - first;
        if (s < 0 || s >= count) continue;
        const o = i * SPILL_RECORD;
        chunk.bytes.copy(image, s * KEYWORD_ENTRY_SIZE, o, o + KEYWORD_TAG_BYTES);
        chunk.bytes.copy(image, s * KEYWORD_ENTRY_SIZE + KEYWORD_TAG_BYTES, o + 32, o + 64);
      }
    }
    this.image = image;
    this.imageStart = first;
  }

  async fill(start: number, out: Buffer): Promise<void> {
    const count = out.length / KEYWORD_ENTRY_SIZE;
    if (!this.image || start < this.imageStart || start + count > this.imageStart + this.image.length / KEYWORD_ENTRY_SIZE) await this.load(start);
    this.image!.copy(out, 0, (start - this.imageStart) * KEYWORD_ENTRY_SIZE, (start - this.imageStart + count) * KEYWORD_ENTRY_SIZE);
  }

  describe(): string {
    return `keyword lane of ${this.placed.records} keys`;
  }
}

/** Writes the placement index (slot hashes) in files aligned with the lane's shards. */
export async function writePlacement(genDir: string, lane: LaneName, table: KeywordTable, shardSize: number, files: Manifest['files']): Promise<void> {
  const dir = placementDir(genDir, lane);
  await fsp.mkdir(dir, { recursive: true });
  const perShard = shardSize / KEYWORD_ENTRY_SIZE;
  const shards = shardCount(table.slots, KEYWORD_ENTRY_SIZE, shardSize);
  const bytes = wordsToLittleEndian(table.slotWords);
  const written: { size: number; sha256: string }[] = [];
  await pool(Array.from({ length: shards }, (_, k) => k), 8, async (k) => {
    const chunk = bytes.subarray(k * perShard * 32, Math.min(table.slots, (k + 1) * perShard) * 32);
    written[k] = { size: chunk.length, sha256: await writeNewFile(placementPath(genDir, lane, k), chunk) };
  });
  written.forEach((w, k) => (files[manifestKey(genDir, placementPath(genDir, lane, k))] = w));
  await fsyncDir(dir);
}

/** Bytes of placement file k of a lane (32 per slot of lane shard k). */
export function placementFileBytes(slots: number, shardSize: number, k: number): number {
  const perShard = shardSize / KEYWORD_ENTRY_SIZE;
  return (Math.min(slots, (k + 1) * perShard) - k * perShard) * 32;
}

/** Reads a keyword lane's placement index back into a table. */
export async function loadPlacement(info: LaneInfo, genDir: string): Promise<KeywordTable> {
  const crs = info.crs;
  if (crs.layout !== 'keyword') throw new StoreError('EPARAMS', `${info.lane}: not a keyword lane`);
  const slots = crs.m * crs.R;
  const shardSize = info.summary.shard_size_bytes;
  const words = new Uint32Array(slots * HASH_WORDS);
  const bytes = new Uint8Array(words.buffer);
  let at = 0;
  const shards = info.summary.shards;
  // A few files in flight: one read after another is a thread-pool round trip each.
  const BATCH = 32;
  for (let k0 = 0; k0 < shards; k0 += BATCH) {
    const ks = Array.from({ length: Math.min(BATCH, shards - k0) }, (_, i) => k0 + i);
    const parts = await Promise.all(
      ks.map((k) =>
        fsp.readFile(placementPath(genDir, info.lane, k)).catch((err: Error) => {
          throw new StoreError('EPLACEMENT', `${info.lane}: cannot read the placement index (${path.basename(placementPath(genDir, info.lane, k))}): ${err.message}`);
        }),
      ),
    );
    parts.forEach((p, i) => {
      const want = placementFileBytes(slots, shardSize, ks[i]!);
      if (p.length !== want) throw new StoreError('EPLACEMENT', `${info.lane}: placement file ${ks[i]} has ${p.length} bytes, expected ${want}`);
      bytes.set(p, at);
      at += p.length;
    });
  }
  return KeywordTable.fromWords(crs.m, crs.bucket_choices!, crs.R, words);
}

/**
 * Builds a keyword lane into the generation directory being written: places
 * every record, writes shards, hint and crs (buildLane) and the placement
 * index. Re-seeds (fresh key_seed) a fresh lane whose keys collide, when the
 * records can be read again.
 */
export async function buildKeywordLane(
  genDir: string,
  lane: LaneName,
  spec: KeywordLaneSpec,
  opts: Pick<BuildOptions, 'shardSize' | 'threads' | 'progress'>,
  files: Manifest['files'],
  placed?: (table: KeywordTable, keySeed: Uint8Array) => void,
): Promise<LaneSummary> {
  const shardSize = effectiveShardSize(opts.shardSize ?? DEFAULT_SHARD_SIZE, KEYWORD_ENTRY_SIZE);
  const canReseed = spec.keySeed === undefined && typeof spec.records === 'function';
  const spill = path.join(genDir, `.keyword-${lane}-${crypto.randomBytes(6).toString('hex')}.spill`);
  try {
    let result: PlacedLane | undefined;
    for (let attempt = 0; !result; attempt++) {
      const keySeed = spec.keySeed ?? crypto.randomBytes(16);
      const input = typeof spec.records === 'function' ? spec.records() : spec.records;
      try {
        result = await placeRecords(input, spec, keySeed, spill, opts.progress, `${lane}: keys`);
      } catch (err) {
        const collision = err instanceof TagConflictError || err instanceof ZeroTagError;
        if (!collision) throw err;
        if (!canReseed || attempt + 1 >= RESEED_ATTEMPTS) {
          const why = spec.keySeed !== undefined
            ? 'the lane keeps its key_seed (rebuild it as a fresh lane to re-seed)'
            : typeof spec.records !== 'function'
              ? 'pass records as a function returning a fresh iterable to let the builder re-seed a fresh lane'
              : `re-seeded ${attempt} times`;
          throw new StoreError(err.code, `${lane}: ${err.message}; ${why}`);
        }
      }
    }
    const { table, keySeed } = result;
    const source = new PlacedSource(result, shardSize, spec.memoryBudget ?? DEFAULT_MEMORY_BUDGET);
    const summary = await buildLane(
      genDir,
      lane,
      {
        source,
        m: table.m,
        ...(spec.seed ? { seed: spec.seed } : {}),
        ...(spec.paramsVersion !== undefined ? { paramsVersion: spec.paramsVersion } : {}),
        keyword: { keySeed, d: table.d },
      },
      { ...opts, shardSize },
      files,
    );
    await fsp.rm(spill, { force: true });
    await writePlacement(genDir, lane, table, shardSize, files);
    placed?.(table, keySeed);
    return summary;
  } finally {
    await fsp.rm(spill, { force: true });
  }
}

/**
 * Placement tables of recent generations, so that a chain of incremental
 * builds in one process (follow mode) does not read each parent's placement
 * index back from disk. An entry is taken out by the build that uses it
 * (the build changes it) and put back under the new generation's id once
 * that generation is committed.
 */
export class PlacementCache {
  private readonly tables = new Map<string, KeywordTable>();

  private static key(data: string, generation: string, lane: LaneName): string {
    return `${path.resolve(data)}\0${lane}\0${generation}`;
  }

  /** The table without taking it (a reader; the next build still finds it). */
  peek(data: string, generation: string, lane: LaneName): KeywordTable | undefined {
    return this.tables.get(PlacementCache.key(data, generation, lane));
  }

  take(data: string, generation: string, lane: LaneName): KeywordTable | undefined {
    const k = PlacementCache.key(data, generation, lane);
    const t = this.tables.get(k);
    this.tables.delete(k);
    return t;
  }

  /** Keeps only the newest table per data directory and lane (each can be hundreds of MB). */
  put(data: string, generation: string, lane: LaneName, table: KeywordTable): void {
    const prefix = `${path.resolve(data)}\0${lane}\0`;
    for (const k of [...this.tables.keys()]) if (k.startsWith(prefix)) this.tables.delete(k);
    this.tables.set(PlacementCache.key(data, generation, lane), table);
  }

  clear(): void {
    this.tables.clear();
  }
}
