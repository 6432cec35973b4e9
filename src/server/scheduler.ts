// Batching of queries per lane. A lane runs at most one kernel pass at a
// time; queries that arrive while it runs (or within a short window of an
// idle lane) join the next pass, up to batch_max queries on one snapshot, so
// throughput grows with load. Queued plus running queries are bounded: past
// the bound the caller is refused at once instead of queueing without limit.
// A request carrying several queries (submitMany) is answered in one pass:
// its queries are never split between passes.
import { type ServedLane } from './snapshot.js';

export class OverloadedError extends Error {
  readonly code = 'EOVERLOADED';
}

interface Item {
  queries: Uint32Array[];
  resolve: (r: { answers: Uint32Array[]; batch: number }) => void;
  reject: (err: unknown) => void;
}

export interface SchedulerOptions {
  batchMax: number;
  windowMs: number;
  maxPending: number;
  threads: number;
  /** Called after every pass (metrics). */
  onPass?: (lane: ServedLane, batch: number, seconds: number) => void;
}

export class LaneScheduler {
  private readonly queues = new Map<ServedLane, Item[]>();
  private pendingCount = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: SchedulerOptions) {}

  get pending(): number {
    return this.pendingCount;
  }

  submit(lane: ServedLane, query: Uint32Array): Promise<{ answer: Uint32Array; batch: number }> {
    return this.submitMany(lane, [query]).then((r) => ({ answer: r.answers[0]!, batch: r.batch }));
  }

  /** 1..batchMax queries answered in the same pass, answers in order. */
  submitMany(lane: ServedLane, queries: Uint32Array[]): Promise<{ answers: Uint32Array[]; batch: number }> {
    if (queries.length < 1 || queries.length > this.opts.batchMax) {
      return Promise.reject(new RangeError(`a request carries 1..${this.opts.batchMax} queries, got ${queries.length}`));
    }
    if (this.pendingCount + queries.length > this.opts.maxPending) {
      return Promise.reject(new OverloadedError(`${this.pendingCount} queries are pending on the ${lane.name} lane`));
    }
    this.pendingCount += queries.length;
    return new Promise((resolve, reject) => {
      let q = this.queues.get(lane);
      if (!q) this.queues.set(lane, (q = []));
      q.push({ queries, resolve, reject });
      if (this.running) return;
      if (this.opts.windowMs <= 0 || queued(q) >= this.opts.batchMax) this.runNext();
      else this.timer ??= setTimeout(() => this.runNext(), this.opts.windowMs);
    });
  }

  private runNext(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running) return;
    // Oldest queue first (insertion order of the map is arrival order of the first item).
    const next = this.queues.entries().next();
    if (next.done) return;
    const [lane, queue] = next.value;
    // Whole requests, up to batchMax queries (the first always fits).
    let take = 0;
    let size = 0;
    while (take < queue.length && size + queue[take]!.queries.length <= this.opts.batchMax) size += queue[take++]!.queries.length;
    const batch = queue.splice(0, take);
    if (queue.length === 0) this.queues.delete(lane);
    else {
      // Move the remainder to the back so other generations get their turn.
      this.queues.delete(lane);
      this.queues.set(lane, queue);
    }
    this.running = true;
    const started = performance.now();
    const threads = this.opts.threads > 0 ? { threads: this.opts.threads } : {};
    lane.handle
      .answer(batch.flatMap((b) => b.queries), threads)
      .then(
        (answers) => {
          this.opts.onPass?.(lane, size, (performance.now() - started) / 1000);
          let at = 0;
          for (const b of batch) {
            b.resolve({ answers: answers.slice(at, at + b.queries.length), batch: size });
            at += b.queries.length;
          }
        },
        (err) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        this.pendingCount -= size;
        this.running = false;
        if (this.queues.size > 0) this.runNext();
      });
  }
}

/** Queries waiting in a queue. */
function queued(q: Item[]): number {
  let n = 0;
  for (const item of q) n += item.queries.length;
  return n;
}
