// SimplePIR client for one lane. Builds queries for an index and decodes the
// server's answers with the lane's hint. Browser-safe: WebCrypto only.
//
//   query  qu = A s + e + Delta * unit(c)           (m words)
//   answer ans = X qu                               (entry_size * R words)
//   decode v = ans[t] - 128 * sum(qu) - H[t] s  =  Delta (x - 128) + noise
import { type Crs, parseCrs, answerBytes, hexToBytes, bytesToHex, hintBytes } from './crs.js';
import { type LaneDelta, addEntryChange, checkDelta, decodeDelta, growHint } from './delta.js';
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
/** Single-row requests in flight at once in applyDelta. */
const ROW_REQUESTS = 64;

export class PirClient {
  private readonly pool: Prepared[] = [];
  private matrix: Uint32Array | undefined;
  private matrixPromise: Promise<Uint32Array> | undefined;
  /** Set while applyDelta() rewrites the hint: decode() must not read it half-updated. */
  private updating = false;

  private constructor(
    private params: Crs,
    private hint: Uint32Array,
    private readonly stream: MatrixStream,
    private readonly cacheMatrix: boolean,
  ) {}

  /** The lane's parameters for the hint the client holds (replaced by applyDelta). */
  get crs(): Crs {
    return this.params;
  }

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

  /** The hint's bytes (hint.bin layout) as the client holds it now, e.g. to cache it after applyDelta(). A copy. */
  exportHint(): Uint8Array {
    return wordsToLittleEndian(this.hint).slice();
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
    this.pool.push(...(await this.makePrepared(count)));
  }

  /** `count` fresh (secret, A s + e) pairs, computed in one pass over A. */
  private async makePrepared(count: number): Promise<Prepared[]> {
    if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
    const { m, n } = this.crs;
    const items: Prepared[] = [];
    for (let k = 0; k < count; k++) {
      items.push({ secret: randomWords(n), base: sampleErrors(new Uint32Array(m)) });
    }
    if (this.cacheMatrix) {
      // Concurrent first queries share one expansion of A.
      this.matrixPromise ??= this.expandMatrix().then((a) => (this.matrix = a));
      accumulateProducts(await this.matrixPromise, 0, m, n, items);
    } else {
      for (let c0 = 0; c0 < m; c0 += STREAM_ROWS) {
        const rows = Math.min(STREAM_ROWS, m - c0);
        accumulateProducts(await this.stream.rows(c0, rows), c0, rows, n, items);
      }
    }
    return items;
  }

  /** All of A, generated a block of rows at a time (one 64 MiB WebCrypto call is several times slower). */
  private async expandMatrix(): Promise<Uint32Array> {
    const { m, n } = this.crs;
    const matrix = new Uint32Array(m * n);
    for (let c0 = 0; c0 < m; c0 += STREAM_ROWS) {
      matrix.set(await this.stream.rows(c0, Math.min(STREAM_ROWS, m - c0)), c0 * n);
    }
    return matrix;
  }

  /** A query for entry `index`: the bytes to send and the state decode() needs. */
  async query(index: number): Promise<{ query: Uint8Array; state: QueryState }> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.crs.entries) {
      throw new PirClientError(`index ${index} is outside the lane (0..${this.crs.entries - 1})`, 'EINDEX');
    }
    // Each prepared secret is used exactly once; without one ready, make one for this query
    // (not through the pool: a concurrent query could take it first).
    const { secret, base } = this.pool.shift() ?? (await this.makePrepared(1))[0]!;
    const column = index % this.crs.m;
    base[column] = (base[column]! + DELTA) >>> 0;
    let sum = 0;
    for (let c = 0; c < base.length; c++) sum = (sum + base[c]!) | 0;
    const state: QueryState = { index, hintSha256: this.crs.hint_sha256, secret, querySum: sum >>> 0, used: false };
    return { query: wordsToLittleEndian(base), state };
  }

  /** Decodes the server's answer to the query that produced `state`. */
  decode(answer: Uint8Array, state: QueryState): Uint8Array {
    if (this.updating) throw new PirClientError('the hint is being updated (applyDelta); decode after it finishes', 'EBUSY');
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

  /**
   * Decodes every record row of the queried column: entry_size * R bytes,
   * record row r's entry at offset r * entry_size. A SimplePIR answer is the
   * whole column; keyword lanes read all of it (a column is a bucket).
   */
  decodeColumn(answer: Uint8Array, state: QueryState): Uint8Array {
    if (this.updating) throw new PirClientError('the hint is being updated (applyDelta); decode after it finishes', 'EBUSY');
    if (state.used) throw new PirClientError('this query state was already decoded; secrets are single use', 'ESTATE');
    if (state.hintSha256 !== this.crs.hint_sha256) throw new PirClientError('query state belongs to another lane or generation', 'ESTATE');
    const expected = answerBytes(this.crs);
    if (answer.byteLength !== expected) {
      throw new PirClientError(`answer has ${answer.byteLength} bytes, expected ${expected}`, 'EANSWER');
    }
    const ans = littleEndianWords(answer);
    const { n } = this.crs;
    const rows = ans.length;
    const s = state.secret;
    const out = new Uint8Array(rows);
    const correction = Math.imul(PLAIN_MODULUS / 2, state.querySum);
    for (let t = 0; t < rows; t++) {
      let hs = 0;
      const off = t * n;
      const h = this.hint;
      for (let j = 0; j < n; j++) hs = (hs + Math.imul(h[off + j]!, s[j]!)) | 0;
      const v = (ans[t]! - correction - hs) | 0; // signed 32-bit
      out[t] = (Math.round(v / DELTA) + PLAIN_MODULUS / 2) & (PLAIN_MODULUS - 1);
    }
    state.used = true;
    s.fill(0);
    return out;
  }

  /**
   * Brings the hint to a later generation of the lane: `delta` is the server's
   * delta (GET /delta, docs/FORMAT.md) from this client's generation to the
   * one `newCrs` describes. Each changed byte costs n multiply-adds with row
   * c of A; the hint grows when the lane gained record rows. The result must
   * hash to newCrs.hint_sha256; otherwise nothing changes and EDELTA is
   * thrown. Query states made before the update no longer decode (ESTATE).
   */
  async applyDelta(delta: Uint8Array | LaneDelta, newCrs: unknown): Promise<void> {
    if (this.updating) throw new PirClientError('another applyDelta() is running', 'EBUSY');
    const fail: (message: string) => never = (message) => {
      throw new PirClientError(message, 'EDELTA');
    };
    let next: Crs;
    let d: LaneDelta;
    try {
      next = parseCrs(newCrs);
      if (delta instanceof Uint8Array) d = decodeDelta(delta);
      else {
        checkDelta(delta);
        d = delta;
      }
    } catch (err) {
      fail(`cannot apply the delta: ${(err as Error).message}`);
    }
    const cur = this.params;
    if (next.seed !== cur.seed || next.m !== cur.m || next.n !== cur.n || next.entry_size !== cur.entry_size || (next.params_version ?? 1) !== (cur.params_version ?? 1)) {
      fail('the lane parameters changed (seed, m, entry size or params_version): download the hint again');
    }
    if (bytesToHex(d.seed) !== cur.seed || d.m !== cur.m || d.n !== cur.n || d.entrySize !== cur.entry_size) fail('the delta is for another lane (seed, m, n or entry size differ)');
    if (d.fromHintSha256 !== cur.hint_sha256 || d.fromEntries !== cur.entries) fail(`the delta starts from generation ${d.from}, not from this client's hint`);
    if (d.toHintSha256 !== next.hint_sha256 || d.toEntries !== next.entries) fail(`the delta ends at generation ${d.to}, which is not the one newCrs describes`);
    if (d.indices.length === 0 && next.R === cur.R) {
      this.params = next;
      return;
    }

    const { n, m, entry_size: es } = cur;
    this.updating = true;
    try {
      const columns = [...new Set(d.indices.map((i) => i % m))].sort((a, b) => a - b);
      const rows = await matrixRows(this.stream, this.matrix, m, n, columns);
      const grow = next.R > cur.R;
      if (grow && !d.zeroRow) fail('the lane gains record rows but the delta has no zero row');
      // Growing needs a new buffer anyway; otherwise update in place and undo on mismatch.
      const target = grow ? growHint(this.hint, es, n, next.R, d.zeroRow!) : this.hint;
      const apply = (sign: 1 | -1) => {
        for (let k = 0; k < d.indices.length; k++) {
          const i = d.indices[k]!;
          addEntryChange(target, n, es, m, i, d.oldValues.subarray(k * es, (k + 1) * es), d.newValues.subarray(k * es, (k + 1) * es), rows.get(i % m)!, sign);
        }
      };
      apply(1);
      let digest: string;
      try {
        digest = bytesToHex(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', wordsToLittleEndian(target))));
      } catch (err) {
        if (!grow) apply(-1);
        throw err;
      }
      if (digest !== next.hint_sha256) {
        if (!grow) apply(-1); // mod 2^32 arithmetic undoes exactly
        fail(`the updated hint has sha256 ${digest}, not newCrs.hint_sha256 ${next.hint_sha256}; the old hint is kept`);
      }
      this.hint = target;
      this.params = next;
    } finally {
      this.updating = false;
    }
  }
}

/** Rows of A for the given columns, keyed by column: from the cached matrix, a full pass, or one row at a time. */
async function matrixRows(stream: MatrixStream, cached: Uint32Array | undefined, m: number, n: number, columns: number[]): Promise<Map<number, Uint32Array>> {
  const out = new Map<number, Uint32Array>();
  if (cached) {
    for (const c of columns) out.set(c, cached.subarray(c * n, (c + 1) * n));
  } else if (columns.length > m / 8) {
    // Many columns: streaming all of A in large steps beats one call per row.
    const wanted = new Set(columns);
    for (let c0 = 0; c0 < m; c0 += STREAM_ROWS) {
      const count = Math.min(STREAM_ROWS, m - c0);
      const rows = await stream.rows(c0, count);
      for (let c = c0; c < c0 + count; c++) if (wanted.has(c)) out.set(c, rows.slice((c - c0) * n, (c - c0 + 1) * n));
    }
  } else {
    // Few columns: each row on its own, several requests in flight (WebCrypto calls have a fixed cost).
    for (let k = 0; k < columns.length; k += ROW_REQUESTS) {
      const batch = columns.slice(k, k + ROW_REQUESTS);
      const rows = await Promise.all(batch.map((c) => stream.rows(c, 1)));
      batch.forEach((c, i) => out.set(c, rows[i]!));
    }
  }
  return out;
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
