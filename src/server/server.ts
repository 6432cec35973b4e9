// One lanepir server process: the snapshot store, the reloader, the kernel
// backend (its own executor, or the cluster's kernel process) and the two
// listeners (public and admin).
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import util from 'node:util';
import { pino, type Logger } from 'pino';
import { type Config } from '../config.js';
import { native } from '../native.js';
import { type AppContext, createAdminApp, createPublicApp } from './app.js';
import { DeltaService } from './deltas.js';
import { type KernelBackend, LocalKernel, RemoteKernel } from './kernel.js';
import { laneMemoryMode } from './lane-memory.js';
import { Reloader, type ReloadOptions, type ReloadResult, ReloadError } from './reloader.js';
import { ServerMetrics } from './metrics.js';
import { type Snapshot, SnapshotStore } from './snapshot.js';
import { PageAssets } from './page.js';
import { loadGeneration, resolveGeneration } from '../store/generation.js';
import { type PassReport } from '../native.js';

export const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

export interface ServerOptions {
  logger?: Logger;
  workerName?: string;
  /** Overrides how reloads are carried out (cluster workers forward them). */
  reload?: AppContext['reload'];
  generations?: AppContext['generations'];
  metricsText?: AppContext['metricsText'];
  beforeRequest?: AppContext['beforeRequest'];
  /** Generation to load before listening: undefined = <data>/current, null = none (cluster workers pass the published one). */
  initialGeneration?: string | null;
  /** filesDigest the cluster primary validated initialGeneration with (confirmed instead of hashed again). */
  initialDigest?: string;
  metrics?: ServerMetrics;
  /**
   * The cluster's query exchange and this worker's region in it: queries go to
   * the kernel process, and this process maps no lane memory. Without it the
   * server runs its own executor.
   */
  exchange?: { name: string; region: number };
}

export interface RunningServer {
  config: Config;
  store: SnapshotStore;
  reloader: Reloader;
  logger: Logger;
  metrics: ServerMetrics;
  kernel: KernelBackend;
  deltas: DeltaService;
  publicUrl: string;
  adminUrl: string;
  publicServer: http.Server;
  adminServer: http.Server;
  /** Local reload (not forwarded). */
  reloadLocal(target?: string, opts?: ReloadOptions): Promise<ReloadResult>;
  /** Stop accepting, wait for in-flight requests (bounded), release every mapping. */
  close(): Promise<void>;
}

/** A listener could not be opened (port in use, no permission, no such address): one line naming the address and the cause. */
export class ListenError extends Error {
  constructor(
    readonly code: string,
    readonly address: string,
    readonly listener: 'public' | 'admin',
    message: string,
  ) {
    super(message);
    this.name = 'ListenError';
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number, listener: 'public' | 'admin'): ListenError {
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const cause = (typeof err.errno === 'number' && util.getSystemErrorMap().get(err.errno)?.[1]) || err.message;
  return new ListenError(err.code ?? 'ELISTEN', address, listener, `cannot listen on ${address} (${listener} listener): ${cause}`);
}

function listen(server: http.Server, host: string, port: number, listener: 'public' | 'admin'): Promise<string> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, host, port, listener));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`http://${h === '0.0.0.0' ? '127.0.0.1' : h}:${a.port}`);
    });
  });
}

export async function startServer(config: Config, opts: ServerOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? pino({ level: config.log_level });
  // Before anything is mapped or opened: a missing page is a start-up error naming the fix.
  const page = config.page ? PageAssets.load() : undefined;
  const store = new SnapshotStore(config.retain_generations);
  const metrics = opts.metrics ?? new ServerMetrics();
  const onPass = (p: PassReport) => {
    metrics.batchSize.observe({ lane: p.lane }, p.batch);
    metrics.kernelBytes.inc({ lane: p.lane }, p.bytes);
    metrics.kernelSeconds.inc({ lane: p.lane }, p.seconds);
    if (p.seconds > 0) metrics.kernelGbps.set({ lane: p.lane }, p.bytes / p.seconds / 1e9);
  };
  const onAreasFull = (need: number, size: number) =>
    logger.warn({ query_bytes: need, area_bytes: size }, 'a query and its answer take over half of this process\'s query areas: raise exchange_mib');
  let kernel: KernelBackend;
  if (opts.exchange) {
    kernel = new RemoteKernel(config, opts.exchange.name, opts.exchange.region, { onAreasFull });
  } else {
    // The areas are sized from the generation served first (when there is one).
    const first = opts.initialGeneration === null ? undefined : await resolveGeneration(config.data_dir, opts.initialGeneration).then((g) => loadGeneration(g.dir), () => undefined);
    kernel = new LocalKernel(config, first, { onPass, onAreasFull });
  }
  const onClosed = (s: Snapshot) => {
    kernel.snapshotClosed(s);
    logger.info({ generation: s.id, block: s.blockNumber }, 'released generation');
  };
  const reloader = new Reloader(config, store, onClosed, !opts.exchange);

  const reloadLocal = async (target?: string, reloadOpts: ReloadOptions = {}): Promise<ReloadResult> => {
    const end = metrics.reloadDuration.startTimer();
    let result: ReloadResult;
    try {
      result = await reloader.reload(target, reloadOpts);
    } catch (err) {
      metrics.reloads.inc({ result: (err as ReloadError)?.code === 'EABANDONED' ? 'abandoned' : 'refused' });
      throw err;
    }
    end();
    metrics.reloads.inc({ result: result.unchanged ? 'unchanged' : 'ok' });
    logger.info(
      {
        old_block: result.old_block_number,
        new_block: result.new_block_number,
        duration_ms: result.reload_duration_ms,
        generation: result.new_generation,
        unchanged: result.unchanged,
        validation: result.validation,
      },
      'reload',
    );
    return result;
  };
  const deltas = new DeltaService({ dataDir: config.data_dir, maxConcurrent: config.delta_max_concurrent, maxQueued: config.delta_max_queued, cacheBytes: config.delta_cache_bytes });
  const ctx: AppContext = {
    config,
    store,
    kernel,
    logger,
    version: VERSION,
    metrics,
    deltas,
    metricsText:
      opts.metricsText ??
      (async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })),
    ...(opts.beforeRequest ? { beforeRequest: opts.beforeRequest } : {}),
    ...(page ? { page } : {}),
    workerName: opts.workerName ?? `pid-${process.pid}`,
    reload: opts.reload ?? reloadLocal,
    // Same shape as the cluster primary's answer (one worker).
    generations:
      opts.generations ??
      (async () => ({
        published: store.current ? { generation: store.current.id, block_number: store.current.blockNumber, dir: store.current.generation.dir } : null,
        reloading: null,
        held_complete: true, // one process lists everything it holds
        workers: [
          {
            worker: opts.workerName ?? `pid-${process.pid}`,
            slot: 0,
            pid: process.pid,
            ready: true,
            serving: store.current?.id ?? null,
            generations: store.held().map((s) => ({ generation: s.id, in_flight: s.inFlight })),
            held_total: store.held().length,
            held_complete: true,
          },
        ],
        executor: { ...kernel.describe(), lane_memory: laneMemoryMode(config) },
        mappings: native.mappingStats(),
      })),
  };

  if (opts.initialGeneration !== null) {
    try {
      await reloadLocal(opts.initialGeneration, opts.initialDigest ? { digest: opts.initialDigest } : {});
    } catch (err) {
      // Not fatal: the server starts unready and a later reload makes it ready.
      logger.warn({ err: err instanceof ReloadError ? err.message : err }, 'no generation loaded at start-up');
    }
  }

  const serverOpts = { requestTimeout: config.request_timeout_ms, headersTimeout: Math.min(config.request_timeout_ms, 60_000) };
  const publicServer = http.createServer(serverOpts, createPublicApp(ctx).callback());
  const adminServer = http.createServer(serverOpts, createAdminApp(ctx).callback());
  let publicUrl: string, adminUrl: string;
  try {
    publicUrl = await listen(publicServer, config.host, config.port, 'public');
    adminUrl = await listen(adminServer, config.admin_host, config.admin_port, 'admin');
  } catch (err) {
    // Leave nothing open behind a failed start (the public listener may be up already).
    for (const s of [publicServer, adminServer]) if (s.listening) s.close();
    store.retireAll();
    kernel.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const stopped = Promise.all([publicServer, adminServer].map((s) => new Promise<void>((r) => s.close(() => r()))));
      for (const s of [publicServer, adminServer]) s.closeIdleConnections();
      const timeout = new Promise<void>((r) => setTimeout(r, config.shutdown_timeout_ms).unref());
      await Promise.race([stopped, timeout]);
      for (const s of [publicServer, adminServer]) s.closeAllConnections();
      store.retireAll();
      kernel.close();
      await deltas.close();
    })());

  return { config, store, reloader, logger, metrics, kernel, deltas, publicUrl, adminUrl, publicServer, adminServer, reloadLocal, close };
}
