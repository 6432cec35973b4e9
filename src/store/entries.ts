// Sources of lane entries for the builder: synthetic data, a raw binary file
// (entries back to back) or JSON Lines ({"index": 5, "value": "0x..."}, read
// by src/store/entry-files.ts like every update file).
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { type DetectedFormat, type FileFormat, detectFileFormat, readChanges } from './entry-files.js';
import { StoreError } from './errors.js';
import { type LaneName } from './layout.js';

export interface EntrySource {
  readonly entries: number;
  readonly entrySize: number;
  /** Writes entries [start, start + out.length / entrySize) into out. */
  fill(start: number, out: Buffer): Promise<void>;
  describe(): string;
}

function keyFor(label: string): Buffer {
  return crypto.createHash('sha256').update(label).digest().subarray(0, 16);
}

/** AES-128-CTR keystream bytes [offset, offset + length) for a key. */
function keystream(key: Buffer, offset: number, length: number): Buffer {
  const block = Math.floor(offset / 16);
  const skip = offset - block * 16;
  const iv = Buffer.alloc(16);
  iv.writeUIntBE(block, 10, 6); // block < 2^48
  const cipher = crypto.createCipheriv('aes-128-ctr', key, iv);
  return cipher.update(Buffer.alloc(skip + length)).subarray(skip);
}

/** How many entries a synthetic block changes (a few, so updates can be tested). */
export const SYNTHETIC_CHANGES_PER_BLOCK = 8;

/**
 * Deterministic pseudo-random entries for a lane at a block: a fixed base
 * stream per lane, with a few entries (chosen by the block number) replaced.
 * Consecutive blocks therefore differ in a handful of entries.
 */
export class SyntheticSource implements EntrySource {
  private readonly changes: Map<number, Buffer>;

  constructor(
    readonly lane: string,
    readonly entries: number,
    readonly entrySize: number,
    readonly block: number,
  ) {
    if (!Number.isSafeInteger(entries) || entries < 1) throw new StoreError('EPARAMS', `synthetic entry count must be positive, got ${entries}`);
    this.changes = SyntheticSource.changesAt(lane, entries, entrySize, block);
  }

  /** The entries block `block` replaces, index -> new value. */
  static changesAt(lane: string, entries: number, entrySize: number, block: number): Map<number, Buffer> {
    const count = Math.min(SYNTHETIC_CHANGES_PER_BLOCK, entries);
    const stream = keystream(keyFor(`lanepir/synthetic/${lane}/block/${block}`), 0, count * (8 + entrySize));
    const out = new Map<number, Buffer>();
    for (let k = 0; k < count; k++) {
      const rec = stream.subarray(k * (8 + entrySize), (k + 1) * (8 + entrySize));
      const index = Number(rec.readBigUInt64LE(0) % BigInt(entries));
      out.set(index, Buffer.from(rec.subarray(8)));
    }
    return out;
  }

  async fill(start: number, out: Buffer): Promise<void> {
    const es = this.entrySize;
    keystream(keyFor(`lanepir/synthetic/${this.lane}`), start * es, out.length).copy(out);
    const end = start + out.length / es;
    for (const [index, value] of this.changes) {
      if (index >= start && index < end) value.copy(out, (index - start) * es);
    }
  }

  describe(): string {
    return `synthetic ${this.lane} lane, ${this.entries} entries of ${this.entrySize} bytes at block ${this.block}`;
  }
}

/** A raw file of entries back to back. */
export class RawFileSource implements EntrySource {
  private constructor(
    readonly file: string,
    readonly entries: number,
    readonly entrySize: number,
  ) {}

  static async open(file: string, entrySize: number): Promise<RawFileSource> {
    const st = await fsp.stat(file).catch((err: Error) => {
      throw new StoreError('EINPUT', `cannot read ${file}: ${err.message}`);
    });
    if (!st.isFile()) throw new StoreError('EINPUT', `${file} is not a regular file`);
    if (st.size === 0 || st.size % entrySize !== 0) {
      throw new StoreError('EINPUT', `${file} has ${st.size} bytes, not a positive multiple of the entry size ${entrySize}`);
    }
    return new RawFileSource(file, st.size / entrySize, entrySize);
  }

  async fill(start: number, out: Buffer): Promise<void> {
    const fh = await fsp.open(this.file, 'r');
    try {
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await fh.read(out, done, out.length - done, start * this.entrySize + done);
        if (bytesRead === 0) throw new StoreError('EINPUT', `${this.file} ended early (was it modified during the build?)`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }

  describe(): string {
    return `${this.file} (raw, ${this.entries} entries)`;
  }
}

/** JSON Lines of entries; indices not listed are zero. */
export class JsonlSource implements EntrySource {
  private constructor(
    readonly file: string,
    readonly entries: number,
    readonly entrySize: number,
    private readonly values: Map<number, Buffer>,
    private readonly sorted: number[],
  ) {}

  /** Reads the whole file (entry files and update files share one schema: src/store/entry-files.ts). */
  static async open(file: string, entrySize: number, opts: { lane?: LaneName; entries?: number } = {}): Promise<JsonlSource> {
    const values = new Map<number, Buffer>();
    let max = -1;
    const lane = opts.lane ?? 'hot';
    for await (const { index, value } of readChanges(file, { format: 'jsonl', lane, entrySizes: { [lane]: entrySize } })) {
      values.set(index, value);
      if (index > max) max = index;
    }
    const count = opts.entries ?? max + 1;
    if (count < 1) throw new StoreError('EINPUT', `${file} lists no entries`);
    if (max >= count) throw new StoreError('EINPUT', `${file} has index ${max}, beyond the lane's ${count} entries`);
    return new JsonlSource(file, count, entrySize, values, [...values.keys()].sort((a, b) => a - b));
  }

  async fill(start: number, out: Buffer): Promise<void> {
    out.fill(0);
    const end = start + out.length / this.entrySize;
    // First listed index >= start, by binary search; then walk while < end.
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sorted[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < this.sorted.length && this.sorted[k]! < end; k++) {
      const index = this.sorted[k]!;
      this.values.get(index)!.copy(out, (index - start) * this.entrySize);
    }
  }

  describe(): string {
    return `${this.file} (JSON Lines, ${this.entries} entries)`;
  }
}

/**
 * Opens a lane's entries file: JSON Lines of changes from all-zero entries,
 * or binary (the raw entries back to back). The format is `opts.format` or
 * detected from the content, checked against the name (detectFormat).
 */
export async function openEntriesFile(
  file: string,
  entrySize: number,
  opts: { lane?: LaneName; format?: FileFormat; onFormat?: (d: DetectedFormat) => void } = {},
): Promise<EntrySource> {
  const detected = await detectFileFormat(file, opts.format);
  opts.onFormat?.(detected);
  return detected.format === 'jsonl' ? JsonlSource.open(file, entrySize, opts.lane ? { lane: opts.lane } : {}) : RawFileSource.open(file, entrySize);
}
