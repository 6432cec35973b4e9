// Where each key of a keyword lane sits (docs/FORMAT.md, "Keyword lanes").
// The lane is an m x R grid of slots (slot = entry index r*m + c); a key may
// sit in any row of its d candidate columns. KeywordTable holds, for every
// slot, the full keccak hash of the key in it (zeros when empty): enough to
// find a key again (all 32 bytes must match), to know every resident's
// candidate columns (for relocation), and to write the lane's placement
// index (<lane>/placement/, which the builder reads back and servers never).
//
// Insertion: the least loaded candidate column with a free slot (d-choice
// balancing); when all are full, a bounded breadth-first search for a chain
// of residents that can each move to another of their own candidates, ending
// in a column with a free slot (cuckoo-style relocation); when none exists,
// the caller grows the lane by a record row (every column gains a slot).
import { KEYWORD_TAG_BYTES } from '../pir/crs.js';
import { MAX_COLUMNS_SECURITY } from '../pir/params.js';
import { StoreError } from './errors.js';

/** Words (uint32) of a key hash as the table stores it: u32le of hash bytes 4w .. 4w+4. */
export const HASH_WORDS = 8;
/** Columns the relocation search visits at most per insertion. */
export const MAX_RELOCATION_COLUMNS = 256;
/** Longest chain of residents moved for one insertion. */
export const MAX_RELOCATION_DEPTH = 8;

/** Load a fresh lane is sized for: every key fits with room for ~15% more keys before it grows. */
export const BUILD_LOAD = 0.85;
/** An update that leaves the lane fuller than this grows it back to GROWN_LOAD (relocation gets slow near 1). */
export const MAX_LOAD = 0.95;
export const GROWN_LOAD = 0.9;
/**
 * Default d (bucket choices), see planKeywordLane: 3 for lanes of short
 * columns (fewer than MAX_ROWS rows), 2 for lanes of MAX_ROWS-row columns.
 */
export const SHORT_COLUMN_CHOICES = 3;
export const TALL_COLUMN_CHOICES = 2;
/** Matrix width of large lanes (as for index lanes: 64 KiB queries). */
export const KEYWORD_COLUMNS = 16384;
/** Record rows of a lane below KEYWORD_COLUMNS * MIN_ROWS slots (narrower columns below that). */
export const MIN_ROWS = 64;
/** Record rows beyond which a lane widens instead (answers and the hint grow with R). */
export const MAX_ROWS = 1024;

export interface KeywordPlan {
  m: number;
  R: number;
  d: number;
}

/**
 * m, R and d for a lane of `keys` keys: slots = keys / BUILD_LOAD, in columns
 * of MIN_ROWS..MAX_ROWS rows. Small lanes get fewer columns of MIN_ROWS rows;
 * up to KEYWORD_COLUMNS * MAX_ROWS slots the width is KEYWORD_COLUMNS (a query
 * is 64 KiB, as for index lanes); larger lanes widen (up to 2^20 columns,
 * the LWE sample bound) so the answer and the hint stay bounded. Tall
 * columns also blunt grinding: an attacker who forces keys into one column
 * fills it before the lane must grow, and a row is 1/R of the lane.
 */
export function planKeywordLane(keys: number, opts: { m?: number; d?: number; load?: number } = {}): KeywordPlan {
  if (!Number.isSafeInteger(keys) || keys < 0) throw new StoreError('EPARAMS', `key count must be a non-negative integer, got ${keys}`);
  const load = opts.load ?? BUILD_LOAD;
  if (!(load > 0 && load <= 1)) throw new StoreError('EPARAMS', `target load must be in (0, 1], got ${load}`);
  const slots = Math.max(1, Math.ceil(keys / load));
  let m = opts.m;
  if (m === undefined) {
    if (slots <= KEYWORD_COLUMNS * MIN_ROWS) m = Math.max(1, Math.ceil(slots / MIN_ROWS));
    else if (slots <= KEYWORD_COLUMNS * MAX_ROWS) m = KEYWORD_COLUMNS;
    else m = Math.min(MAX_COLUMNS_SECURITY, Math.ceil(slots / MAX_ROWS));
  }
  if (!Number.isSafeInteger(m) || m < 1) throw new StoreError('EPARAMS', `m must be a positive integer, got ${m}`);
  const R = Math.max(1, Math.ceil(slots / m));
  // Load: with relocation, d = 2 and d = 3 both fill columns of 64+ rows (bench: keyword). Grinding: a
  // key whose candidates all hit one column costs an attacker m^d hashes, and once that column is
  // full each such key costs the lane a record row. Columns of MAX_ROWS rows absorb about a
  // thousand such keys before growing, so d = 2 suffices; shorter columns get d = 3 (m^3 = 2^42
  // hashes per key at m = 16384) for one more query per lookup.
  const d = opts.d ?? (R >= MAX_ROWS ? TALL_COLUMN_CHOICES : SHORT_COLUMN_CHOICES);
  if (!Number.isInteger(d) || d < 1 || d > 3) throw new StoreError('EPARAMS', `bucket choices d must be 1, 2 or 3, got ${d}`);
  return { m, R, d };
}

/** Hash bytes -> words as the table stores them. */
export function hashWords(hash: Uint8Array, out = new Uint32Array(HASH_WORDS), at = 0): Uint32Array {
  for (let w = 0; w < HASH_WORDS; w++) {
    const o = 4 * w;
    out[at + w] = (hash[o]! | (hash[o + 1]! << 8) | (hash[o + 2]! << 16) | (hash[o + 3]! << 24)) >>> 0;
  }
  return out;
}

/** Words -> hash bytes. */
export function wordsToHash(words: Uint32Array, at = 0, out = new Uint8Array(32)): Uint8Array {
  for (let w = 0; w < HASH_WORDS; w++) {
    const v = words[at + w]!;
    out[4 * w] = v & 0xff;
    out[4 * w + 1] = (v >>> 8) & 0xff;
    out[4 * w + 2] = (v >>> 16) & 0xff;
    out[4 * w + 3] = v >>> 24;
  }
  return out;
}

const TWO32 = 2 ** 32;

/** (hi * 2^32 + lo) mod m, exact for m <= 2^20. */
function u64Mod(lo: number, hi: number, m: number): number {
  return (((hi % m) * (TWO32 % m)) % m + (lo % m)) % m;
}

export interface Move {
  /** Slot the resident leaves. */
  from: number;
  /** Slot it moves to (another of its candidate columns). */
  to: number;
}

export interface Insertion {
  slot: number;
  /** Residents moved to make room, in the order they were moved (each `to` is free when its move runs). */
  moves: Move[];
}

export class KeywordTable {
  private words: Uint32Array;
  /** Occupied slots per column. */
  readonly counts: Uint32Array;
  /** Per column, no free slot lies below this row. */
  private readonly lowFree: Uint32Array;
  private occupied = 0;
  /** Relocation statistics since creation (bench, tests). */
  readonly stats = { relocations: 0, moves: 0, searches: 0, failedSearches: 0 };

  private constructor(
    readonly m: number,
    readonly d: number,
    private rows: number,
    words: Uint32Array,
  ) {
    if (!Number.isSafeInteger(m) || m < 1 || m > MAX_COLUMNS_SECURITY) throw new StoreError('EPARAMS', `m must be in 1..${MAX_COLUMNS_SECURITY}, got ${m}`);
    if (!Number.isInteger(d) || d < 1 || d > 3) throw new StoreError('EPARAMS', `bucket choices d must be 1, 2 or 3, got ${d}`);
    if (!Number.isSafeInteger(rows) || rows < 1) throw new StoreError('EPARAMS', `R must be a positive integer, got ${rows}`);
    this.words = words;
    this.counts = new Uint32Array(m);
    this.lowFree = new Uint32Array(m).fill(rows);
  }

  /** An empty lane of m columns and R rows. */
  static create(m: number, d: number, R: number): KeywordTable {
    const t = new KeywordTable(m, d, R, new Uint32Array(m * R * HASH_WORDS));
    t.lowFree.fill(0);
    return t;
  }

  /** A table over existing slot hashes (HASH_WORDS words per slot, slot order; zeros = empty). Takes ownership. */
  static fromWords(m: number, d: number, R: number, words: Uint32Array): KeywordTable {
    if (words.length < m * R * HASH_WORDS) throw new StoreError('EPLACEMENT', `placement index has ${words.length / HASH_WORDS} slots, the lane has ${m * R}`);
    const t = new KeywordTable(m, d, R, words);
    for (let s = 0; s < m * R; s++) {
      const c = s % m;
      if (t.isEmpty(s)) {
        const r = (s - c) / m;
        if (r < t.lowFree[c]!) t.lowFree[c] = r;
      } else {
        t.counts[c]!++;
        t.occupied++;
      }
    }
    return t;
  }

  get R(): number {
    return this.rows;
  }

  get slots(): number {
    return this.m * this.rows;
  }

  get keys(): number {
    return this.occupied;
  }

  get load(): number {
    return this.occupied / this.slots;
  }

  /** The fullest column's occupancy. */
  get maxColumn(): number {
    let max = 0;
    for (let c = 0; c < this.m; c++) if (this.counts[c]! > max) max = this.counts[c]!;
    return max;
  }

  /** The slot words (HASH_WORDS per slot, slot order), for writing the placement index. A view. */
  get slotWords(): Uint32Array {
    return this.words.subarray(0, this.slots * HASH_WORDS);
  }

  /** An independent copy (a cached table must not be changed by a build that may fail). */
  clone(): KeywordTable {
    const t = new KeywordTable(this.m, this.d, this.rows, this.slotWords.slice());
    t.counts.set(this.counts);
    t.lowFree.set(this.lowFree);
    t.occupied = this.occupied;
    return t;
  }

  isEmpty(slot: number): boolean {
    const o = slot * HASH_WORDS;
    return this.words[o] === 0 && this.words[o + 1] === 0;
  }

  hashAt(slot: number): Uint8Array {
    return wordsToHash(this.words, slot * HASH_WORDS);
  }

  /** Candidate column j of the key hashed as `w[at..at+8)`. */
  private column(w: Uint32Array, at: number, j: number): number {
    const o = at + 2 + 2 * j;
    return u64Mod(w[o]!, w[o + 1]!, this.m);
  }

  /** Distinct candidate columns of a hash (given as words). */
  candidates(w: Uint32Array, at = 0): number[] {
    const out: number[] = [];
    for (let j = 0; j < this.d; j++) {
      const c = this.column(w, at, j);
      if (!out.includes(c)) out.push(c);
    }
    return out;
  }

  /** Distinct candidate columns of the key in `slot`. */
  candidatesOfSlot(slot: number): number[] {
    return this.candidates(this.words, slot * HASH_WORDS);
  }

  /** The slot holding the key with this hash (all 32 bytes equal), or -1. */
  slotOf(w: Uint32Array, at = 0): number {
    const words = this.words;
    const w0 = w[at]!;
    const w1 = w[at + 1]!;
    for (const c of this.candidates(w, at)) {
      for (let s = c; s < this.slots; s += this.m) {
        const o = s * HASH_WORDS;
        if (words[o] !== w0 || words[o + 1] !== w1) continue;
        let same = true;
        for (let k = 2; k < HASH_WORDS; k++) if (words[o + k] !== w[at + k]) same = false;
        if (same) return s;
      }
    }
    return -1;
  }

  /** A free row of column c (the caller checked counts[c] < R). */
  private freeSlot(c: number): number {
    for (let r = this.lowFree[c]!; r < this.rows; r++) {
      const s = r * this.m + c;
      if (this.isEmpty(s)) {
        this.lowFree[c] = r;
        return s;
      }
    }
    throw new Error(`column ${c} has no free slot although its count is ${this.counts[c]} of ${this.rows}`);
  }

  private put(slot: number, w: Uint32Array, at: number): void {
    this.words.set(w.subarray(at, at + HASH_WORDS), slot * HASH_WORDS);
    const c = slot % this.m;
    this.counts[c]!++;
    this.occupied++;
    if (this.lowFree[c] === (slot - c) / this.m) this.lowFree[c]!++;
  }

  /** Empties a slot (a deleted key frees its slot). */
  remove(slot: number): void {
    if (this.isEmpty(slot)) throw new Error(`slot ${slot} is already empty`);
    this.words.fill(0, slot * HASH_WORDS, (slot + 1) * HASH_WORDS);
    const c = slot % this.m;
    this.counts[c]!--;
    this.occupied--;
    const r = (slot - c) / this.m;
    if (r < this.lowFree[c]!) this.lowFree[c] = r;
  }

  private move(from: number, to: number): void {
    const o = from * HASH_WORDS;
    const w = this.words.slice(o, o + HASH_WORDS);
    this.remove(from);
    this.put(to, w, 0);
  }

  /**
   * Places a new key (hash words w[at..at+8)). Returns where it went and the
   * residents moved for it, or undefined when no free slot is reachable
   * within the relocation bounds (grow the lane and insert again).
   */
  insert(w: Uint32Array, at = 0): Insertion | undefined {
    const cands = this.candidates(w, at);
    let best = -1;
    for (const c of cands) if (this.counts[c]! < this.rows && (best < 0 || this.counts[c]! < this.counts[best]!)) best = c;
    if (best >= 0) {
      const slot = this.freeSlot(best);
      this.put(slot, w, at);
      return { slot, moves: [] };
    }
    const moves = this.relocate(cands);
    if (!moves) return undefined;
    // The chain's last move freed a slot in one of the key's candidate columns.
    const slot = moves[moves.length - 1]!.from;
    this.put(slot, w, at);
    return { slot, moves };
  }

  /**
   * Breadth-first search from the full columns `start` for a resident chain
   * ending in a column with a free slot; performs the moves and returns them
   * (the last move's `from` is now free and lies in a start column).
   */
  private relocate(start: number[]): Move[] | undefined {
    this.stats.searches++;
    // parent[column] = the slot (in the column it was reached from) whose resident would move into it.
    const parent = new Map<number, { slot: number; from: number; depth: number }>();
    const visited = new Set<number>(start);
    let frontier = start.map((c) => ({ c, depth: 0 }));
    let end = -1;
    search: while (frontier.length > 0) {
      const next: { c: number; depth: number }[] = [];
      for (const { c, depth } of frontier) {
        if (depth >= MAX_RELOCATION_DEPTH) continue;
        for (let s = c; s < this.slots; s += this.m) {
          for (const a of this.candidatesOfSlot(s)) {
            if (visited.has(a)) continue;
            if (visited.size >= MAX_RELOCATION_COLUMNS) break search;
            visited.add(a);
            parent.set(a, { slot: s, from: c, depth: depth + 1 });
            if (this.counts[a]! < this.rows) {
              end = a;
              break search;
            }
            next.push({ c: a, depth: depth + 1 });
          }
        }
      }
      frontier = next;
    }
    if (end < 0) {
      this.stats.failedSearches++;
      return undefined;
    }
    const moves: Move[] = [];
    let to = this.freeSlot(end);
    let col = end;
    for (let p = parent.get(col); p; p = parent.get(col)) {
      this.move(p.slot, to);
      moves.push({ from: p.slot, to });
      to = p.slot;
      col = p.from;
    }
    this.stats.relocations++;
    this.stats.moves += moves.length;
    return moves;
  }

  /** Adds `rows` record rows (every column gains empty slots at the end of the lane). */
  grow(rows: number): void {
    if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`rows must be a positive integer, got ${rows}`);
    const need = this.m * (this.rows + rows) * HASH_WORDS;
    if (need > this.words.length) {
      // Amortized: growth one row at a time (grinding) must not copy the table each time.
      const bigger = new Uint32Array(Math.max(need, Math.min(this.words.length * 2, need + this.m * HASH_WORDS * 1024)));
      bigger.set(this.words.subarray(0, this.slots * HASH_WORDS));
      this.words = bigger;
    }
    for (let c = 0; c < this.m; c++) if (this.counts[c] === this.rows) this.lowFree[c] = this.rows;
    this.rows += rows;
  }

  /** Rows to add so that the load is at most `load` (0 when it already is). */
  rowsForLoad(load: number, extraKeys = 0): number {
    const need = Math.ceil((this.occupied + extraKeys) / load / this.m);
    return Math.max(0, need - this.rows);
  }
}

/** A lookup sees every slot of its d candidate columns: two keys with equal tags must not share one. */
export class TagConflictError extends StoreError {
  constructor(
    message: string,
    readonly slots: [number, number],
  ) {
    super('ETAG_COLLISION', message);
  }
}

/** Open-addressing map from a tag (hash words 0, 1) to the slots holding it. */
class TagMap {
  private readonly keys: Int32Array;
  private readonly mask: number;
  constructor(
    private readonly words: Uint32Array,
    expected: number,
  ) {
    let size = 16;
    while (size < 2 * expected) size *= 2;
    this.keys = new Int32Array(size).fill(-1);
    this.mask = size - 1;
  }
  /** Adds `slot`; returns the slots already present with the same tag. */
  add(slot: number): number[] {
    const o = slot * HASH_WORDS;
    const w0 = this.words[o]!;
    const w1 = this.words[o + 1]!;
    const same: number[] = [];
    let i = (Math.imul(w0 ^ Math.imul(w1, 0x9e3779b1), 0x85ebca6b) >>> 0) & this.mask;
    for (;;) {
      const s = this.keys[i]!;
      if (s < 0) {
        this.keys[i] = slot;
        return same;
      }
      const q = s * HASH_WORDS;
      if (this.words[q] === w0 && this.words[q + 1] === w1) same.push(s);
      i = (i + 1) & this.mask;
    }
  }
  /** Slots already added whose tag equals that of the hash words w[at..]. */
  find(w: Uint32Array, at: number): number[] {
    const w0 = w[at]!;
    const w1 = w[at + 1]!;
    const same: number[] = [];
    let i = (Math.imul(w0 ^ Math.imul(w1, 0x9e3779b1), 0x85ebca6b) >>> 0) & this.mask;
    for (;;) {
      const s = this.keys[i]!;
      if (s < 0) return same;
      const q = s * HASH_WORDS;
      if (this.words[q] === w0 && this.words[q + 1] === w1) same.push(s);
      i = (i + 1) & this.mask;
    }
  }
}

function describeSlot(table: KeywordTable, slot: number): string {
  return `slot ${slot} (hash ${Buffer.from(table.hashAt(slot)).toString('hex')})`;
}

function checkPair(table: KeywordTable, a: number, b: number): void {
  const o = a * HASH_WORDS;
  const q = b * HASH_WORDS;
  const words = table.slotWords;
  let same = true;
  for (let k = 0; k < HASH_WORDS; k++) if (words[o + k] !== words[q + k]) same = false;
  if (same) throw new TagConflictError(`the same key is in the lane twice (${describeSlot(table, a)} and slot ${b}): duplicate key in the input`, [a, b]);
  const ca = table.candidatesOfSlot(a);
  const shared = table.candidatesOfSlot(b).filter((c) => ca.includes(c));
  if (shared.length > 0) {
    throw new TagConflictError(
      `two keys have the same tag ${Buffer.from(table.hashAt(a).subarray(0, KEYWORD_TAG_BYTES)).toString('hex')} and share candidate column ${shared[0]} ` +
        `(${describeSlot(table, a)}, ${describeSlot(table, b)}): a lookup could not tell them apart`,
      [a, b],
    );
  }
}

/**
 * Checks that no two keys with equal tags share a candidate column. With
 * `subset`, only pairs involving those slots are checked (an incremental
 * build: the new keys against everything), in one pass over the tags.
 */
export function checkTags(table: KeywordTable, subset?: number[]): void {
  const words = table.slotWords;
  if (subset === undefined) {
    const map = new TagMap(words, table.keys);
    for (let s = 0; s < table.slots; s++) {
      if (table.isEmpty(s)) continue;
      for (const other of map.add(s)) checkPair(table, s, other);
    }
    return;
  }
  if (subset.length === 0) return;
  const map = new TagMap(words, subset.length);
  const inSubset = new Set(subset);
  for (const s of subset) for (const other of map.add(s)) checkPair(table, s, other);
  for (let s = 0; s < table.slots; s++) {
    if (inSubset.has(s) || table.isEmpty(s)) continue;
    for (const other of map.find(words, s * HASH_WORDS)) checkPair(table, other, s);
  }
}

/** True when the tag (hash words 0, 1) is zero: the key cannot be stored. */
export function zeroTag(w: Uint32Array, at = 0): boolean {
  return w[at] === 0 && w[at + 1] === 0;
}
