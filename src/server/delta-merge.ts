// Merging encoded deltas without decoding them: the server's side of
// GET /delta. The result is byte for byte encodeDelta(mergeDeltas(steps
// decoded)), but the steps are read record by record (a k-way merge by
// index), so the work is one pass over the input and the memory is the
// input plus the output, which is bounded by the caller (a delta larger
// than the hint it replaces is refused rather than built). No Node APIs:
// this runs in a worker thread (delta-worker.ts) and in tests.
import { DELTA_HEADER_BYTES, DELTA_MAGIC, DELTA_VERSION, type DeltaHeader, DeltaError, decodeDeltaHeader, grownRows } from '../pir/delta.js';
import { hexToBytes } from '../pir/crs.js';

/** The merged delta would exceed the byte limit it was given. */
export class DeltaTooLargeError extends DeltaError {
  constructor(readonly limit: number) {
    super(`the merged delta is larger than ${limit} bytes`, 'EDELTA_TOO_LARGE');
    this.name = 'DeltaTooLargeError';
  }
}

/** Reads one step's changed-entry records in order, checking them as decodeDelta does. */
class Cursor {
  /** Index of the current record (-1 before the first, Infinity after the last). */
  index = -1;
  /** Where the current record's mask and its (old, new) pairs start. */
  maskAt = 0;
  valuesAt = 0;
  private off: number;
  private read = 0;
  private readonly maskBytes: number;

  constructor(
    readonly step: number,
    readonly bytes: Uint8Array,
    readonly header: DeltaHeader,
  ) {
    this.off = header.recordsOffset;
    this.maskBytes = Math.ceil(header.entrySize / 8);
  }

  /** Moves to the next record; false (index = Infinity) after the last, having checked that nothing trails. */
  next(): boolean {
    const { bytes, header } = this;
    const es = header.entrySize;
    const k = this.read;
    if (k === header.count) {
      if (this.off !== bytes.byteLength) throw new DeltaError(`step ${header.from} -> ${header.to}: ${bytes.byteLength - this.off} trailing bytes`);
      this.index = Infinity;
      return false;
    }
    let off = this.off;
    let gap = 0;
    let scale = 1;
    for (;;) {
      if (off >= bytes.byteLength) throw new DeltaError(`step ${header.from} -> ${header.to} ends inside record ${k}`);
      const byte = bytes[off++]!;
      gap += (byte & 127) * scale;
      if (byte < 128) break;
      scale *= 128;
      if (scale > 2 ** 56) throw new DeltaError(`step ${header.from} -> ${header.to}: record ${k}: index gap too long`);
    }
    const index = this.index + 1 + gap;
    if (!Number.isSafeInteger(index) || index >= header.toEntries) {
      throw new DeltaError(`step ${header.from} -> ${header.to}: changed index ${index} is outside the lane (0..${header.toEntries - 1})`);
    }
    if (off + this.maskBytes > bytes.byteLength) throw new DeltaError(`step ${header.from} -> ${header.to} ends inside record ${k}`);
    this.maskAt = off;
    off += this.maskBytes;
    this.valuesAt = off;
    let changed = 0;
    for (let b = 0; b < es; b++) if (bytes[this.maskAt + (b >> 3)]! & (1 << (b & 7))) changed++;
    off += 2 * changed;
    if (off > bytes.byteLength) throw new DeltaError(`step ${header.from} -> ${header.to} ends inside record ${k}`);
    if (es % 8 !== 0 && bytes[this.maskAt + this.maskBytes - 1]! >> es % 8 !== 0) {
      throw new DeltaError(`step ${header.from} -> ${header.to}: record ${k}: mask bits beyond the entry size`);
    }
    this.off = off;
    this.index = index;
    this.read++;
    return true;
  }
}

/** Cursors ordered by (current index, step): a binary min-heap. */
class CursorHeap {
  private readonly items: Cursor[] = [];

  get size(): number {
    return this.items.length;
  }

  private less(a: Cursor, b: Cursor): boolean {
    return a.index < b.index || (a.index === b.index && a.step < b.step);
  }

  push(c: Cursor): void {
    const items = this.items;
    items.push(c);
    let i = items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(items[i]!, items[p]!)) break;
      [items[i], items[p]] = [items[p]!, items[i]!];
      i = p;
    }
  }

  peek(): Cursor | undefined {
    return this.items[0];
  }

  pop(): Cursor {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.less(items[l]!, items[m]!)) m = l;
        if (r < items.length && this.less(items[r]!, items[m]!)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** A buffer a caller keeps across merges (one per thread): the output is built in it, then copied out at its exact size. */
export interface MergeWorkspace {
  out: Uint8Array;
}

/** An output buffer that grows up to a hard limit. */
class Writer {
  bytes: Uint8Array;
  off = 0;

  constructor(
    initial: number,
    private readonly limit: number,
    private readonly workspace?: MergeWorkspace,
  ) {
    const size = Math.max(64, Math.min(initial, limit));
    this.bytes = workspace && workspace.out.length >= size ? workspace.out : new Uint8Array(size);
    if (workspace) workspace.out = this.bytes;
  }

  reserve(extra: number): void {
    const need = this.off + extra;
    if (need > this.limit) throw new DeltaTooLargeError(this.limit);
    if (need <= this.bytes.length) return;
    const grown = new Uint8Array(Math.min(this.limit, Math.max(need, 2 * this.bytes.length)));
    grown.set(this.bytes.subarray(0, this.off));
    this.bytes = grown;
    if (this.workspace) this.workspace.out = grown;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Merges encoded deltas (oldest first) into one encoded delta, refusing
 * (DeltaTooLargeError) as soon as it would exceed `maxBytes`. The same rules
 * as mergeDeltas: the steps must continue each other (ids, hints, entry
 * counts, lane parameters, zero rows); per byte the oldest old and newest
 * new value are kept, a step that changes a byte must start from the value
 * the previous step left; entries that end where they started are dropped.
 */
export function mergeEncodedDeltas(steps: Uint8Array[], maxBytes = Number.MAX_SAFE_INTEGER, workspace?: MergeWorkspace): Uint8Array {
  if (steps.length === 0) throw new DeltaError('nothing to merge');
  const headers = steps.map((s) => decodeDeltaHeader(s));
  const first = headers[0]!;
  const last = headers[headers.length - 1]!;
  const es = first.entrySize;
  let zeroRow: Uint32Array | undefined;
  for (let s = 0; s < headers.length; s++) {
    const d = headers[s]!;
    if (d.entrySize !== es || d.m !== first.m || d.n !== first.n || !sameBytes(d.seed, first.seed)) {
      throw new DeltaError(`step ${d.from} -> ${d.to} has other lane parameters (entry size, m, n or seed)`);
    }
    if (s > 0) {
      const p = headers[s - 1]!;
      if (d.from !== p.to || d.fromHintSha256 !== p.toHintSha256 || d.fromEntries !== p.toEntries) {
        throw new DeltaError(`step ${d.from} -> ${d.to} does not continue step ${p.from} -> ${p.to}`);
      }
    }
    if (d.zeroRow) {
      if (zeroRow && !d.zeroRow.every((w, j) => w === zeroRow![j])) throw new DeltaError('steps disagree on the zero row');
      zeroRow = d.zeroRow;
    }
  }
  const grown = grownRows({ fromEntries: first.fromEntries, toEntries: last.toEntries, m: first.m }) > 0;
  if (grown && !zeroRow) throw new DeltaError('the lane gains record rows but no step carries the zero row');

  // Header (the record count is filled in at the end).
  const n = first.n;
  const out = new Writer(steps.reduce((a, s) => a + s.byteLength, 0), maxBytes, workspace);
  const headerBytes = DELTA_HEADER_BYTES + 2 + first.from.length + last.to.length + (grown ? 4 * n : 0);
  out.reserve(headerBytes);
  const bytes = out.bytes;
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < 4; i++) bytes[i] = DELTA_MAGIC.charCodeAt(i);
  view.setUint16(4, DELTA_VERSION, true);
  view.setUint16(6, grown ? 1 : 0, true);
  view.setUint32(8, es, true);
  view.setUint32(12, first.m, true);
  view.setUint32(16, n, true);
  bytes.set(first.seed, 24);
  const setU64 = (off: number, v: number) => {
    view.setUint32(off, v % 2 ** 32, true);
    view.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
  };
  setU64(40, first.fromEntries);
  setU64(48, last.toEntries);
  bytes.set(hexToBytes(first.fromHintSha256), 56);
  bytes.set(hexToBytes(last.toHintSha256), 88);
  let off = DELTA_HEADER_BYTES;
  for (const id of [first.from, last.to]) {
    bytes[off++] = id.length;
    for (let i = 0; i < id.length; i++) bytes[off++] = id.charCodeAt(i);
  }
  if (grown) {
    for (let j = 0; j < n; j++) view.setUint32(off + 4 * j, zeroRow![j]!, true);
    off += 4 * n;
  }
  out.off = off;

  // Records, by index; for one index the steps oldest first.
  const heap = new CursorHeap();
  for (let s = 0; s < steps.length; s++) {
    const c = new Cursor(s, steps[s]!, headers[s]!);
    if (c.next()) heap.push(c);
  }
  const maskBytes = Math.ceil(es / 8);
  const oldV = new Uint8Array(es);
  const newV = new Uint8Array(es);
  let count = 0;
  let prev = -1;
  while (heap.size > 0) {
    const index = heap.peek()!.index;
    let firstRecord = true;
    while (heap.size > 0 && heap.peek()!.index === index) {
      const c = heap.pop();
      const src = c.bytes;
      let v = c.valuesAt;
      if (firstRecord) {
        // Unchanged bytes of the first record count as old = new = 0 (as decoded).
        oldV.fill(0);
        newV.fill(0);
      }
      for (let b = 0; b < es; b++) {
        if ((src[c.maskAt + (b >> 3)]! & (1 << (b & 7))) === 0) continue;
        const o = src[v++]!;
        const w = src[v++]!;
        if (firstRecord) {
          oldV[b] = o;
          newV[b] = w;
          continue;
        }
        if (o === w) continue;
        if (oldV[b] === newV[b]) oldV[b] = o;
        else if (newV[b] !== o) {
          throw new DeltaError(`entry ${index} byte ${b}: step ${c.header.from} -> ${c.header.to} starts from ${o} but the previous step left ${newV[b]}`);
        }
        newV[b] = w;
      }
      firstRecord = false;
      if (c.next()) heap.push(c);
    }
    let changed = 0;
    for (let b = 0; b < es; b++) if (oldV[b] !== newV[b]) changed++;
    if (changed === 0) continue; // back where it started
    let gap = index - prev - 1;
    prev = index;
    let gapBytes = 1;
    for (let g = gap; g >= 128; g = Math.floor(g / 128)) gapBytes++;
    out.reserve(gapBytes + maskBytes + 2 * changed);
    const o = out.bytes;
    let at = out.off;
    while (gap >= 128) {
      o[at++] = (gap % 128) | 128;
      gap = Math.floor(gap / 128);
    }
    o[at++] = gap;
    const maskAt = at;
    o.fill(0, maskAt, maskAt + maskBytes);
    at += maskBytes;
    for (let b = 0; b < es; b++) {
      if (oldV[b] === newV[b]) continue;
      o[maskAt + (b >> 3)]! |= 1 << (b & 7);
      o[at++] = oldV[b]!;
      o[at++] = newV[b]!;
    }
    out.off = at;
    count++;
  }
  new DataView(out.bytes.buffer).setUint32(20, count, true);
  return out.bytes.slice(0, out.off);
}
