// The HTTP API (docs/API.md): a public Koa app for clients and an admin app
// for operators. Handlers stay thin: snapshots, batching and reloads live in
// their own modules.
import crypto from 'node:crypto';
import fs from 'node:fs';
import Koa from 'koa';
import Router, { type RouterContext } from '@koa/router';
import getRawBody from 'raw-body';
import { type Logger } from 'pino';
import { type Config, configHash } from '../config.js';
import { answerBytes, hintBytes, queryBytes } from '../pir/crs.js';
import { GENERATION_ID, isLaneName, type LaneName } from '../store/layout.js';
import { isEthGeneration, readHotManifest } from '../eth/generation-files.js';
import { DeltaGoneError } from './delta.js';
import { DeltaBusyError, type DeltaService } from './deltas.js';
import { publicLimits, sendTimeouts, whenDone } from './limits.js';
import { ADMIN_BODY_MAX, adminBodyGuard, adminHostGuard } from './admin-guard.js';
import { type Routes, corsAndOptions, routesAt } from './cors.js';
import { FileRangeStream } from './file-range.js';
import { type PageAssets, pageRouter } from './page.js';
import { HttpError } from './errors.js';
import { httpLogger, noteRefusal } from './logging.js';
import { type ReloadResult, ReloadError } from './reloader.js';
import { type KernelBackend } from './kernel.js';
import { readBodyInto } from './body.js';
import { KernelError, OverloadedError, type KernelResult, type QueryJob } from './scheduler.js';
import { laneMemoryMode } from './lane-memory.js';
import { type ServerMetrics } from './metrics.js';
import { type ServedLane, type Snapshot, type SnapshotStore } from './snapshot.js';

export const PROTOCOL_VERSION = 1;

export interface AppContext {
  config: Config;
  store: SnapshotStore;
  /** Where queries are answered (this process's executor, or the cluster's kernel process). */
  kernel: KernelBackend;
  logger: Logger;
  version: string;
  /** Names this process in X-Lanepir-Worker. */
  workerName: string;
  /** Reload entry point (cluster mode forwards it to the primary); `signal` aborts when the caller has gone. */
  reload: (target?: string, opts?: { signal?: AbortSignal }) => Promise<ReloadResult>;
  /** What GET /admin/generations shows (cluster mode asks the primary). */
  generations: () => Promise<unknown>;
  metrics: ServerMetrics;
  /** GET /delta's merges and cache (bounded; shared by both listeners). */
  deltas: DeltaService;
  /** The /metrics exposition (cluster mode aggregates across workers). */
  metricsText: () => Promise<{ contentType: string; body: string }>;
  /** Called first on every request (cluster workers check the published generation). */
  beforeRequest?: () => void;
  /** The lookup page's files (config page), served on the public listener at GET /. */
  page?: PageAssets;
}

type Ctx = RouterContext;

/** Error messages never show where the server keeps its data (a message that slipped through names `<data>`). */
function redactPaths(dataDir: string): (message: string) => string {
  const dirs = [dataDir, ...(() => {
    try {
      return [fs.realpathSync(dataDir)];
    } catch {
      return [];
    }
  })()].filter((d) => d.length > 1);
  return (message) => dirs.reduce((m, d) => m.split(d).join('<data>'), message);
}

function errorMiddleware(logger: Logger, redact: (message: string) => string): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const e = err as HttpError;
      if (err instanceof HttpError) {
        ctx.status = e.status;
        noteRefusal(ctx.res, e.code);
        ctx.set(e.headers);
        ctx.body = { error: redact(e.message), code: e.code, ...e.extra };
      } else {
        // The request's own logger (pino-http) adds its id and bounded summary.
        ((ctx.req as { log?: Logger }).log ?? logger).error({ err }, 'unhandled error');
        ctx.status = 500;
        ctx.body = { error: 'internal error', code: 'EINTERNAL' };
      }
    }
  };
}

/** Request logging (bounded lines, see logging.ts) and the worker's name on every response. */
function requestLogger(app: AppContext): Koa.Middleware {
  const http = httpLogger(app.logger);
  return async (ctx, next) => {
    app.beforeRequest?.();
    http(ctx.req, ctx.res);
    ctx.set('X-Lanepir-Worker', app.workerName);
    await next();
  };
}

/** Counts queries by lane and final status, and times them (outside the error middleware). */
function queryMetrics(metrics: ServerMetrics): Koa.Middleware {
  return async (ctx, next) => {
    const m = /^\/query\/([^/]+)$/.exec(ctx.path);
    if (!m || ctx.method !== 'POST') return next();
    const lane = isLaneName(m[1]!) ? m[1]! : 'unknown';
    const end = metrics.queryLatency.startTimer({ lane });
    try {
      await next();
    } finally {
      end();
      metrics.queries.inc({ lane, status: String(ctx.status) });
    }
  };
}

/** The snapshot a request asks for (?generation=N, else current), pinned until the response is done. */
function pinSnapshot(ctx: Ctx, store: SnapshotStore, metrics: ServerMetrics, wanted = ctx.query.generation): Snapshot {
  const current = store.current;
  if (wanted !== undefined && typeof wanted !== 'string') throw new HttpError(400, 'EBAD_GENERATION', 'generation must be given once');
  if (!current) throw new HttpError(503, 'ENOT_READY', 'no generation is loaded yet', {}, { 'Retry-After': '1' });
  const snap = wanted === undefined ? current : store.get(wanted);
  if (!snap || snap.isClosed) {
    throw new HttpError(410, 'EGENERATION_GONE', `generation ${wanted} is not served (retired or unknown); refresh from the current generation`, {
      current_generation: current.id,
      current_block_number: current.blockNumber,
    });
  }
  // Released when the response has been written or the connection dropped:
  // Koa writes the body after the middleware chain returns.
  const unpin = snap.pin();
  metrics.inFlight.inc();
  whenDone(ctx.res, () => {
    unpin();
    metrics.inFlight.dec();
  });
  return snap;
}

function laneOf(ctx: Ctx, snap: Snapshot): ServedLane {
  const name = ctx.params.lane!;
  if (!isLaneName(name)) throw new HttpError(404, 'EUNKNOWN_LANE', `unknown lane ${JSON.stringify(name)} (hot or cold)`);
  const lane = snap.lanes[name];
  if (!lane) throw new HttpError(503, 'ELANE_NOT_LOADED', `the ${name} lane is not loaded in generation ${snap.id}`);
  return lane;
}

function generationHeaders(ctx: Ctx, snap: Snapshot): void {
  ctx.set('X-Lanepir-Generation', snap.id);
  ctx.set('X-Lanepir-Block', String(snap.blockNumber));
}

function laneSummary(lane: ServedLane) {
  const c = lane.info.crs;
  return {
    entries: c.entries,
    entry_size: c.entry_size,
    m: c.m,
    R: c.R,
    scheme: c.scheme,
    n: c.n,
    q_bits: c.q_bits,
    p: c.p,
    sigma: c.sigma,
    params_version: c.params_version ?? 1,
    seed: c.seed,
    hint_sha256: c.hint_sha256,
    query_bytes: queryBytes(c),
    answer_bytes: answerBytes(c),
    layout: c.layout ?? 'index',
    ...(c.layout === 'keyword' ? { key_seed: c.key_seed, bucket_choices: c.bucket_choices } : {}),
  };
}

export function publicRouter(app: AppContext): Router {
  const { store, config } = app;
  const router = new Router();
  /** Each generation's hot manifest, read and checked once. */
  const hotManifests = new WeakMap<Snapshot, ReturnType<typeof readHotManifest>>();
  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/ready', (ctx) => {
    const cur = store.current;
    if (!cur) throw new HttpError(503, 'ENOT_READY', 'no generation is loaded yet (publish one and POST /admin/reload)');
    ctx.body = { ready: true, generation: cur.id, block_number: cur.blockNumber };
  });
  router.get('/info', (ctx) => {
    const cur = store.current;
    ctx.body = {
      name: 'lanepir',
      version: app.version,
      protocol_version: PROTOCOL_VERSION,
      config_hash: configHash(config),
      ready: cur !== undefined,
      generation: cur?.id ?? null,
      block_number: cur?.blockNumber ?? null,
      block_hash: cur?.generation.manifest.block_hash ?? null,
      chain_id: cur?.generation.manifest.chain_id ?? null,
      parent_hash: cur?.generation.manifest.parent_hash ?? null,
      state_root: cur?.generation.manifest.state_root ?? null,
      served_at: cur?.servedAt?.toISOString() ?? null,
      mmap_mode: laneMemoryMode(config) === 'mmap',
      lane_memory: laneMemoryMode(config),
      batch_max: config.batch_max,
      lanes: Object.fromEntries((cur?.laneNames ?? []).map((l) => [l, laneSummary(cur!.lanes[l]!)])),
      generations: store.queryable().map((s) => ({
        generation: s.id,
        block_number: s.blockNumber,
        block_hash: s.generation.manifest.block_hash ?? null,
        current: s === cur,
        lanes: Object.fromEntries(
          s.laneNames.map((l) => [l, { params_version: s.lanes[l]!.info.crs.params_version ?? 1, hint_sha256: s.lanes[l]!.info.crs.hint_sha256 }]),
        ),
      })),
    };
  });
  router.get('/crs/:lane', (ctx) => {
    const snap = pinSnapshot(ctx, store, app.metrics);
    const lane = laneOf(ctx, snap);
    generationHeaders(ctx, snap);
    ctx.set('Cache-Control', ctx.query.generation ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.body = lane.info.crs;
  });
  router.get('/manifest', async (ctx) => {
    const snap = pinSnapshot(ctx, store, app.metrics);
    if (!isEthGeneration(snap.generation.manifest)) {
      throw new HttpError(404, 'ENO_HOT_MANIFEST', `generation ${snap.id} carries no hot manifest (it was not built from Ethereum state)`);
    }
    let served = hotManifests.get(snap);
    if (!served) {
      served = readHotManifest(snap.generation.dir, snap.generation.manifest);
      hotManifests.set(snap, served);
      served.catch(() => hotManifests.delete(snap)); // a failed read is retried, never cached
    }
    let file: Awaited<typeof served>;
    try {
      file = await served;
    } catch (err) {
      app.logger.error({ generation: snap.id, err: (err as Error).message }, 'hot manifest unreadable');
      throw new HttpError(500, 'EHOT_MANIFEST', `the hot manifest of generation ${snap.id} failed its checks`);
    }
    generationHeaders(ctx, snap);
    // The block this manifest is of, so a client knows a generation's block from one cacheable response.
    const { block_hash: blockHash, chain_id: chainId } = snap.generation.manifest;
    if (blockHash) ctx.set('X-Lanepir-Block-Hash', blockHash);
    if (chainId != null) ctx.set('X-Lanepir-Chain-Id', String(chainId));
    const etag = `"${file.sha256}"`;
    ctx.set('ETag', etag);
    ctx.set('Cache-Control', ctx.query.generation ? 'public, max-age=31536000, immutable' : 'no-cache');
    if (ctx.get('If-None-Match') === etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = 'application/json';
    ctx.body = file.bytes;
  });
  router.get('/hint/:lane', async (ctx) => {
    const snap = pinSnapshot(ctx, store, app.metrics);
    const lane = laneOf(ctx, snap);
    generationHeaders(ctx, snap);
    const etag = `"${lane.info.crs.hint_sha256}"`;
    ctx.set('ETag', etag);
    ctx.set('Cache-Control', ctx.query.generation ? 'public, max-age=31536000, immutable' : 'no-cache');
    if (ctx.get('If-None-Match') === etag) {
      ctx.status = 304;
      return;
    }
    // From the hint the snapshot holds open (its files may have been pruned); the
    // first chunk is read before anything is sent, so a read error is a clean 500.
    const size = hintBytes(lane.info.crs);
    let body: FileRangeStream;
    try {
      body = await FileRangeStream.open(lane.hint, size, snap.pin());
    } catch (err) {
      app.logger.error({ err, generation: snap.id, lane: lane.name }, 'hint unreadable');
      throw new HttpError(500, 'EHINT_UNREADABLE', `the ${lane.name} hint of generation ${snap.id} could not be read`);
    }
    ctx.type = 'application/octet-stream';
    ctx.length = size;
    ctx.body = body;
  });
  router.get('/delta/:lane', async (ctx) => {
    const from = ctx.query.from;
    if (typeof from !== 'string' || !GENERATION_ID.test(from)) {
      throw new HttpError(400, 'EBAD_GENERATION', 'from must be a generation id (the generation of the hint you hold)');
    }
    // The target is ?to=N (a held generation) or the current one.
    const to = ctx.query.to;
    const snap = pinSnapshot(ctx, store, app.metrics, to);
    const lane = laneOf(ctx, snap);
    let delta: Uint8Array;
    try {
      delta = await app.deltas.delta(snap.generation, lane.name, from);
    } catch (err) {
      // Not an ancestor within reach, a diff gone, or larger than the hint: the client downloads the hint instead.
      if (err instanceof DeltaGoneError) {
        throw new HttpError(410, err.code, `${err.message}; download the hint of generation ${snap.id} instead`, { current_generation: snap.id });
      }
      if (err instanceof DeltaBusyError) {
        app.metrics.refused.inc({ route: 'delta', reason: 'merges' });
        throw new HttpError(503, err.code, err.message, {}, { 'Retry-After': '1' });
      }
      throw err;
    }
    generationHeaders(ctx, snap);
    ctx.set('Cache-Control', to !== undefined ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.type = 'application/octet-stream';
    ctx.body = Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
  });
  router.post('/query/:lane', async (ctx) => {
    const snap = pinSnapshot(ctx, store, app.metrics);
    const lane = laneOf(ctx, snap);
    // One request carries 1..batch_max queries back to back, answered in one pass on one generation.
    const expected = queryBytes(lane.info.crs);
    const limit = expected * config.batch_max;
    const type = ctx.get('Content-Type');
    if (type && !type.startsWith('application/octet-stream')) {
      throw new HttpError(415, 'EBAD_CONTENT_TYPE', `queries are application/octet-stream, got ${type}`);
    }
    const declared = ctx.get('Content-Length');
    if (declared && Number(declared) > limit) {
      throw new HttpError(413, 'EQUERY_TOO_LARGE', `a ${lane.name} query is ${expected} bytes, at most ${config.batch_max} per request; got ${declared} bytes`);
    }
    if (declared && Number(declared) % expected !== 0) {
      throw new HttpError(400, 'EQUERY_SIZE', `a ${lane.name} query is ${expected} bytes (m = ${lane.info.crs.m} uint32); ${declared} bytes is not a whole number of queries`);
    }
    // The body is read straight into the request's query areas in the shared
    // exchange, and the answers are sent from its answer areas: no copy either
    // way. The number of queries comes from Content-Length; a body without one
    // (chunked) is read first and copied into the areas once.
    let unsized: Buffer | undefined;
    if (!declared) {
      try {
        unsized = await getRawBody(ctx.req, { limit });
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status === 413) throw new HttpError(413, 'EQUERY_TOO_LARGE', `a ${lane.name} query is ${expected} bytes, at most ${config.batch_max} per request`);
        throw new HttpError(400, 'EBAD_BODY', `could not read the query body: ${(err as Error).message}`);
      }
    }
    const size = unsized ? unsized.length : Number(declared);
    if (size === 0 || size % expected !== 0) {
      throw new HttpError(400, 'EQUERY_SIZE', `a ${lane.name} query is ${expected} bytes (m = ${lane.info.crs.m} uint32), 1..${config.batch_max} per request; got ${size} bytes`);
    }
    const count = size / expected;
    let job: QueryJob;
    try {
      job = app.kernel.open(snap, lane, count);
    } catch (err) {
      if (err instanceof OverloadedError) {
        throw new HttpError(503, 'EOVERLOADED', `the ${lane.name} lane is at capacity; retry shortly`, {}, { 'Retry-After': '1' });
      }
      throw err;
    }
    // Freed once the answer is written (or the client went away); queries in a pass are freed when the pass ends.
    ctx.res.once('close', () => job.dispose());
    if (unsized) {
      job.query.set(unsized);
    } else {
      let got: number;
      try {
        got = await readBodyInto(ctx.req, job.query, size);
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status === 413) throw new HttpError(413, 'EQUERY_TOO_LARGE', `a ${lane.name} query is ${expected} bytes, at most ${config.batch_max} per request`);
        throw new HttpError(400, 'EBAD_BODY', `could not read the query body: ${(err as Error).message}`);
      }
      if (got !== size) throw new HttpError(400, 'EQUERY_SIZE', `a ${lane.name} query is ${expected} bytes (m = ${lane.info.crs.m} uint32); got ${got} bytes`);
    }
    let result: KernelResult;
    try {
      result = await job.run();
    } catch (err) {
      const code = err instanceof KernelError ? err.code : undefined;
      // The client went away while its queries waited for their pass: nobody to answer.
      if (code === 'EABORTED') return;
      // Only possible once every request holding the generation has gone (nobody is left to answer).
      if (code === 'EGENERATION_GONE') {
        throw new HttpError(410, 'EGENERATION_GONE', `generation ${snap.id} was released`, { current_generation: store.current?.id ?? null });
      }
      if (code === 'EEXECUTOR_LOST') {
        throw new HttpError(503, 'EKERNEL_RESTART', 'the kernel executor restarted during this query; retry', {}, { 'Retry-After': '1' });
      }
      throw err;
    }
    generationHeaders(ctx, snap);
    ctx.set('X-Lanepir-Batch', String(result.batch));
    ctx.set('X-Lanepir-Queries', String(count));
    ctx.type = 'application/octet-stream';
    ctx.body = result.answer; // the answers back to back, little-endian words in the shared answer areas (a view, not a copy)
  });
  return router;
}

/** Constant-time bearer token check (hashing first makes the lengths equal). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7) : '';
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(a, b) && given.length > 0;
}

export function adminRouter(app: AppContext): Router {
  const router = new Router();
  router.use(async (ctx, next) => {
    const token = app.config.admin_token;
    if (token && !tokenMatches(ctx.get('Authorization') || undefined, token)) {
      const close: Record<string, string> = ctx.method === 'POST' ? { Connection: 'close' } : {}; // do not drain an unread body
      throw new HttpError(401, 'EUNAUTHORIZED', 'admin routes need Authorization: Bearer <admin token>', {}, { 'WWW-Authenticate': 'Bearer', ...close });
    }
    adminBodyGuard(ctx);
    await next();
  });
  router.post('/admin/reload', async (ctx) => {
    let target: string | undefined;
    const declared = ctx.get('Content-Length');
    const raw = await getRawBody(ctx.req, { limit: ADMIN_BODY_MAX, length: declared ? Number(declared) : null, encoding: 'utf8' }).catch((err: { status?: number; message?: string }) => {
      if (err.status === 413) throw new HttpError(413, 'EBODY_TOO_LARGE', `admin request bodies are limited to ${ADMIN_BODY_MAX} bytes`);
      throw new HttpError(400, 'EBAD_BODY', `could not read the reload body: ${err.message}`);
    });
    if (raw.trim() !== '') {
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        throw new HttpError(400, 'EBAD_JSON', 'reload body must be JSON like {"generation": 19000001}');
      }
      const g = (body as { generation?: unknown })?.generation;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'EBAD_JSON', 'reload body must be a JSON object');
      if (g !== undefined) {
        const id = typeof g === 'number' && Number.isSafeInteger(g) ? String(g) : g;
        if (typeof id !== 'string' || !GENERATION_ID.test(id)) {
          throw new HttpError(400, 'EBAD_GENERATION', 'generation must be a generation id (a block number, or <block>r<k> after a reorg)');
        }
        target = id;
      }
    }
    // A client that disconnects before the answer abandons the reload: if no other caller wants it, nothing switches.
    const caller = new AbortController();
    ctx.res.once('close', () => ctx.res.writableFinished || caller.abort());
    try {
      ctx.body = await app.reload(target, { signal: caller.signal });
    } catch (err) {
      if (err instanceof ReloadError) {
        throw new HttpError(422, err.code, err.message, { current_generation: app.store.current?.id ?? null, ...err.extra });
      }
      throw err;
    }
  });
  router.get('/admin/generations', async (ctx) => {
    ctx.body = await app.generations();
  });
  router.get('/metrics', async (ctx) => {
    const { contentType, body } = await app.metricsText();
    ctx.type = contentType;
    ctx.body = body;
  });
  return router;
}

/**
 * A Koa app with the shared middleware, `guards` and `limits`, serving the
 * given routers (first match wins); a known path with another method is 405,
 * else 404. Limits run after CORS, so that their refusals carry CORS headers
 * (a wallet page must be able to read Retry-After).
 */
function createApp(app: AppContext, routes: Routes[], guards: Koa.Middleware[] = [], limits: Koa.Middleware[] = []): Koa {
  const koa = new Koa();
  // Errors after the handlers are done: a client gone mid-body or a
  // connection cut by a send timeout is not the server's fault (debug, no
  // stack on stderr for each); anything else (a file that fails while it is
  // streamed) is.
  koa.on('error', (err: Error & { code?: string }) => {
    const clientGone = ['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'EPIPE', 'ECONNABORTED'].includes(err.code ?? '') || err.code?.startsWith('HPE_');
    app.logger[clientGone ? 'debug' : 'warn']({ code: err.code, message: err.message }, 'response not completed');
  });
  koa.use(requestLogger(app));
  koa.use(queryMetrics(app.metrics));
  koa.use(errorMiddleware(app.logger, redactPaths(app.config.data_dir)));
  koa.use(sendTimeouts(app.config));
  for (const g of guards) koa.use(g);
  koa.use(corsAndOptions(routes, app.config.cors_origins));
  for (const m of limits) koa.use(m);
  for (const r of routes) koa.use(r.router.routes());
  koa.use((ctx) => {
    const { methods } = routesAt(routes, ctx.path);
    if (methods.length > 0) {
      const allow = [...methods, 'OPTIONS'].join(', ');
      throw new HttpError(405, 'EMETHOD_NOT_ALLOWED', `${ctx.path} answers ${allow}, not ${ctx.method}`, {}, { Allow: allow });
    }
    throw new HttpError(404, 'ENOT_FOUND', `no route ${ctx.method} ${ctx.path}`);
  });
  return koa;
}

/** Clients' listener, open to other origins (cors_origins); admin routes only when configured (always behind the token: config validation), never open to other origins. */
export function createPublicApp(app: AppContext): Koa {
  const routes: Routes[] = [{ router: publicRouter(app), cors: true }];
  if (app.page) routes.push({ router: pageRouter(app.page), cors: true });
  if (app.config.public_admin) routes.push({ router: adminRouter(app), cors: false });
  return createApp(app, routes, [], [publicLimits(app.config, app.metrics).middleware]);
}

/** Operators' listener: admin routes, and the read-only public ones (health, info) too; no CORS at all. */
export function createAdminApp(app: AppContext): Koa {
  return createApp(
    app,
    [
      { router: adminRouter(app), cors: false },
      { router: publicRouter(app), cors: false },
    ],
    [adminHostGuard(app.config.admin_host, app.config.admin_allowed_hosts)],
  );
}
