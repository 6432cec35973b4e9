// Reloads: resolve a generation, validate it, open its lanes off to the side,
// then swap it in with one assignment. Reloads run one at a time; a request
// for the same target as the reload in progress joins it. Any failure leaves
// the served snapshot untouched (all or nothing).
//
// Cluster workers use the two halves separately: prepare() opens a generation
// without serving it, commit() swaps it in when the primary says so.
import fsp, { type FileHandle } from 'node:fs/promises';
import { type Config } from '../config.js';
import { hintBytes } from '../pir/crs.js';
import { type LaneHandle, type LaneMemory } from '../native.js';
import { laneMemoryMode } from './lane-memory.js';
import { StoreError } from '../store/errors.js';
import { type GenerationInfo, loadGeneration, openLane, resolveGeneration } from '../store/generation.js';
import { LANES, type LaneName, effectiveShardSize } from '../store/layout.js';
import { Snapshot, type SnapshotStore, type ServedLane } from './snapshot.js';

export interface ReloadResult {
  old_block_number: number | null;
  new_block_number: number;
  reload_duration_ms: number;
  hot_loaded: boolean;
  cold_loaded: boolean;
  mmap_mode: boolean;
  /** Where the kernel executor holds the lanes (config lane_memory as resolved on this machine). */
  lane_memory: LaneMemory;
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
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ReloadError';
  }
}

export class Reloader {
  private chain: Promise<unknown> = Promise.resolve();
  private inProgress: { key: string; promise: Promise<unknown> } | undefined;
  private readonly prepared = new Map<string, Snapshot>();

  constructor(
    private readonly config: Config,
    private readonly store: SnapshotStore,
    private readonly onSnapshotClosed: (s: Snapshot) => void = () => {},
    /** false: snapshots carry no lane memory (a cluster worker: the kernel process holds the lanes). */
    private readonly openLanes = true,
  ) {}

  /** Runs fn after every earlier operation; an identical operation still in progress is joined. */
  private serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    if (this.inProgress?.key === key) return this.inProgress.promise as Promise<T>;
    const promise = this.chain.then(fn);
    const entry = { key, promise };
    this.chain = promise.catch(() => {});
    this.inProgress = entry;
    promise.then(
      () => this.inProgress === entry && (this.inProgress = undefined),
      () => this.inProgress === entry && (this.inProgress = undefined),
    );
    return promise;
  }

  /** Reload to generation `target`, or to what <data>/current points at. */
  reload(target?: string): Promise<ReloadResult> {
    return this.serialize(`reload:${target ?? ''}`, async () => {
      const started = performance.now();
      const old = this.store.current;
      const { id, dir } = await resolveGeneration(this.config.data_dir, target).catch(rethrow);
      if (old && old.id === id) return this.result(old, old, started, true);
      const prepared = this.prepared.get(id);
      this.prepared.delete(id);
      const next = this.store.get(id) ?? prepared ?? (await this.open(await validateGeneration(this.config, dir, old?.laneNames ?? [])));
      this.store.publish(next);
      return this.result(old, next, started, false);
    });
  }

  /** Validates generation `target` (or current) without mapping it. */
  async validate(target?: string): Promise<GenerationInfo> {
    const { dir } = await resolveGeneration(this.config.data_dir, target).catch(rethrow);
    return validateGeneration(this.config, dir, this.store.current?.laneNames ?? []);
  }

  /** Maps (or reads) a validated generation's lanes into a snapshot that nobody serves yet. */
  private async open(info: GenerationInfo, warm = false): Promise<Snapshot> {
    const mode = laneMemoryMode(this.config);
    const lanes: Partial<Record<LaneName, ServedLane>> = {};
    const opened: LaneHandle[] = [];
    const hints: FileHandle[] = [];
    try {
      for (const name of LANES) {
        const l = info.lanes[name];
        if (!l) continue;
        // The hint stays open with the lane, so a served generation's hint is readable even after its files are pruned.
        const hint = await fsp.open(l.hintPath, 'r');
        hints.push(hint);
        const st = await hint.stat();
        if (!st.isFile() || st.size !== hintBytes(l.crs)) throw new StoreError('EHINT', `${name}: hint.bin changed since it was validated`);
        const handle = this.openLanes ? await openLane(l, mode) : undefined;
        if (handle) opened.push(handle);
        lanes[name] = { name, info: l, ...(handle ? { handle } : {}), hint };
        if (warm && handle && mode === 'mmap') await handle.warm();
      }
    } catch (err) {
      await Promise.all([...opened.map((h) => h.release()), ...hints.map((h) => h.close().catch(() => {}))]);
      rethrow(err);
    }
    return new Snapshot(info, lanes, mode, this.onSnapshotClosed);
  }

  /** Cluster: open generation `id` (validated, mapped, warmed) without serving it. */
  prepare(id: string): Promise<Snapshot> {
    return this.serialize(`prepare:${id}`, async () => {
      const existing = this.store.get(id) ?? this.prepared.get(id);
      if (existing) return existing;
      const snap = await this.open(await this.validate(id), true);
      this.prepared.set(id, snap);
      return snap;
    });
  }

  /** Cluster: serve generation `id` if it is prepared or retained; returns the snapshot now current. */
  commit(id: string): Snapshot | undefined {
    const snap = this.prepared.get(id) ?? this.store.get(id);
    if (!snap) return undefined;
    this.prepared.delete(id);
    this.store.publish(snap);
    return snap;
  }

  /** Cluster: drop a prepared generation that will not be served. */
  abort(id: string): void {
    const snap = this.prepared.get(id);
    if (!snap) return;
    this.prepared.delete(id);
    snap.retire();
  }

  /** Generations prepared (mapped) but not served yet. */
  preparedSnapshots(): Snapshot[] {
    return [...this.prepared.values()];
  }

  /** Drops every prepared generation (shutdown). */
  abortAll(): void {
    for (const id of [...this.prepared.keys()]) this.abort(id);
  }

  private result(old: Snapshot | undefined, next: Snapshot, started: number, unchanged: boolean): ReloadResult {
    return {
      old_block_number: old?.blockNumber ?? null,
      new_block_number: next.blockNumber,
      reload_duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      hot_loaded: next.lanes.hot !== undefined,
      cold_loaded: next.lanes.cold !== undefined,
      mmap_mode: next.mode === 'mmap',
      lane_memory: next.mode,
      old_generation: old?.id ?? null,
      new_generation: next.id,
      unchanged,
    };
  }
}

/**
 * Everything a generation must satisfy before it is served: sound structure
 * (manifest, parameters, files), the configuration's expectations, and every
 * lane that is being served (`served`) still present.
 */
export async function validateGeneration(config: Config, dir: string, served: readonly LaneName[]): Promise<GenerationInfo> {
  const info = await loadGeneration(dir, {
    hotEntries: config.hot_entries,
    coldEntries: config.cold_entries,
    entrySize: config.entry_size,
  }).catch(rethrow);
  for (const lane of served) {
    if (!info.lanes[lane]) throw new ReloadError('ELANE_MISSING', `generation ${info.id} has no ${lane} lane, which is being served`);
  }
  if (config.shard_size_bytes > 0) {
    for (const l of Object.values(info.lanes)) {
      const want = effectiveShardSize(config.shard_size_bytes, l.crs.entry_size);
      if (l.summary.shard_size_bytes !== want) {
        throw new ReloadError('ESHARD_SIZE', `${l.lane}: shards of ${l.summary.shard_size_bytes} bytes, the configuration expects ${want}`);
      }
    }
  }
  return info;
}

export function rethrow(err: unknown): never {
  if (err instanceof ReloadError) throw err;
  const e = err as { code?: unknown; message?: string };
  if (err instanceof StoreError || typeof e?.code === 'string') {
    throw new ReloadError(String(e.code), e.message ?? String(err));
  }
  throw err;
}
