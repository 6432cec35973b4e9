// The cluster primary: forks the workers and the kernel process, owns the
// control segment and the query exchange, and orchestrates reloads. A reload
// is validated here (structure and every file's sha256, once), prepared by
// the kernel process (which maps the lanes) and by every live worker, each
// confirming it sees the files the primary hashed, and only when all of them
// are ready is it published in the segment: that single store switches the
// whole server. A reload all of whose callers went away stops before the
// publish. The kernel process holds every generation some worker may still
// query; the primary tells it which ones those are (x-hold) as workers let go.
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type Config } from '../config.js';
import { type ControlSegment, type QueryExchange, control, exchange as exchangeAddon } from '../native.js';
import { type GenerationInfo, resolveGeneration } from '../store/generation.js';
import { readManifest } from '../store/manifest.js';
import { type LaneName, generationBlock, generationDir } from '../store/layout.js';
import { exchangeSizing, laneMemoryMode } from '../server/lane-memory.js';
import { SerialRunner, runStep } from '../server/bounded.js';
import { ReloadError, abandonedError, rethrow } from '../server/reload-error.js';
import { Validator } from '../server/validator.js';
import { type ValidationStats } from '../store/checksums.js';
import { failpointDelay } from './failpoints.js';
import {
  type ClusterReloadResult,
  type ErrorBody,
  type ExecutorConfirmation,
  type ExecutorMessage,
  type PrimaryMessage,
  type PrimaryToExecutor,
  type WorkerConfirmation,
  type WorkerMessage,
  preciseNow,
} from './messages.js';
import { segmentName } from './segment.js';

const SWITCH_TIMEOUT_MS = 5_000;
/** How often the kernel process is told which generations the workers still hold. */
const HOLD_INTERVAL_MS = 250;
const MAX_BACKOFF_MS = 5_000;
const STABLE_AFTER_MS = 30_000;
/**
 * Crash-loop policy: a start fails when the worker exits before it is ready.
 * When no worker is serving and every slot's last MAX_FAILED_STARTS starts
 * failed (about 3 s of backoff plus the start times), the primary gives up:
 * it stops the workers, removes the segment and reports a PrimaryError, so
 * the process exits non-zero and its supervisor sees the outage.
 */
export const MAX_FAILED_STARTS = 5;
/** How long workers may take to exit when the primary gives up, before SIGKILL. */
const GIVE_UP_GRACE_MS = 5_000;

/** The primary stopped without being asked to: no worker could start, or a listener cannot be opened. */
export class PrimaryError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PrimaryError';
  }
}

interface WorkerState {
  slot: number;
  worker: Worker;
  name: string;
  ready: boolean;
  startedAt: number;
  /** The generation published when it was forked: what it maps before it first writes its slot. */
  forkedOn: string | null;
  /** Why it could not start (its last message before exiting). */
  startError?: { code: string; message: string; listen: boolean };
  /** Waiters for this worker's acknowledgements, by correlation id. */
  acks: Map<string, (msg: WorkerMessage | undefined) => void>;
  /** Reloads this worker forwarded, still running: aborted when their HTTP caller goes away. */
  callers: Map<string, AbortController>;
}

class PrimaryMetrics {
  readonly registry = new Registry();
  readonly reloads = new Counter({ name: 'lanepir_reloads_total', help: 'Cluster reloads by result', labelNames: ['result'] as const, registers: [this.registry] });
  readonly reloadDuration = new Histogram({
    name: 'lanepir_reload_duration_seconds',
    help: 'Cluster reload duration (validate, prepare on every worker, publish, switch)',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly publishToSwitch = new Histogram({
    name: 'lanepir_publish_to_switch_seconds',
    help: 'From the publish in the control segment to the last worker switched',
    buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
    registers: [this.registry],
  });
  readonly publishedGeneration = new Gauge({ name: 'lanepir_published_generation', help: 'Generation published to the workers', registers: [this.registry] });
  readonly publishedBlock = new Gauge({ name: 'lanepir_published_block', help: 'Block number of the published generation', registers: [this.registry] });
  readonly restarts = new Counter({ name: 'lanepir_worker_restarts_total', help: 'Workers re-forked after a crash', registers: [this.registry] });
  readonly workers = new Gauge({ name: 'lanepir_workers', help: 'Live workers', registers: [this.registry] });
  readonly executorRestarts = new Counter({ name: 'lanepir_executor_restarts_total', help: 'Kernel processes re-forked after a crash', registers: [this.registry] });
  readonly lostQueries = new Counter({
    name: 'lanepir_executor_lost_queries_total',
    help: 'Queries failed because the kernel process died during their pass',
    registers: [this.registry],
  });
}

interface ExecutorState {
  worker: Worker;
  startedAt: number;
  /** x-ready received (the native executor runs). */
  ready: boolean;
  /** The held generations are mapped and it takes queries. */
  serving: boolean;
  acks: Map<string, (msg: ExecutorMessage | undefined) => void>;
  startError?: { code: string; message: string };
}


export interface PrimaryHandle {
  publicUrl: string;
  adminUrl: string;
  segment: ControlSegment;
  /** The query exchange between the workers and the kernel process. */
  exchange: QueryExchange;
  /** The kernel process's pid (undefined while it is being replaced). */
  executorPid(): number | undefined;
  reload(target?: string, opts?: { signal?: AbortSignal }): Promise<ClusterReloadResult>;
  /** Drain every worker, remove the segment. */
  shutdown(): Promise<void>;
  /** Kill the workers and remove the segment now (a second signal). */
  forceStop(): void;
  /**
   * Settles when the primary has stopped: resolves after shutdown(), rejects
   * with a PrimaryError when it gave up (workers stopped, segment removed).
   */
  done: Promise<void>;
}

/**
 * Starts the cluster and resolves when every worker is ready. Rejects with a
 * PrimaryError (after stopping the workers and removing the segment) when a
 * listener cannot be opened, when workers cannot start (crash-loop policy
 * above), or when `opts.signal` aborts the start (code ESTOPPED).
 */
export async function runPrimary(
  config: Config,
  logger: Logger = pino({ level: config.log_level, base: { role: 'primary' } }),
  opts: { signal?: AbortSignal } = {},
): Promise<PrimaryHandle> {
  const count = config.workers;
  const segment = control.controlCreate(segmentName(config), count);
  let segmentRemoved = false;
  let xchg: QueryExchange | undefined;
  const removeSegment = () => {
    if (segmentRemoved) return;
    segmentRemoved = true;
    for (const close of [() => segment.unlink(), () => segment.close(), () => xchg?.unlink(), () => xchg?.close()]) {
      try {
        close();
      } catch {
        // closed already
      }
    }
  };
  const metrics = new PrimaryMetrics();
  const aggregator = new AggregatorRegistry();
  const workers = new Map<number, WorkerState>();
  const backoff = new Map<number, number>();
  /** Consecutive starts per slot that ended before the worker was ready. */
  const failedStarts = new Map<number, number>();
  /** Re-forks waiting out their backoff (they keep the event loop alive: a primary with no live worker must not just exit). */
  const pendingForks = new Set<NodeJS.Timeout>();
  let shuttingDown = false;
  /** All workers were ready once (start-up is over). */
  let started = false;
  let resolveStart: () => void = () => {};
  let rejectStart: (err: Error) => void = () => {};
  const whenStarted = new Promise<void>((resolve, reject) => {
    resolveStart = resolve;
    rejectStart = reject;
  });
  whenStarted.catch(() => {}); // awaited below
  let resolveDone: () => void = () => {};
  let rejectDone: (err: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  done.catch(() => {}); // the caller observes it; never an unhandled rejection
  let servedLanes: LaneName[] = [];
  let urls: { publicUrl: string; adminUrl: string } | undefined;
  // The kernel process (see below).
  let executor: ExecutorState | undefined;
  let executorFork: NodeJS.Timeout | undefined;
  let holdTimer: NodeJS.Timeout | undefined;
  const validator = new Validator(config);
  /** Generations validated before (what a swap back to one needs: no disk access), with the digest workers confirm. */
  const validated = new Map<string, { dir: string; blockNumber: number; lanes: LaneName[]; digest?: string }>();
  const remember = (id: string, v: { dir: string; blockNumber: number; lanes: LaneName[]; digest?: string }) => {
    validated.delete(id);
    validated.set(id, v);
    if (validated.size > 64) validated.delete(validated.keys().next().value!);
  };

  // Publish what <data>/current points at, if it is sound; workers map it before listening.
  let firstInfo: GenerationInfo | undefined;
  try {
    const { dir } = await runStep('resolving the generation', config.reload_step_timeout_ms, undefined, () => resolveGeneration(config.data_dir));
    const { info, digest } = await validator.validate(dir, []);
    firstInfo = info;
    remember(info.id, { dir: info.dir, blockNumber: info.blockNumber, lanes: Object.keys(info.lanes) as LaneName[], digest });
    segment.publish({ generation: info.id, blockNumber: info.blockNumber, dir: info.dir });
    servedLanes = Object.keys(info.lanes) as LaneName[];
    metrics.publishedGeneration.set(generationBlock(info.id));
    metrics.publishedBlock.set(info.blockNumber);
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'no generation published at start-up; workers start unready');
  }

  // The query exchange: one region per worker slot, sized from the generation served first.
  try {
    const { descriptors, dataBytes } = exchangeSizing(config, firstInfo, { minMiB: 16, maxMiB: 4096 });
    xchg = exchangeAddon.exchangeCreate(`${segment.name}-x`, count, descriptors, dataBytes);
  } catch (err) {
    removeSegment();
    throw err;
  }
  const xch = xchg;

  cluster.setupPrimary({ exec: path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker-main.js'), args: [] });
  // One kernel process scans each lane for every worker: kernel_threads 0 gives it all cores.
  const { admin_token: adminToken, ...publicConfig } = config;
  const workerConfig: Omit<Config, 'admin_token'> = publicConfig;
  const env = { LANEPIR_SEGMENT: segment.name, LANEPIR_EXCHANGE: xch.name, LANEPIR_CONFIG_JSON: JSON.stringify(workerConfig) };
  const readyWaiters: (() => void)[] = [];

  const fork = (slot: number) => {
    const worker = cluster.fork({ ...env, LANEPIR_WORKER_SLOT: String(slot) });
    const state: WorkerState = {
      slot,
      worker,
      name: `worker-${slot}-${worker.process.pid}`,
      ready: false,
      startedAt: Date.now(),
      forkedOn: readPublishedSafe()?.generation ?? null,
      acks: new Map(),
      callers: new Map(),
    };
    workers.set(slot, state);
    worker.on('message', (msg: WorkerMessage) => onMessage(state, msg));
    worker.on('exit', (code, signal) => {
      // Its last message (why it could not start) may still be in the IPC pipe: decide once the channel is drained.
      if (!worker.isConnected()) onExit(code, signal);
      else {
        const fallback = setTimeout(() => onExit(code, signal), 1_000);
        worker.once('disconnect', () => {
          clearTimeout(fallback);
          onExit(code, signal);
        });
      }
    });
    let exited = false;
    const onExit = (code: number | null, signal: string | null) => {
      if (exited) return;
      exited = true;
      if (workers.get(slot) === state) workers.delete(slot);
      // Its HTTP callers are gone with it.
      for (const caller of state.callers.values()) caller.abort();
      state.callers.clear();
      metrics.workers.set(workers.size);
      // A worker that dies mid-reload is dropped from it.
      for (const resolve of state.acks.values()) resolve(undefined);
      state.acks.clear();
      try {
        segment.clearSlot(slot);
        // Its queued queries are dropped (never answered to anyone), so they hold up no pass.
        xch.resetRegion(slot);
      } catch {
        // segment already closed at shutdown
      }
      if (shuttingDown) return;
      const cause = state.startError?.message ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
      if (!state.ready) {
        failedStarts.set(slot, (failedStarts.get(slot) ?? 0) + 1);
        // A listener that cannot be opened at start-up will not open on a retry.
        if (!started && state.startError?.listen) return giveUp(new PrimaryError(state.startError.code, state.startError.message));
        const allFailing = Array.from({ length: count }, (_, s) => failedStarts.get(s) ?? 0).every((n) => n >= MAX_FAILED_STARTS);
        if (readyCount() === 0 && allFailing) {
          return giveUp(
            new PrimaryError(
              'ECRASH_LOOP',
              `giving up: no worker is serving and the last ${MAX_FAILED_STARTS} starts of every worker failed (last: ${cause})`,
            ),
          );
        }
      }
      const lived = Date.now() - state.startedAt;
      const delay = lived > STABLE_AFTER_MS ? 100 : Math.min(MAX_BACKOFF_MS, (backoff.get(slot) ?? 50) * 2);
      backoff.set(slot, delay);
      logger.error({ worker: state.name, code, signal, cause, restart_in_ms: delay }, 'worker exited; re-forking');
      metrics.restarts.inc();
      const timer = setTimeout(() => {
        pendingForks.delete(timer);
        if (!shuttingDown) fork(slot);
      }, delay);
      pendingForks.add(timer);
    };
  };

  const readyCount = () => [...workers.values()].filter((w) => w.ready).length;
  const exitOf = (w: WorkerState) => new Promise<void>((r) => (w.worker.isDead() ? r() : w.worker.once('exit', () => r())));

  /** Stops everything after a failure that retrying cannot fix; the caller learns it from runPrimary or `done`. */
  const giveUp = (err: PrimaryError) => {
    if (shuttingDown) return;
    shuttingDown = true;
    for (const t of pendingForks) clearTimeout(t);
    pendingForks.clear();
    if (started) logger.fatal({ code: err.code, err: err.message }, 'primary gives up');
    if (holdTimer) clearInterval(holdTimer);
    if (executorFork) clearTimeout(executorFork);
    void (async () => {
      const live = [...workers.values()].map((w) => w.worker);
      if (executor) live.push(executor.worker);
      const exits = Promise.all(live.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r())))));
      for (const w of live) if (!w.isDead()) w.process.kill('SIGTERM');
      const grace = setTimeout(() => live.forEach((w) => !w.isDead() && w.process.kill('SIGKILL')), GIVE_UP_GRACE_MS);
      await exits;
      clearTimeout(grace);
      removeSegment();
      if (started) rejectDone(err);
      else rejectStart(err);
    })();
  };

  // Whatever ends this process (an uncaught exception, process.exit), the segment
  // goes and no worker outlives it.
  process.on('exit', () => {
    for (const w of workers.values()) if (!w.worker.isDead()) w.worker.process.kill('SIGKILL');
    if (executor && !executor.worker.isDead()) executor.worker.process.kill('SIGKILL');
    removeSegment();
  });

  const readPublishedSafe = () => {
    try {
      return segment.readPublished();
    } catch {
      return undefined;
    }
  };

  /** A worker's slot, or undefined if it cannot be read (left mid-write by a worker that died). */
  const readSlot = (slot: number) => {
    try {
      return segment.readSlot(slot);
    } catch (err) {
      logger.warn({ slot, err: (err as Error).message }, 'control segment slot unreadable');
      return undefined;
    }
  };

  const send = (w: WorkerState, msg: PrimaryMessage) => {
    if (w.worker.isConnected()) w.worker.send(msg);
  };

  /** Sends msg to a worker and waits for the acknowledgement with the same id (undefined: the worker died or timed out). */
  const request = (w: WorkerState, msg: PrimaryMessage & { id: string }, timeoutMs: number) =>
    new Promise<WorkerMessage | undefined>((resolve) => {
      const timer = setTimeout(() => {
        w.acks.delete(msg.id);
        resolve(undefined);
      }, timeoutMs);
      w.acks.set(msg.id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      send(w, msg);
    });

  // ---- the kernel process ----
  let executorBackoff = 50;
  let executorFailedStarts = 0;
  /** Generations the serving kernel process has mapped (acknowledged prepares, less what x-hold released). */
  const executorHeld = new Set<string>();
  let executorSeq = 0;
  const executorUpWaiters: (() => void)[] = [];
  let lastHold = '';

  const sendExecutor = (st: ExecutorState, msg: PrimaryToExecutor) => {
    if (st.worker.isConnected()) st.worker.send(msg);
  };
  const requestExecutor = (st: ExecutorState, msg: PrimaryToExecutor & { id: string }, timeoutMs: number) =>
    new Promise<ExecutorMessage | undefined>((resolve) => {
      const timer = setTimeout(() => {
        st.acks.delete(msg.id);
        resolve(undefined);
      }, timeoutMs);
      st.acks.set(msg.id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      sendExecutor(st, msg);
    });
  /** Resolves true once a kernel process serves (false after timeoutMs). */
  const executorUp = (timeoutMs: number) =>
    executor?.serving
      ? Promise.resolve(true)
      : new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), timeoutMs);
          executorUpWaiters.push(() => {
            clearTimeout(timer);
            resolve(true);
          });
        });

  /**
   * Every generation some worker may still query: the published one, the one
   * being reloaded, and everything each worker lists in its slot (or, before
   * it wrote its slot, what was published when it was forked). undefined
   * when a slot cannot be read or its list overflowed (`strict`): nothing may
   * be released then.
   */
  const heldGenerations = (strict: boolean): Set<string> | undefined => {
    const ids = new Set<string>();
    const published = readPublishedSafe();
    if (published?.generation) ids.add(published.generation);
    if (reloading) ids.add(reloading);
    for (const w of workers.values()) {
      const slot = readSlot(w.slot);
      if (!slot) {
        if (strict) return undefined;
        continue;
      }
      if (slot.pid === 0) {
        if (w.forkedOn) ids.add(w.forkedOn);
        continue;
      }
      if (strict && slot.heldTotal > slot.held.length) return undefined;
      for (const h of slot.held) ids.add(h.generation);
    }
    return ids;
  };

  /** Tells the kernel process what it may release (when that changed). */
  const sendHold = () => {
    const st = executor;
    if (!st?.serving) return;
    const ids = heldGenerations(true);
    if (!ids) return;
    const key = [...ids].sort().join(',');
    if (key === lastHold) return;
    lastHold = key;
    for (const g of [...executorHeld]) if (!ids.has(g)) executorHeld.delete(g);
    sendExecutor(st, { t: 'x-hold', generations: [...ids] });
  };

  const forkExecutor = () => {
    executorFork = undefined;
    const worker = cluster.fork({ ...env, LANEPIR_ROLE: 'executor' });
    const st: ExecutorState = { worker, startedAt: Date.now(), ready: false, serving: false, acks: new Map() };
    executor = st;
    worker.on('message', (msg: ExecutorMessage | WorkerMessage) => onExecutorMessage(st, msg));
    let exited = false;
    const onExit = (code: number | null, signal: string | null) => {
      if (exited) return;
      exited = true;
      onExecutorExit(st, code, signal);
    };
    worker.on('exit', (code, signal) => {
      if (!worker.isConnected()) onExit(code, signal);
      else {
        const fallback = setTimeout(() => onExit(code, signal), 1_000);
        worker.once('disconnect', () => {
          clearTimeout(fallback);
          onExit(code, signal);
        });
      }
    });
  };

  /** A fresh kernel process maps every generation a worker may query, then takes queries. */
  const bringUp = async (st: ExecutorState) => {
    const ids = heldGenerations(false)!;
    const results = await Promise.all(
      [...ids].map((id) =>
        requestExecutor(
          st,
          // With the digest of the primary's validation, when it still has it: confirmed there, not hashed again.
          { t: 'x-prepare', id: `x${++executorSeq}`, generation: id, dir: generationDir(config.data_dir, id), ...(validated.get(id)?.digest ? { digest: validated.get(id)!.digest! } : {}) },
          config.prepare_timeout_ms,
        ).then(
          (ack) => ({ id, ack }),
        ),
      ),
    );
    if (executor !== st || st.worker.isDead()) return;
    executorHeld.clear();
    for (const { id, ack } of results) {
      if (ack?.t === 'x-prepared' && ack.ok) executorHeld.add(id);
      else {
        logger.error({ generation: id, err: ack?.t === 'x-prepared' && !ack.ok ? ack.error.message : 'no answer' }, 'the kernel process could not map a held generation; its queries fail with 410');
      }
    }
    sendExecutor(st, { t: 'x-start' });
    st.serving = true;
    executorFailedStarts = 0;
    lastHold = '';
    sendHold();
    logger.info({ pid: st.worker.process.pid, generations: [...ids] }, 'kernel process serving');
    executorUpWaiters.splice(0).forEach((f) => f());
    readyWaiters.splice(0).forEach((f) => f());
  };

  const onExecutorMessage = (st: ExecutorState, msg: ExecutorMessage | WorkerMessage) => {
    switch (msg?.t) {
      case 'start-failed':
        st.startError = { code: msg.code, message: msg.message };
        break;
      case 'x-ready':
        st.ready = true;
        void bringUp(st);
        break;
      case 'x-prepared':
      case 'x-state': {
        const resolve = st.acks.get(msg.id);
        st.acks.delete(msg.id);
        resolve?.(msg);
        break;
      }
    }
  };

  const onExecutorExit = (st: ExecutorState, code: number | null, signal: string | null) => {
    if (executor === st) executor = undefined;
    executorHeld.clear();
    for (const resolve of st.acks.values()) resolve(undefined);
    st.acks.clear();
    // Queries that were in its pass fail now (the workers answer 503, retry); queued ones wait for the next one.
    let lost = 0;
    try {
      lost = xch.failTaken();
    } catch {
      // exchange closed at shutdown
    }
    metrics.lostQueries.inc(lost);
    if (shuttingDown) return;
    const cause = st.startError?.message ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
    if (!st.serving && ++executorFailedStarts >= MAX_FAILED_STARTS) {
      return giveUp(new PrimaryError('ECRASH_LOOP', `giving up: the kernel process failed to start ${MAX_FAILED_STARTS} times in a row (last: ${cause})`));
    }
    const lived = Date.now() - st.startedAt;
    executorBackoff = lived > STABLE_AFTER_MS ? 100 : Math.min(MAX_BACKOFF_MS, executorBackoff * 2);
    logger.error({ pid: st.worker.process.pid, code, signal, cause, lost_queries: lost, restart_in_ms: executorBackoff }, 'kernel process exited; re-forking');
    metrics.executorRestarts.inc();
    executorFork = setTimeout(forkExecutor, executorBackoff);
  };

  // ---- reloads (serialized; a request for the target in progress joins it; abandoned when all its callers are gone) ----
  const runner = new SerialRunner(abandonedError);
  let reloadSeq = 0;
  /** The generation a reload is validating or preparing: workers may be mapping it, so it is held. */
  let reloading: string | null = null;

  const reload = (target?: string, opts: { signal?: AbortSignal } = {}): Promise<ClusterReloadResult> =>
    runner.run(`reload:${target ?? ''}`, (signal) => orchestrate(target, signal), opts.signal);

  const orchestrate = async (target: string | undefined, signal: AbortSignal): Promise<ClusterReloadResult> => {
    const started = performance.now();
    const endTimer = metrics.reloadDuration.startTimer();
    const before = segment.readPublished();
    const live = [...workers.values()].filter((w) => w.ready);
    const confirmations = new Map<WorkerState, WorkerConfirmation>(
      live.map((w) => [w, { worker: w.name, pid: w.worker.process.pid ?? 0, slot: w.slot, prepared: false, switched: false }]),
    );
    let validation: ValidationStats | null = null;
    let executorConfirmation: ExecutorConfirmation | null = null;
    const base = (id: string, block: number, lanes: LaneName[], unchanged: boolean, publishToSwitch: number | null): ClusterReloadResult => ({
      old_block_number: before?.blockNumber ?? null,
      new_block_number: block,
      reload_duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      hot_loaded: lanes.includes('hot'),
      cold_loaded: lanes.includes('cold'),
      mmap_mode: laneMemoryMode(config) === 'mmap',
      lane_memory: laneMemoryMode(config),
      old_generation: before?.generation ?? null,
      new_generation: id,
      unchanged,
      workers: [...confirmations.values()],
      executor: executorConfirmation,
      publish_to_switch_ms: publishToSwitch,
      validation,
    });
    try {
      await failpointDelay('reload-stall', signal);
      const { id, dir } = await runStep('resolving the generation', config.reload_step_timeout_ms, signal, () => resolveGeneration(config.data_dir, target)).catch(rethrow);
      reloading = id;
      if (before?.generation === id) {
        for (const [w, c] of confirmations) {
          c.prepared = c.switched = readSlot(w.slot)?.serving === id;
        }
        metrics.reloads.inc({ result: 'unchanged' });
        return base(id, before.blockNumber!, servedLanes, true, null);
      }
      // A generation every live worker still holds (a rollback, or alternating) was
      // validated when it was first loaded: only its manifest is needed.
      const heldByAll = live.length > 0 && live.every((w) => readSlot(w.slot)?.held.some((h) => h.generation === id));
      let info = heldByAll ? validated.get(id) : undefined;
      if (!info && heldByAll) {
        // Every worker has it open already (prepare answers from memory): only the manifest is needed.
        const m = await runStep('reading the manifest', config.reload_step_timeout_ms, signal, () => readManifest(dir)).catch(rethrow);
        info = { dir, blockNumber: m.block_number, lanes: Object.keys(m.lanes) as LaneName[] };
      } else if (!info) {
        const v = await validator.validate(dir, servedLanes, signal);
        validation = v.validation;
        info = { dir: v.info.dir, blockNumber: v.info.blockNumber, lanes: Object.keys(v.info.lanes) as LaneName[], digest: v.digest };
      }
      remember(id, info);
      const digest = info.digest;
      const lanes = info.lanes;
      const missing = servedLanes.find((l) => !lanes.includes(l));
      if (missing) throw new ReloadError('ELANE_MISSING', `generation ${id} has no ${missing} lane, which is being served`);
      const rid = `r${++reloadSeq}`;

      // 1. The kernel process maps the generation (it answers every worker's queries on it),
      // and every live worker opens it (metadata and hint: the lanes live in the kernel process).
      const genDir = info.dir;
      const executorPrepared = (async (): Promise<ExecutorConfirmation> => {
        if (!(await executorUp(config.prepare_timeout_ms)) || !executor) {
          return { pid: 0, prepared: false, error: `the kernel process is not serving (restarting) after ${config.prepare_timeout_ms} ms` };
        }
        const st = executor;
        const pid = st.worker.process.pid ?? 0;
        // Already mapped there (a swap back): no round trip.
        if (executorHeld.has(id)) return { pid, prepared: true, prepare_ms: 0 };
        const t0 = performance.now();
        const ack = await requestExecutor(st, { t: 'x-prepare', id: rid, generation: id, dir: genDir, ...(digest ? { digest } : {}) }, config.prepare_timeout_ms);
        if (ack?.t === 'x-prepared' && ack.ok) {
          if (executor === st) executorHeld.add(id);
          return { pid, prepared: true, prepare_ms: Math.round((performance.now() - t0) * 1000) / 1000 };
        }
        if (ack?.t === 'x-prepared' && !ack.ok) return { pid, prepared: false, error: `${ack.error.code}: ${ack.error.message}` };
        return { pid, prepared: false, error: st.worker.isDead() ? 'the kernel process exited during the reload' : `no answer within ${config.prepare_timeout_ms} ms` };
      })();
      // A generation every worker still holds (a swap back) needs no prepare round trip through their
      // event loops, which are busy serving queries: a worker serves it from its store as soon as it
      // sees the publish (on its next request, or the switch message).
      const prepared = await Promise.all(
        live.map(async (w) => {
          if (heldByAll) {
            const c = confirmations.get(w)!;
            c.prepared = true;
            c.prepare_ms = 0;
            return 'ok';
          }
          const t0 = performance.now();
          const ack = await request(w, { t: 'prepare', id: rid, generation: id, ...(digest ? { digest } : {}) }, config.prepare_timeout_ms);
          const c = confirmations.get(w)!;
          if (ack === undefined) {
            if (!w.worker.isDead()) c.error = `no answer within ${config.prepare_timeout_ms} ms`;
            else c.error = 'worker exited during the reload (dropped)';
            return w.worker.isDead() ? 'dropped' : 'failed';
          }
          if (ack.t === 'prepared' && ack.ok) {
            c.prepared = true;
            c.prepare_ms = Math.round((performance.now() - t0) * 1000) / 1000;
            return 'ok';
          }
          c.error = ack.t === 'prepared' && !ack.ok ? `${ack.error.code}: ${ack.error.message}` : 'unexpected answer';
          return 'failed';
        }),
      );
      executorConfirmation = await executorPrepared;
      if (!executorConfirmation.prepared) {
        for (const w of live) send(w, { t: 'abort', id: rid, generation: id });
        throw new ReloadError('EPREPARE', `the kernel process could not prepare generation ${id}; nobody switched (${executorConfirmation.error})`, {
          workers: [...confirmations.values()],
          executor: executorConfirmation,
        });
      }
      const failed = live.filter((_, i) => prepared[i] === 'failed');
      if (failed.length > 0) {
        for (const w of live) send(w, { t: 'abort', id: rid, generation: id });
        const first = confirmations.get(failed[0]!)!;
        throw new ReloadError('EPREPARE', `${failed.length} worker(s) could not prepare generation ${id}; nobody switched (${first.worker}: ${first.error})`, {
          workers: [...confirmations.values()],
        });
      }

      // Every caller went away meanwhile: nobody switches.
      if (signal.aborted) {
        for (const w of live) send(w, { t: 'abort', id: rid, generation: id });
        throw signal.reason;
      }

      // 2. The switch: one store in the shared segment.
      const publishedAt = preciseNow();
      try {
        segment.publish({ generation: id, blockNumber: info.blockNumber, dir: info.dir });
      } catch (err) {
        for (const w of live) send(w, { t: 'abort', id: rid, generation: id });
        throw err;
      }
      servedLanes = lanes;
      metrics.publishedGeneration.set(generationBlock(id));
      metrics.publishedBlock.set(info.blockNumber);

      // 3. Tell the workers (each also notices the publish on its next request).
      let lastSwitch: number | null = null;
      await Promise.all(
        live
          .filter((w) => confirmations.get(w)!.prepared)
          .map(async (w) => {
            const ack = await request(w, { t: 'switch', id: rid, generation: id }, SWITCH_TIMEOUT_MS);
            const c = confirmations.get(w)!;
            if (ack?.t === 'switched' && ack.ok) {
              c.switched = true;
              c.publish_to_switch_ms = Math.round(Math.max(0, ack.at - publishedAt) * 1000) / 1000;
              lastSwitch = Math.max(lastSwitch ?? 0, c.publish_to_switch_ms);
            } else {
              c.error = ack?.t === 'switched' ? ack.error : 'no switch confirmation (worker exited or timed out)';
            }
          }),
      );
      if (lastSwitch !== null) metrics.publishToSwitch.observe(lastSwitch / 1000);
      metrics.reloads.inc({ result: 'ok' });
      endTimer();
      sendHold();
      const result = base(id, info.blockNumber, lanes, false, lastSwitch);
      logger.info(
        {
          old_block: result.old_block_number,
          new_block: result.new_block_number,
          duration_ms: result.reload_duration_ms,
          publish_to_switch_ms: lastSwitch,
          generation: id,
          validation,
        },
        'reload',
      );
      return result;
    } catch (err) {
      const abandoned = (err as ReloadError)?.code === 'EABANDONED';
      metrics.reloads.inc({ result: abandoned ? 'abandoned' : 'refused' });
      logger.warn({ err: (err as Error).message }, abandoned ? 'reload abandoned' : 'reload refused');
      throw err;
    } finally {
      reloading = null;
    }
  };

  /** A worker that became ready on an older generation than the one published since (it started mid-reload) is brought up to date. */
  const catchUp = async (w: WorkerState, serving: string | null) => {
    const published = segment.readPublished();
    if (!published || published.generation === null || published.generation === serving) return;
    const id = published.generation;
    const rid = `c${++reloadSeq}`;
    const digest = validated.get(id)?.digest;
    const prepared = await request(w, { t: 'prepare', id: rid, generation: id, ...(digest ? { digest } : {}) }, config.prepare_timeout_ms);
    if (prepared?.t === 'prepared' && prepared.ok) await request(w, { t: 'switch', id: rid, generation: id }, SWITCH_TIMEOUT_MS);
    else logger.error({ worker: w.name, generation: id }, 'worker could not catch up with the published generation');
  };

  /**
   * What every worker holds, for operators and `lanepir prune`. A worker's list
   * is complete unless its slot overflowed (held_total > listed) or could not
   * be read; `held_complete` is false if any is not, and prune then deletes
   * nothing. A worker that has not written its slot yet holds at most the
   * generation published when it was forked.
   */
  const generations = async () => {
    const published = segment.readPublished();
    let complete = true;
    const list = [...workers.values()]
      .sort((a, b) => a.slot - b.slot)
      .map((w) => {
        const s = readSlot(w.slot);
        const slotWritten = s !== undefined && s.pid !== 0;
        const held = slotWritten ? s.held.map((h) => ({ generation: h.generation, in_flight: h.inFlight })) : w.forkedOn ? [{ generation: w.forkedOn, in_flight: 0 }] : [];
        const heldTotal = slotWritten ? s.heldTotal : held.length;
        const heldComplete = s !== undefined && heldTotal <= held.length;
        if (!heldComplete) complete = false;
        return {
          worker: w.name,
          slot: w.slot,
          pid: (slotWritten && s.pid) || (w.worker.process.pid ?? 0),
          ready: w.ready,
          serving: s?.serving ?? null,
          heartbeat_age_ms: s?.heartbeatAt ? Date.now() - s.heartbeatAt : null,
          requests: s?.requests ?? 0,
          generations: held,
          held_total: heldTotal,
          held_complete: heldComplete,
        };
      });
    // The kernel process: what it holds mapped, and its lane memory.
    const st = executor;
    let executorInfo: Record<string, unknown> | null = null;
    if (st) {
      const state = st.serving ? await requestExecutor(st, { t: 'x-state', id: `s${++executorSeq}` }, 2_000) : undefined;
      executorInfo = {
        pid: st.worker.process.pid ?? 0,
        serving: st.serving,
        lane_memory: laneMemoryMode(config),
        generations: state?.t === 'x-state' ? state.generations : null,
        mappings: state?.t === 'x-state' ? state.mappings : null,
        queries: xch.stats().lanes.map((l, i) => ({ lane: i === 0 ? 'hot' : 'cold', passes: l.passes, answered: l.answered })),
      };
    }
    return {
      published: published && { generation: published.generation, block_number: published.blockNumber, published_at: new Date(published.publishedAt).toISOString(), dir: published.dir },
      reloading,
      held_complete: complete,
      workers: list,
      executor: executorInfo,
    };
  };

  const errorBody = (err: unknown): ErrorBody => {
    if (err instanceof ReloadError) return { status: 422, code: err.code, message: err.message, extra: err.extra };
    logger.error({ err }, 'reload failed');
    return { status: 500, code: 'EINTERNAL', message: (err as Error).message ?? String(err) };
  };

  const onMessage = (w: WorkerState, msg: WorkerMessage) => {
    switch (msg?.t) {
      case 'secrets?':
        send(w, { t: 'secrets', adminToken: adminToken ?? null });
        break;
      case 'start-failed':
        w.startError = { code: msg.code, message: msg.message, listen: msg.listen };
        break;
      case 'ready':
        w.ready = true;
        failedStarts.set(w.slot, 0);
        urls ??= { publicUrl: msg.publicUrl, adminUrl: msg.adminUrl };
        metrics.workers.set([...workers.values()].filter((x) => x.ready).length);
        logger.info({ worker: w.name, generation: msg.generation }, 'worker ready');
        readyWaiters.splice(0).forEach((f) => f());
        void catchUp(w, msg.generation);
        break;
      case 'prepared':
      case 'switched': {
        const resolve = w.acks.get(msg.id);
        w.acks.delete(msg.id);
        resolve?.(msg);
        break;
      }
      case 'reload': {
        const caller = new AbortController();
        w.callers.set(msg.id, caller);
        const done = () => w.callers.delete(msg.id);
        reload(msg.target, { signal: caller.signal }).then(
          (result) => (done(), send(w, { t: 'reload-result', id: msg.id, ok: true, result })),
          (err) => (done(), send(w, { t: 'reload-result', id: msg.id, ok: false, error: errorBody(err) })),
        );
        break;
      }
      case 'reload-abandon':
        w.callers.get(msg.id)?.abort();
        break;
      case 'digest?':
        send(w, { t: 'digest', id: msg.id, generation: msg.generation, digest: validated.get(msg.generation)?.digest ?? null });
        break;
      case 'generations':
        void generations().then((data) => send(w, { t: 'generations-result', id: msg.id, data }));
        break;
      case 'metrics':
        Promise.all([aggregator.clusterMetrics(), metrics.registry.metrics()]).then(
          ([workersText, primaryText]) =>
            send(w, { t: 'metrics-result', id: msg.id, contentType: metrics.registry.contentType, body: `${primaryText}\n${workersText}` }),
          (err: Error) => send(w, { t: 'metrics-result', id: msg.id, contentType: 'text/plain', body: `# metrics unavailable: ${err.message}\n` }),
        );
        break;
    }
  };

  // The kernel process first (it maps the published generation), then the workers.
  forkExecutor();
  holdTimer = setInterval(sendHold, HOLD_INTERVAL_MS);
  holdTimer.unref();
  for (let slot = 0; slot < count; slot++) fork(slot);
  // Wait until every worker is listening (one that dies trying is re-forked,
  // within the crash-loop policy); a signal may abort the start.
  const onAbort = () => giveUp(new PrimaryError('ESTOPPED', 'stopped by a signal before the workers were ready'));
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const check = () => (readyCount() >= count && executor?.serving ? resolveStart() : readyWaiters.push(check));
  check();
  try {
    await whenStarted;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  started = true;

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      shuttingDown = true;
      for (const t of pendingForks) clearTimeout(t);
      pendingForks.clear();
      if (executorFork) clearTimeout(executorFork);
      if (holdTimer) clearInterval(holdTimer);
      const exits = [...workers.values()].map(exitOf);
      for (const w of workers.values()) send(w, { t: 'shutdown' });
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), config.shutdown_timeout_ms + 5_000).unref());
      if ((await Promise.race([Promise.all(exits), timeout])) === 'timeout') {
        for (const w of workers.values()) w.worker.process.kill('SIGKILL');
        await Promise.all(exits);
      }
      // The kernel process last: the workers' in-flight queries were answered by it.
      const ex = executor;
      if (ex && !ex.worker.isDead()) {
        const exExit = new Promise<void>((r) => ex.worker.once('exit', () => r()));
        sendExecutor(ex, { t: 'shutdown' });
        const kill = setTimeout(() => ex.worker.process.kill('SIGKILL'), 5_000);
        await exExit;
        clearTimeout(kill);
      }
      removeSegment();
      logger.info('stopped');
      resolveDone();
    })());

  const forceStop = () => {
    shuttingDown = true;
    for (const t of pendingForks) clearTimeout(t);
    if (executorFork) clearTimeout(executorFork);
    if (holdTimer) clearInterval(holdTimer);
    for (const w of workers.values()) w.worker.process.kill('SIGKILL');
    if (executor && !executor.worker.isDead()) executor.worker.process.kill('SIGKILL');
    removeSegment();
  };

  return {
    publicUrl: urls!.publicUrl,
    adminUrl: urls!.adminUrl,
    segment,
    exchange: xch,
    executorPid: () => executor?.worker.process.pid,
    reload,
    shutdown,
    forceStop,
    done,
  };
}
