// Reloads: resolve a generation, validate it, open its lanes off to the side,
// then swap it in with one assignment. Reloads run one at a time; a request
// for the same target as the reload in progress joins it. Any failure leaves
// the served snapshot untouched (all or nothing).
import { type Config } from '../config.js';
import { type LaneHandle } from '../native.js';
import { StoreError } from '../store/errors.js';
import { loadGeneration, openLane, resolveGeneration } from '../store/generation.js';
import { LANES, type LaneName, effectiveShardSize } from '../store/layout.js';
import { Snapshot, type SnapshotStore, type ServedLane } from './snapshot.js';

export interface ReloadResult {
  old_block_number: number | null;
  new_block_number: number;
  reload_duration_ms: number;
  hot_loaded: boolean;
  cold_loaded: boolean;
  mmap_mode: boolean;
  old_generation: string | null;
  new_generation: string;
  /** True when the requested generation was already served. */
  unchanged: boolean;
}

/** A generation was refused; the old one keeps serving. */
export class ReloadError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ReloadError';
  }
}

export class Reloader {
  private chain: Promise<unknown> = Promise.resolve();
  private inProgress: { target: string | undefined; promise: Promise<ReloadResult> } | undefined;

  constructor(
    private readonly config: Config,
    private readonly store: SnapshotStore,
    private readonly onSnapshotClosed: (s: Snapshot) => void = () => {},
  ) {}

  /** Reload to generation `target`, or to what <data>/current points at. */
  reload(target?: string): Promise<ReloadResult> {
    if (this.inProgress && this.inProgress.target === target) return this.inProgress.promise;
    const promise = this.chain.then(() => this.run(target));
    const entry = { target, promise };
    this.chain = promise.catch(() => {});
    // Joinable while it has not finished.
    this.inProgress = entry;
    void promise.finally(() => {
      if (this.inProgress === entry) this.inProgress = undefined;
    }).catch(() => {});
    return promise;
  }

  private async run(target: string | undefined): Promise<ReloadResult> {
    const started = performance.now();
    const old = this.store.current;
    const { id, dir } = await resolveGeneration(this.config.data_dir, target).catch(rethrow);
    const result = (next: Snapshot, unchanged: boolean): ReloadResult => ({
      old_block_number: old?.blockNumber ?? null,
      new_block_number: next.blockNumber,
      reload_duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      hot_loaded: next.lanes.hot !== undefined,
      cold_loaded: next.lanes.cold !== undefined,
      mmap_mode: next.mode === 'mmap',
      old_generation: old?.id ?? null,
      new_generation: next.id,
      unchanged,
    });
    if (old && old.id === id) return result(old, true);
    // A retained generation (e.g. a rollback) is already open: swap it back in.
    const retained = this.store.get(id);
    if (retained) {
      this.store.publish(retained);
      return result(retained, false);
    }

    const info = await loadGeneration(dir, {
      hotEntries: this.config.hot_entries,
      coldEntries: this.config.cold_entries,
      entrySize: this.config.entry_size,
    }).catch(rethrow);
    for (const lane of old?.laneNames ?? []) {
      if (!info.lanes[lane]) throw new ReloadError('ELANE_MISSING', `generation ${id} has no ${lane} lane, which is being served`);
    }
    if (this.config.shard_size_bytes > 0) {
      for (const l of Object.values(info.lanes)) {
        const want = effectiveShardSize(this.config.shard_size_bytes, l.crs.entry_size);
        if (l.summary.shard_size_bytes !== want) {
          throw new ReloadError('ESHARD_SIZE', `${l.lane}: shards of ${l.summary.shard_size_bytes} bytes, the configuration expects ${want}`);
        }
      }
    }
    const mode = this.config.use_mmap ? 'mmap' : 'memory';
    const lanes: Partial<Record<LaneName, ServedLane>> = {};
    const opened: LaneHandle[] = [];
    try {
      for (const name of LANES) {
        const l = info.lanes[name];
        if (!l) continue;
        const handle = await openLane(l, mode);
        opened.push(handle);
        lanes[name] = { name, info: l, handle };
      }
    } catch (err) {
      for (const h of opened) h.release();
      rethrow(err);
    }
    const next = new Snapshot(info, lanes, mode, this.onSnapshotClosed);
    this.store.publish(next);
    return result(next, false);
  }
}

function rethrow(err: unknown): never {
  if (err instanceof ReloadError) throw err;
  const e = err as { code?: unknown; message?: string };
  if (err instanceof StoreError || typeof e?.code === 'string') {
    throw new ReloadError(String(e.code), e.message ?? String(err));
  }
  throw err;
}
