// Where a server process sends its queries: the kernel executor, through the
// query exchange (native/exchange.*). A single process (startServer on its
// own: tests, benchmarks, embedding) runs the executor itself, on a private
// exchange, and registers the lanes of the snapshots it opens with it. A
// cluster worker opens the cluster's shared exchange and uses its own region;
// the executor runs in the kernel process the primary forks, which holds the
// lanes (src/cluster/executor.ts).
import { type Config } from '../config.js';
import { type KernelClient, type KernelExecutor, type PassReport, type QueryExchange, exchange } from '../native.js';
import { type GenerationInfo } from '../store/generation.js';
import { exchangeSizing } from './lane-memory.js';
import { KernelQueue, type QueryJob } from './scheduler.js';
import { type ServedLane, type Snapshot } from './snapshot.js';

export interface KernelBackend {
  readonly queue: KernelQueue;
  /** Descriptor and areas for a request of `count` queries on `lane` of `snap` (OverloadedError when full). */
  open(snap: Snapshot, lane: ServedLane, count?: number): QueryJob;
  /** A snapshot was closed (its lanes released): the executor forgets it. */
  snapshotClosed(snap: Snapshot): void;
  /** What /admin/generations shows about the executor. */
  describe(): Record<string, unknown>;
  close(): void;
}

/** Backends still open: their native threads are stopped before the process exits (process.exit() runs no cleanup hooks). */
const open = new Set<KernelBackend>();
let exitHook = false;
function track(b: KernelBackend): void {
  open.add(b);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const k of [...open]) k.close();
  });
}

function laneJob(queue: KernelQueue, snap: Snapshot, lane: ServedLane, count: number): QueryJob {
  const c = lane.info.crs;
  return queue.open(lane.name, snap.id, count * c.m * 4, count * c.entry_size * c.R * 4, count);
}

/** The executor in this process (a single server). */
export class LocalKernel implements KernelBackend {
  readonly queue: KernelQueue;
  private readonly exchange: QueryExchange;
  private readonly executor: KernelExecutor;
  private readonly client: KernelClient;
  private readonly registered = new WeakMap<Snapshot, number>();

  constructor(config: Config, info: GenerationInfo | undefined, hooks: { onPass?: (p: PassReport) => void; onAreasFull?: (need: number, size: number) => void } = {}) {
    // Private memory: only touched pages count, so the region can be generous.
    const { descriptors, dataBytes } = exchangeSizing(config, info, { minMiB: 64, maxMiB: 4096 });
    this.exchange = exchange.exchangeCreate(null, 1, descriptors, dataBytes);
    this.executor = new exchange.KernelExecutor(
      this.exchange,
      { batchMax: config.batch_max, windowMs: config.batch_window_ms, threads: config.kernel_threads },
      hooks.onPass,
    );
    let queue: KernelQueue | undefined;
    this.client = new exchange.KernelClient(this.exchange, 0, (w) => queue!.onComplete(w));
    this.queue = queue = new KernelQueue(this.client, { maxPending: config.max_pending_per_lane, onAreasFull: hooks.onAreasFull });
    this.executor.start();
    track(this);
  }

  open(snap: Snapshot, lane: ServedLane, count = 1): QueryJob {
    // The executor holds the snapshot's lanes from its first query until it is closed.
    if (!this.registered.has(snap)) {
      const lanes = Object.fromEntries(snap.laneNames.map((l) => [l, snap.lanes[l]!.handle!]));
      this.registered.set(snap, this.executor.setGeneration(snap.id, lanes));
    }
    return laneJob(this.queue, snap, lane, count);
  }

  snapshotClosed(snap: Snapshot): void {
    const token = this.registered.get(snap);
    if (token !== undefined) this.executor.dropGeneration(snap.id, token);
    this.registered.delete(snap);
  }

  describe(): Record<string, unknown> {
    const s = this.exchange.stats();
    return { where: 'in-process', epoch: s.executor.epoch, state: s.executor.state, generations: this.executor.generations(), passes: { hot: s.lanes[0], cold: s.lanes[1] } };
  }

  close(): void {
    if (!open.delete(this)) return;
    this.queue.close();
    this.executor.stop();
    this.exchange.close();
  }
}

/** The cluster's executor (another process), through the shared exchange: this worker uses region `region`. */
export class RemoteKernel implements KernelBackend {
  readonly queue: KernelQueue;
  private readonly exchange: QueryExchange;
  private readonly client: KernelClient;

  constructor(config: Config, name: string, region: number, hooks: { onAreasFull?: (need: number, size: number) => void } = {}) {
    this.exchange = exchange.exchangeOpen(name);
    let queue: KernelQueue | undefined;
    this.client = new exchange.KernelClient(this.exchange, region, (w) => queue!.onComplete(w));
    this.queue = queue = new KernelQueue(this.client, { maxPending: config.max_pending_per_lane, onAreasFull: hooks.onAreasFull });
    track(this);
  }

  open(snap: Snapshot, lane: ServedLane, count = 1): QueryJob {
    return laneJob(this.queue, snap, lane, count);
  }

  snapshotClosed(): void {}

  describe(): Record<string, unknown> {
    const e = this.client.executor();
    return { where: 'kernel process', pid: e.pid, epoch: e.epoch, serving: e.serving };
  }

  close(): void {
    if (!open.delete(this)) return;
    this.queue.close();
    this.exchange.close();
  }
}
