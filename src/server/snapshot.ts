// Snapshots: one served generation with its lanes opened. The store swaps the
// current snapshot with a single reference assignment (O(1), no lock: the
// event loop is the only writer), requests pin the snapshot they started on,
// and a snapshot's lanes are released when it is neither current nor
// retained and its last pinned request has finished.
import { type FileHandle } from 'node:fs/promises';
import { type LaneHandle, type LaneMemory } from '../native.js';
import { type GenerationInfo, type LaneInfo } from '../store/generation.js';
import { LANES, type LaneName } from '../store/layout.js';

export interface ServedLane {
  name: LaneName;
  info: LaneInfo;
  /** The lane's memory, when this process runs the executor; a cluster worker has none (the kernel process holds it). */
  handle?: LaneHandle;
  /** hint.bin, open for as long as the lane is mapped: served even if the generation's files are pruned meanwhile. */
  hint: FileHandle;
}

export class Snapshot {
  readonly id: string;
  readonly blockNumber: number;
  /** When this process made it current (the latest time, after a rollback). */
  servedAt: Date | undefined;
  private pins = 0;
  private retired = false;
  private closed = false;

  constructor(
    readonly generation: GenerationInfo,
    readonly lanes: Partial<Record<LaneName, ServedLane>>,
    readonly mode: LaneMemory,
    private readonly onClose: (s: Snapshot) => void = () => {},
  ) {
    this.id = generation.id;
    this.blockNumber = generation.blockNumber;
  }

  get inFlight(): number {
    return this.pins;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get laneNames(): LaneName[] {
    return LANES.filter((l) => this.lanes[l]);
  }

  /** Pins the snapshot; the returned function unpins it (once, however often it is called). */
  pin(): () => void {
    if (this.closed) throw new Error(`snapshot ${this.id} is closed`);
    this.pins++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pins--;
      this.maybeClose();
    };
  }

  /** No longer current or retained: close as soon as no request holds it. */
  retire(): void {
    this.retired = true;
    this.maybeClose();
  }

  /** Back to current or retained (a rollback to a retained generation). */
  revive(): void {
    if (!this.closed) this.retired = false;
  }

  private maybeClose(): void {
    if (!this.retired || this.pins > 0 || this.closed) return;
    this.closed = true;
    // The unmap runs off the JS thread; the handles are unusable from here on.
    // (Hint streams pin the snapshot until their last read is done.)
    for (const lane of Object.values(this.lanes)) {
      void lane.handle?.release();
      lane.hint.close().catch(() => {});
    }
    this.onClose(this);
  }
}

/** The current snapshot and the retained past ones (newest first). */
export class SnapshotStore {
  private cur: Snapshot | undefined;
  private past: Snapshot[] = [];
  /** Retired but still pinned by requests: their files must not be pruned yet. */
  private draining = new Set<Snapshot>();

  constructor(private readonly retain: number) {}

  /** Everything this process still has open: current, retained, and retired ones still in use. */
  held(): Snapshot[] {
    for (const s of this.draining) if (s.isClosed) this.draining.delete(s);
    return [...this.queryable(), ...this.draining];
  }

  get current(): Snapshot | undefined {
    return this.cur;
  }

  /** Current first, then retained, newest first. */
  queryable(): Snapshot[] {
    return this.cur ? [this.cur, ...this.past] : [...this.past];
  }

  get(id: string): Snapshot | undefined {
    return this.queryable().find((s) => s.id === id);
  }

  /** Makes `next` current; the old current joins the retained list; the oldest beyond `retain` retire. */
  publish(next: Snapshot): Snapshot | undefined {
    const old = this.cur;
    if (old === next) return old;
    this.past = this.past.filter((s) => s !== next);
    next.revive();
    next.servedAt = new Date();
    this.cur = next;
    if (old) this.past.unshift(old);
    for (const gone of this.past.splice(this.retain)) this.retireOne(gone);
    this.draining.delete(next);
    return old;
  }

  /** Retires everything (shutdown); lanes are released as their requests finish. */
  retireAll(): void {
    for (const s of this.queryable()) this.retireOne(s);
    this.cur = undefined;
    this.past = [];
  }

  private retireOne(s: Snapshot): void {
    s.retire();
    if (!s.isClosed) this.draining.add(s);
  }
}
