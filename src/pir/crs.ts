// The lane's public parameters as published in crs.json. The key names are
// the wire contract (docs/FORMAT.md); a client written from that text must be
// able to read what the builder writes.
import { LWE_N, PLAIN_MODULUS, Q_BITS, SIGMA, ParamsError, checkColumns, recordRows } from './params.js';

export interface Crs {
  scheme: 'simplepir';
  n: number;
  q_bits: number;
  p: number;
  sigma: number;
  /** Columns of the database matrix (entries per record row). */
  m: number;
  /** Record rows. */
  R: number;
  entry_size: number;
  entries: number;
  /** A's seed, 32 hex digits (16 bytes). */
  seed: string;
  prg: 'aes-128-ctr';
  /** sha256 of hint.bin, hex. */
  hint_sha256: string;
  /** Bumped when the lane's (seed, m) change, i.e. when a cached hint can no longer be updated. */
  params_version?: number;
  /** How entries are addressed: "index" (entry numbers; also when absent) or "keyword" (keys placed by hash, docs/FORMAT.md). */
  layout?: LaneLayout;
  /** Keyword lanes: the key hash's seed, 32 hex digits (16 bytes), kept across generations. */
  key_seed?: string;
  /** Keyword lanes: d, the number of candidate columns of a key (1, 2 or 3). */
  bucket_choices?: number;
  [extra: string]: unknown;
}

export type LaneLayout = 'index' | 'keyword';

/** A keyword lane's crs: the fields a keyword lookup needs are present and valid. */
export type KeywordCrs = Crs & { layout: 'keyword'; key_seed: string; bucket_choices: 1 | 2 | 3 };

/** Bytes of a keyword-lane entry: tag (8) || value (32). */
export const KEYWORD_ENTRY_SIZE = 40;
export const KEYWORD_TAG_BYTES = 8;
export const KEYWORD_VALUE_BYTES = 32;
export const MAX_BUCKET_CHOICES = 3;

export function isKeywordCrs(crs: Crs): crs is KeywordCrs {
  return crs.layout === 'keyword';
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

function int(obj: Record<string, unknown>, key: string, min: number): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new ParamsError(`crs.${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates a parsed crs.json and returns it typed; throws ParamsError naming the bad field. */
export function parseCrs(value: unknown): Crs {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ParamsError('crs must be a JSON object');
  const o = value as Record<string, unknown>;
  if (o.scheme !== 'simplepir') throw new ParamsError(`crs.scheme must be "simplepir", got ${JSON.stringify(o.scheme)}`);
  if (o.prg !== 'aes-128-ctr') throw new ParamsError(`crs.prg must be "aes-128-ctr", got ${JSON.stringify(o.prg)}`);
  if (o.n !== LWE_N) throw new ParamsError(`crs.n must be ${LWE_N}, got ${JSON.stringify(o.n)}`);
  if (o.q_bits !== Q_BITS) throw new ParamsError(`crs.q_bits must be ${Q_BITS}, got ${JSON.stringify(o.q_bits)}`);
  if (o.p !== PLAIN_MODULUS) throw new ParamsError(`crs.p must be ${PLAIN_MODULUS}, got ${JSON.stringify(o.p)}`);
  if (o.sigma !== SIGMA) throw new ParamsError(`crs.sigma must be ${SIGMA}, got ${JSON.stringify(o.sigma)}`);
  const m = int(o, 'm', 1);
  const R = int(o, 'R', 1);
  const entrySize = int(o, 'entry_size', 1);
  const entries = int(o, 'entries', 1);
  checkColumns(m);
  if (R !== recordRows(entries, m)) throw new ParamsError(`crs.R = ${R} does not match ceil(entries / m) = ${recordRows(entries, m)}`);
  if (typeof o.seed !== 'string' || !HEX32.test(o.seed)) throw new ParamsError('crs.seed must be 32 lowercase hex digits');
  if (typeof o.hint_sha256 !== 'string' || !HEX64.test(o.hint_sha256)) throw new ParamsError('crs.hint_sha256 must be 64 lowercase hex digits');
  if (o.params_version !== undefined) int(o, 'params_version', 0);
  if (o.layout !== undefined && o.layout !== 'index' && o.layout !== 'keyword') {
    throw new ParamsError(`crs.layout must be "index" or "keyword", got ${JSON.stringify(o.layout)}`);
  }
  if (o.layout === 'keyword') {
    if (typeof o.key_seed !== 'string' || !HEX32.test(o.key_seed)) throw new ParamsError('crs.key_seed must be 32 lowercase hex digits');
    const d = int(o, 'bucket_choices', 1);
    if (d > MAX_BUCKET_CHOICES) throw new ParamsError(`crs.bucket_choices must be 1, 2 or 3, got ${d}`);
    if (entrySize !== KEYWORD_ENTRY_SIZE) throw new ParamsError(`a keyword lane's entry_size is ${KEYWORD_ENTRY_SIZE}, got ${entrySize}`);
    // Every column is a bucket of R slots: the lane is whole record rows.
    if (entries !== m * R) throw new ParamsError(`a keyword lane has m * R entries (${m * R}), got ${entries}`);
  } else if (o.key_seed !== undefined || o.bucket_choices !== undefined) {
    throw new ParamsError('crs.key_seed and crs.bucket_choices belong to keyword lanes (layout "keyword")');
  }
  return o as Crs;
}

/** Bytes of a query for this lane (m uint32). */
export function queryBytes(crs: Pick<Crs, 'm'>): number {
  return crs.m * 4;
}

/** Bytes of an answer for this lane (entry_size * R uint32). */
export function answerBytes(crs: Pick<Crs, 'entry_size' | 'R'>): number {
  return crs.entry_size * crs.R * 4;
}

/** Bytes of hint.bin (entry_size * R rows of n uint32). */
export function hintBytes(crs: Pick<Crs, 'entry_size' | 'R' | 'n'>): number {
  return crs.entry_size * crs.R * crs.n * 4;
}

export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new ParamsError('invalid hex string');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}
