// The cluster primary: forks the workers, owns the control segment, and
// orchestrates reloads. A reload is validated here, prepared (mapped and
// warmed) by every live worker, and only when all of them are ready is it
// published in the segment: that single store switches the whole server.
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type Config } from '../config.js';
import { type ControlSegment, control } from '../native.js';
import { resolveGeneration } from '../store/generation.js';
import { readManifest } from '../store/manifest.js';
import { type LaneName, generationBlock } from '../store/layout.js';
import { ReloadError, rethrow, validateGeneration } from '../server/reloader.js';
import { laneMemoryMode } from '../server/lane-memory.js';
import {
  type ClusterReloadResult,
  type ErrorBody,
  type PrimaryMessage,
  type WorkerConfirmation,
  type WorkerMessage,
  preciseNow,
} from './messages.js';
import { segmentName } from './segment.js';

const SWITCH_TIMEOUT_MS = 5_000;
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
}

export interface PrimaryHandle {
  publicUrl: string;
  adminUrl: string;
  segment: ControlSegment;
  reload(target?: string): Promise<ClusterReloadResult>;
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
  const removeSegment = () => {
    if (segmentRemoved) return;
    segmentRemoved = true;
    try {
      segment.unlink();
      segment.close();
    } catch {
      // closed already
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

  // Publish what <data>/current points at, if it is sound; workers map it before listening.
  try {
    const { dir } = await resolveGeneration(config.data_dir);
    const info = await validateGeneration(config, dir, []);
    segment.publish({ generation: info.id, blockNumber: info.blockNumber, dir: info.dir });
    servedLanes = Object.keys(info.lanes) as LaneName[];
    metrics.publishedGeneration.set(generationBlock(info.id));
    metrics.publishedBlock.set(info.blockNumber);
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'no generation published at start-up; workers start unready');
  }

  cluster.setupPrimary({ exec: path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker-main.js'), args: [] });
  // Workers share the cores: by default each kernel pass uses cores / workers threads,
  // so N workers scanning at once do not oversubscribe the machine.
  const { admin_token: adminToken, ...publicConfig } = config;
  const workerConfig: Omit<Config, 'admin_token'> = {
    ...publicConfig,
    kernel_threads: config.kernel_threads || Math.max(1, Math.floor(os.availableParallelism() / count)),
  };
  const env = { LANEPIR_SEGMENT: segment.name, LANEPIR_CONFIG_JSON: JSON.stringify(workerConfig) };
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
      metrics.workers.set(workers.size);
      // A worker that dies mid-reload is dropped from it.
      for (const resolve of state.acks.values()) resolve(undefined);
      state.acks.clear();
      try {
        segment.clearSlot(slot);
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
    void (async () => {
      const live = [...workers.values()];
      const exits = Promise.all(live.map(exitOf));
      for (const w of live) if (!w.worker.isDead()) w.worker.process.kill('SIGTERM');
      const grace = setTimeout(() => live.forEach((w) => !w.worker.isDead() && w.worker.process.kill('SIGKILL')), GIVE_UP_GRACE_MS);
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

  // ---- reloads (serialized; a request for the target in progress joins it) ----
  let chain: Promise<unknown> = Promise.resolve();
  let inProgress: { target: string | undefined; promise: Promise<ClusterReloadResult> } | undefined;
  let reloadSeq = 0;
  /** The generation a reload is validating or preparing: workers may be mapping it, so it is held. */
  let reloading: string | null = null;
  /** Generations validated before (what a swap back to one needs: no disk access). */
  const validated = new Map<string, { dir: string; blockNumber: number; lanes: LaneName[] }>();

  const reload = (target?: string): Promise<ClusterReloadResult> => {
    if (inProgress && inProgress.target === target) return inProgress.promise;
    const promise = chain.then(() => orchestrate(target));
    const entry = { target, promise };
    inProgress = entry;
    chain = promise.catch(() => {});
    const clear = () => {
      if (inProgress === entry) inProgress = undefined;
    };
    promise.then(clear, clear);
    return promise;
  };

  const orchestrate = async (target: string | undefined): Promise<ClusterReloadResult> => {
    const started = performance.now();
    const endTimer = metrics.reloadDuration.startTimer();
    const before = segment.readPublished();
    const live = [...workers.values()].filter((w) => w.ready);
    const confirmations = new Map<WorkerState, WorkerConfirmation>(
      live.map((w) => [w, { worker: w.name, pid: w.worker.process.pid ?? 0, slot: w.slot, prepared: false, switched: false }]),
    );
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
      publish_to_switch_ms: publishToSwitch,
    });
    try {
      const { id, dir } = await resolveGeneration(config.data_dir, target).catch(rethrow);
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
      if (!info) {
        const full = heldByAll
          ? await readManifest(dir).then((m) => ({ dir, blockNumber: m.block_number, lanes: m.lanes }), rethrow)
          : await validateGeneration(config, dir, servedLanes);
        info = { dir: full.dir, blockNumber: full.blockNumber, lanes: Object.keys(full.lanes) as LaneName[] };
        validated.set(id, info);
        if (validated.size > 64) validated.delete(validated.keys().next().value!);
      }
      const lanes = info.lanes;
      const missing = servedLanes.find((l) => !lanes.includes(l));
      if (missing) throw new ReloadError('ELANE_MISSING', `generation ${id} has no ${missing} lane, which is being served`);
      const rid = `r${++reloadSeq}`;

      // 1. Every live worker maps and warms the generation.
      const prepared = await Promise.all(
        live.map(async (w) => {
          const t0 = performance.now();
          const ack = await request(w, { t: 'prepare', id: rid, generation: id }, config.prepare_timeout_ms);
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
      const failed = live.filter((_, i) => prepared[i] === 'failed');
      if (failed.length > 0) {
        for (const w of live) send(w, { t: 'abort', id: rid, generation: id });
        const first = confirmations.get(failed[0]!)!;
        throw new ReloadError('EPREPARE', `${failed.length} worker(s) could not prepare generation ${id}; nobody switched (${first.worker}: ${first.error})`, {
          workers: [...confirmations.values()],
        });
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
      const result = base(id, info.blockNumber, lanes, false, lastSwitch);
      logger.info(
        { old_block: result.old_block_number, new_block: result.new_block_number, duration_ms: result.reload_duration_ms, publish_to_switch_ms: lastSwitch, generation: id },
        'reload',
      );
      return result;
    } catch (err) {
      metrics.reloads.inc({ result: 'refused' });
      logger.warn({ err: (err as Error).message }, 'reload refused');
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
    const prepared = await request(w, { t: 'prepare', id: rid, generation: id }, config.prepare_timeout_ms);
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
  const generations = () => {
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
    return {
      published: published && { generation: published.generation, block_number: published.blockNumber, published_at: new Date(published.publishedAt).toISOString(), dir: published.dir },
      reloading,
      held_complete: complete,
      workers: list,
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
      case 'reload':
        reload(msg.target).then(
          (result) => send(w, { t: 'reload-result', id: msg.id, ok: true, result }),
          (err) => send(w, { t: 'reload-result', id: msg.id, ok: false, error: errorBody(err) }),
        );
        break;
      case 'generations':
        send(w, { t: 'generations-result', id: msg.id, data: generations() });
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

  for (let slot = 0; slot < count; slot++) fork(slot);
  // Wait until every worker is listening (one that dies trying is re-forked,
  // within the crash-loop policy); a signal may abort the start.
  const onAbort = () => giveUp(new PrimaryError('ESTOPPED', 'stopped by a signal before the workers were ready'));
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const check = () => (readyCount() >= count ? resolveStart() : readyWaiters.push(check));
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
      const exits = [...workers.values()].map(exitOf);
      for (const w of workers.values()) send(w, { t: 'shutdown' });
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), config.shutdown_timeout_ms + 5_000).unref());
      if ((await Promise.race([Promise.all(exits), timeout])) === 'timeout') {
        for (const w of workers.values()) w.worker.process.kill('SIGKILL');
        await Promise.all(exits);
      }
      removeSegment();
      logger.info('stopped');
      resolveDone();
    })());

  const forceStop = () => {
    shuttingDown = true;
    for (const t of pendingForks) clearTimeout(t);
    for (const w of workers.values()) w.worker.process.kill('SIGKILL');
    removeSegment();
  };

  return { publicUrl: urls!.publicUrl, adminUrl: urls!.adminUrl, segment, reload, shutdown, forceStop, done };
}
