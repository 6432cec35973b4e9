// Keyword lanes (docs/FORMAT.md, "Keyword lanes"): keys are opaque byte
// strings placed by hash in one of d candidate columns of the SimplePIR
// matrix; a column is a bucket of R slots, and one SimplePIR answer returns
// a whole column, so d queries fetch every slot a key can be in.
//
//   h     = keccak256(key_seed || key)
//   tag   = h[0..8)
//   c_j   = u64le(h[8+8j .. 16+8j]) mod m        j = 0 .. d-1
//   entry = tag (8) || value (32), at entry index r*m + c_j for some row r
//
// This module is browser-safe (noble's keccak, WebCrypto randomness): the
// hashing here is the contract the builder (src/store/keyword-*.ts) and every
// client share.
import { keccak_256 } from '@noble/hashes/sha3.js';
import { type PirClient, type QueryState } from './client.js';
import { PirClientError } from './errors.js';
import { type Crs, type KeywordCrs, KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, KEYWORD_VALUE_BYTES, hexToBytes, isKeywordCrs } from './crs.js';

export const KEYWORD_HASH_BYTES = 32;

/** keccak256(key_seed || key): 32 bytes. */
export function keywordHash(keySeed: Uint8Array, key: Uint8Array): Uint8Array {
  const input = new Uint8Array(keySeed.length + key.length);
  input.set(keySeed, 0);
  input.set(key, keySeed.length);
  return keccak_256(input);
}

const TWO32 = 2 ** 32;

/** u64le(bytes[offset .. offset+8)) mod m, exactly, without BigInt (m <= 2^20 keeps every product below 2^53). */
export function u64leMod(bytes: Uint8Array, offset: number, m: number): number {
  const lo = (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
  const hi = (bytes[offset + 4]! | (bytes[offset + 5]! << 8) | (bytes[offset + 6]! << 16) | (bytes[offset + 7]! << 24)) >>> 0;
  return (((hi % m) * (TWO32 % m)) % m + (lo % m)) % m;
}

/** The d candidate columns of a key hash (c_j = u64le(h[8+8j..16+8j]) mod m); they may coincide. */
export function candidateColumns(hash: Uint8Array, d: number, m: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < d; j++) out.push(u64leMod(hash, KEYWORD_TAG_BYTES + 8 * j, m));
  return out;
}

/** True when the tag h[0..8) is all zero: such a key cannot be stored (an empty slot is all zero). */
export function isZeroTag(hash: Uint8Array): boolean {
  for (let i = 0; i < KEYWORD_TAG_BYTES; i++) if (hash[i] !== 0) return false;
  return true;
}

/** What a key's lookup in a keyword lane needs: its tag and candidate columns. */
export interface KeyLocation {
  hash: Uint8Array;
  tag: Uint8Array;
  columns: number[];
}

/** The keyword parameters of a lane's crs; throws PirClientError EKEYWORD for an index lane. */
export function keywordParams(crs: Crs): { keySeed: Uint8Array; d: number; m: number; R: number } {
  if (!isKeywordCrs(crs)) throw new PirClientError(`the lane is not a keyword lane (layout ${JSON.stringify(crs.layout ?? 'index')})`, 'EKEYWORD');
  const k = crs as KeywordCrs;
  return { keySeed: hexToBytes(k.key_seed), d: k.bucket_choices, m: k.m, R: k.R };
}

export function locateKey(crs: Crs, key: Uint8Array): KeyLocation {
  const { keySeed, d, m } = keywordParams(crs);
  const hash = keywordHash(keySeed, key);
  if (isZeroTag(hash)) throw new PirClientError('the key has an all-zero tag under this lane\'s key_seed and cannot be looked up', 'EKEY');
  return { hash, tag: hash.subarray(0, KEYWORD_TAG_BYTES), columns: candidateColumns(hash, d, m) };
}

/** A private keyword read: `exists: false` reads as Ethereum does, a zero value. */
export interface KeywordResult {
  exists: boolean;
  /** 32 bytes (all zero when absent). */
  value: Uint8Array;
  /**
   * The decoded candidate columns (column -> entry_size * R bytes, record row
   * r's entry at r * entry_size): what the lane held there at the round's
   * generation. Reads of an earlier generation rebuild its columns from these
   * and the public delta between the two (src/eth/client.ts).
   */
  columns?: Map<number, Uint8Array>;
}

/** Uniform column in [0, m) from the CSPRNG (rejection sampling, no modulo bias). */
export function randomColumn(m: number): number {
  const limit = Math.floor(TWO32 / m) * m;
  const buf = new Uint32Array(1);
  for (;;) {
    globalThis.crypto.getRandomValues(buf);
    if (buf[0]! < limit) return buf[0]! % m;
  }
}

export interface KeywordQueries {
  /** Exactly d queries, one per candidate column (also when two coincide). */
  queries: Uint8Array[];
  states: QueryState[];
  location: KeyLocation;
}

/** The d queries for `key`; what they look like does not depend on the key (each is a fresh LWE query). */
export async function keywordQueries(client: PirClient, key: Uint8Array): Promise<KeywordQueries> {
  const location = locateKey(client.crs, key);
  const queries: Uint8Array[] = [];
  const states: QueryState[] = [];
  for (const c of location.columns) {
    // Index c is record row 0 of column c; the answer is the whole column.
    const { query, state } = await client.query(c);
    queries.push(query);
    states.push(state);
  }
  return { queries, states, location };
}

/** `count` valid queries for uniformly random columns: the padding that hides which lane and how many keys a round needs. */
export async function dummyQueries(client: PirClient, count: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let k = 0; k < count; k++) {
    const { query, state } = await client.query(randomColumn(client.crs.m));
    client.discard(state); // never decoded: wipe its secret now
    out.push(query);
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Decodes the answers to a key's d queries (every record row of each
 * candidate column) and returns the entry whose tag matches. Fails closed:
 * two slots holding the key's tag, or two answers for the same column that
 * disagree, throw instead of guessing.
 */
export function decodeKeyword(client: PirClient, q: KeywordQueries, answers: Uint8Array[]): KeywordResult {
  const { columns, tag } = q.location;
  if (answers.length !== columns.length) throw new PirClientError(`expected ${columns.length} answers, got ${answers.length}`, 'EANSWER');
  const es = KEYWORD_ENTRY_SIZE;
  const decoded = new Map<number, Uint8Array>();
  let found: Uint8Array | undefined;
  for (let j = 0; j < columns.length; j++) {
    const column = client.decodeColumn(answers[j]!, q.states[j]!);
    const c = columns[j]!;
    const seen = decoded.get(c);
    if (seen) {
      // The same column asked twice: both answers must agree, and its slots count once.
      if (!equalBytes(seen, column)) throw new PirClientError(`two answers for column ${c} disagree`, 'EANSWER');
      continue;
    }
    decoded.set(c, column);
    for (let off = 0; off < column.length; off += es) {
      if (!equalBytes(column.subarray(off, off + KEYWORD_TAG_BYTES), tag)) continue;
      if (found) throw new PirClientError('two entries in the key\'s candidate columns carry its tag; refusing to choose', 'EKEYWORD_AMBIGUOUS');
      found = column.slice(off + KEYWORD_TAG_BYTES, off + es);
    }
  }
  return found ? { exists: true, value: found, columns: decoded } : { exists: false, value: new Uint8Array(KEYWORD_VALUE_BYTES), columns: decoded };
}
