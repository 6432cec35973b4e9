// The messages between a page and its lanepir worker (docs/ARCHITECTURE.md,
// "The browser client"). The whole client runs in the worker: hints, the
// matrix A, secrets and query states never leave it; the page sends what to
// read and gets values back. Requests and answers are matched by id; each
// answer carries a report of what the call cost.
import { type RoundStats } from '../eth/client.js';

/** Bumped when a message changes shape; the worker refuses another version. */
export const WORKER_PROTOCOL = 1;

/** How the worker's client is set up (one client per worker, for one server). */
export interface WorkerClientOptions {
  /** The lanepir server's public URL. */
  url: string;
  /**
   * Keep A expanded in memory per lane (m * n * 4 bytes: 64 MiB at m = 16384),
   * or regenerate it for every pass of query preparation (the default here:
   * with queries prepared ahead in idle time a lookup costs the same either
   * way, and the worker holds a quarter of the memory; see the browser bench).
   */
  cacheMatrix?: boolean;
  /** Where hints persist: "indexeddb" (default where available) or "none". */
  cache?: 'indexeddb' | 'none';
  /** IndexedDB database name (default "lanepir-hints"). */
  cacheName?: string;
  /** Per-request time limit in ms (default 30 000). */
  timeoutMs?: number;
  /** Lane hiding (default true): every lane gets the same queries whatever the keys. */
  hideLanes?: boolean;
  /** Pad a round's key count up to a multiple of this. */
  padTo?: number;
  /**
   * After each round, prepare as many queries per lane as it used (fresh
   * secrets, A s + e) while the worker is idle, so the next round only adds
   * its columns (default true).
   */
  prepareAhead?: boolean;
}

export type WorkerRequest =
  | { v: typeof WORKER_PROTOCOL; id: number; op: 'open'; options: WorkerClientOptions }
  | { v: typeof WORKER_PROTOCOL; id: number; op: 'call'; method: string; args: unknown[] };

export type WorkerResponse =
  | { id: number; ok: true; value: unknown; report: CallReport }
  | { id: number; ok: false; error: SerializedError };

export interface SerializedError {
  name: string;
  message: string;
  /** The lanepir error code (EHINT, ENETWORK, …); EINTERNAL when the error had none. */
  code: string;
  /** An EIP-1193 / JSON-RPC error's numeric code (ProviderRpcError), and its data. */
  rpcCode?: number;
  data?: unknown;
}

/** What one call cost, measured in the worker. */
export interface CallReport {
  /** Milliseconds in the worker, from the request's arrival to its answer. */
  ms: number;
  /** Hint bytes fetched during the call: full downloads and deltas. */
  hintBytes: number;
  deltaBytes: number;
  downloads: number;
  deltas: number;
  /** Whether the hint cache in IndexedDB was written (after a download or delta). */
  cacheSaves: number;
  /** The round of private reads the call made, if it made one: queries per lane, bytes, time per step, hint sources. */
  round?: RoundStats;
}
