// Reloads are bounded and abandonable: they run one at a time (SerialRunner),
// each step has a time limit (runStep), and a reload whose every caller has
// gone (HTTP client disconnected) is cancelled: it stops at its next step and
// never switches anything.

/**
 * Runs operations one at a time, in order. A request for the same operation
 * (same key) as the latest one queued or running joins it. Each caller may
 * pass a signal: when every caller of an operation has aborted, the operation
 * is abandoned (its own signal aborts with `abandoned()`); a caller without a
 * signal (SIGHUP, start-up) keeps it wanted.
 */
export class SerialRunner {
  private chain: Promise<unknown> = Promise.resolve();
  private latest: { key: string; controller: AbortController; waiting: number; pinned: boolean; promise: Promise<unknown> } | undefined;

  constructor(private readonly abandoned: () => Error) {}

  run<T>(key: string, fn: (signal: AbortSignal) => Promise<T>, caller?: AbortSignal): Promise<T> {
    if (caller?.aborted) return Promise.reject(this.abandoned());
    let entry = this.latest;
    if (!entry || entry.key !== key || entry.controller.signal.aborted) {
      const controller = new AbortController();
      const promise = this.chain.then(() => {
        // Abandoned while it waited: it never starts.
        if (controller.signal.aborted) throw controller.signal.reason;
        return fn(controller.signal);
      });
      const created = { key, controller, waiting: 0, pinned: false, promise };
      entry = created;
      this.latest = created;
      this.chain = promise.catch(() => {});
      const clear = () => {
        if (this.latest === created) this.latest = undefined;
      };
      promise.then(clear, clear);
    }
    const e = entry;
    if (caller) {
      e.waiting++;
      caller.addEventListener(
        'abort',
        () => {
          if (--e.waiting === 0 && !e.pinned) e.controller.abort(this.abandoned());
        },
        { once: true },
      );
    } else {
      e.pinned = true;
    }
    return e.promise as Promise<T>;
  }
}

/** A step did not finish in time. */
export class StepTimeoutError extends Error {
  readonly code = 'ERELOAD_TIMEOUT';
  constructor(what: string, ms: number) {
    super(`${what} did not finish within ${ms} ms`);
    this.name = 'StepTimeoutError';
  }
}

/**
 * Runs one step with a time limit; the step's own signal aborts on the time
 * limit or when `signal` aborts, and the step rejects at once then (work that
 * cannot be interrupted finishes in the background: `dispose` receives what
 * it produces too late, e.g. to release a mapping nobody will use).
 */
export async function runStep<T>(
  what: string,
  ms: number,
  signal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  dispose?: (late: T) => unknown,
): Promise<T> {
  signal?.throwIfAborted();
  const step = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => step.abort(signal!.reason);
  const stopped = new Promise<never>((_, reject) => {
    step.signal.addEventListener('abort', () => reject(step.signal.reason), { once: true });
  });
  stopped.catch(() => {});
  timer = setTimeout(() => step.abort(new StepTimeoutError(what, ms)), ms);
  signal?.addEventListener('abort', onAbort, { once: true });
  const work = Promise.resolve().then(() => fn(step.signal));
  try {
    return await Promise.race([work, stopped]);
  } catch (err) {
    if (step.signal.aborted) void work.then((late) => dispose?.(late), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
    timer = undefined;
    signal?.removeEventListener('abort', onAbort);
  }
}
