// Keyword lookups against a lanepir server, a round at a time (browser-safe).
//
// A round looks up keys in one or more keyword lanes of ONE generation: every
// lane's hint is brought to the same generation, and every query names it.
// With lane hiding (the default) each keyword lane the server serves gets
// k * d_lane queries whatever the keys are, k being the round's key count
// (padded up to a multiple of `padTo` when given): a key's own lane gets its
// d real queries, every other lane d queries for random columns. The server
// thus sees the same number and size of requests for a hot key, a cold key
// and an absent key.
import { PirClientError, fetchError } from './errors.js';
import { answerBytes } from './crs.js';
import { type KeywordQueries, type KeywordResult, decodeKeyword, dummyQueries, keywordQueries } from './keyword.js';
import { type HintCache, type HintSource, RemoteLane } from './remote.js';

export interface KeywordRoundOptions {
  /** Lane hiding: query every keyword lane the server serves with k * d queries (default true). */
  hide?: boolean;
  /** Pad the round's key count k up to a multiple of this (default: no padding). */
  padTo?: number;
}

export interface KeywordRoundResult {
  /** The generation every result is from, and its block. */
  generation: string;
  blockNumber: number;
  /** Per lane, one result per key, in the order given. */
  results: Record<string, KeywordResult[]>;
  /** Queries sent per lane (k * d_lane with hiding). */
  queries: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** Milliseconds: hint (refresh), query (prepare + build), network, decode. */
  timings: { hint: number; query: number; network: number; decode: number };
  hintSources: Record<string, HintSource>;
}

export interface KeywordReaderOptions {
  url: string;
  cache?: HintCache;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

interface InfoLane {
  layout?: string;
  bucket_choices?: number;
}

/** Attempts at one round when the generation moves under it (a lane refreshed, or the generation was retired). */
const ROUND_ATTEMPTS = 4;

export class KeywordReader {
  private readonly lanes = new Map<string, RemoteLane>();
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: KeywordReaderOptions) {
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The RemoteLane of a lane (hint, deltas, generation tracking). */
  lane(name: string): RemoteLane {
    let l = this.lanes.get(name);
    if (!l) this.lanes.set(name, (l = new RemoteLane(this.opts.url, name, this.opts.cache, this.fetchFn, this.opts.timeoutMs)));
    return l;
  }

  private async info(): Promise<{ generation: string | null; block_number?: number; batch_max: number; lanes: Record<string, InfoLane> }> {
    const url = new URL('/info', this.opts.url);
    const timeout = this.opts.timeoutMs ?? 30_000;
    let res: Response;
    try {
      res = await this.fetchFn(url, { signal: AbortSignal.timeout(timeout) });
    } catch (err) {
      throw fetchError(`GET ${url}`, err, timeout);
    }
    if (!res.ok) throw new PirClientError(`GET ${url}: HTTP ${res.status}`, `EHTTP_${res.status}`);
    return (await res.json()) as { generation: string | null; block_number?: number; batch_max: number; lanes: Record<string, InfoLane> };
  }

  /** One key, one lane (a round of one key; hiding applies). */
  async lookup(lane: string, key: Uint8Array, options: KeywordRoundOptions = {}): Promise<KeywordResult & { generation: string; blockNumber: number }> {
    const r = await this.lookupRound({ [lane]: [key] }, options);
    return { ...r.results[lane]![0]!, generation: r.generation, blockNumber: r.blockNumber };
  }

  /**
   * Looks up `keys[lane]` in each lane, all from one generation. Which lane
   * holds a key is the caller's knowledge (e.g. a public manifest); with
   * hiding the requests do not reveal it.
   */
  async lookupRound(keys: Record<string, Uint8Array[]>, options: KeywordRoundOptions = {}): Promise<KeywordRoundResult> {
    const hide = options.hide ?? true;
    const padTo = options.padTo;
    if (padTo !== undefined && (!Number.isSafeInteger(padTo) || padTo < 1)) throw new RangeError(`padTo must be a positive integer, got ${padTo}`);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.round(keys, hide, padTo);
      } catch (err) {
        const code = (err as { code?: string }).code;
        // The generation moved under the round: start it again on the current one.
        const moved = code === 'EGENERATION_GONE' || code === 'ESTATE' || code === 'EBUSY' || code === 'EGENERATION_SKEW';
        if (!moved || attempt >= ROUND_ATTEMPTS) throw err;
      }
    }
  }

  private async round(keys: Record<string, Uint8Array[]>, hide: boolean, padTo: number | undefined): Promise<KeywordRoundResult> {
    const info = await this.info();
    if (info.generation === null) throw new PirClientError('the server has no generation loaded yet', 'ENOT_READY');
    const keywordLanes = Object.keys(info.lanes).filter((l) => info.lanes[l]!.layout === 'keyword');
    for (const [lane, list] of Object.entries(keys)) {
      if (list.length === 0) continue;
      if (!info.lanes[lane]) throw new PirClientError(`the server does not serve a ${lane} lane`, 'ELANE');
      if (!keywordLanes.includes(lane)) throw new PirClientError(`the ${lane} lane is not a keyword lane`, 'EKEYWORD');
    }
    const total = Object.values(keys).reduce((n, l) => n + l.length, 0);
    const k = padTo === undefined ? total : Math.max(1, Math.ceil(total / padTo)) * padTo;
    const lanes = hide ? keywordLanes : keywordLanes.filter((l) => (keys[l]?.length ?? 0) > 0);
    const timings = { hint: 0, query: 0, network: 0, decode: 0 };

    // Every lane's hint at one generation.
    let t = now();
    const sessions = new Map<string, Awaited<ReturnType<RemoteLane['current']>>>();
    for (let tries = 0; ; tries++) {
      for (const l of lanes) sessions.set(l, await this.lane(l).current());
      const gens = new Set([...sessions.values()].map((s) => s.generation));
      if (gens.size <= 1) break;
      if (tries >= 2) throw new PirClientError(`the lanes' hints are at different generations (${[...gens].join(', ')})`, 'EGENERATION_SKEW');
    }
    timings.hint = now() - t;
    const generation = sessions.size > 0 ? [...sessions.values()][0]!.generation : info.generation;

    // Queries: each key's d real ones in its lane; with hiding, random columns fill every lane up to k * d.
    t = now();
    const perLane = new Map<string, { real: KeywordQueries[]; all: Uint8Array[] }>();
    for (const l of lanes) {
      const { client } = sessions.get(l)!;
      const d = client.crs.bucket_choices!;
      const list = keys[l] ?? [];
      const count = hide ? k * d : list.length * d;
      if (client.prepared < count) await client.prepare(count - client.prepared);
      const real: KeywordQueries[] = [];
      for (const key of list) real.push(await keywordQueries(client, key));
      const all = real.flatMap((q) => q.queries);
      all.push(...(await dummyQueries(client, count - all.length)));
      perLane.set(l, { real, all });
    }
    timings.query = now() - t;

    // One POST per batch_max queries, all lanes at once, all pinned to the generation.
    try {
      return await this.send(info, lanes, sessions, perLane, generation, keys, timings);
    } catch (err) {
      // Secrets of queries that will not be decoded are wiped now.
      for (const l of lanes) for (const q of perLane.get(l)!.real) for (const s of q.states) if (!s.used) sessions.get(l)!.client.discard(s);
      throw err;
    }
  }

  private async send(
    info: { batch_max: number; block_number?: number },
    lanes: string[],
    sessions: Map<string, Awaited<ReturnType<RemoteLane['current']>>>,
    perLane: Map<string, { real: KeywordQueries[]; all: Uint8Array[] }>,
    generation: string,
    keys: Record<string, Uint8Array[]>,
    timings: KeywordRoundResult['timings'],
  ): Promise<KeywordRoundResult> {
    let t = now();
    const batchMax = Math.max(1, info.batch_max);
    let bytesSent = 0;
    let bytesReceived = 0;
    let blockNumber = Number.NaN;
    const answers = new Map<string, Uint8Array[]>();
    await Promise.all(
      lanes.map(async (l) => {
        const { client } = sessions.get(l)!;
        const { all } = perLane.get(l)!;
        const size = answerBytes(client.crs);
        const posts: Promise<Awaited<ReturnType<RemoteLane['postQueries']>>>[] = [];
        for (let i = 0; i < all.length; i += batchMax) posts.push(this.lane(l).postQueries(generation, all.slice(i, i + batchMax), size));
        const replies = await Promise.all(posts);
        answers.set(l, replies.flatMap((r) => r.answers));
        for (const r of replies) {
          bytesSent += r.bytesSent;
          bytesReceived += r.bytesReceived;
          blockNumber = r.blockNumber;
        }
      }),
    );
    timings.network = now() - t;

    // Decode the real queries only (padding answers are dropped unread).
    t = now();
    const results: Record<string, KeywordResult[]> = {};
    const queries: Record<string, number> = {};
    for (const l of lanes) {
      const { client } = sessions.get(l)!;
      const { real, all } = perLane.get(l)!;
      const got = answers.get(l)!;
      let at = 0;
      results[l] = real.map((q) => {
        const r = decodeKeyword(client, q, got.slice(at, at + q.queries.length));
        at += q.queries.length;
        return r;
      });
      queries[l] = all.length;
    }
    timings.decode = now() - t;
    for (const l of Object.keys(keys)) results[l] ??= [];
    if (Number.isNaN(blockNumber)) blockNumber = Number(info.block_number ?? Number.NaN);
    return {
      generation,
      blockNumber,
      results,
      queries,
      bytesSent,
      bytesReceived,
      timings,
      hintSources: Object.fromEntries([...sessions].map(([l, s]) => [l, s.hintSource])),
    };
  }
}

function now(): number {
  return performance.now();
}
