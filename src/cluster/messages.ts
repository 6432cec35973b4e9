// IPC between the primary and its workers (process.send over node:cluster).
// Requests carry a correlation id; the answer echoes it.
import { type ReloadResult } from '../server/reloader.js';

export interface ErrorBody {
  status: number;
  code: string;
  message: string;
  extra?: Record<string, unknown>;
}

/** Worker -> primary. */
export type WorkerMessage =
  | { t: 'secrets?' }
  | { t: 'ready'; slot: number; generation: string | null; publicUrl: string; adminUrl: string }
  /** Sent just before a worker exits because it could not start; `listen` marks a listener that could not be opened. */
  | { t: 'start-failed'; code: string; message: string; listen: boolean }
  | { t: 'reload'; id: string; target?: string }
  /** The HTTP caller of reload `id` went away: if nobody else wants that reload, it must not switch. */
  | { t: 'reload-abandon'; id: string }
  /** The filesDigest the primary validated `generation` with (a worker maps it without hashing again). */
  | { t: 'digest?'; id: string; generation: string }
  | { t: 'generations'; id: string }
  | { t: 'metrics'; id: string }
  | { t: 'prepared'; id: string; ok: true; ms: number }
  | { t: 'prepared'; id: string; ok: false; error: ErrorBody }
  | { t: 'switched'; id: string; generation: string; ok: boolean; at: number; error?: string };

/** Primary -> worker. Secrets travel over IPC, never in a worker's environment (readable in /proc). */
export type PrimaryMessage =
  | { t: 'secrets'; adminToken: string | null }
  | { t: 'reload-result'; id: string; ok: true; result: ClusterReloadResult }
  | { t: 'reload-result'; id: string; ok: false; error: ErrorBody }
  | { t: 'generations-result'; id: string; data: unknown }
  | { t: 'metrics-result'; id: string; contentType: string; body: string }
  | { t: 'digest'; id: string; generation: string; digest: string | null }
  /** `digest`: the primary's filesDigest of the generation; without it the worker validates in full. */
  | { t: 'prepare'; id: string; generation: string; digest?: string }
  | { t: 'switch'; id: string; generation: string }
  | { t: 'abort'; id: string; generation: string }
  | { t: 'shutdown' };

export interface WorkerConfirmation {
  worker: string;
  pid: number;
  slot: number;
  prepared: boolean;
  prepare_ms?: number;
  switched: boolean;
  /** Milliseconds from the publish to this worker serving the generation. */
  publish_to_switch_ms?: number;
  error?: string;
}

export interface ClusterReloadResult extends ReloadResult {
  workers: WorkerConfirmation[];
  /** The kernel process, which maps the generation before it is published. */
  executor: ExecutorConfirmation | null;
  /** Milliseconds from the publish to the last worker switched. */
  publish_to_switch_ms: number | null;
}

/** Wall-clock milliseconds with sub-millisecond precision (comparable across processes). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Kernel process -> primary. */
export type ExecutorMessage =
  | { t: 'x-ready'; epoch: number; laneMemory: string }
  | { t: 'x-prepared'; id: string; ok: true; ms: number }
  | { t: 'x-prepared'; id: string; ok: false; error: ErrorBody }
  | { t: 'x-state'; id: string; generations: string[]; mappings: Record<string, unknown> };

/** Primary -> kernel process. */
export type PrimaryToExecutor =
  /** `digest`: filesDigest of the primary's validation; the kernel process confirms it (or validates fully without one). */
  | { t: 'x-prepare'; id: string; generation: string; dir: string; digest?: string }
  /** Every generation some worker may still query: the others are released. */
  | { t: 'x-hold'; generations: string[] }
  /** Take queries (after the held generations are mapped). */
  | { t: 'x-start' }
  | { t: 'x-state'; id: string }
  | { t: 'shutdown' };

export interface ExecutorConfirmation {
  pid: number;
  prepared: boolean;
  prepare_ms?: number;
  error?: string;
}
