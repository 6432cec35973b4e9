// Private lookups against a lanepir server over HTTP (fetch only, so it runs
// in browsers too). Keeps the lane's crs and hint for one generation; when
// the server moves on it fetches a delta (far smaller than the hint) and
// updates the hint in place, falling back to a full download only when the
// server no longer has the diffs or the lane's parameters changed. Retries
// on the current generation when the one it used was retired (410).
//
// Fail closed (docs/API.md, "What the client checks"): a hint is used only if
// it hashes to its crs's hint_sha256 and the crs is what /info publishes for
// that generation; a generation the client has seen must never change (the
// lane is refused for good if it does); every response must name the
// generation asked for. Whatever the index, the same requests go out: an
// index outside the lane is reported only after the query round.
import { PirClient } from './client.js';
import { type Crs, answerBytes, hintBytes, parseCrs } from './crs.js';
import { type LaneDelta, decodeDelta, generationBlockNumber, isGenerationId } from './delta.js';
import { PirClientError, fetchError } from './errors.js';

/** What a cache holds for one lane: the hint of one generation and its crs. */
export interface CachedHint {
  generation: string;
  crs: Crs;
  hint: Uint8Array;
}

/**
 * Where hints persist between sessions. Nothing loaded from it is trusted: a
 * cached hint is used only if it hashes to its crs and the crs matches what
 * the server publishes now; otherwise it is downloaded again.
 */
export interface HintCache {
  load(lane: string): Promise<CachedHint | undefined>;
  save(lane: string, value: CachedHint): Promise<void>;
}

export interface LookupResult {
  entry: Uint8Array;
  /** The generation that answered (the one the query was made for; the server's headers must agree). */
  generation: string;
  blockNumber: number;
  bytesSent: number;
  bytesReceived: number;
  /** Milliseconds per step: info, hint, setup, query, network, decode. */
  timings: Record<string, number>;
  /** How this lookup got its hint: 'memory', 'cache', 'delta' or 'download'. */
  hintSource: HintSource;
}

export type HintSource = 'memory' | 'cache' | 'delta' | 'download';

/** A lane's facts as a server publishes them: crs keys (docs/FORMAT.md) to values. */
type Facts = Map<string, string | number>;

/** The crs keys /info may publish for a lane, compared one by one with the crs. */
const CRS_KEYS = ['scheme', 'n', 'q_bits', 'p', 'sigma', 'm', 'R', 'entry_size', 'entries', 'seed', 'prg', 'params_version', 'hint_sha256'] as const;
/** Those /info must publish for the current generation. */
const REQUIRED_INFO_KEYS = ['m', 'R', 'entry_size', 'entries', 'params_version', 'hint_sha256'] as const;
/** Bodies of JSON answers (/info, /crs, errors) are small; anything larger is refused unread. */
const MAX_JSON_BYTES = 1 << 20;
/** Generations remembered per lane (a block every 12 s: about 14 hours); the oldest are forgotten first. */
const MAX_KNOWN_GENERATIONS = 4096;

/** What the client takes from GET /info. */
interface ServerInfo {
  generation: string;
  /** The current generation's facts for this lane. */
  lane: Facts;
  /** Facts for every generation /info lists (hint_sha256, params_version), this lane's. */
  listed: Map<string, Facts>;
}

export class RemoteLane {
  private client: PirClient | undefined;
  /** The refresh in progress: concurrent lookups share it instead of updating the hint twice. */
  private refreshing: Promise<HintSource> | undefined;
  /** Everything the server said about each generation of this lane in this session. */
  private readonly known = new Map<string, Facts>();
  /** Set for good once the server contradicted itself about a generation. */
  private refused: PirClientError | undefined;
  /** Hint bytes fetched so far, full downloads and deltas (for tests and reporting). */
  readonly stats = { downloads: 0, deltas: 0, hintBytes: 0, deltaBytes: 0 };

  constructor(
    readonly baseUrl: string,
    readonly lane: string,
    private readonly cache?: HintCache,
    private readonly fetchFn: typeof fetch = globalThis.fetch,
    /** Per-request time limit: a request that never answers is an error, not a hang. */
    private readonly timeoutMs = 30_000,
  ) {}

  /** The generation this client's hint belongs to. */
  get hintGeneration(): string | undefined {
    return this.client?.generation;
  }

  // ---- HTTP ----

  /** fetch with the time limit; a network failure becomes a PirClientError naming its cause. */
  private async send(path: string, init: RequestInit = {}): Promise<{ res: Response; what: string }> {
    const url = new URL(path, this.baseUrl);
    const what = `${init.method ?? 'GET'} ${url}`;
    try {
      return { res: await this.fetchFn(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) }), what };
    } catch (err) {
      throw fetchError(what, err, this.timeoutMs);
    }
  }

  /** A 2xx response (else the server's error), whose headers name `generation` when one is given. */
  private async get(path: string, generation?: string): Promise<{ res: Response; what: string }> {
    const r = await this.send(path);
    if (!r.res.ok) throw await httpError(r.res, r.what);
    if (generation !== undefined) await checkGenerationHeaders(r.res, r.what, generation);
    return r;
  }

  private async getJson(path: string, generation?: string): Promise<unknown> {
    const { res, what } = await this.get(path, generation);
    const bytes = await readBody(res, what, MAX_JSON_BYTES, this.timeoutMs);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new PirClientError(`${what}: the answer is not JSON`, 'EBAD_RESPONSE');
    }
  }

  private path(route: string, generation: string): string {
    return `/${route}/${encodeURIComponent(this.lane)}?generation=${encodeURIComponent(generation)}`;
  }

  // ---- what the server published ----

  /**
   * Records what the server says about a generation; a generation never
   * changes, so a contradiction refuses the lane for the rest of this
   * session (EGENERATION_CONFLICT): a server that moves a lane's parameters
   * under a known generation id is refused, not followed.
   */
  private learn(generation: string, facts: Facts, source: string): void {
    let seen = this.known.get(generation);
    if (!seen) {
      this.known.set(generation, (seen = new Map()));
      if (this.known.size > MAX_KNOWN_GENERATIONS) this.known.delete(this.known.keys().next().value!);
    }
    for (const [key, value] of facts) {
      const before = seen.get(key);
      if (before !== undefined && before !== value) {
        this.refused = new PirClientError(
          `the server's ${source} says generation ${generation} of the ${this.lane} lane has ${key} ${value}, but it said ${before} before; a generation never changes, so this lane is refused`,
          'EGENERATION_CONFLICT',
        );
        throw this.refused;
      }
    }
    for (const [key, value] of facts) seen.set(key, value);
  }

  /** GET /info, checked, with what it says recorded. */
  private async info(): Promise<ServerInfo> {
    const body = await this.getJson('/info');
    const bad = (why: string) => new PirClientError(`GET /info: ${why}`, 'EBAD_RESPONSE');
    if (!isObject(body)) throw bad('not a JSON object');
    if (body.generation === null) throw new PirClientError('the server has no generation loaded yet', 'ENOT_READY');
    if (!isGenerationId(body.generation)) throw bad(`invalid generation ${JSON.stringify(body.generation)}`);
    const generation = body.generation;
    if (body.block_number !== generationBlockNumber(generation)) throw bad(`block_number ${JSON.stringify(body.block_number)} is not generation ${generation}'s block`);
    if (!isObject(body.lanes)) throw bad('no lanes');
    const laneInfo = ownValue(body.lanes, this.lane);
    if (laneInfo === undefined) throw new PirClientError(`the server does not serve a ${this.lane} lane`, 'ELANE');
    if (!isObject(laneInfo)) throw bad(`lanes.${this.lane} is not an object`);
    const lane = factsOf(laneInfo);
    for (const key of REQUIRED_INFO_KEYS) if (!lane.has(key)) throw bad(`lanes.${this.lane}.${key} is missing`);
    // Sizes /info derives must follow from the lane's parameters.
    const m = lane.get('m') as number;
    const es = lane.get('entry_size') as number;
    const R = lane.get('R') as number;
    if (laneInfo.query_bytes !== undefined && laneInfo.query_bytes !== 4 * m) throw bad(`query_bytes ${JSON.stringify(laneInfo.query_bytes)} is not 4 m`);
    if (laneInfo.answer_bytes !== undefined && laneInfo.answer_bytes !== 4 * es * R) throw bad(`answer_bytes ${JSON.stringify(laneInfo.answer_bytes)} is not 4 entry_size R`);

    const listed = new Map<string, Facts>();
    if (Array.isArray(body.generations)) {
      for (const g of body.generations) {
        if (!isObject(g) || !isGenerationId(g.generation) || !isObject(g.lanes)) throw bad('invalid generations list');
        const l = ownValue(g.lanes, this.lane);
        if (l === undefined) continue;
        if (!isObject(l)) throw bad(`generations: lanes.${this.lane} is not an object`);
        listed.set(g.generation, factsOf(l));
      }
    }
    this.learn(generation, lane, '/info');
    for (const [g, facts] of listed) this.learn(g, facts, '/info');
    return { generation, lane, listed };
  }

  /** The crs of `generation`, which must be what /info publishes for it and what we saw before. */
  private async fetchCrs(generation: string, lane: Facts): Promise<Crs> {
    const body = await this.getJson(this.path('crs', generation), generation);
    let crs: Crs;
    try {
      crs = parseCrs(body);
    } catch (err) {
      throw new PirClientError(`the server's crs of generation ${generation} is invalid: ${(err as Error).message}`, 'EBAD_RESPONSE');
    }
    const mismatch = disagreement(crs, lane);
    if (mismatch) {
      throw new PirClientError(`the server's crs of generation ${generation} does not match its /info (${mismatch}); refusing it`, 'ECRS_MISMATCH');
    }
    this.learn(generation, crsFacts(crs), 'crs');
    return crs;
  }

  // ---- the hint ----

  /** Brings the hint to the server's current generation (one refresh at a time); returns how. */
  private refresh(timings: Record<string, number>): Promise<HintSource> {
    if (this.refused) return Promise.reject(this.refused);
    this.refreshing ??= this.doRefresh(timings).finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async doRefresh(timings: Record<string, number>): Promise<HintSource> {
    let t = now();
    const info = await this.info();
    timings.info = now() - t;
    const target = info.generation;
    const current = this.client;
    if (current?.generation === target) {
      // learn() already holds this crs and /info to each other; this guards the invariant.
      const mismatch = disagreement(current.crs, info.lane);
      if (mismatch) throw new PirClientError(`the hint held for generation ${target} does not match /info (${mismatch})`, 'ECRS_MISMATCH');
      return 'memory';
    }

    t = now();
    let source: HintSource | undefined;
    if (!this.client) {
      this.client = await this.fromCache(info);
      if (this.client?.generation === target) source = 'cache';
    }
    let crs: Crs | undefined;
    if (!source && this.client && (this.client.crs.params_version ?? 1) === info.lane.get('params_version')) {
      crs = await this.fetchCrs(target, info.lane);
      if (await this.updateByDelta(target, crs)) source = 'delta';
    }
    if (!source) {
      await this.download(target, crs ?? (await this.fetchCrs(target, info.lane)));
      source = 'download';
    }
    timings.hint = now() - t;
    if (source === 'delta' || source === 'download') {
      t = now();
      await this.cache?.save(this.lane, { generation: target, crs: this.client!.crs, hint: this.client!.exportHint() });
      timings.cache = now() - t;
    }
    return source;
  }

  /**
   * A client from the cache, if the cached hint hashes to its crs and the crs
   * agrees with what the server publishes now (for the current generation:
   * everything /info shows; for one /info lists: hint_sha256 and
   * params_version) and with what it said before. Otherwise nothing: the
   * cache may hold another data set's hint under the same URL and id.
   */
  private async fromCache(info: ServerInfo): Promise<PirClient | undefined> {
    let cached: CachedHint | undefined;
    try {
      cached = await this.cache?.load(this.lane);
    } catch {
      return undefined;
    }
    if (!cached || !isGenerationId(cached.generation) || !(cached.hint instanceof Uint8Array)) return undefined;
    let crs: Crs;
    try {
      crs = parseCrs(cached.crs);
    } catch {
      return undefined;
    }
    const published = cached.generation === info.generation ? info.lane : info.listed.get(cached.generation);
    if (published && disagreement(crs, published)) return undefined;
    const seen = this.known.get(cached.generation);
    if (seen && disagreement(crs, seen)) return undefined;
    try {
      return await PirClient.create(crs, cached.hint, { generation: cached.generation }); // checks the hint's sha256
    } catch {
      return undefined;
    }
  }

  /** Applies the server's delta from our generation to `target` (whose crs is `crs`); false when a full download is needed. */
  private async updateByDelta(target: string, crs: Crs): Promise<boolean> {
    const client = this.client!;
    const from = client.generation!;
    const { res, what } = await this.send(`/delta/${encodeURIComponent(this.lane)}?from=${encodeURIComponent(from)}&to=${encodeURIComponent(target)}`);
    if (res.status === 410 || res.status === 404) {
      await res.body?.cancel().catch(() => undefined);
      return false;
    }
    if (!res.ok) throw await httpError(res, what);
    await checkGenerationHeaders(res, what, target);
    let bytes: Uint8Array;
    try {
      // A delta larger than the hint is not worth it: download the hint instead.
      bytes = await readBody(res, what, hintBytes(crs), this.timeoutMs);
    } catch (err) {
      if ((err as { code?: string }).code === 'ETOO_LARGE') return false;
      throw err;
    }
    let delta: LaneDelta;
    try {
      delta = decodeDelta(bytes);
    } catch {
      return false; // not a delta we can use; the download is checked end to end
    }
    if (delta.from !== from || delta.to !== target) return false;
    try {
      await client.applyDelta(delta, crs); // checks the result against crs.hint_sha256
    } catch (err) {
      if ((err as { code?: string }).code === 'EDELTA') return false;
      throw err;
    }
    this.stats.deltas++;
    this.stats.deltaBytes += bytes.byteLength;
    return true;
  }

  private async download(target: string, crs: Crs): Promise<void> {
    const { res, what } = await this.get(this.path('hint', target), target);
    const hint = await readBody(res, what, hintBytes(crs), this.timeoutMs);
    this.client = await PirClient.create(crs, hint, { generation: target }); // checks the hint's sha256
    this.stats.downloads++;
    this.stats.hintBytes += hint.byteLength;
  }

  // ---- several queries at once (keyword lookups) ----

  /**
   * Brings the hint to the server's current generation and returns the client
   * to make queries with and its generation, taken together (another lookup
   * may refresh meanwhile). For callers that build their own queries: keyword
   * lookups (src/pir/keyword-remote.ts), whose query states then carry the
   * generation to send them to.
   */
  async current(): Promise<{ client: PirClient; generation: string; hintSource: HintSource; timings: Record<string, number> }> {
    const timings: Record<string, number> = {};
    const hintSource = await this.refresh(timings);
    const client = this.client!;
    return { client, generation: client.generation!, hintSource, timings };
  }

  /**
   * Sends 1..batch_max queries in one POST to `generation` and returns the
   * answers in order (each `answerSize` bytes); the response must name that
   * generation. A generation the server no longer holds is EGENERATION_GONE.
   */
  async postQueries(generation: string, queries: Uint8Array[], answerSize: number): Promise<{ answers: Uint8Array[]; generation: string; blockNumber: number; bytesSent: number; bytesReceived: number }> {
    const body = new Uint8Array(queries.reduce((n, q) => n + q.byteLength, 0));
    let at = 0;
    for (const q of queries) {
      body.set(q, at);
      at += q.byteLength;
    }
    const post = () => this.send(this.path('query', generation), { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body });
    let sent: { res: Response; what: string };
    try {
      sent = await post();
    } catch (err) {
      // A kept-alive connection the server closed while the client was busy making queries fails
      // before the request is read; sending the same query bytes again reveals nothing new.
      if ((err as { code?: string }).code !== 'ENETWORK') throw err;
      sent = await post();
    }
    const { res, what } = sent;
    if (!res.ok) throw await httpError(res, what);
    await checkGenerationHeaders(res, what, generation);
    const bytes = await readBody(res, what, answerSize * queries.length, this.timeoutMs);
    if (bytes.byteLength !== answerSize * queries.length) {
      throw new PirClientError(`${what}: ${bytes.byteLength} bytes for ${queries.length} answers of ${answerSize} bytes`, 'EANSWER');
    }
    return {
      answers: queries.map((_, k) => bytes.subarray(k * answerSize, (k + 1) * answerSize)),
      generation,
      blockNumber: generationBlockNumber(generation),
      bytesSent: body.byteLength,
      bytesReceived: bytes.byteLength,
    };
  }

  // ---- lookups ----

  /**
   * Privately retrieves entry `index`. The requests are the same whatever the
   * index; one outside the lane is reported (EINDEX) after the query round.
   */
  async lookup(index: number): Promise<LookupResult> {
    for (let attempt = 0; ; attempt++) {
      const timings: Record<string, number> = {};
      const hintSource = await this.refresh(timings);
      const client = this.client!;
      let t = now();
      // The state holds the crs, hint sha256 and generation the query is made for, taken
      // together: the query goes to that generation and decodes with that hint or not at all.
      const { query, state } = await client.query(index);
      timings.query = now() - t;
      const generation = state.generation!;
      t = now();
      let answer: Uint8Array;
      try {
        const { res, what } = await this.send(this.path('query', generation), {
          method: 'POST',
          headers: { 'Content-Type': 'application/octet-stream' },
          body: query,
        });
        if (res.status === 410 && attempt < 3) {
          // Retired meanwhile: refresh to the current generation and ask again.
          await res.body?.cancel().catch(() => undefined);
          client.discard(state);
          continue;
        }
        if (!res.ok) throw await httpError(res, what);
        await checkGenerationHeaders(res, what, generation);
        answer = await readBody(res, what, answerBytes(state.crs), this.timeoutMs);
      } catch (err) {
        client.discard(state);
        throw err;
      }
      timings.network = now() - t;
      t = now();
      let entry: Uint8Array;
      try {
        entry = client.decode(answer, state);
      } catch (err) {
        client.discard(state);
        // A concurrent lookup moved this client's hint by a delta meanwhile: ask again.
        const code = (err as { code?: string }).code;
        if ((code === 'ESTATE' || code === 'EBUSY') && attempt < 3) continue;
        throw err;
      }
      timings.decode = now() - t;
      return {
        entry,
        generation,
        blockNumber: generationBlockNumber(generation),
        bytesSent: query.byteLength,
        bytesReceived: answer.byteLength,
        timings,
        hintSource,
      };
    }
  }
}

// ---- helpers ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** obj[key] only when it is obj's own property (a lane named "constructor" finds nothing). */
function ownValue(obj: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

/** The crs keys an object publishes, with scalar values. */
function factsOf(obj: Record<string, unknown>): Facts {
  const facts: Facts = new Map();
  for (const key of CRS_KEYS) {
    const v = ownValue(obj, key);
    if (typeof v === 'string' || typeof v === 'number') facts.set(key, v);
    else if (v !== undefined) facts.set(key, JSON.stringify(v)); // compared, never equal to a valid crs value
  }
  return facts;
}

function crsFacts(crs: Crs): Facts {
  return factsOf({ ...crs, params_version: crs.params_version ?? 1 });
}

/** The first key where the crs and the published facts differ, as text; '' when they agree. */
function disagreement(crs: Crs, published: Facts): string {
  const mine = crsFacts(crs);
  for (const [key, value] of published) {
    if (mine.get(key) !== value) return `${key}: ${JSON.stringify(mine.get(key))} here, ${JSON.stringify(value)} published`;
  }
  return '';
}

/** The response must name the generation it was asked for, and that generation's block. */
async function checkGenerationHeaders(res: Response, what: string, generation: string): Promise<void> {
  const g = res.headers.get('X-Lanepir-Generation');
  const b = res.headers.get('X-Lanepir-Block');
  let why = '';
  if (g !== generation) why = `X-Lanepir-Generation is ${JSON.stringify(g)}, not ${generation}`;
  else if (b !== String(generationBlockNumber(generation))) why = `X-Lanepir-Block is ${JSON.stringify(b)}, not ${generationBlockNumber(generation)}`;
  if (why) {
    await res.body?.cancel().catch(() => undefined);
    throw new PirClientError(`${what}: the answer is not for the generation asked for (${why})`, 'EBAD_RESPONSE');
  }
}

/** The body, at most `limit` bytes (ETOO_LARGE beyond, checked before reading when declared). */
async function readBody(res: Response, what: string, limit: number, timeoutMs: number): Promise<Uint8Array> {
  const tooLarge = (size: string) => new PirClientError(`${what}: the answer has ${size} bytes, more than the ${limit} expected`, 'ETOO_LARGE');
  const declared = res.headers.get('Content-Length');
  if (declared !== null && Number(declared) > limit) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge(declared);
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge(`over ${limit}`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof PirClientError) throw err;
    throw fetchError(`${what} (reading the answer)`, err, timeoutMs);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** The server's error, its text bounded and stripped of control characters (it ends up on terminals). */
async function httpError(res: Response, what: string): Promise<PirClientError> {
  let body: { error?: unknown; code?: unknown } = {};
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(await readBody(res, what, 64 * 1024, 0)));
    if (isObject(parsed)) body = parsed;
  } catch {
    // not JSON, or too long: the status says enough
  }
  const text = typeof body.error === 'string' ? printable(body.error) : '';
  const code = typeof body.code === 'string' && /^E[A-Z0-9_]{1,40}$/.test(body.code) ? body.code : `EHTTP_${res.status}`;
  return new PirClientError(`${what}: HTTP ${res.status}${text ? `: ${text}` : ''}`, code);
}

function printable(s: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/g, ' ');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function now(): number {
  return performance.now();
}
