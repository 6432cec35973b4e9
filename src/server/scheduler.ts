// A server's side of the query exchange: where its queries go to be answered.
// Each request (1..batch_max queries) gets a descriptor and two areas in this
// process's region of the exchange (shared memory): the request body is read
// straight into the query area, the executor (in this process, or the
// cluster's kernel process) reads it there in its pass over the lane —
// together with every other worker's queries; a request's queries are never
// split between passes — and writes the answers into the answer area, which
// is then sent as the response body. Nothing is copied on the way.
//
// Batching happens in the executor: a lane runs one pass at a time, queries
// that arrive meanwhile (or within batch_window_ms of an idle lane) join the
// next one, up to batch_max on one generation. Queued plus in-pass queries of
// a lane, across all workers, are bounded by max_pending_per_lane: past it, and
// when this process's areas are full, a query is refused at once (503).
import { EXCHANGE_LANES, EXCHANGE_RESULTS, type KernelClient } from '../native.js';
import { type LaneName } from '../store/layout.js';

export class OverloadedError extends Error {
  readonly code = 'EOVERLOADED';
}

/** A query the executor could not answer; `code` is one of EXCHANGE_RESULTS (or EABORTED). */
export class KernelError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'KernelError';
  }
}

const ALIGN = 64;

/** First-fit allocation of byte ranges of one area (64-byte aligned), neighbours merged on free. */
export class AreaAllocator {
  /** Free ranges [offset, length], sorted by offset. */
  private free: [number, number][];
  private used = 0;
  constructor(readonly size: number) {
    this.free = [[0, size]];
  }

  get usedBytes(): number {
    return this.used;
  }

  /** An offset, or -1 when no free range is large enough. */
  alloc(bytes: number): number {
    const n = Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      if (r[1] < n) continue;
      const off = r[0];
      if (r[1] === n) this.free.splice(i, 1);
      else {
        r[0] += n;
        r[1] -= n;
      }
      this.used += n;
      return off;
    }
    return -1;
  }

  release(off: number, bytes: number): void {
    const n = Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    this.used -= n;
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid]![0] < off) lo = mid + 1;
      else hi = mid;
    }
    const prev = this.free[lo - 1];
    const next = this.free[lo];
    if (prev && prev[0] + prev[1] === off) {
      prev[1] += n;
      if (next && off + n === next[0]) {
        prev[1] += next[1];
        this.free.splice(lo, 1);
      }
    } else if (next && off + n === next[0]) {
      next[0] = off;
      next[1] += n;
    } else {
      this.free.splice(lo, 0, [off, n]);
    }
  }
}

export interface KernelResult {
  /** The answer, in the shared answer area (valid until the job is disposed). */
  answer: Buffer;
  /** Queries in the pass that answered it. */
  batch: number;
  /** Duration of that pass. */
  passMs: number;
}

type JobState = 'open' | 'queued' | 'done' | 'disposed';

/** One query's descriptor and areas, from open() to dispose(). */
export class QueryJob {
  state: JobState = 'open';
  abandoned = false;
  /** The query area: write the query's bytes here, then run(). */
  readonly query: Uint8Array;
  resolve: ((r: KernelResult) => void) | undefined;
  reject: ((err: Error) => void) | undefined;

  constructor(
    private readonly owner: KernelQueue,
    readonly descriptor: number,
    readonly lane: number,
    readonly generation: string,
    readonly queryOff: number,
    readonly queryBytes: number,
    readonly answerOff: number,
    readonly answerBytes: number,
    readonly count: number,
  ) {
    this.query = owner.view(queryOff, queryBytes);
  }

  /** Hands the query to the executor; settles when its pass is done. */
  run(): Promise<KernelResult> {
    if (this.state !== 'open') return Promise.reject(new Error(`query job is ${this.state}`));
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.owner.submit(this);
    });
  }

  /**
   * The answer was sent, or the request is gone: frees the descriptor and the
   * areas. A query still in a pass is freed when the pass is done (the
   * executor writes its answer area until then).
   */
  dispose(): void {
    this.owner.dispose(this);
  }
}

export interface KernelQueueOptions {
  maxPending: number;
  /** Told (once per shape) when a query's areas do not fit in this process's region. */
  onAreasFull?: (needBytes: number, sizeBytes: number) => void;
}

export class KernelQueue {
  private readonly freeDescriptors: number[] = [];
  private readonly jobs: (QueryJob | undefined)[];
  private readonly areas: AreaAllocator;
  /** Submitted and not completed: the process stays alive for them (the client's completion callback is ref'd). */
  private inKernel = 0;
  private closed = false;
  private readonly warnedSizes = new Set<number>();

  constructor(
    readonly client: KernelClient,
    private readonly opts: KernelQueueOptions,
  ) {
    for (let d = client.descriptors - 1; d >= 0; d--) this.freeDescriptors.push(d);
    this.jobs = new Array(client.descriptors).fill(undefined);
    this.areas = new AreaAllocator(client.data.byteLength);
  }

  /** The handler the KernelClient calls with finished queries. */
  readonly onComplete = (words: Uint32Array): void => {
    for (let i = 0; i + 3 < words.length; i += 4) this.complete(words[i]!, words[i + 1]!, words[i + 2]!, words[i + 3]!);
  };

  /** Queries of the lane queued or in a pass, across every worker. */
  pending(lane: LaneName): number {
    return this.client.pending(EXCHANGE_LANES.indexOf(lane));
  }

  /** Area bytes in use in this process's region, and its size. */
  usage(): { usedBytes: number; sizeBytes: number; descriptorsInUse: number } {
    return { usedBytes: this.areas.usedBytes, sizeBytes: this.areas.size, descriptorsInUse: this.jobs.length - this.freeDescriptors.length };
  }

  /**
   * Reserves a descriptor and areas for a request of `count` queries of
   * `lane` pinned to `generation` (`queryBytes` and `answerBytes` for all of
   * them). Throws OverloadedError when the lane would have more than
   * max_pending queries in the kernel, or this process's region is full.
   */
  open(lane: LaneName, generation: string, queryBytes: number, answerBytes: number, count = 1): QueryJob {
    if (this.closed) throw new OverloadedError('the server is stopping');
    const laneIndex = EXCHANGE_LANES.indexOf(lane);
    const pending = this.client.pending(laneIndex);
    if (pending + count > this.opts.maxPending) throw new OverloadedError(`${pending} queries are pending on the ${lane} lane`);
    const d = this.freeDescriptors.pop();
    if (d === undefined) throw new OverloadedError('every query slot of this worker is in use');
    const q = this.areas.alloc(queryBytes);
    const a = q < 0 ? -1 : this.areas.alloc(answerBytes);
    if (a < 0) {
      if (q >= 0) this.areas.release(q, queryBytes);
      this.freeDescriptors.push(d);
      const need = queryBytes + answerBytes;
      if (need * 2 > this.areas.size && !this.warnedSizes.has(need)) {
        this.warnedSizes.add(need);
        this.opts.onAreasFull?.(need, this.areas.size);
      }
      throw new OverloadedError('the query areas of this worker are full');
    }
    const job = new QueryJob(this, d, laneIndex, generation, q, queryBytes, a, answerBytes, count);
    this.jobs[d] = job;
    return job;
  }

  /** @internal */
  view(off: number, bytes: number): Uint8Array {
    const data = this.client.data;
    return new Uint8Array(data.buffer, data.byteOffset + off, bytes);
  }

  /** @internal */
  submit(job: QueryJob): void {
    if (this.inKernel++ === 0) this.client.ref();
    job.state = 'queued';
    try {
      this.client.submit(job.descriptor, job.lane, job.generation, job.queryOff, job.queryBytes, job.answerOff, job.answerBytes, job.count);
    } catch (err) {
      this.leaveKernel();
      job.state = 'open';
      job.reject!(err as Error);
    }
  }

  /** @internal */
  dispose(job: QueryJob): void {
    switch (job.state) {
      case 'open':
        this.release(job, true);
        return;
      case 'queued':
        if (this.client.cancel(job.descriptor)) {
          this.leaveKernel();
          this.release(job, true);
          job.reject?.(new KernelError('EABORTED', 'the query was withdrawn before its pass'));
        } else {
          job.abandoned = true; // freed when its pass is done
        }
        return;
      case 'done':
        this.client.free(job.descriptor);
        this.release(job, false);
        return;
      case 'disposed':
        return;
    }
  }

  private complete(d: number, result: number, batch: number, passUs: number): void {
    const job = this.jobs[d];
    if (!job || job.state !== 'queued') {
      // Not ours (a former owner's, after a restart): just free it.
      try {
        this.client.free(d);
      } catch {
        // already free
      }
      return;
    }
    this.leaveKernel();
    job.state = 'done';
    // The query area is not needed once the pass is done.
    this.areas.release(job.queryOff, job.queryBytes);
    if (job.abandoned) {
      this.dispose(job);
      job.reject?.(new KernelError('EABORTED', 'the request went away during its pass')); // its handler returns
      return;
    }
    if (result === 0) {
      const view = this.view(job.answerOff, job.answerBytes);
      job.resolve!({ answer: Buffer.from(view.buffer, view.byteOffset, view.byteLength), batch, passMs: passUs / 1000 });
    } else {
      const code = EXCHANGE_RESULTS[result] ?? 'EUNKNOWN';
      job.reject!(new KernelError(code, kernelMessage(code, job.generation)));
    }
  }

  private release(job: QueryJob, withQuery: boolean): void {
    if (withQuery) this.areas.release(job.queryOff, job.queryBytes);
    this.areas.release(job.answerOff, job.answerBytes);
    job.state = 'disposed';
    this.jobs[job.descriptor] = undefined;
    this.freeDescriptors.push(job.descriptor);
  }

  private leaveKernel(): void {
    if (--this.inKernel === 0) this.client.unref();
  }

  /** No new queries; the client stops (queued ones are dropped by the exchange). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    for (const job of this.jobs) {
      if (job?.state === 'queued') job.reject?.(new KernelError('EEXECUTOR_LOST', 'the server is stopping'));
    }
  }
}

function kernelMessage(code: string, generation: string): string {
  switch (code) {
    case 'EGENERATION_GONE':
      return `generation ${generation} is no longer held by the kernel executor`;
    case 'EEXECUTOR_LOST':
      return 'the kernel executor stopped during the pass';
    default:
      return `the kernel executor could not answer (${code})`;
  }
}
