// Typed front of the C++ addon (native/). Everything that touches mapped
// lane memory or runs a kernel lives there; this module only loads it and
// gives it TypeScript types. Errors thrown by the addon are plain Errors
// with a string `code` (see NativeErrorCode).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export type KernelPath = 'portable' | 'avx2' | 'avx512';

export type NativeErrorCode =
  | 'EPARAMS' // bad argument or parameter combination
  | 'ESHARD_OPEN' // a shard file could not be opened
  | 'EFILE_OPEN' // a file to hash could not be opened
  | 'ENOT_REGULAR' // a FIFO, device, socket or directory where a regular file belongs
  | 'EFILE_CHANGED' // not the inode that was validated, or written while it was read
  | 'ECANCELED' // hashing was cancelled
  | 'ESHARD_SIZE' // a shard file has the wrong size
  | 'EMMAP' // mmap/madvise failed
  | 'EIO' // read failed (in-memory mode)
  | 'EQUERY_SIZE' // a query vector does not have m elements
  | 'ERELEASED' // the lane handle was released
  | 'ECPU' // a kernel path was forced that this CPU cannot run
  | 'ENOMEM';

export interface CpuFeatures {
  avx2: boolean;
  avx512: boolean; // AVX-512 F+BW(+VL) usable (cpuid and OS state)
  avx512vnni: boolean;
  avxvnni: boolean;
  /** The fastest path this CPU runs. */
  best: KernelPath;
  /** The path kernels use when a call names none: LANEPIR_KERNEL_PATH if set, else `best`; null if that variable names a path this CPU cannot run (kernel calls then fail). */
  default: KernelPath | null;
  /** LANEPIR_KERNEL_PATH as set, or null. */
  forced: string | null;
  /** Threads of the persistent kernel pool started so far. */
  poolThreads: number;
  /** All paths this CPU can run, portable first. */
  paths: KernelPath[];
}

export interface LaneOpenOptions {
  /** Shard files in index order. */
  shards: string[];
  /** Bytes per entry. */
  entrySize: number;
  /** Number of entries in the lane. */
  entries: number;
  /** Size of every shard but the last (a multiple of entrySize). */
  shardSize: number;
  /** Columns of the SimplePIR matrix (entries per record row). */
  m: number;
  /**
   * Where the lane's bytes live (see LaneMemory): 'mmap' maps the shards
   * read-only; 'memory' reads them into one huge-page buffer; 'cache' reads
   * them into huge-page shard buffers shared with every other lane that has
   * the same shard files (only changed shards are read).
   */
  mode: LaneMemory;
  /** Cache mode: the manifest's sha256 of each shard; a cached buffer is reused only for the same file and checksum. */
  contentIds?: string[];
  /** One per shard: each must be exactly this inode (the file that was validated), else EFILE_CHANGED. */
  expect?: FileIdentity[];
}

/** Which inode a file is, and its state when it was checked. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: number;
  mtimeNs: bigint;
}

export interface HashJob {
  /** sha256 of each file, 32 bytes each, in order. */
  promise: Promise<Buffer>;
  /** Stops the job (its promise rejects with ECANCELED) at the next MiB read. */
  cancel(): void;
}

export type LaneMemory = 'mmap' | 'memory' | 'cache';

export interface AnswerOptions {
  /** Worker threads for this call (default: all cores). */
  threads?: number;
  /** Force a kernel path (tests, benchmarks). Default: best available. */
  path?: KernelPath | 'auto';
}

export interface HintOptions extends AnswerOptions {
  /** Called on the JS thread with (rowsDone, rowsTotal) as record rows finish. */
  onProgress?: (done: number, total: number) => void;
}

export interface LaneHandle {
  readonly entries: number;
  readonly entrySize: number;
  readonly m: number;
  /** Record rows R = ceil(entries / m). */
  readonly rows: number;
  /** Total bytes of lane data (entries * entrySize). */
  readonly bytes: number;
  readonly mode: LaneMemory;
  /** True once release() was called (the memory may still be in use by running kernels). */
  readonly released: boolean;
  /**
   * Drop JS's reference. The mapping is unmapped when the last running kernel
   * call that uses it has finished (refcount), never by GC timing, and never
   * on the JS thread (tearing down a large warm mapping takes a long time).
   * Resolves once JS's reference is dropped (after the unmap if it was last).
   */
  release(): Promise<void>;
  /**
   * Answer K = queries.length (1..16) queries in one pass over the lane.
   * Each query has m uint32 words; each answer has entrySize * rows words:
   * ans[t] = sum_c X[t][c] * q[c] mod 2^32.
   */
  answer(queries: Uint32Array[], options?: AnswerOptions): Promise<Uint32Array[]>;
  /** Copy of entry `index` (plaintext; operators and tests). */
  readEntry(index: number): Buffer;
  /** Touch every page once off the JS thread (pre-fault a fresh mapping). */
  warm(): Promise<void>;
}

export interface MappingStats {
  /** Lanes whose memory is still held (mapped or allocated). */
  lanes: number;
  /** Bytes of lane data still held (by lane: shards shared between lanes count once per lane). */
  bytes: number;
  /** The shard cache (lanes opened in 'cache' mode). */
  cache: ShardCacheStats;
}

export interface ShardCacheStats {
  /** Huge-page regions mapped, and their bytes (shard slots in use or free). */
  regions: number;
  regionBytes: number;
  /** Shard buffers alive and their bytes: each distinct shard file once, however many lanes share it. */
  shards: number;
  liveBytes: number;
  /** Shards reused from the cache / read from their files, and bytes read, since the process started. */
  hits: number;
  misses: number;
  readBytes: number;
}

export interface NativeAddon {
  cpuFeatures(): CpuFeatures;
  /** Open a lane (maps or reads the shards off the JS thread). */
  openLane(options: LaneOpenOptions): Promise<LaneHandle>;
  /**
   * H = (X - 128) * A mod 2^32 where A (m x n) is the AES-128-CTR stream of
   * `seed` (16 bytes). Returns (entrySize * rows) x n uint32, row-major.
   */
  hint(lane: LaneHandle, seed: Uint8Array, n: number, options?: HintOptions): Promise<Uint32Array>;
  /** Rows [rowStart, rowStart + rowCount) of A (row-major, n words each), generated in C++. */
  expandA(seed: Uint8Array, rowStart: number, rowCount: number, n: number): Uint32Array;
  /**
   * keccak256(prefix || key) for every key: key i is data[offsets[i] .. offsets[i+1]);
   * 32 bytes per key, back to back (Ethereum's Keccak-256; the builder hashes keyword-lane keys with it).
   */
  keccakBatch(prefix: Uint8Array, data: Uint8Array, offsets: Uint32Array): Uint8Array;
  /** Lane memory still held by this process. */
  mappingStats(): MappingStats;
  /**
   * sha256 of whole files, off the JS thread on `threads` threads (default 1).
   * Each file is opened without blocking and must be a regular file
   * (ENOT_REGULAR), the given inode when `expect` is given, and unchanged
   * while it is read (EFILE_CHANGED).
   */
  hashFiles(paths: string[], options?: { threads?: number; expect?: FileIdentity[] }): HashJob;
  /**
   * Benchmark helper: read every byte of the lane `passes` times (default 1)
   * on `threads` threads (default: all cores), off the JS thread.
   */
  readBandwidth(lane: LaneHandle, threads?: number, passes?: number): Promise<ReadBandwidthResult>;
}

export interface ReadBandwidthResult {
  /** Wall time of the read passes. */
  seconds: number;
  /** Bytes read (lane bytes x passes). */
  bytes: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src/native.js -> <root>/build/Release/lanepir.node
const root = path.resolve(here, '..', '..');
const addonPath = path.join(root, 'build', 'Release', 'lanepir.node');

/**
 * Loads the built addon from its one fixed place. Loading never builds
 * anything (no `bindings`/prebuild fallbacks that shell out to node-gyp): a
 * missing addon is an error that says how to build it.
 */
function loadAddon(): NativeAddon {
  try {
    return createRequire(import.meta.url)(addonPath) as NativeAddon;
  } catch (err) {
    if (errorCode(err) !== 'MODULE_NOT_FOUND') throw err;
    throw Object.assign(new Error(`the native addon ${addonPath} is not built: run \`npm run build\` (or \`npm ci\`) in ${root}`), {
      code: 'ENATIVE_MISSING',
    });
  }
}

export const native: NativeAddon = loadAddon();

/** The error code of an addon error, or undefined. */
export function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

// ---- Cluster control segment (native/control.*) ----

export interface PublishedGeneration {
  /** Publishes so far (changes on every publish). */
  count: number;
  generation: string | null;
  blockNumber: number | null;
  /** Unix ms of the publish. */
  publishedAt: number;
  dir: string;
}

export interface WorkerSlotState {
  pid: number;
  /** Generation served (ids up to 31 bytes), null when none. */
  serving: string | null;
  requests?: number;
  /** Generations held, with their in-flight requests: all of them may be given; the first controlLayout.heldMax are listed. */
  held: { generation: string; inFlight: number }[];
  /** How many generations are held (default held.length). */
  heldTotal?: number;
}

export interface WorkerSlotRead extends WorkerSlotState {
  /** Unix ms of the slot's last write. */
  heartbeatAt: number;
  requests: number;
  /** Generations the worker holds: more than held.length means the list overflowed (incomplete). */
  heldTotal: number;
}

export interface ControlSegment {
  readonly name: string;
  readonly slots: number;
  readonly primaryPid: number;
  /** Primary only: the single store that switches the whole server. Returns the publish count. */
  publish(p: { generation: string; blockNumber: number; dir: string }): number;
  readPublished(): PublishedGeneration | null;
  /** One atomic load: cheap enough for every request. */
  publishCount(): number;
  writeSlot(index: number, state: WorkerSlotState): void;
  readSlot(index: number): WorkerSlotRead;
  clearSlot(index: number): void;
  /** Removes the segment's name (the primary, at exit). */
  unlink(): void;
  /** Unmaps it; later calls throw ESEGMENT. */
  close(): void;
}

export interface ControlAddon {
  /** Creates the segment; replaces a stale one whose primary is dead; ESEGMENT_BUSY if it is alive. */
  controlCreate(name: string, slots: number): ControlSegment;
  /** Maps an existing segment (ENOSEGMENT when there is none). */
  controlOpen(name: string): ControlSegment;
  controlLayout: { version: number; headerBytes: number; slotBytes: number; heldMax: number };
}

export const control: ControlAddon = native as unknown as ControlAddon;

// ---- Query exchange and kernel executor (native/exchange.*, native/executor.*) ----

/** Lanes by index in the exchange. */
export const EXCHANGE_LANES = ['hot', 'cold'] as const;

export interface ExchangeStats {
  executor: { pid: number; epoch: number; state: 'none' | 'starting' | 'serving' | 'stopped' | 'unknown'; heartbeatAt: number };
  /** Passes run and queries answered, per lane (hot, cold). */
  lanes: { passes: number; answered: number }[];
  regions: { pid: number; incarnation: number; inKernel: number[]; submitted: number; completed: number }[];
}

/** Shared memory between the servers that take queries and the executor that answers them. */
export interface QueryExchange {
  readonly name: string;
  readonly regions: number;
  readonly descriptors: number;
  readonly dataBytes: number;
  /** The primary, when a worker exits: drops its queued queries, frees its finished ones. */
  resetRegion(region: number): void;
  /** When the executor is gone: queries that were in its pass fail (EEXECUTOR_LOST). Returns how many. */
  failTaken(): number;
  stats(): ExchangeStats;
  unlink(): void;
  close(): void;
}

/** (descriptor, result code, batch | epoch << 32 truncated to the batch, pass microseconds) per finished query. */
export type CompletionWords = Uint32Array;

export interface KernelClient {
  /** This region's data area (query and answer areas), shared with the executor. */
  readonly data: Uint8Array;
  readonly descriptors: number;
  readonly region: number;
  /** A request of `count` queries (1..16, default 1) whose areas hold them back to back; answered in one pass. */
  submit(descriptor: number, lane: number, generation: string, queryOff: number, queryBytes: number, answerOff: number, answerBytes: number, count?: number): void;
  /** Withdraws a query not yet taken into a pass (true); false: it completes as usual. */
  cancel(descriptor: number): boolean;
  /** The answer was sent; the descriptor can be reused. */
  free(descriptor: number): void;
  /** Queries of the lane queued or in a pass, across every live region. */
  pending(lane: number): number;
  executor(): { pid: number; epoch: number; serving: boolean; heartbeatAt: number };
  /** A descriptor's state: 0 free, 1 queued, 2 in a pass, 3 done, 4 delivered (tests, diagnostics). */
  state(descriptor: number): number;
  /** Keep the process alive while queries are pending (ref) or not (unref, the default). */
  ref(): void;
  unref(): void;
  close(): void;
}

export interface PassReport {
  lane: 'hot' | 'cold';
  batch: number;
  seconds: number;
  bytes: number;
  generation: string;
}

export interface KernelExecutor {
  readonly epoch: number;
  /** Registers a generation's lanes (the executor holds its own references); returns a token for dropGeneration. */
  setGeneration(generation: string, lanes: { hot?: LaneHandle; cold?: LaneHandle }): number;
  /** Forgets a generation (only the registration with `token`, when given). */
  dropGeneration(generation: string, token?: number): boolean;
  generations(): string[];
  /** Begin taking queries. */
  start(): void;
  /** Lane threads finish their pass and stop. */
  stop(): void;
}

export interface ExchangeAddon {
  /** name null: a private exchange for one process (its executor runs in it too). */
  exchangeCreate(name: string | null, regions: number, descriptors: number, dataBytes: number): QueryExchange;
  exchangeOpen(name: string): QueryExchange;
  KernelClient: new (exchange: QueryExchange, region: number, onComplete: (words: CompletionWords) => void, claimTimeoutMs?: number) => KernelClient;
  KernelExecutor: new (
    exchange: QueryExchange,
    options: { batchMax?: number; windowMs?: number; threads?: number; path?: KernelPath | 'auto' },
    onPass?: (p: PassReport) => void,
  ) => KernelExecutor;
  exchangeLayout: { version: number; headerBytes: number; regionHeaderBytes: number; descriptorBytes: number };
}

export const exchange: ExchangeAddon = native as unknown as ExchangeAddon;

/** Result codes of finished queries (native/exchange.h resultName). */
export const EXCHANGE_RESULTS = ['OK', 'EGENERATION_GONE', 'EQUERY_SIZE', 'EEXECUTOR_LOST', 'EKERNEL', 'EBAD_DESCRIPTOR'] as const;
