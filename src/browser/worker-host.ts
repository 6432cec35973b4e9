// The worker side of the browser client: runs the whole lanepir client (hint
// downloads and deltas, A's expansion, query generation, decoding) off the
// page's main thread, so a lookup never freezes the page. Started by the
// worker script (lanepir-worker.js) with serveLanepirWorker(self); anything
// with postMessage and message events works (a MessagePort in tests).
//
// Calls run one at a time, in order: a call's report (bytes, hint source)
// is then its own, and a wallet batches what it reads into one round anyway.
import { PirClientError } from '../pir/errors.js';
import { type HintCache, RemoteLane } from '../pir/remote.js';
import { IndexedDbHintCache } from './idb-cache.js';
import { type CallReport, type SerializedError, type WorkerClientOptions, type WorkerRequest, type WorkerResponse, WORKER_PROTOCOL } from './protocol.js';

/** What the worker posts to and receives from (a DedicatedWorkerGlobalScope or a MessagePort). */
export interface MessageEndpoint {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
}

/** A call's answer and the buffers to move (not copy) to the page. */
export interface Answer {
  value: unknown;
  transfer?: Transferable[];
}

/** The client a worker holds: one per worker, for one server. */
export class WorkerSession {
  readonly cache: IndexedDbHintCache | undefined;
  private readonly lanes = new Map<string, RemoteLane>();

  constructor(readonly options: WorkerClientOptions) {
    if (typeof options?.url !== 'string') throw new PirClientError('open needs { url }', 'EPARAMS');
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new PirClientError(`invalid server URL ${JSON.stringify(options.url)}`, 'EPARAMS');
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new PirClientError(`the server URL must be http(s), got ${base.protocol}`, 'EPARAMS');
    const wantCache = (options.cache ?? 'indexeddb') === 'indexeddb';
    this.cache = wantCache && IndexedDbHintCache.available() ? new IndexedDbHintCache({ namespace: base.href, ...(options.cacheName ? { dbName: options.cacheName } : {}) }) : undefined;
  }

  get hintCache(): HintCache | undefined {
    return this.cache;
  }

  /** The RemoteLane of an index lane (one per lane, kept: its hint and A stay in memory). */
  lane(name: string): RemoteLane {
    let l = this.lanes.get(name);
    if (!l) {
      l = new RemoteLane(this.options.url, name, this.cache, globalThis.fetch.bind(globalThis), this.options.timeoutMs ?? 30_000, undefined, {
        cacheMatrix: this.options.cacheMatrix ?? false,
      });
      this.lanes.set(name, l);
    }
    return l;
  }

  /** Resolves when background work is done (IndexedDB writes here; subclasses add theirs). */
  async settle(): Promise<void> {
    await this.cache?.flush();
  }

  /** The round of keyword lookups the last call made, for its report (StateWorkerSession). */
  takeRound(): CallReport['round'] {
    return undefined;
  }

  /** Every RemoteLane in use, for hint byte counts. */
  remoteLanes(): RemoteLane[] {
    return [...this.lanes.values()];
  }

  /** Runs `method`; each method checks its own arguments (they come from another thread, untyped). */
  async call(method: string, args: unknown[]): Promise<Answer> {
    switch (method) {
      case 'lookup': {
        const [lane, index] = args;
        if (typeof lane !== 'string') throw new PirClientError('lookup(lane, index): lane must be a string', 'EPARAMS');
        if (typeof index !== 'number') throw new PirClientError('lookup(lane, index): index must be a number', 'EPARAMS');
        const r = await this.lane(lane).lookup(index);
        return { value: r, transfer: [r.entry.buffer] };
      }
      case 'clearCache':
        await this.cache?.clear();
        return { value: null };
      case 'settle':
        // Waits for the work done behind the lookups (hint writes to IndexedDB; queries prepared ahead).
        await this.settle();
        return { value: this.cache?.lastError ? this.cache.lastError.message : null };
      default:
        throw new PirClientError(`unknown method ${JSON.stringify(method)}`, 'EPARAMS');
    }
  }
}

export function serializeError(err: unknown): SerializedError {
  const e = err as { name?: unknown; message?: unknown; code?: unknown; data?: unknown };
  const out: SerializedError = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: typeof e?.code === 'string' ? e.code : 'EINTERNAL',
  };
  if (typeof e?.code === 'number') {
    out.rpcCode = e.code;
    // EIP-1193 errors carry {code: 'E…'} data; anything else is dropped rather than risk a clone failure.
    const inner = (e.data as { code?: unknown } | undefined)?.code;
    if (typeof inner === 'string') {
      out.data = { code: inner };
      out.code = inner;
    }
  }
  return out;
}

function hintTotals(session: WorkerSession | undefined) {
  const t = { hintBytes: 0, deltaBytes: 0, downloads: 0, deltas: 0, cacheSaves: session?.cache?.saves ?? 0 };
  for (const l of session?.remoteLanes() ?? []) {
    t.hintBytes += l.stats.hintBytes;
    t.deltaBytes += l.stats.deltaBytes;
    t.downloads += l.stats.downloads;
    t.deltas += l.stats.deltas;
  }
  return t;
}

/**
 * Answers the page's requests on `scope` until the worker is terminated.
 * `makeSession` lets a bundle add methods (the Ethereum state client).
 */
export function serveLanepirWorker(scope: MessageEndpoint, makeSession: (options: WorkerClientOptions) => WorkerSession = (o) => new WorkerSession(o)): void {
  let session: WorkerSession | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const answer = (res: WorkerResponse, transfer: Transferable[] = []) => scope.postMessage(res, transfer);

  async function handle(req: WorkerRequest): Promise<void> {
    const started = performance.now();
    const before = hintTotals(session);
    try {
      let result: Answer;
      if (req.op === 'open') {
        if (session) throw new PirClientError('this worker already has a client; start another worker for another server', 'ESTATE');
        session = makeSession(req.options);
        result = { value: { protocol: WORKER_PROTOCOL, cache: session.cache ? 'indexeddb' : 'none' } };
      } else if (req.op === 'call') {
        if (!session) throw new PirClientError('open the worker client first', 'ESTATE');
        if (typeof req.method !== 'string' || !Array.isArray(req.args)) throw new PirClientError('a call needs a method and args', 'EPARAMS');
        result = await session.call(req.method, req.args);
      } else {
        throw new PirClientError(`unknown operation ${JSON.stringify((req as { op?: unknown }).op)}`, 'EPARAMS');
      }
      const after = hintTotals(session);
      const round = session?.takeRound();
      const report: CallReport = {
        ...(round ? { round } : {}),
        ms: performance.now() - started,
        hintBytes: after.hintBytes - before.hintBytes,
        deltaBytes: after.deltaBytes - before.deltaBytes,
        downloads: after.downloads - before.downloads,
        deltas: after.deltas - before.deltas,
        cacheSaves: after.cacheSaves - before.cacheSaves,
      };
      answer({ id: req.id, ok: true, value: result.value, report }, result.transfer);
    } catch (err) {
      answer({ id: req.id, ok: false, error: serializeError(err) });
    }
  }

  scope.addEventListener('message', (event: MessageEvent) => {
    const req = event.data as WorkerRequest;
    if (typeof req !== 'object' || req === null || typeof req.id !== 'number') return; // not ours
    if (req.v !== WORKER_PROTOCOL) {
      answer({ id: req.id, ok: false, error: { name: 'PirClientError', message: `the page speaks worker protocol ${String(req.v)}, this worker ${WORKER_PROTOCOL}: load both from one build`, code: 'EPROTOCOL' } });
      return;
    }
    // One call at a time, in order of arrival.
    queue = queue.then(() => handle(req));
  });
}
