// SimplePIR client for one lane. Builds queries for an index and decodes the
// server's answers with the lane's hint. Browser-safe: WebCrypto only.
//
//   query  qu = A s + e + Delta * unit(c)           (m words)
//   answer ans = X qu                               (entry_size * R words)
//   decode v = ans[t] - 128 * sum(qu) - H[t] s  =  Delta (x - 128) + noise
import { type Crs, parseCrs, answerBytes, hexToBytes, bytesToHex, hintBytes } from './crs.js';
import { type LaneDelta, addEntryChange, checkDelta, decodeDelta, growHint, isGenerationId } from './delta.js';
import { PirClientError } from './errors.js';
import { DELTA, PLAIN_MODULUS } from './params.js';
import { MatrixStream, littleEndianWords, wordsToLittleEndian } from './prg.js';
import { randomWords } from './random.js';
import { sampleErrors } from './sampler.js';

export { PirClientError } from './errors.js';

export interface PirClientOptions {
  /**
   * Keep A in memory (m * n * 4 bytes: 64 MiB for m = 16384) so preparing a
   * query costs one matrix-vector product instead of regenerating A. Default true.
   */
  cacheMatrix?: boolean;
  /**
   * The generation id the crs and hint belong to. Query states carry it (a
   * query must be sent to that generation) and applyDelta() checks deltas
   * against it and moves it to the delta's end.
   */
  generation?: string;
}

/**
 * What decode() needs, captured when the query is made (before any await):
 * single use (the secret is wiped after decoding).
 */
export interface QueryState {
  /** The index asked for, as given (decode() reports it if it is not in the lane). */
  readonly index: number;
  /** The lane's parameters the query was made with. */
  readonly crs: Crs;
  /** The generation the query was made for (PirClientOptions.generation): send it there. */
  readonly generation: string | undefined;
  /** sha256 of the hint the answer must be decoded with (crs.hint_sha256). */
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
/**
 * applyDelta without a cached A streams all of it once more than m / this
 * many columns changed, else asks for each row alone (64 calls in flight).
 * Measured at m = 16384, n = 1024: one row alone costs about 15 µs in Node
 * and 10 to 18 µs in Chromium; the whole stream 2 to 6 µs per row in Node
 * but 10 to 30 µs in Chromium. m / 4 is about even in Node and well on the
 * side of single rows in a browser.
 */
const STREAM_ALL_FRACTION = 4;
/** Single-row requests in flight at once in applyDelta. */
const ROW_REQUESTS = 64;

export class PirClient {
  private readonly pool: Prepared[] = [];
  private matrix: Uint32Array | undefined;
  private matrixPromise: Promise<Uint32Array> | undefined;
  /** Set while an applyDelta() runs: one at a time. */
  private applying = false;
  /** Set while applyDelta() rewrites the hint in place: decode() must not read it half-updated. */
  private rewriting = false;

  private constructor(
    /** Always the crs whose hint_sha256 is the sha256 of `hint` (checked whenever either changes). */
    private params: Crs,
    private hint: Uint32Array,
    private generationId: string | undefined,
    private readonly stream: MatrixStream,
    private readonly cacheMatrix: boolean,
  ) {}

  /** The lane's parameters for the hint the client holds (replaced by applyDelta). */
  get crs(): Crs {
    return this.params;
  }

  /** The generation the hint belongs to, when known (PirClientOptions.generation, then each delta's end). */
  get generation(): string | undefined {
    return this.generationId;
  }

  /**
   * A client for the lane described by `crs` (parsed crs.json) with its
   * hint.bin bytes. The hint is used only if its sha256 is crs.hint_sha256
   * (EHINT otherwise); the client keeps its own copy of both.
   */
  static async create(crs: unknown, hint: Uint8Array, options: PirClientOptions = {}): Promise<PirClient> {
    const params = frozenCrs(crs);
    if (options.generation !== undefined && !isGenerationId(options.generation)) {
      throw new PirClientError(`invalid generation id ${JSON.stringify(options.generation)}`, 'EPARAMS');
    }
    if (hint.byteLength !== hintBytes(params)) {
      throw new PirClientError(`hint has ${hint.byteLength} bytes, expected ${hintBytes(params)}`, 'EHINT');
    }
    // Our own copy, hashed after copying: the caller may reuse its buffer.
    const own = new Uint8Array(hint);
    const digest = await sha256Hex(own);
    if (digest !== params.hint_sha256) {
      throw new PirClientError(`hint sha256 ${digest} does not match crs.hint_sha256 ${params.hint_sha256}`, 'EHINT');
    }
    const stream = await MatrixStream.create(hexToBytes(params.seed), params.n);
    return new PirClient(params, littleEndianWords(own), options.generation, stream, options.cacheMatrix !== false);
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

  /**
   * A query for entry `index`: the bytes to send and the state decode() needs.
   * Whatever the index, the query is made the same way and has the same size:
   * an index outside the lane (or not an index at all) gets a query for its
   * column (index mod m) or a random one, and decode() reports it (EINDEX)
   * after the round trip, so that the server cannot learn from the client's
   * behaviour whether the index was inside the lane it described.
   */
  async query(index: number): Promise<{ query: Uint8Array; state: QueryState }> {
    // Everything decoding depends on, taken before the first await: an applyDelta() may land meanwhile.
    const crs = this.params;
    const generation = this.generationId;
    const column = Number.isSafeInteger(index) && index >= 0 ? index % crs.m : randomWords(1)[0]! % crs.m;
    // Each prepared secret is used exactly once; without one ready, make one for this query
    // (not through the pool: a concurrent query could take it first). A depends only on the seed
    // and m, which applyDelta() never changes.
    const { secret, base } = this.pool.shift() ?? (await this.makePrepared(1))[0]!;
    base[column] = (base[column]! + DELTA) >>> 0;
    let sum = 0;
    for (let c = 0; c < base.length; c++) sum = (sum + base[c]!) | 0;
    const state: QueryState = { index, crs, generation, hintSha256: crs.hint_sha256, secret, querySum: sum >>> 0, used: false };
    return { query: wordsToLittleEndian(base), state };
  }

  /** Wipes the secret of a query that will not be decoded (e.g. its request failed). */
  discard(state: QueryState): void {
    state.used = true;
    state.secret.fill(0);
  }

  /**
   * Decodes the server's answer to the query that produced `state`, with the
   * hint that query was made for: ESTATE when the client has moved to another
   * hint since (applyDelta), EBUSY while it is moving, EANSWER for an answer of
   * the wrong size, EINDEX when the index is not in the lane (reported only
   * now, after the round trip).
   */
  decode(answer: Uint8Array, state: QueryState): Uint8Array {
    const ans = this.checkAnswer(answer, state);
    const { m, entry_size: es, entries } = state.crs;
    const inLane = Number.isSafeInteger(state.index) && state.index >= 0 && state.index < entries;
    // Outside the lane: the same work on row 0, then EINDEX.
    const row = inLane ? Math.floor(state.index / m) : 0;
    const out = this.decodeRows(ans, state, row * es, es);
    if (!inLane) {
      out.fill(0);
      throw new PirClientError(
        `index ${state.index} is outside the lane (0..${entries - 1})${state.generation !== undefined ? ` of generation ${state.generation}` : ''}`,
        'EINDEX',
      );
    }
    return out;
  }

  /**
   * Decodes every record row of the queried column: entry_size * R bytes,
   * record row r's entry at offset r * entry_size. A SimplePIR answer is the
   * whole column; keyword lanes read all of it (a column is a bucket).
   */
  decodeColumn(answer: Uint8Array, state: QueryState): Uint8Array {
    const ans = this.checkAnswer(answer, state);
    return this.decodeRows(ans, state, 0, ans.length);
  }

  /** What both decodes check first: a fresh state, made for the hint held now, and an answer of the lane's size. */
  private checkAnswer(answer: Uint8Array, state: QueryState): Uint32Array {
    if (state.used) throw new PirClientError('this query state was already decoded; secrets are single use', 'ESTATE');
    if (this.rewriting) throw new PirClientError('the hint is being updated (applyDelta); decode after it finishes', 'EBUSY');
    if (state.hintSha256 !== this.params.hint_sha256) {
      throw new PirClientError(
        `the query was made for ${state.generation !== undefined ? `generation ${state.generation}` : 'another hint'}, but the client now holds the hint of ${this.generationId !== undefined ? `generation ${this.generationId}` : 'another one'}; query again`,
        'ESTATE',
      );
    }
    const expected = answerBytes(state.crs);
    if (answer.byteLength !== expected) {
      throw new PirClientError(`answer has ${answer.byteLength} bytes, expected ${expected}`, 'EANSWER');
    }
    return littleEndianWords(answer);
  }

  /** Bytes of answer rows t0 .. t0+count-1 (byte = round((ans[t] - 128 sum(qu) - H[t] s) / Delta) + 128); then the secret is wiped. */
  private decodeRows(ans: Uint32Array, state: QueryState, t0: number, count: number): Uint8Array {
    const { n } = state.crs;
    const s = state.secret;
    const h = this.hint;
    const out = new Uint8Array(count);
    const correction = Math.imul(PLAIN_MODULUS / 2, state.querySum);
    for (let k = 0; k < count; k++) {
      const t = t0 + k;
      const off = t * n;
      let hs = 0;
      for (let j = 0; j < n; j++) hs = (hs + Math.imul(h[off + j]!, s[j]!)) | 0;
      const v = (ans[t]! - correction - hs) | 0; // signed 32-bit
      out[k] = (Math.round(v / DELTA) + PLAIN_MODULUS / 2) & (PLAIN_MODULUS - 1);
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
   * thrown. With no changed entry and no new record row the hint stays as
   * it is, and it must hash to newCrs.hint_sha256 all the same. When the
   * client knows its generation, the delta must start there; the client
   * then belongs to the delta's end. Query states made before the update no
   * longer decode (ESTATE).
   */
  async applyDelta(delta: Uint8Array | LaneDelta, newCrs: unknown): Promise<void> {
    if (this.applying) throw new PirClientError('another applyDelta() is running', 'EBUSY');
    this.applying = true;
    try {
      await this.applyDeltaExclusive(delta, newCrs);
    } finally {
      this.applying = false;
    }
  }

  private async applyDeltaExclusive(delta: Uint8Array | LaneDelta, newCrs: unknown): Promise<void> {
    const fail: (message: string) => never = (message) => {
      throw new PirClientError(message, 'EDELTA');
    };
    let next: Crs;
    let d: LaneDelta;
    try {
      next = frozenCrs(newCrs);
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
    if (this.generationId !== undefined && d.from !== this.generationId) fail(`the delta starts from generation ${d.from}, not from this client's generation ${this.generationId}`);
    if (d.fromHintSha256 !== cur.hint_sha256 || d.fromEntries !== cur.entries) fail(`the delta starts from generation ${d.from}, not from this client's hint`);
    if (d.toHintSha256 !== next.hint_sha256 || d.toEntries !== next.entries) fail(`the delta ends at generation ${d.to}, which is not the one newCrs describes`);
    if (d.indices.length === 0 && next.R === cur.R) {
      // Nothing to add: the hint stays, so the hint we hold must be the one newCrs announces.
      if (next.hint_sha256 !== cur.hint_sha256) fail(`the delta changes no entry but newCrs announces another hint (${next.hint_sha256}); the old hint is kept`);
      const digest = await sha256Hex(wordsToLittleEndian(this.hint));
      if (digest !== next.hint_sha256) fail(`the hint held has sha256 ${digest}, not ${next.hint_sha256}`);
      this.params = next;
      this.generationId = d.to;
      return;
    }

    const { n, m, entry_size: es } = cur;
    const columns = [...new Set(d.indices.map((i) => i % m))].sort((a, b) => a - b);
    const rows = await matrixRows(this.stream, this.matrix, m, n, columns);
    const grow = next.R > cur.R;
    if (grow && !d.zeroRow) fail('the lane gains record rows but the delta has no zero row');
    // Growing needs a new buffer anyway (decoding goes on meanwhile); otherwise update in place and undo on mismatch.
    const target = grow ? growHint(this.hint, es, n, next.R, d.zeroRow!) : this.hint;
    this.rewriting = !grow;
    try {
      const apply = (sign: 1 | -1) => {
        for (let k = 0; k < d.indices.length; k++) {
          const i = d.indices[k]!;
          addEntryChange(target, n, es, m, i, d.oldValues.subarray(k * es, (k + 1) * es), d.newValues.subarray(k * es, (k + 1) * es), rows.get(i % m)!, sign);
        }
      };
      apply(1);
      let digest: string;
      try {
        digest = await sha256Hex(wordsToLittleEndian(target));
      } catch (err) {
        if (!grow) apply(-1);
        throw err;
      }
      if (digest !== next.hint_sha256) {
        if (!grow) apply(-1); // mod 2^32 arithmetic undoes exactly
        fail(`the updated hint has sha256 ${digest}, not newCrs.hint_sha256 ${next.hint_sha256}; the old hint is kept`);
      }
      // Hint, crs and generation change together, with no await in between.
      this.hint = target;
      this.params = next;
      this.generationId = d.to;
    } finally {
      this.rewriting = false;
    }
  }
}

/** A checked, frozen copy of a crs: neither the caller nor a user of `client.crs` can change it later. */
function frozenCrs(value: unknown): Crs {
  return Object.freeze({ ...parseCrs(value) });
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return bytesToHex(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

/** Rows of A for the given columns, keyed by column: from the cached matrix, a full pass, or one row at a time. */
async function matrixRows(stream: MatrixStream, cached: Uint32Array | undefined, m: number, n: number, columns: number[]): Promise<Map<number, Uint32Array>> {
  const out = new Map<number, Uint32Array>();
  if (cached) {
    for (const c of columns) out.set(c, cached.subarray(c * n, (c + 1) * n));
  } else if (columns.length > m / STREAM_ALL_FRACTION) {
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
