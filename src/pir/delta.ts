// Hint deltas: the changes to one lane between two generations, as the
// builder records them (<lane>/diff.bin, one generation step) and as the
// server sends them to clients (GET /delta, merged over several steps). One
// binary format serves both (docs/FORMAT.md, "Diffs and deltas").
// Browser-safe: no Node APIs.
//
// A changed entry i (column c = i mod m, record row r = i div m) moves every
// hint row r*entry_size + b by (new_b - old_b) * A[c] mod 2^32. Old and new
// bytes are both kept (rather than new - old) so that steps can be chained
// and checked against each other: the new value of one step must be the old
// value of the next.
import { bytesToHex, hexToBytes } from './crs.js';
import { recordRows } from './params.js';

export class DeltaError extends Error {
  constructor(
    message: string,
    readonly code = 'EDELTA',
  ) {
    super(message);
    this.name = 'DeltaError';
  }
}

export interface LaneDelta {
  entrySize: number;
  m: number;
  n: number;
  /** A's seed, 16 bytes (must not change along a delta). */
  seed: Uint8Array;
  /** Generation ids (a block number in decimal, or <block>r<k> for a reorg rebuild). */
  from: string;
  to: string;
  fromEntries: number;
  toEntries: number;
  fromHintSha256: string;
  toHintSha256: string;
  /**
   * -128 * sum_c A[c] mod 2^32 (n words): the hint row of an all-zero record
   * row. Present exactly when the lane gains record rows.
   */
  zeroRow?: Uint32Array;
  /** Changed entries, strictly ascending. */
  indices: number[];
  /** Old and new values, entrySize bytes per changed entry; bytes with old == new did not change. */
  oldValues: Uint8Array;
  newValues: Uint8Array;
}

export const DELTA_MAGIC = 'LPDL';
export const DELTA_VERSION = 1;
/** Fixed part of the header; the two generation ids follow it. */
export const DELTA_HEADER_BYTES = 120;
const GENERATION_ID = /^(0|[1-9][0-9]{0,15})(r[1-9][0-9]{0,3})?$/;
const FLAG_ZERO_ROW = 1;

/** A generation id: a block number in decimal, or <block>r<k> for a reorg rebuild (docs/FORMAT.md). */
export function isGenerationId(id: unknown): id is string {
  return typeof id === 'string' && GENERATION_ID.test(id);
}

/** The block number a generation id names. */
export function generationBlockNumber(id: string): number {
  return Number(id.split('r')[0]);
}

/** Record rows gained between the delta's ends (0 when the lane did not outgrow its last record row). */
export function grownRows(d: Pick<LaneDelta, 'fromEntries' | 'toEntries' | 'm'>): number {
  return recordRows(d.toEntries, d.m) - recordRows(d.fromEntries, d.m);
}

/** Checks a delta's internal consistency (decodeDelta does this; for deltas built in memory). */
export function checkDelta(d: LaneDelta): void {
  const { entrySize: es, m, n } = d;
  for (const [k, v] of [['entrySize', es], ['m', m], ['n', n]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) throw new DeltaError(`delta ${k} must be a positive 32-bit integer, got ${v}`);
  }
  if (d.seed.length !== 16) throw new DeltaError('delta seed must be 16 bytes');
  for (const id of [d.from, d.to]) if (!GENERATION_ID.test(id)) throw new DeltaError(`invalid generation id ${JSON.stringify(id)}`);
  if (!Number.isSafeInteger(d.fromEntries) || !Number.isSafeInteger(d.toEntries) || d.fromEntries < 1 || d.toEntries < d.fromEntries) {
    throw new DeltaError(`delta entry counts ${d.fromEntries} -> ${d.toEntries} are invalid (lanes only grow)`);
  }
  const count = d.indices.length;
  if (d.oldValues.length !== count * es || d.newValues.length !== count * es) throw new DeltaError('delta values do not match the changed entries');
  for (let k = 0; k < count; k++) {
    const i = d.indices[k]!;
    if (!Number.isSafeInteger(i) || i < 0 || i >= d.toEntries) throw new DeltaError(`changed index ${i} is outside the lane (0..${d.toEntries - 1})`);
    if (k > 0 && i <= d.indices[k - 1]!) throw new DeltaError('changed indices must be strictly ascending');
  }
  const grown = grownRows(d) > 0;
  if (grown !== (d.zeroRow !== undefined)) throw new DeltaError(grown ? 'the lane gains record rows but the delta has no zero row' : 'zero row present but the lane gains no record row');
  if (d.zeroRow && d.zeroRow.length !== n) throw new DeltaError(`zero row has ${d.zeroRow.length} words, expected ${n}`);
}

// ---- little helpers (DataView, no BigInt: ids and counts stay below 2^53) ----

function setU64(view: DataView, off: number, v: number): void {
  view.setUint32(off, v % 2 ** 32, true);
  view.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
}

function getU64(view: DataView, off: number): number {
  const v = view.getUint32(off, true) + view.getUint32(off + 4, true) * 2 ** 32;
  if (!Number.isSafeInteger(v)) throw new DeltaError(`a 64-bit field at byte ${off} exceeds 2^53`);
  return v;
}

function varintLength(v: number): number {
  let len = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    len++;
  }
  return len;
}

/** Serializes a delta (docs/FORMAT.md). Bytes with old == new are left out. */
export function encodeDelta(d: LaneDelta): Uint8Array {
  checkDelta(d);
  const es = d.entrySize;
  const maskBytes = Math.ceil(es / 8);
  let size = DELTA_HEADER_BYTES + 2 + d.from.length + d.to.length + (d.zeroRow ? 4 * d.n : 0);
  let prev = -1;
  for (let k = 0; k < d.indices.length; k++) {
    size += varintLength(d.indices[k]! - prev - 1) + maskBytes;
    for (let b = 0; b < es; b++) if (d.oldValues[k * es + b] !== d.newValues[k * es + b]) size += 2;
    prev = d.indices[k]!;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) out[i] = DELTA_MAGIC.charCodeAt(i);
  view.setUint16(4, DELTA_VERSION, true);
  view.setUint16(6, d.zeroRow ? FLAG_ZERO_ROW : 0, true);
  view.setUint32(8, es, true);
  view.setUint32(12, d.m, true);
  view.setUint32(16, d.n, true);
  view.setUint32(20, d.indices.length, true);
  out.set(d.seed, 24);
  setU64(view, 40, d.fromEntries);
  setU64(view, 48, d.toEntries);
  out.set(hexToBytes(d.fromHintSha256), 56);
  out.set(hexToBytes(d.toHintSha256), 88);
  let off = DELTA_HEADER_BYTES;
  for (const id of [d.from, d.to]) {
    out[off++] = id.length;
    for (let i = 0; i < id.length; i++) out[off++] = id.charCodeAt(i);
  }
  if (d.zeroRow) {
    for (let j = 0; j < d.n; j++) view.setUint32(off + 4 * j, d.zeroRow[j]!, true);
    off += 4 * d.n;
  }
  prev = -1;
  for (let k = 0; k < d.indices.length; k++) {
    let gap = d.indices[k]! - prev - 1;
    prev = d.indices[k]!;
    while (gap >= 128) {
      out[off++] = (gap % 128) | 128;
      gap = Math.floor(gap / 128);
    }
    out[off++] = gap;
    const maskAt = off;
    off += maskBytes;
    for (let b = 0; b < es; b++) {
      const o = d.oldValues[k * es + b]!;
      const v = d.newValues[k * es + b]!;
      if (o === v) continue;
      out[maskAt + (b >> 3)]! |= 1 << (b & 7);
      out[off++] = o;
      out[off++] = v;
    }
  }
  return out;
}

/** A delta's header: everything but the changed entries (which start at `recordsOffset`). */
export interface DeltaHeader extends Omit<LaneDelta, 'indices' | 'oldValues' | 'newValues'> {
  /** Changed entries recorded. */
  count: number;
  /** Byte offset of the first changed-entry record. */
  recordsOffset: number;
}

/**
 * Parses and checks a delta's header (and zero row): what decodeDelta checks
 * before the changed entries. `bytes` may end anywhere after the header.
 */
export function decodeDeltaHeader(bytes: Uint8Array): DeltaHeader {
  if (bytes.byteLength < DELTA_HEADER_BYTES) throw new DeltaError(`delta has ${bytes.byteLength} bytes, shorter than its ${DELTA_HEADER_BYTES}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(0, 4)) !== DELTA_MAGIC) throw new DeltaError('not a lanepir delta (bad magic)');
  const version = view.getUint16(4, true);
  if (version !== DELTA_VERSION) throw new DeltaError(`delta version ${version} is not supported (expected ${DELTA_VERSION})`);
  const flags = view.getUint16(6, true);
  if ((flags & ~FLAG_ZERO_ROW) !== 0) throw new DeltaError(`unknown delta flags 0x${flags.toString(16)}`);
  const es = view.getUint32(8, true);
  const m = view.getUint32(12, true);
  const n = view.getUint32(16, true);
  const count = view.getUint32(20, true);
  if (es < 1 || m < 1 || n < 1) throw new DeltaError('delta entry size, m and n must be positive');
  let off = DELTA_HEADER_BYTES;
  const ids: string[] = [];
  for (let k = 0; k < 2; k++) {
    const len = off < bytes.byteLength ? bytes[off]! : -1;
    if (len < 0 || off + 1 + len > bytes.byteLength) throw new DeltaError('delta ends inside its generation ids');
    ids.push(String.fromCharCode(...bytes.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  let zeroRow: Uint32Array | undefined;
  if (flags & FLAG_ZERO_ROW) {
    if (bytes.byteLength < off + 4 * n) throw new DeltaError('delta ends inside its zero row');
    zeroRow = new Uint32Array(n);
    for (let j = 0; j < n; j++) zeroRow[j] = view.getUint32(off + 4 * j, true);
    off += 4 * n;
  }
  const h: DeltaHeader = {
    entrySize: es,
    m,
    n,
    seed: bytes.slice(24, 40),
    from: ids[0]!,
    to: ids[1]!,
    fromEntries: getU64(view, 40),
    toEntries: getU64(view, 48),
    fromHintSha256: bytesToHex(bytes.subarray(56, 88)),
    toHintSha256: bytesToHex(bytes.subarray(88, 120)),
    count,
    recordsOffset: off,
    ...(zeroRow ? { zeroRow } : {}),
  };
  // The header's part of checkDelta (no changed entries yet).
  checkDelta({ ...h, indices: [], oldValues: new Uint8Array(0), newValues: new Uint8Array(0) });
  return h;
}

/** Parses and checks a delta. Unchanged bytes decode as old = new = 0. */
export function decodeDelta(bytes: Uint8Array): LaneDelta {
  const header = decodeDeltaHeader(bytes);
  const { entrySize: es, count } = header;
  const maskBytes = Math.ceil(es / 8);
  let off = header.recordsOffset;
  // Each record takes at least 1 + maskBytes bytes: bound count before allocating.
  if (count > (bytes.byteLength - off) / (1 + maskBytes)) throw new DeltaError(`delta claims ${count} changed entries but is too short for them`);
  const indices = new Array<number>(count);
  const oldValues = new Uint8Array(count * es);
  const newValues = new Uint8Array(count * es);
  let prev = -1;
  for (let k = 0; k < count; k++) {
    let gap = 0;
    let scale = 1;
    for (;;) {
      if (off >= bytes.byteLength) throw new DeltaError(`delta ends inside record ${k}`);
      const byte = bytes[off++]!;
      gap += (byte & 127) * scale;
      if (byte < 128) break;
      scale *= 128;
      if (scale > 2 ** 56) throw new DeltaError(`record ${k}: index gap too long`);
    }
    prev = prev + 1 + gap;
    indices[k] = prev;
    if (off + maskBytes > bytes.byteLength) throw new DeltaError(`delta ends inside record ${k}`);
    const maskAt = off;
    off += maskBytes;
    for (let b = 0; b < es; b++) {
      if ((bytes[maskAt + (b >> 3)]! & (1 << (b & 7))) === 0) continue;
      if (off + 2 > bytes.byteLength) throw new DeltaError(`delta ends inside record ${k}`);
      oldValues[k * es + b] = bytes[off++]!;
      newValues[k * es + b] = bytes[off++]!;
    }
    // Mask bits past entry_size must be clear, so every delta has one encoding.
    if (es % 8 !== 0 && bytes[maskAt + maskBytes - 1]! >> es % 8 !== 0) throw new DeltaError(`record ${k}: mask bits beyond the entry size`);
  }
  if (off !== bytes.byteLength) throw new DeltaError(`delta has ${bytes.byteLength - off} trailing bytes`);
  const { count: _count, recordsOffset: _offset, ...fields } = header;
  const d: LaneDelta = { ...fields, indices, oldValues, newValues };
  checkDelta(d);
  return d;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Chains deltas (oldest first) into one from the first's start to the last's
 * end. Per byte the oldest old value and the newest new value are kept; where
 * two steps both change a byte, the earlier new value must be the later old
 * value. Entries that end where they started are dropped.
 */
export function mergeDeltas(steps: LaneDelta[]): LaneDelta {
  if (steps.length === 0) throw new DeltaError('nothing to merge');
  const first = steps[0]!;
  const last = steps[steps.length - 1]!;
  const es = first.entrySize;
  const byIndex = new Map<number, { old: Uint8Array; new: Uint8Array }>();
  let zeroRow: Uint32Array | undefined;
  for (let s = 0; s < steps.length; s++) {
    const d = steps[s]!;
    if (d.entrySize !== es || d.m !== first.m || d.n !== first.n || !sameBytes(d.seed, first.seed)) {
      throw new DeltaError(`step ${d.from} -> ${d.to} has other lane parameters (entry size, m, n or seed)`);
    }
    if (s > 0) {
      const p = steps[s - 1]!;
      if (d.from !== p.to || d.fromHintSha256 !== p.toHintSha256 || d.fromEntries !== p.toEntries) {
        throw new DeltaError(`step ${d.from} -> ${d.to} does not continue step ${p.from} -> ${p.to}`);
      }
    }
    if (d.zeroRow) {
      if (zeroRow && !d.zeroRow.every((w, j) => w === zeroRow![j])) throw new DeltaError('steps disagree on the zero row');
      zeroRow = d.zeroRow;
    }
    for (let k = 0; k < d.indices.length; k++) {
      const i = d.indices[k]!;
      const o = d.oldValues.subarray(k * es, (k + 1) * es);
      const v = d.newValues.subarray(k * es, (k + 1) * es);
      const cur = byIndex.get(i);
      if (!cur) {
        byIndex.set(i, { old: o.slice(), new: v.slice() });
        continue;
      }
      for (let b = 0; b < es; b++) {
        if (o[b] === v[b]) continue;
        if (cur.old[b] === cur.new[b]) cur.old[b] = o[b]!;
        else if (cur.new[b] !== o[b]) throw new DeltaError(`entry ${i} byte ${b}: step ${d.from} -> ${d.to} starts from ${o[b]} but the previous step left ${cur.new[b]}`);
        cur.new[b] = v[b]!;
      }
    }
  }
  const indices = [...byIndex.keys()].filter((i) => !sameBytes(byIndex.get(i)!.old, byIndex.get(i)!.new)).sort((a, b) => a - b);
  const oldValues = new Uint8Array(indices.length * es);
  const newValues = new Uint8Array(indices.length * es);
  indices.forEach((i, k) => {
    const e = byIndex.get(i)!;
    oldValues.set(e.old, k * es);
    newValues.set(e.new, k * es);
  });
  const merged: LaneDelta = {
    entrySize: es,
    m: first.m,
    n: first.n,
    seed: first.seed,
    from: first.from,
    to: last.to,
    fromEntries: first.fromEntries,
    toEntries: last.toEntries,
    fromHintSha256: first.fromHintSha256,
    toHintSha256: last.toHintSha256,
    indices,
    oldValues,
    newValues,
  };
  if (grownRows(merged) > 0) {
    if (!zeroRow) throw new DeltaError('the lane gains record rows but no step carries the zero row');
    merged.zeroRow = zeroRow;
  }
  checkDelta(merged);
  return merged;
}

// ---- applying changes to a hint (shared by the builder and the client) ----

/**
 * hint rows r*es .. r*es+es-1 += sign * (new_b - old_b) * aRow, mod 2^32, for
 * the entry at `index` (r = index div m). aRow is row (index mod m) of A.
 */
export function addEntryChange(
  hint: Uint32Array,
  n: number,
  es: number,
  m: number,
  index: number,
  oldValue: Uint8Array,
  newValue: Uint8Array,
  aRow: Uint32Array,
  sign: 1 | -1 = 1,
): void {
  const r = Math.floor(index / m);
  for (let b = 0; b < es; b++) {
    const d = sign * (newValue[b]! - oldValue[b]!);
    if (d === 0) continue;
    const base = (r * es + b) * n;
    // Uint32Array stores ToUint32 of the (exact, < 2^53) sum: the mod 2^32 is free.
    for (let j = 0; j < n; j++) hint[base + j] = hint[base + j]! + Math.imul(d, aRow[j]!);
  }
}

/** Adds rows [0, count) of A (row-major, n words each) into acc (n words), mod 2^32. */
export function accumulateRows(acc: Uint32Array, rows: Uint32Array, count: number, n: number): void {
  for (let c = 0; c < count; c++) {
    const off = c * n;
    for (let j = 0; j < n; j++) acc[j] = acc[j]! + rows[off + j]!;
  }
}

/** -128 * (sum of A's rows) mod 2^32 from that sum. */
export function zeroRowFromSum(sum: Uint32Array): Uint32Array {
  const out = new Uint32Array(sum.length);
  for (let j = 0; j < sum.length; j++) out[j] = Math.imul(-128, sum[j]!);
  return out;
}

/**
 * A hint for `toR` record rows: the old rows copied, each new hint row set to
 * the zero row (an all-zero record row: every one of the m cells is 0).
 */
export function growHint(hint: Uint32Array, es: number, n: number, toR: number, zeroRow: Uint32Array): Uint32Array {
  const out = new Uint32Array(es * toR * n);
  out.set(hint);
  for (let off = hint.length; off < out.length; off += n) out.set(zeroRow, off);
  return out;
}
