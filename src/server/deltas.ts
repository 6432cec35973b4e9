// GET /delta's engine, one per server process, bounded in CPU and memory
// whatever clients ask for:
// - which generations a delta can start from is known from the target's
//   chain index (diff headers only, built once per target generation and
//   lane): any other `from` is a 410 at the cost of a map lookup;
// - the chain index stops where the diffs add up to more than a budget
//   (DELTA_INPUT_RATIO x the hint, at most DELTA_INPUT_MAX bytes) or span
//   DELTA_MAX_STEPS generations, so no merge reads more than that;
// - a merged delta larger than the hint it replaces is refused (410
//   EDELTA_TOO_LARGE: downloading the hint is then the cheaper answer);
// - merges run on worker threads, at most `maxConcurrent` at once, with at
//   most `maxQueued` more waiting for a slot; a request that needs one more
//   is answered 503 at once;
// - identical requests share one merge, and answers (and refusals) are kept
//   in an LRU cache bounded by bytes.
import { Worker } from 'node:worker_threads';
import { LRUCache } from 'lru-cache';
import { hintBytes } from '../pir/crs.js';
import { type GenerationInfo } from '../store/generation.js';
import { type LaneName, compareGenerationIds } from '../store/layout.js';
import { type ChainIndex, DeltaGoneError, emptyDelta, notAnAncestor, readChainIndex } from './delta.js';
import { type MergeJob, type MergeReply } from './delta-worker.js';

/** Diffs a merge may read, as a multiple of the hint's size: beyond it the hint is the cheaper answer. */
export const DELTA_INPUT_RATIO = 4;
/** ... and at most this many bytes, whatever the hint's size. */
export const DELTA_INPUT_MAX = 64 * 2 ** 20;
/**
 * Generations a delta spans at most (4x the diff history a generation
 * carries): the chain index of each new generation reads at most this many
 * diff headers, however long the chain on disk.
 */
export const DELTA_MAX_STEPS = 256;
/** Chain indexes kept (each is a few bytes per step). */
const INDEXES_KEPT = 64;
/** A refusal's weight in the cache. */
const REFUSAL_BYTES = 256;

/** Every merge slot is busy and the queue is full (HTTP 503 with Retry-After). */
export class DeltaBusyError extends Error {
  readonly code = 'EDELTA_BUSY';
  constructor(readonly limit: number) {
    super(`${limit} delta merges are running or waiting; retry shortly`);
    this.name = 'DeltaBusyError';
  }
}

export interface DeltaServiceOptions {
  dataDir: string;
  /** Merges running at once (worker threads). */
  maxConcurrent: number;
  /** Merges waiting for a thread. */
  maxQueued: number;
  /** Bytes of answers kept. */
  cacheBytes: number;
  /** How long a merge thread may idle before it is stopped (default 30 s). */
  threadIdleMs?: number;
}

type Cached = { bytes: Uint8Array } | { refused: DeltaGoneError };

/** A merge thread idle this long is stopped (one costs ~20 MB): bursts start them again. */
const THREAD_IDLE_MS = 30_000;

/** Worker threads that run one merge each at a time, started on demand, stopped when idle. */
class MergePool {
  private readonly idle: { worker: Worker; timer: NodeJS.Timeout }[] = [];
  private readonly all = new Set<Worker>();
  private closed = false;

  constructor(private readonly idleMs: number) {}

  /** Threads running now (for tests). */
  get threads(): number {
    return this.all.size;
  }

  private takeIdle(): Worker | undefined {
    const entry = this.idle.pop();
    if (entry) clearTimeout(entry.timer);
    return entry?.worker;
  }

  private putIdle(worker: Worker): void {
    const timer = setTimeout(() => {
      const at = this.idle.findIndex((e) => e.worker === worker);
      if (at >= 0) this.idle.splice(at, 1);
      this.all.delete(worker);
      void worker.terminate();
    }, this.idleMs);
    timer.unref();
    this.idle.push({ worker, timer });
  }

  run(job: MergeJob): Promise<MergeReply> {
    if (this.closed) return Promise.reject(new Error('the delta service is closed'));
    const worker = this.takeIdle() ?? this.spawn();
    return new Promise<MergeReply>((resolve, reject) => {
      const done = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (reply: MergeReply) => {
        done();
        if (!this.closed) this.putIdle(worker);
        resolve(reply);
      };
      const onError = (err: Error) => {
        done();
        this.all.delete(worker);
        void worker.terminate();
        reject(err);
      };
      const onExit = (code: number) => onError(new Error(`delta worker thread exited with code ${code}`));
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
      worker.postMessage(job);
    });
  }

  private spawn(): Worker {
    // Merges hold typed arrays (outside the JS heap) and few small objects: a small heap will do, and the limit guards against anything else.
    const worker = new Worker(new URL('./delta-worker.js', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 4 } });
    worker.unref(); // an idle pool never keeps the process alive
    this.all.add(worker);
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = [...this.all];
    this.all.clear();
    for (const { timer } of this.idle.splice(0)) clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export class DeltaService {
  private readonly cache: LRUCache<string, Cached>;
  private readonly indexes = new Map<string, Promise<ChainIndex>>();
  private readonly pending = new Map<string, Promise<Uint8Array>>();
  private readonly pool: MergePool;
  private running = 0;
  /** Merges waiting for a slot, oldest first. */
  private readonly queue: (() => void)[] = [];
  /** Merges run and refusals for lack of a slot (for tests and metrics). */
  readonly counts = { merges: 0, busy: 0, indexes: 0 };

  constructor(private readonly opts: DeltaServiceOptions) {
    this.pool = new MergePool(opts.threadIdleMs ?? THREAD_IDLE_MS);
    this.cache = new LRUCache<string, Cached>({
      maxSize: Math.max(1, opts.cacheBytes),
      sizeCalculation: (v) => ('bytes' in v ? Math.max(1, v.bytes.byteLength) : REFUSAL_BYTES),
    });
  }

  /** Bytes of answers cached now. */
  get cachedBytes(): number {
    return this.cache.calculatedSize;
  }

  /** Merge threads running now (started on demand, stopped when idle). */
  get threads(): number {
    return this.pool.threads;
  }

  /**
   * The encoded delta of `lane` from `from` to generation `target` (which the
   * caller holds pinned). Throws DeltaGoneError (410: EDELTA_GONE or
   * EDELTA_TOO_LARGE) or DeltaBusyError (503).
   */
  async delta(target: GenerationInfo, lane: LaneName, from: string): Promise<Uint8Array> {
    const info = target.lanes[lane];
    const summary = target.manifest.lanes[lane];
    if (!info || !summary) throw new DeltaGoneError(`generation ${target.id} has no ${lane} lane`);
    const key = `${lane}/${from}/${target.id}/${summary.hint_sha256}`;
    const hit = this.cache.get(key);
    if (hit) {
      if ('refused' in hit) throw hit.refused;
      return hit.bytes;
    }
    const joined = this.pending.get(key);
    if (joined) return joined;

    if (from === target.id) return this.remember(key, emptyDelta(summary, target.id));
    if (compareGenerationIds(from, target.id) > 0) throw new DeltaGoneError(`generation ${from} is newer than ${target.id}`);
    const limit = hintBytes(info.crs);
    const index = await this.index(target, lane, Math.min(DELTA_INPUT_RATIO * limit, DELTA_INPUT_MAX));
    const k = index.ancestors.get(from);
    if (k === undefined) throw notAnAncestor(index, from);

    // Another request may have started the same merge while the index was read.
    const again = this.pending.get(key);
    if (again) return again;
    if (this.running >= this.opts.maxConcurrent && this.queue.length >= this.opts.maxQueued) {
      this.counts.busy++;
      throw new DeltaBusyError(this.opts.maxConcurrent + this.opts.maxQueued);
    }
    const steps = index.steps.slice(0, k);
    const merge = this.merge(key, { files: steps.map((s) => ({ id: s.id, file: s.file, bytes: s.bytes })).reverse(), maxBytes: limit }, `${from} -> ${target.id}`);
    this.pending.set(key, merge);
    return merge;
  }

  /** A merge slot: at once when one is free, else when a running merge hands its slot over. */
  private async acquire(): Promise<void> {
    if (this.running < this.opts.maxConcurrent) this.running++;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.running--;
  }

  private async merge(key: string, job: MergeJob, span: string): Promise<Uint8Array> {
    await this.acquire();
    try {
      this.counts.merges++;
      const reply = await this.pool.run(job);
      if (reply.ok) return this.remember(key, reply.bytes);
      // Refusals are as permanent as the files they come from: remember them too.
      let refused: DeltaGoneError;
      if (reply.code === 'EDELTA_TOO_LARGE') refused = new DeltaGoneError(`the delta ${span} is larger than the hint (${reply.limit} bytes)`, 'EDELTA_TOO_LARGE');
      else if (reply.code === 'EDELTA_GONE' || reply.name === 'DeltaError') refused = new DeltaGoneError(`the diffs ${span} cannot be merged: ${reply.message}`);
      else throw new Error(`delta merge ${span} failed: ${reply.message}`);
      this.cache.set(key, { refused });
      throw refused;
    } finally {
      this.pending.delete(key);
      this.release();
    }
  }

  private remember(key: string, bytes: Uint8Array): Uint8Array {
    this.cache.set(key, { bytes });
    return bytes;
  }

  /** The target's chain index, read once (concurrent callers share the read). */
  private index(target: GenerationInfo, lane: LaneName, budget: number): Promise<ChainIndex> {
    const summary = target.manifest.lanes[lane]!;
    const key = `${lane}/${target.id}/${summary.hint_sha256}/${budget}`;
    let p = this.indexes.get(key);
    if (p) {
      // Most recently used last.
      this.indexes.delete(key);
      this.indexes.set(key, p);
      return p;
    }
    this.counts.indexes++;
    p = readChainIndex({ dataDir: this.opts.dataDir, to: target.id, toDir: target.dir, lane, parent: target.manifest.parent, summary }, budget, DELTA_MAX_STEPS);
    p.catch(() => this.indexes.delete(key));
    this.indexes.set(key, p);
    if (this.indexes.size > INDEXES_KEPT) this.indexes.delete(this.indexes.keys().next().value!);
    return p;
  }

  /** Stops the worker threads (merges in progress fail). */
  close(): Promise<void> {
    return this.pool.close();
  }
}
