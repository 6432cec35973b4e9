// Entry and update files: the one schema and the one streaming reader behind
// `lanepir build --hot-entries` (a full lane), `--hot-updates` (changes for an
// incremental build) and follow mode's `<block>.jsonl` (docs/FORMAT.md,
// "Entry and update files").
//
// A change is {"index": 5, "value": "0x…"} plus "lane" ("hot"/"cold"), which
// multi-lane files (follow) require and one-lane files may give; no other key
// is accepted. The format, JSON Lines or binary, is stated (`--format`) or
// detected from the content, and a name that says otherwise is an error: a
// file is never read in a format it was not meant to be read in.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { StoreError } from './errors.js';
import { type LaneName, isLaneName } from './layout.js';

export const FILE_FORMATS = ['jsonl', 'binary'] as const;
export type FileFormat = (typeof FILE_FORMATS)[number];

export function isFileFormat(s: string): s is FileFormat {
  return (FILE_FORMATS as readonly string[]).includes(s);
}

/** How a file's format was decided (the CLI says so when it was the content alone). */
export interface DetectedFormat {
  format: FileFormat;
  by: 'flag' | 'name' | 'content' | 'name and content';
}

/** Entry `index` of `lane` becomes `value`; `where` is `file:line` or `file record k` for messages. */
export interface Change {
  lane: LaneName;
  index: number;
  value: Buffer;
  where: string;
}

const JSONL_NAME = /\.(jsonl|ndjson|json)$/i;
const BINARY_NAME = /\.bin$/i;
/** Bytes looked at to tell JSON Lines from binary. */
const SNIFF_BYTES = 64 * 1024;
const CHANGE_KEYS = new Set(['index', 'value', 'lane']);

const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
const describeByte = (b: number) => `0x${b.toString(16).padStart(2, '0')}${b >= 0x20 && b < 0x7f ? ` ("${String.fromCharCode(b)}")` : ''}`;

/**
 * What the content is: JSON Lines starts (after whitespace and a UTF-8 BOM)
 * with "{" and has no NUL byte; anything else is binary. Binary update
 * records always have a NUL in their first 8 bytes (the top byte of an index
 * below 2^53), random entry bytes almost surely. undefined: empty.
 */
function sniff(head: Uint8Array): { format: FileFormat; reason: string } | undefined {
  let i = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && isSpace(head[i]!)) i++;
  if (i === head.length) return undefined;
  if (head[i] !== 0x7b) return { format: 'binary', reason: `its first byte is ${describeByte(head[i]!)}, not "{"` };
  const nul = head.indexOf(0);
  if (nul >= 0) return { format: 'binary', reason: `it has a NUL byte at offset ${nul}` };
  return { format: 'jsonl', reason: 'it starts with "{" and has no NUL bytes' };
}

/**
 * The format of `file` from its first bytes: `flag` when given (the operator
 * said so); otherwise the content, which must agree with a telling name
 * (.jsonl/.ndjson/.json or .bin). An empty file follows its name (JSON Lines
 * when the name says nothing): it holds no changes either way.
 */
export function detectFormat(file: string, head: Uint8Array, flag?: FileFormat): DetectedFormat {
  if (flag !== undefined) return { format: flag, by: 'flag' };
  const byName: FileFormat | undefined = JSONL_NAME.test(file) ? 'jsonl' : BINARY_NAME.test(file) ? 'binary' : undefined;
  const byContent = sniff(head);
  if (!byContent) return { format: byName ?? 'jsonl', by: byName ? 'name' : 'content' };
  if (byName !== undefined && byName !== byContent.format) {
    throw new StoreError(
      'EFORMAT',
      byName === 'jsonl'
        ? `${file}: the name says JSON Lines but the content is not (${byContent.reason}); give --format binary if it is binary`
        : `${file}: the name says binary but the content is JSON Lines (${byContent.reason}); give --format jsonl to read it as JSON Lines, or --format binary to read its bytes anyway`,
    );
  }
  return { format: byContent.format, by: byName ? 'name and content' : 'content' };
}

/** Opens `file` for reading: a regular file (a FIFO or device would block or never end), or a clear error. */
async function openRegular(file: string): Promise<fsp.FileHandle> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw new StoreError('EINPUT', `cannot read ${file}: ${(err as Error).message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new StoreError('EINPUT', `${file} is not a regular file`);
  }
  return fh;
}

/** The format of a file on disk (reads its first 64 KiB). */
export async function detectFileFormat(file: string, flag?: FileFormat): Promise<DetectedFormat> {
  const fh = await openRegular(file);
  try {
    const head = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(head, 0, SNIFF_BYTES, 0);
    return detectFormat(file, head.subarray(0, bytesRead), flag);
  } finally {
    await fh.close();
  }
}

export interface ChangeSchema {
  /** Entry size per lane; a change for a lane not listed is refused. */
  entrySizes: Partial<Record<LaneName, number>>;
  /** A one-lane file: lines may omit "lane" and must name this lane when they give it. Unset: "lane" is required. */
  lane?: LaneName;
}

/** Checks one JSON Lines change against the schema; `where` (file:line) starts every error. */
export function parseChange(line: string, where: string, schema: ChangeSchema): Change {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (err) {
    throw new StoreError('EINPUT', `${where}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new StoreError('EINPUT', `${where}: expected an object {"index": …, "value": "0x…"}`);
  const rec = obj as Record<string, unknown>;
  for (const key of Object.keys(rec)) {
    if (!CHANGE_KEYS.has(key)) throw new StoreError('EINPUT', `${where}: unknown key ${JSON.stringify(key)} (a change has "index", "value" and "lane")`);
  }
  let lane: LaneName;
  if (rec.lane === undefined) {
    if (schema.lane === undefined) throw new StoreError('EINPUT', `${where}: "lane" is missing (must be "hot" or "cold")`);
    lane = schema.lane;
  } else {
    if (typeof rec.lane !== 'string' || !isLaneName(rec.lane)) throw new StoreError('EINPUT', `${where}: "lane" must be "hot" or "cold", got ${JSON.stringify(rec.lane)}`);
    if (schema.lane !== undefined && rec.lane !== schema.lane) {
      throw new StoreError('EINPUT', `${where}: "lane" is ${JSON.stringify(rec.lane)} in a file of ${schema.lane} entries`);
    }
    lane = rec.lane;
  }
  const entrySize = schema.entrySizes[lane];
  if (entrySize === undefined) throw new StoreError('EINPUT', `${where}: the generation has no ${lane} lane`);
  const { index, value } = rec;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) {
    throw new StoreError('EINPUT', `${where}: "index" must be a non-negative integer, got ${JSON.stringify(index) ?? 'nothing'}`);
  }
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]*$/.test(value) || value.length !== 2 + 2 * entrySize) {
    throw new StoreError('EINPUT', `${where}: "value" must be 0x followed by ${2 * entrySize} hex digits (${entrySize} bytes)`);
  }
  return { lane, index, value: Buffer.from(value.slice(2), 'hex'), where };
}

export interface ReadChangesOptions extends ChangeSchema {
  /** --format; default: detected (detectFormat). */
  format?: FileFormat;
  /** The file's bytes when already read (follow mode hashes them first); otherwise the file is streamed. */
  bytes?: Uint8Array;
  /** Refuse a last line without a newline (follow mode: a file still being written). */
  requireFinalNewline?: boolean;
  /** Told how the format was decided, before the first change. */
  onFormat?: (d: DetectedFormat) => void;
}

async function* chunksOf(file: string, bytes: Uint8Array | undefined): AsyncGenerator<Buffer> {
  if (bytes) {
    yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return;
  }
  const fh = await openRegular(file);
  try {
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead); // consumed before the next read
    }
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError('EINPUT', `cannot read ${file}: ${(err as Error).message}`);
  } finally {
    await fh.close();
  }
}

/**
 * The changes of an entry or update file, streamed in file order (a later
 * change of the same index wins, for the caller to apply). JSON Lines: one
 * change a line, blank lines skipped. Binary (one-lane files only): records
 * of a u64 little-endian index and the entry's bytes.
 */
export async function* readChanges(file: string, opts: ReadChangesOptions): AsyncGenerator<Change> {
  const detected = opts.bytes ? detectFormat(file, opts.bytes.subarray(0, SNIFF_BYTES), opts.format) : await detectFileFormat(file, opts.format);
  opts.onFormat?.(detected);
  if (detected.format === 'binary') yield* binaryChanges(file, opts);
  else yield* jsonlChanges(file, opts);
}

async function* jsonlChanges(file: string, opts: ReadChangesOptions): AsyncGenerator<Change> {
  // A line longer than any change can be is not JSON Lines (and must not fill memory).
  const maxLine = 4096 + 2 * Math.max(0, ...Object.values(opts.entrySizes).map((s) => s ?? 0));
  let lineNo = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (line: Buffer): Change | undefined => {
    lineNo++;
    let text = line.toString('utf8');
    if (lineNo === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === '') return undefined;
    return parseChange(text, `${file}:${lineNo}`, opts);
  };
  for await (const chunk of chunksOf(file, opts.bytes)) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      const line = pendingBytes > 0 ? Buffer.concat([...pending, piece]) : piece;
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
      if (line.length > maxLine) throw new StoreError('EINPUT', `${file}:${lineNo + 1}: line of ${line.length} bytes, longer than any change (not JSON Lines?)`);
      const change = take(line);
      if (change) yield change;
    }
    if (start < chunk.length) {
      pending.push(Buffer.from(chunk.subarray(start))); // the chunk buffer is reused
      pendingBytes += chunk.length - start;
      if (pendingBytes > maxLine) throw new StoreError('EINPUT', `${file}:${lineNo + 1}: line longer than ${maxLine} bytes, longer than any change (not JSON Lines?)`);
    }
  }
  if (pendingBytes > 0) {
    const last = Buffer.concat(pending);
    if (opts.requireFinalNewline && last.toString('utf8').trim() !== '') {
      throw new StoreError('EINPUT', `${file}:${lineNo + 1}: the last line is not terminated (truncated file?)`);
    }
    const change = take(last);
    if (change) yield change;
  }
}

async function* binaryChanges(file: string, opts: ReadChangesOptions): AsyncGenerator<Change> {
  const lane = opts.lane;
  if (lane === undefined) throw new StoreError('EFORMAT', `${file}: binary update files hold one lane's changes; this file must be JSON Lines with "lane" on every line`);
  const entrySize = opts.entrySizes[lane];
  if (entrySize === undefined) throw new StoreError('EINPUT', `${file}: the generation has no ${lane} lane`);
  const rec = 8 + entrySize;
  const size = opts.bytes ? opts.bytes.byteLength : (await fsp.stat(file)).size;
  if (size % rec !== 0) {
    throw new StoreError(
      'EINPUT',
      `${file} has ${size} bytes, not a whole number of ${rec}-byte records (u64 index + ${entrySize}-byte entry); record ${Math.floor(size / rec)} is cut short`,
    );
  }
  let k = 0;
  let carry = Buffer.alloc(0);
  for await (const chunk of chunksOf(file, opts.bytes)) {
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    let off = 0;
    for (; off + rec <= buf.length; off += rec, k++) {
      const index = buf.readBigUInt64LE(off);
      const where = `${file} record ${k} (byte ${k * rec})`;
      if (index > BigInt(Number.MAX_SAFE_INTEGER)) throw new StoreError('EINPUT', `${where}: index ${index} is beyond 2^53`);
      yield { lane, index: Number(index), value: Buffer.from(buf.subarray(off + 8, off + rec)), where };
    }
    carry = Buffer.from(buf.subarray(off));
  }
  if (carry.length > 0) throw new StoreError('EINPUT', `${file} ended inside record ${k} (was it modified while being read?)`);
}

/** One lane's changes from an update file, index -> value (the last change of an index wins). */
export async function readUpdatesFile(
  file: string,
  lane: LaneName,
  entrySize: number,
  opts: { format?: FileFormat; onFormat?: (d: DetectedFormat) => void } = {},
): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  for await (const c of readChanges(file, { ...opts, lane, entrySizes: { [lane]: entrySize } })) out.set(c.index, c.value);
  return out;
}
