// Reloads: resolve a generation, validate it (structure, then the sha256 of
// every file not hashed before under the same inode), open its lanes off to
// the side, then swap it in with one assignment. Reloads run one at a time; a
// request for the same target as the reload in progress joins it. Every step
// is time-limited, a reload all of whose callers went away switches nothing,
// and any failure leaves the served snapshot untouched (all or nothing).
//
// Cluster workers use the two halves separately: prepare() opens a generation
// without serving it, commit() swaps it in when the primary says so.
import { constants as fsConstants } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import { type Config } from '../config.js';
import { hintBytes } from '../pir/crs.js';
import { type FileIdentity, type LaneHandle, type LaneMemory } from '../native.js';
import { laneMemoryMode } from './lane-memory.js';
import { StoreError } from '../store/errors.js';
import { type ValidationStats } from '../store/checksums.js';
import { type GenerationInfo, openLane, resolveGeneration } from '../store/generation.js';
import { LANES, type LaneName } from '../store/layout.js';
import { SerialRunner, runStep } from './bounded.js';
import { abandonedError, rethrow } from './reload-error.js';
import { Snapshot, type SnapshotStore, type ServedLane } from './snapshot.js';
import { type Validated, Validator } from './validator.js';

export { ReloadError, rethrow } from './reload-error.js';

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
  /** The checksum step of this reload; null when nothing was read (already served or retained, or confirmed by digest). */
  validation: ValidationStats | null;
}

export interface ReloadOptions {
  /** The caller's interest: when every caller of a reload has aborted, it stops and switches nothing. */
  signal?: AbortSignal;
  /**
   * filesDigest of a validation another process made (the cluster primary):
   * the files are confirmed to be those instead of hashed again.
   */
  digest?: string;
}

/** Test hooks: called inside the time-limited resolve and open steps (to hold a reload there). */
export interface ReloaderHooks {
  beforeStep?: (step: 'resolve' | 'open', signal: AbortSignal) => Promise<void>;
}

export class Reloader {
  private readonly runner = new SerialRunner(abandonedError);
  private readonly prepared = new Map<string, Snapshot>();
  readonly validator: Validator;
  hooks: ReloaderHooks = {};

  constructor(
    private readonly config: Config,
    private readonly store: SnapshotStore,
    private readonly onSnapshotClosed: (s: Snapshot) => void = () => {},
    /** false: snapshots carry no lane memory (a cluster worker: the kernel process holds the lanes). */
    private readonly openLanes = true,
  ) {
    this.validator = new Validator(config);
  }

  /** Reload to generation `target`, or to what <data>/current points at. */
  reload(target?: string, opts: ReloadOptions = {}): Promise<ReloadResult> {
    return this.runner.run(
      `reload:${target ?? ''}:${opts.digest ?? ''}`,
      async (signal) => {
        const started = performance.now();
        const old = this.store.current;
        const { id, dir } = await runStep('resolving the generation', this.config.reload_step_timeout_ms, signal, async (s) => {
          await this.hooks.beforeStep?.('resolve', s);
          return resolveGeneration(this.config.data_dir, target);
        }).catch(rethrow);
        if (old && old.id === id) return this.result(old, old, started, true, null);
        let next = this.store.get(id) ?? this.prepared.get(id);
        let fresh: Snapshot | undefined;
        let validation: ValidationStats | null = null;
        if (!next) {
          const v = await this.check(dir, old?.laneNames ?? [], opts.digest, signal);
          validation = v.validation;
          next = fresh = await this.open(v.info, signal);
        }
        // The last moment to give up: nothing awaits between this check and the publish.
        if (signal.aborted) {
          fresh?.retire();
          throw signal.reason;
        }
        this.prepared.delete(id);
        this.store.publish(next);
        return this.result(old, next, started, false, validation);
      },
      opts.signal,
    );
  }

  private check(dir: string, served: readonly LaneName[], digest: string | undefined, signal?: AbortSignal): Promise<Validated> {
    return digest ? this.validator.confirm(dir, served, digest, signal) : this.validator.validate(dir, served, signal);
  }

  /** Maps (or reads) a validated generation's lanes into a snapshot that nobody serves yet. */
  private async open(info: GenerationInfo, signal: AbortSignal, warm = false): Promise<Snapshot> {
    const mode = laneMemoryMode(this.config);
    // Mapping is quick whatever the size; reading a lane into memory (whole, or the shards the cache lacks) takes as long as hashing it.
    const openMs = mode === 'mmap' ? this.config.reload_step_timeout_ms : this.config.validate_timeout_ms;
    const lanes: Partial<Record<LaneName, ServedLane>> = {};
    const opened: LaneHandle[] = [];
    const hints: FileHandle[] = [];
    try {
      for (const name of LANES) {
        const l = info.lanes[name];
        if (!l) continue;
        // The hint stays open with the lane, so a served generation's hint is readable even
        // after its files are pruned; it must be the very file that was validated.
        const hint = await openValidatedHint(l.hintPath, info.files[`${name}/hint.bin`], hintBytes(l.crs), name);
        hints.push(hint);
        // A lane mapped after its step timed out is released, not leaked. A cluster worker opens no lane memory.
        const handle = this.openLanes
          ? await runStep(
              `${mode === 'mmap' ? 'mapping' : 'reading'} the ${name} lane of generation ${info.id}`,
              openMs,
              signal,
              async (s) => {
                await this.hooks.beforeStep?.('open', s);
                return openLane(l, mode);
              },
              (late) => late.release(),
            )
          : undefined;
        if (handle) opened.push(handle);
        lanes[name] = { name, info: l, ...(handle ? { handle } : {}), hint };
        if (warm && handle && mode === 'mmap') await runStep(`warming the ${name} lane of generation ${info.id}`, this.config.prepare_timeout_ms, signal, () => handle.warm());
      }
    } catch (err) {
      await Promise.all([...opened.map((h) => h.release()), ...hints.map((h) => h.close().catch(() => {}))]);
      rethrow(err);
    }
    return new Snapshot(info, lanes, mode, this.onSnapshotClosed);
  }

  /**
   * Cluster: open generation `id` (validated, mapped, warmed) without serving
   * it. With the primary's `digest` the files are confirmed, not hashed.
   */
  prepare(id: string, opts: ReloadOptions = {}): Promise<Snapshot> {
    return this.runner.run(
      `prepare:${id}:${opts.digest ?? ''}`,
      async (signal) => {
        const existing = this.store.get(id) ?? this.prepared.get(id);
        if (existing) return existing;
        const { dir } = await runStep('resolving the generation', this.config.reload_step_timeout_ms, signal, () =>
          resolveGeneration(this.config.data_dir, id),
        ).catch(rethrow);
        const v = await this.check(dir, this.store.current?.laneNames ?? [], opts.digest, signal);
        const snap = await this.open(v.info, signal, true);
        if (signal.aborted) {
          snap.retire();
          throw signal.reason;
        }
        this.prepared.set(id, snap);
        return snap;
      },
      opts.signal,
    );
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

  private result(old: Snapshot | undefined, next: Snapshot, started: number, unchanged: boolean, validation: ValidationStats | null): ReloadResult {
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
      validation,
    };
  }
}

/**
 * Opens a lane's hint.bin for the snapshot to keep (so /hint serves it even
 * after its files are pruned): a regular file (O_NONBLOCK: a FIFO put in its
 * place cannot hang the reload) that is the very inode validated, at its size.
 */
async function openValidatedHint(file: string, validated: FileIdentity | undefined, size: number, lane: LaneName): Promise<FileHandle> {
  const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const st = await fh.stat({ bigint: true });
    const same = validated !== undefined && st.isFile() && st.dev === validated.dev && st.ino === validated.ino && st.mtimeNs === validated.mtimeNs;
    if (!same || Number(st.size) !== size) throw new StoreError('EFILE_CHANGED', `${lane}: hint.bin changed since it was validated`);
    return fh;
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}
