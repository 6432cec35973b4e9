// Rolls the newest built generation into a running server: publishes it as
// DIR/current at once (a server started later serves what is current), then
// asks the server to reload it, one reload at a time, the newest request
// winning (a burst of blocks becomes one reload, always with a trailing one),
// and prunes what no worker holds. A server that is down or failing (no
// answer, 5xx) is retried with backoff while `current` keeps moving; a
// generation the server refuses (4xx: it failed validation) is not retried,
// and `current` goes back to what the server serves so that disk and server
// agree.
import { EventEmitter } from 'node:events';
import { type Logger } from 'pino';
import { AdminError, adminRequest, heldGenerations } from '../ops/admin.js';
import { publishGeneration } from '../store/builder.js';
import { generationBlock } from '../store/layout.js';
import { planPrune, removeGenerations } from '../store/prune.js';

export interface RollerOptions {
  data: string;
  admin: { url: string; token: string | undefined };
  logger: Logger;
  /** Generations of current's chain kept on disk (current included) besides those a server holds; other branches are pruned. Default 32. */
  retain?: number;
  /** Quiet time before a reload (more blocks may follow). Default 0. */
  debounceMs?: number;
  /** First retry delay after a failed reload; doubles up to maxRetryMs. Default 500 / 10000. */
  retryMs?: number;
  maxRetryMs?: number;
}

export interface RollerEvents {
  /**
   * `reload`: the server's answer to POST /admin/reload; `blockToServedMs`:
   * from the block source first seeing the block (`seen`) to the server
   * serving it (undefined when the block was never marked seen).
   */
  reloaded: { generation: string; block: number; ms: number; reload: unknown; blockToServedMs: number | undefined };
  failed: { generation: string; error: string; retrying: boolean };
}

export class Roller extends EventEmitter {
  /** The generation the server last confirmed serving. */
  served: string | undefined;
  private wanted: string | undefined;
  private refused = new Set<string>();
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  /** When each block not yet served was first seen by the block source. */
  private readonly seenAt = new Map<number, number>();

  constructor(private readonly opts: RollerOptions) {
    super();
  }

  /** Serve `id` (the newest built generation): published now, reloaded soon. */
  async request(id: string): Promise<void> {
    this.wanted = id;
    await publishGeneration(this.opts.data, id);
    this.schedule(this.opts.debounceMs ?? 0);
  }

  /** The block source saw block `block` (first time counts): the start of its block-to-served latency. */
  seen(block: number, at = Date.now()): void {
    if (!this.seenAt.has(block)) this.seenAt.set(block, at);
  }

  /** Resolves when the wanted generation is served (or the roller stops). */
  async idle(): Promise<void> {
    while (!this.stopped && (this.running || this.timer)) await (this.running ?? new Promise((r) => setTimeout(r, 20)));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running) return; // the running reload re-checks `wanted` when it ends
      this.running = this.roll().finally(() => {
        this.running = undefined;
        if (!this.stopped && this.wanted !== undefined && this.wanted !== this.served && !this.refused.has(this.wanted) && !this.timer) this.schedule(0);
      });
    }, delay);
  }

  private async roll(): Promise<void> {
    const id = this.wanted;
    if (id === undefined || id === this.served || this.refused.has(id)) return;
    const started = performance.now();
    let reload: unknown;
    try {
      reload = await adminRequest(this.opts.admin, '/admin/reload', {
        method: 'POST',
        body: JSON.stringify({ generation: id }),
        headers: { 'Content-Type': 'application/json' },
      });
    } catch (err) {
      const e = err as Error;
      if (err instanceof AdminError && refusal(err)) {
        this.refused.add(id);
        this.opts.logger.error({ generation: id, err: e.message, code: err.code }, 'the server refused the generation; current goes back to what it serves');
        if (this.served && this.wanted === id) await publishGeneration(this.opts.data, this.served).catch(() => {});
        this.emit('failed', { generation: id, error: e.message, retrying: false });
        return;
      }
      this.failures++;
      const delay = Math.min((this.opts.retryMs ?? 500) * 2 ** Math.min(this.failures - 1, 10), this.opts.maxRetryMs ?? 10_000);
      if (this.failures === 1 || this.failures % 10 === 0) {
        this.opts.logger.warn({ generation: id, err: e.message, retry_in_ms: delay, failures: this.failures }, 'reload failed; current is published, retrying');
      }
      this.emit('failed', { generation: id, error: e.message, retrying: true });
      this.schedule(delay);
      return;
    }
    const ms = performance.now() - started;
    if (this.failures) this.opts.logger.info({ generation: id, after_failures: this.failures }, 'the server reloads again');
    this.failures = 0;
    this.served = id;
    const block = generationBlock(id);
    const seen = this.seenAt.get(block);
    for (const n of this.seenAt.keys()) if (n <= block) this.seenAt.delete(n);
    this.emit('reloaded', { generation: id, block, ms, reload, blockToServedMs: seen === undefined ? undefined : Date.now() - seen } satisfies RollerEvents['reloaded']);
    try {
      const held = await heldGenerations(this.opts.admin);
      const plan = await planPrune(this.opts.data, held, this.opts.retain ?? 32, { chain: true });
      await removeGenerations(this.opts.data, plan.remove);
      if (plan.remove.length) this.opts.logger.info({ removed: plan.remove }, 'pruned generations');
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'prune skipped');
    }
  }
}

/**
 * A reload the server answered with a 4xx other than 408/429 refused this
 * generation (it failed validation, or the request itself is wrong): asking
 * again cannot help. No answer, 5xx, 408 and 429 are worth retrying.
 */
export function refusal(err: AdminError): boolean {
  const s = err.status;
  return s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 429;
}
