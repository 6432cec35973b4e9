// Incremental builds of keyword lanes: a block's key changes become entry
// changes of the lane, which the incremental builder (incremental.ts) turns
// into shards, hint, diff and delta like any other. Placement stays stable:
// a changed value is rewritten in its slot, a deleted key's slot is zeroed, a
// new key takes a free slot among its candidates (relocating residents, or
// growing the lane by record rows when none is reachable).
import { type LaneHandle } from '../native.js';
import { KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, KEYWORD_VALUE_BYTES, hexToBytes } from '../pir/crs.js';
import { wordsToLittleEndian } from '../pir/prg.js';
import fsp from 'node:fs/promises';
import { manifestKey } from './builder.js';
import { pool } from './incremental.js';
import { StoreError } from './errors.js';
import { fsyncDir, writeNewFile } from './fsutil.js';
import { type LaneInfo, openLane } from './generation.js';
import { type LaneName, placementDir, placementPath, shardCount } from './layout.js';
import { type Manifest } from './manifest.js';
import { GROWN_LOAD, HASH_WORDS, KeywordTable, MAX_LOAD, TagConflictError, checkTags, zeroTag } from './keyword-placement.js';
import { MAX_KEY_BYTES, hashKeys, placementFileBytes } from './keyword-builder.js';

/** One key's change: a new or changed 32-byte value, or null to delete the key. */
export interface KeywordChange {
  key: Uint8Array;
  value: Uint8Array | null;
}

export interface KeywordChangeStats {
  inserted: number;
  updated: number;
  deleted: number;
  /** Deletes of keys the lane does not hold, and updates that rewrite the same value: no effect. */
  unchanged: number;
  /** Residents moved to make room for new keys. */
  moved: number;
  /** Record rows added. */
  grewRows: number;
  keys: number;
  load: number;
}

export interface PlannedKeywordLane {
  /** Entry changes for the incremental builder: slot -> 40-byte entry. */
  updates: Map<number, Uint8Array>;
  /** Slots whose key changed (placement index files to rewrite). */
  placementChanged: Set<number>;
  table: KeywordTable;
  stats: KeywordChangeStats;
}

const ZERO_ENTRY = new Uint8Array(KEYWORD_ENTRY_SIZE);

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * Applies a block's key changes to `table` (which the caller owns: it is
 * changed in place) and returns the lane's entry changes. Keys may repeat;
 * the last change wins. Deletes run first (they free slots), then value
 * changes, then inserts. Refuses (StoreError) an all-zero tag or a new key
 * whose tag equals another's with a shared candidate column: the lane keeps
 * its key_seed, so it cannot be re-seeded here.
 */
export async function planKeywordChanges(info: LaneInfo, table: KeywordTable, changes: Iterable<KeywordChange> | AsyncIterable<KeywordChange>): Promise<PlannedKeywordLane> {
  const crs = info.crs;
  if (crs.layout !== 'keyword') throw new StoreError('EPARAMS', `${info.lane}: not a keyword lane`);
  const byKey = new Map<string, KeywordChange>();
  let n = 0;
  for await (const ch of changes) {
    if (!(ch?.key instanceof Uint8Array) || ch.key.length < 1 || ch.key.length > MAX_KEY_BYTES) throw new StoreError('EINPUT', `${info.lane}: change ${n}: key must be 1..${MAX_KEY_BYTES} bytes`);
    if (ch.value !== null && (!(ch.value instanceof Uint8Array) || ch.value.length !== KEYWORD_VALUE_BYTES)) {
      throw new StoreError('EINPUT', `${info.lane}: change ${n}: value must be ${KEYWORD_VALUE_BYTES} bytes or null (delete)`);
    }
    byKey.delete(hex(ch.key)); // the last change of a key decides, in its position
    byKey.set(hex(ch.key), ch);
    n++;
  }
  const list = [...byKey.values()];
  const words = hashKeys(hexToBytes(crs.key_seed!), list.map((c) => c.key));
  const oldSlots = crs.m * crs.R;
  const stats: KeywordChangeStats = { inserted: 0, updated: 0, deleted: 0, unchanged: 0, moved: 0, grewRows: 0, keys: 0, load: 0 };
  const updates = new Map<number, Uint8Array>();
  const placementChanged = new Set<number>();
  const startRows = table.R;

  let handle: LaneHandle | undefined;
  const parentEntry = async (slot: number): Promise<Uint8Array> => {
    if (slot >= oldSlots) return ZERO_ENTRY;
    handle ??= await openLane(info, 'mmap');
    return handle.readEntry(slot);
  };
  const entry = (k: number, value: Uint8Array) => {
    const e = new Uint8Array(KEYWORD_ENTRY_SIZE);
    const h = wordsToLittleEndian(words.subarray(k * HASH_WORDS, (k + 1) * HASH_WORDS));
    e.set(h.subarray(0, KEYWORD_TAG_BYTES), 0);
    e.set(value, KEYWORD_TAG_BYTES);
    return e;
  };

  try {
    const slots = list.map((_, k) => table.slotOf(words, k * HASH_WORDS));
    // Deletes.
    list.forEach((ch, k) => {
      if (ch.value !== null) return;
      const s = slots[k]!;
      if (s < 0) {
        stats.unchanged++;
        return;
      }
      table.remove(s);
      updates.set(s, ZERO_ENTRY);
      placementChanged.add(s);
      stats.deleted++;
    });
    // Value changes, in place.
    for (let k = 0; k < list.length; k++) {
      const ch = list[k]!;
      const s = slots[k]!;
      if (ch.value === null || s < 0) continue;
      const next = entry(k, ch.value);
      const prev = updates.get(s) ?? (await parentEntry(s));
      if (Buffer.from(prev).equals(Buffer.from(next))) stats.unchanged++;
      else stats.updated++;
      updates.set(s, next);
    }
    // Inserts.
    const inserted: number[] = [];
    for (let k = 0; k < list.length; k++) {
      const ch = list[k]!;
      if (ch.value === null || slots[k]! >= 0) continue;
      if (zeroTag(words, k * HASH_WORDS)) {
        throw new StoreError('EZERO_TAG', `${info.lane}: key 0x${hex(ch.key)} has an all-zero tag under this lane's key_seed and cannot be stored (rebuild the lane with a fresh key_seed)`);
      }
      let placed = table.insert(words, k * HASH_WORDS);
      while (!placed) {
        table.grow(1);
        placed = table.insert(words, k * HASH_WORDS);
      }
      for (const mv of placed.moves) {
        updates.set(mv.to, updates.get(mv.from) ?? (await parentEntry(mv.from)));
        updates.set(mv.from, ZERO_ENTRY);
        placementChanged.add(mv.to);
        placementChanged.add(mv.from);
      }
      stats.moved += placed.moves.length;
      updates.set(placed.slot, entry(k, ch.value));
      placementChanged.add(placed.slot);
      inserted.push(k);
      stats.inserted++;
    }
    if (inserted.length > 0) {
      try {
        checkTags(table, inserted.map((k) => table.slotOf(words, k * HASH_WORDS)));
      } catch (err) {
        if (err instanceof TagConflictError) {
          throw new StoreError(err.code, `${info.lane}: ${err.message}; the lane keeps its key_seed (rebuild it as a fresh lane to re-seed)`);
        }
        throw err;
      }
    }
    // Room to grow: past MAX_LOAD relocation searches get long; grow back to GROWN_LOAD.
    if (table.load > MAX_LOAD) table.grow(table.rowsForLoad(GROWN_LOAD));
    stats.grewRows = table.R - startRows;
    // The lane is whole record rows: its last entry marks the new size even when empty.
    if (table.slots > oldSlots && !updates.has(table.slots - 1)) updates.set(table.slots - 1, ZERO_ENTRY);
  } finally {
    await handle?.release();
  }
  stats.keys = table.keys;
  stats.load = table.load;
  return { updates, placementChanged, table, stats };
}

/**
 * Writes the new generation's placement index: files whose slots did not
 * change are hard links to the parent's (listed with the parent's checksum),
 * the others are written from the table.
 */
export async function writePlacementIncrementally(
  genDir: string,
  lane: LaneName,
  table: KeywordTable | undefined,
  changed: Set<number>,
  parent: { dir: string; manifest: Manifest; slots: number },
  shardSize: number,
  files: Manifest['files'],
  concurrency = 8,
): Promise<void> {
  const dir = placementDir(genDir, lane);
  const written = new Map<number, { size: number; sha256: string }>();
  await fsp.mkdir(dir, { recursive: true });
  const perShard = shardSize / KEYWORD_ENTRY_SIZE;
  // Without a table (a carried lane) nothing changed: every file is a link.
  const slots = table?.slots ?? parent.slots;
  const shards = shardCount(slots, KEYWORD_ENTRY_SIZE, shardSize);
  const oldShards = shardCount(parent.slots, KEYWORD_ENTRY_SIZE, shardSize);
  const touched = new Set<number>();
  for (const s of changed) touched.add(Math.floor(s / perShard));
  const bytes = table ? wordsToLittleEndian(table.slotWords) : new Uint8Array(0);
  // Several files at once: their fsyncs overlap (as for the lane's shards).
  await pool(Array.from({ length: shards }, (_, k) => k), concurrency, async (k) => {
    const size = placementFileBytes(slots, shardSize, k);
    const file = placementPath(genDir, lane, k);
    const sameSize = k < oldShards && placementFileBytes(parent.slots, shardSize, k) === size;
    if (!touched.has(k) && sameSize) {
      const from = placementPath(parent.dir, lane, k);
      const listed = parent.manifest.files[manifestKey(parent.dir, from)];
      if (!listed) throw new StoreError('EMANIFEST', `generation ${parent.manifest.generation} does not list ${manifestKey(parent.dir, from)}`);
      await fsp.link(from, file);
      written.set(k, listed);
    } else {
      const chunk = bytes.subarray(k * perShard * 32, k * perShard * 32 + size);
      written.set(k, { size, sha256: await writeNewFile(file, chunk) });
    }
  });
  // Listed in file order, as a full build lists them.
  for (let k = 0; k < shards; k++) {
    const file = placementPath(genDir, lane, k);
    files[manifestKey(genDir, file)] = written.get(k)!;
  }
  await fsyncDir(dir);
}
