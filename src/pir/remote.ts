// Private lookups against a lanepir server over HTTP (fetch only, so it runs
// in browsers too). Keeps the lane's crs and hint for one generation; when
// the server moves on it fetches a delta (far smaller than the hint) and
// updates the hint in place, falling back to a full download only when the
// server no longer has the diffs or the lane's parameters changed. Retries
// once on the current generation when the one it used was retired (410).
import { PirClient, PirClientError } from './client.js';
import { type Crs } from './crs.js';

/** What a cache holds for one lane: the hint of one generation and its crs. */
export interface CachedHint {
  generation: string;
  crs: Crs;
  hint: Uint8Array;
}

export interface HintCache {
  load(lane: string): Promise<CachedHint | undefined>;
  save(lane: string, value: CachedHint): Promise<void>;
}

export interface LookupResult {
  entry: Uint8Array;
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

interface InfoLane {
  hint_sha256: string;
  params_version: number;
}

export class RemoteLane {
  private client: PirClient | undefined;
  private generation: string | undefined;
  /** The refresh in progress: concurrent lookups share it instead of updating the hint twice. */
  private refreshing: Promise<HintSource> | undefined;
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

  private fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return this.fetchFn(new URL(path, this.baseUrl), { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
  }

  private async get(path: string): Promise<Response> {
    const res = await this.fetch(path);
    if (!res.ok) throw await httpError(res);
    return res;
  }

  /** The generation this client's hint belongs to. */
  get hintGeneration(): string | undefined {
    return this.generation;
  }

  /** Brings the hint to the server's current generation (one refresh at a time); returns how. */
  private refresh(timings: Record<string, number>): Promise<HintSource> {
    this.refreshing ??= this.doRefresh(timings).finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async doRefresh(timings: Record<string, number>): Promise<HintSource> {
    let t = now();
    const info = (await (await this.get('/info')).json()) as { generation: string | null; lanes: Record<string, InfoLane> };
    timings.info = now() - t;
    if (info.generation === null) throw new PirClientError('the server has no generation loaded yet', 'ENOT_READY');
    const lane = info.lanes[this.lane];
    if (!lane) throw new PirClientError(`the server does not serve a ${this.lane} lane`, 'ELANE');
    const target = info.generation;
    if (this.client && this.generation === target) return 'memory';

    t = now();
    let source: HintSource = 'memory';
    if (!this.client) {
      const cached = await this.cache?.load(this.lane);
      if (cached) {
        this.client = await PirClient.create(cached.crs, cached.hint).catch(() => undefined);
        this.generation = this.client ? cached.generation : undefined;
        source = 'cache';
      }
    }
    if (this.client && this.generation !== target) {
      source = (await this.updateByDelta(target, lane)) ? 'delta' : 'download';
    } else if (!this.client) {
      source = 'download';
    }
    if (source === 'download') await this.download(target);
    timings.hint = now() - t;
    if (source === 'delta' || source === 'download') {
      t = now();
      await this.cache?.save(this.lane, { generation: target, crs: this.client!.crs, hint: this.client!.exportHint() });
      timings.cache = now() - t;
    }
    return source;
  }

  /** Applies the server's delta from our generation to `target`; false when a full download is needed. */
  private async updateByDelta(target: string, lane: InfoLane): Promise<boolean> {
    const client = this.client!;
    if ((client.crs.params_version ?? 1) !== lane.params_version) return false;
    const g = encodeURIComponent(target);
    const res = await this.fetch(`/delta/${this.lane}?from=${encodeURIComponent(this.generation!)}&to=${g}`);
    if (res.status === 410 || res.status === 404) return false;
    if (!res.ok) throw await httpError(res);
    const delta = new Uint8Array(await res.arrayBuffer());
    const crs = (await (await this.get(`/crs/${this.lane}?generation=${g}`)).json()) as Crs;
    try {
      await client.applyDelta(delta, crs); // checks the result against crs.hint_sha256
    } catch (err) {
      if ((err as { code?: string }).code === 'EDELTA') return false;
      throw err;
    }
    this.generation = target;
    this.stats.deltas++;
    this.stats.deltaBytes += delta.byteLength;
    return true;
  }

  private async download(target: string): Promise<void> {
    const g = encodeURIComponent(target);
    const crs = await (await this.get(`/crs/${this.lane}?generation=${g}`)).json();
    const hint = new Uint8Array(await (await this.get(`/hint/${this.lane}?generation=${g}`)).arrayBuffer());
    this.client = await PirClient.create(crs, hint); // verifies the hint's sha256
    this.generation = target;
    this.stats.downloads++;
    this.stats.hintBytes += hint.byteLength;
  }

  /**
   * Brings the hint to the server's current generation and returns the client
   * and generation to make queries with, taken together (another lookup may
   * refresh meanwhile). For callers that build their own queries (keyword
   * lookups, src/pir/keyword-remote.ts).
   */
  async current(): Promise<{ client: PirClient; generation: string; hintSource: HintSource; timings: Record<string, number> }> {
    const timings: Record<string, number> = {};
    const hintSource = await this.refresh(timings);
    return { client: this.client!, generation: this.generation!, hintSource, timings };
  }

  /**
   * Sends 1..batch_max queries in one POST pinned to `generation` and returns
   * the answers in order (each `answerSize` bytes). A generation the server
   * no longer holds is PirClientError EGENERATION_GONE.
   */
  async postQueries(generation: string, queries: Uint8Array[], answerSize: number): Promise<{ answers: Uint8Array[]; generation: string; blockNumber: number; bytesSent: number; bytesReceived: number }> {
    const body = new Uint8Array(queries.reduce((n, q) => n + q.byteLength, 0));
    let at = 0;
    for (const q of queries) {
      body.set(q, at);
      at += q.byteLength;
    }
    const post = () =>
      this.fetch(`/query/${this.lane}?generation=${encodeURIComponent(generation)}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body,
      });
    let res: Response;
    try {
      res = await post();
    } catch (err) {
      // A kept-alive connection the server closed while the client was busy making queries fails
      // the request before it is read; sending the same query bytes again reveals nothing new.
      if (!(err instanceof TypeError)) throw err;
      res = await post();
    }
    if (!res.ok) throw await httpError(res);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength !== answerSize * queries.length) {
      throw new PirClientError(`the server sent ${bytes.byteLength} bytes for ${queries.length} queries of ${answerSize}-byte answers`, 'EANSWER');
    }
    const answered = res.headers.get('X-Lanepir-Generation');
    if (answered !== generation) throw new PirClientError(`asked generation ${generation}, answered from ${answered}`, 'EANSWER');
    return {
      answers: queries.map((_, k) => bytes.subarray(k * answerSize, (k + 1) * answerSize)),
      generation: answered,
      blockNumber: Number(res.headers.get('X-Lanepir-Block')),
      bytesSent: body.byteLength,
      bytesReceived: bytes.byteLength,
    };
  }

  /** Privately retrieves entry `index`. */
  async lookup(index: number): Promise<LookupResult> {
    for (let attempt = 0; ; attempt++) {
      const timings: Record<string, number> = {};
      const hintSource = await this.refresh(timings);
      // The client and its generation, taken together: another lookup may refresh meanwhile.
      const client = this.client!;
      const generation = this.generation!;
      let t = now();
      const { query, state } = await client.query(index);
      timings.query = now() - t;
      t = now();
      const res = await this.fetch(`/query/${this.lane}?generation=${encodeURIComponent(generation)}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: query,
      });
      if (res.status === 410 && attempt < 3) continue; // retired meanwhile: refresh to the current one
      if (!res.ok) throw await httpError(res);
      const answer = new Uint8Array(await res.arrayBuffer());
      timings.network = now() - t;
      t = now();
      let entry: Uint8Array;
      try {
        entry = client.decode(answer, state);
      } catch (err) {
        // A concurrent lookup updated this client's hint by delta meanwhile: ask again.
        const code = (err as { code?: string }).code;
        if ((code === 'ESTATE' || code === 'EBUSY') && attempt < 3) continue;
        throw err;
      }
      timings.decode = now() - t;
      return {
        entry,
        generation: res.headers.get('X-Lanepir-Generation') ?? generation,
        blockNumber: Number(res.headers.get('X-Lanepir-Block')),
        bytesSent: query.byteLength,
        bytesReceived: answer.byteLength,
        timings,
        hintSource,
      };
    }
  }
}

async function httpError(res: Response): Promise<PirClientError> {
  let body: { error?: string; code?: string } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // not JSON
  }
  return new PirClientError(`${res.url}: HTTP ${res.status}${body.error ? `: ${body.error}` : ''}`, body.code ?? `EHTTP_${res.status}`);
}

function now(): number {
  return performance.now();
}
