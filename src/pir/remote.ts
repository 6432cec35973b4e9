// Private lookups against a lanepir server over HTTP (fetch only, so it runs
// in browsers too). Fetches the lane's crs and hint for the served
// generation, keeps them in a cache keyed by the hint's checksum, and retries
// once on a fresh generation when the server has retired the one it used.
import { PirClient, PirClientError } from './client.js';

export interface HintCache {
  get(key: string): Promise<Uint8Array | undefined>;
  set(key: string, value: Uint8Array): Promise<void>;
}

export interface LookupResult {
  entry: Uint8Array;
  generation: string;
  blockNumber: number;
  bytesSent: number;
  bytesReceived: number;
  /** Milliseconds per step: info, hint (0 when cached), setup, query, network, decode. */
  timings: Record<string, number>;
  hintCached: boolean;
}

interface LaneInfo {
  hint_sha256: string;
}

export class RemoteLane {
  private client: PirClient | undefined;
  private generation: string | undefined;

  constructor(
    readonly baseUrl: string,
    readonly lane: string,
    private readonly cache?: HintCache,
    private readonly fetchFn: typeof fetch = globalThis.fetch,
  ) {}

  private async json<T>(path: string): Promise<T> {
    const res = await this.fetchFn(new URL(path, this.baseUrl));
    if (!res.ok) throw await httpError(res);
    return (await res.json()) as T;
  }

  /** Loads crs and hint for the current generation unless already set up for it. */
  private async refresh(timings: Record<string, number>): Promise<boolean> {
    let t = now();
    const info = await this.json<{ generation: string | null; lanes: Record<string, LaneInfo> }>('/info');
    timings.info = now() - t;
    if (info.generation === null) throw new PirClientError('the server has no generation loaded yet', 'ENOT_READY');
    const lane = info.lanes[this.lane];
    if (!lane) throw new PirClientError(`the server does not serve a ${this.lane} lane`, 'ELANE');
    if (this.client && this.generation === info.generation) return true;
    const g = encodeURIComponent(info.generation);
    t = now();
    const crs = await this.json<Record<string, unknown>>(`/crs/${this.lane}?generation=${g}`);
    const key = `${this.lane}-${lane.hint_sha256}`;
    let hint = await this.cache?.get(key);
    const cached = hint !== undefined;
    if (!hint) {
      const res = await this.fetchFn(new URL(`/hint/${this.lane}?generation=${g}`, this.baseUrl));
      if (!res.ok) throw await httpError(res);
      hint = new Uint8Array(await res.arrayBuffer());
    }
    timings.hint = now() - t;
    t = now();
    this.client = await PirClient.create(crs, hint); // verifies the hint's sha256
    if (!cached) await this.cache?.set(key, hint);
    this.generation = info.generation;
    timings.setup = now() - t;
    return cached;
  }

  /** Privately retrieves entry `index`. */
  async lookup(index: number): Promise<LookupResult> {
    for (let attempt = 0; ; attempt++) {
      const timings: Record<string, number> = {};
      const hintCached = await this.refresh(timings);
      const client = this.client!;
      let t = now();
      const { query, state } = await client.query(index);
      timings.query = now() - t;
      t = now();
      const res = await this.fetchFn(new URL(`/query/${this.lane}?generation=${encodeURIComponent(this.generation!)}`, this.baseUrl), {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: query,
      });
      if (res.status === 410 && attempt === 0) {
        this.client = undefined; // the generation was retired: start over on the current one
        continue;
      }
      if (!res.ok) throw await httpError(res);
      const answer = new Uint8Array(await res.arrayBuffer());
      timings.network = now() - t;
      t = now();
      const entry = client.decode(answer, state);
      timings.decode = now() - t;
      return {
        entry,
        generation: res.headers.get('X-Lanepir-Generation') ?? this.generation!,
        blockNumber: Number(res.headers.get('X-Lanepir-Block')),
        bytesSent: query.byteLength,
        bytesReceived: answer.byteLength,
        timings,
        hintCached,
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
