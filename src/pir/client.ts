// SimplePIR client for one lane. Builds queries for an index and decodes the
// server's answers with the lane's hint. Browser-safe: WebCrypto only.
//
//   query  qu = A s + e + Delta * unit(c)           (m words)
//   answer ans = X qu                               (entry_size * R words)
//   decode v = ans[t] - 128 * sum(qu) - H[t] s  =  Delta (x - 128) + noise
import { type Crs, parseCrs, answerBytes, hexToBytes, bytesToHex, hintBytes } from './crs.js';
import { DELTA, PLAIN_MODULUS } from './params.js';
import { MatrixStream, littleEndianWords, wordsToLittleEndian } from './prg.js';
import { randomWords } from './random.js';
import { sampleErrors } from './sampler.js';

export class PirClientError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'PirClientError';
  }
}

export interface PirClientOptions {
  /** Check hint.bin against crs.hint_sha256 (default true). */
  verifyHint?: boolean;
  /**
   * Keep A in memory (m * n * 4 bytes: 64 MiB for m = 16384) so preparing a
   * query costs one matrix-vector product instead of regenerating A. Default true.
   */
  cacheMatrix?: boolean;
}

/** What decode() needs; single use (the secret is wiped after decoding). */
export interface QueryState {
  readonly index: number;
  readonly hintSha256: string;
  /** Secret s, cleared once decoded. */
  secret: Uint32Array;
  /** sum(qu) mod 2^32. */
  readonly querySum: number;
  used: boolean;
}

interface Prepared {
  secret: Uint32Array;
  /** A s + e mod 2^32. */
  base: Uint32Array;
}

/** Rows of A generated per step when A is not cached (1 MiB of keystream at n = 1024). */
const STREAM_ROWS = 256;

export class PirClient {
  private readonly pool: Prepared[] = [];
  private matrix: Uint32Array | undefined;

  private constructor(
    readonly crs: Crs,
    private readonly hint: Uint32Array,
    private readonly stream: MatrixStream,
    private readonly cacheMatrix: boolean,
  ) {}

  /** A client for the lane described by `crs` (parsed crs.json) with its hint.bin bytes. */
  static async create(crs: unknown, hint: Uint8Array, options: PirClientOptions = {}): Promise<PirClient> {
    const params = parseCrs(crs);
    if (hint.byteLength !== hintBytes(params)) {
      throw new PirClientError(`hint has ${hint.byteLength} bytes, expected ${hintBytes(params)}`, 'EHINT');
    }
    if (options.verifyHint !== false) {
      const digest = bytesToHex(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', hint)));
      if (digest !== params.hint_sha256) {
        throw new PirClientError(`hint sha256 ${digest} does not match crs.hint_sha256 ${params.hint_sha256}`, 'EHINT');
      }
    }
    const stream = await MatrixStream.create(hexToBytes(params.seed), params.n);
    return new PirClient(params, littleEndianWords(hint), stream, options.cacheMatrix !== false);
  }

  get entries(): number {
    return this.crs.entries;
  }

  get entrySize(): number {
    return this.crs.entry_size;
  }

  /** Queries prepared ahead of time. */
  get prepared(): number {
    return this.pool.length;
  }

  /**
   * Precomputes `count` query bases A s + e with fresh secrets, in one pass
   * over A, so that query() only adds Delta at the chosen column.
   */
  async prepare(count = 1): Promise<void> {
    if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
    const { m, n } = this.crs;
    const items: Prepared[] = [];
    for (let k = 0; k < count; k++) {
      items.push({ secret: randomWords(n), base: sampleErrors(new Uint32Array(m)) });
    }
    if (this.cacheMatrix) {
      this.matrix ??= await this.stream.rows(0, m);
      accumulateProducts(this.matrix, 0, m, n, items);
    } else {
      for (let c0 = 0; c0 < m; c0 += STREAM_ROWS) {
        const rows = Math.min(STREAM_ROWS, m - c0);
        accumulateProducts(await this.stream.rows(c0, rows), c0, rows, n, items);
      }
    }
    this.pool.push(...items);
  }

  /** A query for entry `index`: the bytes to send and the state decode() needs. */
  async query(index: number): Promise<{ query: Uint8Array; state: QueryState }> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.crs.entries) {
      throw new PirClientError(`index ${index} is outside the lane (0..${this.crs.entries - 1})`, 'EINDEX');
    }
    if (this.pool.length === 0) await this.prepare(1);
    // Each prepared secret is used exactly once.
    const { secret, base } = this.pool.shift()!;
    const column = index % this.crs.m;
    base[column] = (base[column]! + DELTA) >>> 0;
    let sum = 0;
    for (let c = 0; c < base.length; c++) sum = (sum + base[c]!) | 0;
    const state: QueryState = { index, hintSha256: this.crs.hint_sha256, secret, querySum: sum >>> 0, used: false };
    return { query: wordsToLittleEndian(base), state };
  }

  /** Decodes the server's answer to the query that produced `state`. */
  decode(answer: Uint8Array, state: QueryState): Uint8Array {
    if (state.used) throw new PirClientError('this query state was already decoded; secrets are single use', 'ESTATE');
    if (state.hintSha256 !== this.crs.hint_sha256) throw new PirClientError('query state belongs to another lane or generation', 'ESTATE');
    const expected = answerBytes(this.crs);
    if (answer.byteLength !== expected) {
      throw new PirClientError(`answer has ${answer.byteLength} bytes, expected ${expected}`, 'EANSWER');
    }
    const ans = littleEndianWords(answer);
    const { n, m, entry_size: es } = this.crs;
    const row = Math.floor(state.index / m);
    const s = state.secret;
    const out = new Uint8Array(es);
    const correction = Math.imul(PLAIN_MODULUS / 2, state.querySum);
    for (let b = 0; b < es; b++) {
      const t = row * es + b;
      let hs = 0;
      const h = this.hint.subarray(t * n, t * n + n);
      for (let j = 0; j < n; j++) hs = (hs + Math.imul(h[j]!, s[j]!)) | 0;
      const v = (ans[t]! - correction - hs) | 0; // signed 32-bit
      out[b] = (Math.round(v / DELTA) + PLAIN_MODULUS / 2) & (PLAIN_MODULUS - 1);
    }
    state.used = true;
    s.fill(0);
    return out;
  }
}

/** items[k].base[c0 + i] += (A_rows[i] . items[k].secret) for each row i in the block. */
function accumulateProducts(rows: Uint32Array, c0: number, count: number, n: number, items: Prepared[]): void {
  const a = new Int32Array(rows.buffer, rows.byteOffset, count * n);
  for (const item of items) {
    const s = new Int32Array(item.secret.buffer, item.secret.byteOffset, n);
    const base = item.base;
    for (let i = 0; i < count; i++) {
      let acc = 0;
      const off = i * n;
      for (let j = 0; j < n; j++) acc = (acc + Math.imul(a[off + j]!, s[j]!)) | 0;
      base[c0 + i] = (base[c0 + i]! + acc) >>> 0;
    }
  }
}
