// Abuse controls of the public port (docs/OPERATIONS.md, "Abuse controls"):
// - per client address, a cap on requests in progress (429);
// - per expensive route (query, hint, delta), a cap on requests in progress
//   across all clients (503), so that they cannot take every socket, file
//   descriptor and CPU cycle from each other and from the cheap routes;
// - every response (both listeners) has a send timeout: a connection that
//   stops taking bytes, or a response still unsent when its time is up, is
//   destroyed, which releases its pinned generation (pins end on 'close').
// A request holds its slots until its response is finished or its
// connection closes, however long the body takes to send. The cheap routes
// (/health, /ready, /info, /crs) are never counted or refused.
import { type ServerResponse } from 'node:http';
import type Koa from 'koa';
import { type Config } from '../config.js';
import { ClientAddresses, clientKey } from './client-address.js';
import { HttpError } from './errors.js';
import { type ServerMetrics } from './metrics.js';

export type LimitedRoute = 'query' | 'hint' | 'delta';

const doneHooks = new WeakMap<ServerResponse, (() => void)[]>();

/**
 * Runs `fn` once the response is finished or its connection is gone
 * ('close'), at once if that has happened. One 'close' listener per response
 * serves every caller (Koa's stream pipeline and pino-http add their own).
 */
export function whenDone(res: ServerResponse, fn: () => void): void {
  if (res.destroyed || res.closed) {
    fn();
    return;
  }
  let hooks = doneHooks.get(res);
  if (!hooks) {
    const list: (() => void)[] = [];
    doneHooks.set(res, (hooks = list));
    res.once('close', () => {
      for (const f of list.splice(0)) f();
    });
  }
  hooks.push(fn);
}

/** Seconds a refused client is told to wait. */
const RETRY_AFTER_S = '1';

/** Routes that cost next to nothing: never counted or refused, so probes and wallets' polls get through. */
const CHEAP = /^\/(health|ready|info|crs(\/[^/]*)?)\/?$/;

function routeOf(method: string, path: string): LimitedRoute | undefined {
  if (method === 'POST' && /^\/query\/[^/]+\/?$/.test(path)) return 'query';
  if ((method === 'GET' || method === 'HEAD') && /^\/hint\/[^/]+\/?$/.test(path)) return 'hint';
  if ((method === 'GET' || method === 'HEAD') && /^\/delta\/[^/]+\/?$/.test(path)) return 'delta';
  return undefined;
}

/** Counts in progress by key, dropping keys that reach zero (the map never outgrows the active clients). */
class Counter {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  inc(key: string): void {
    this.counts.set(key, this.get(key) + 1);
  }

  dec(key: string): void {
    const n = this.get(key) - 1;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }

  get keys(): number {
    return this.counts.size;
  }
}

export interface PublicLimits {
  middleware: Koa.Middleware;
  /** Requests in progress per client key and per route (for tests and debugging). */
  inProgress(): { clients: number; routes: Record<LimitedRoute, number> };
}

/** The public port's per-client and per-route caps. */
export function publicLimits(config: Config, metrics?: ServerMetrics): PublicLimits {
  const addresses = new ClientAddresses(config.trusted_proxies);
  const perClient = new Counter();
  const perRoute = new Counter();
  const routeCap: Record<LimitedRoute, number> = {
    query: config.max_concurrent_queries,
    hint: config.max_concurrent_hints,
    delta: config.max_concurrent_deltas,
  };
  const clientCap = config.max_requests_per_client;
  const middleware: Koa.Middleware = async (ctx, next) => {
    if (ctx.method === 'OPTIONS' || CHEAP.test(ctx.path)) return next();
    const route = routeOf(ctx.method, ctx.path);
    const client = clientKey(addresses.resolve(ctx.req.socket.remoteAddress, ctx.req.headers['x-forwarded-for']));
    ctx.state.clientAddress = client;
    if (clientCap > 0 && perClient.get(client) >= clientCap) {
      metrics?.refused.inc({ route: route ?? 'other', reason: 'client' });
      throw new HttpError(429, 'ETOO_MANY_REQUESTS', `at most ${clientCap} requests in progress per client; retry when one has finished`, {}, { 'Retry-After': RETRY_AFTER_S });
    }
    if (route && routeCap[route] > 0 && perRoute.get(route) >= routeCap[route]) {
      metrics?.refused.inc({ route, reason: 'route' });
      throw new HttpError(503, 'EROUTE_BUSY', `the server is answering ${routeCap[route]} ${route} requests; retry shortly`, {}, { 'Retry-After': RETRY_AFTER_S });
    }
    perClient.inc(client);
    if (route) perRoute.inc(route);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      perClient.dec(client);
      if (route) perRoute.dec(route);
    };
    // Released when the response is done or the connection is gone, whichever comes first.
    whenDone(ctx.res, release);
    await next();
  };
  return {
    middleware,
    inProgress: () => ({ clients: perClient.keys, routes: { query: perRoute.get('query'), hint: perRoute.get('hint'), delta: perRoute.get('delta') } }),
  };
}

/**
 * Send timeouts for every response: no progress for `send_idle_timeout_ms`
 * (the socket takes no bytes), or no end after `send_timeout_ms`, resets
 * the connection. Keep-alive idling between requests stays the server's
 * keepAliveTimeout (Node resets the socket timeout when a response ends).
 */
export function sendTimeouts(config: Pick<Config, 'send_idle_timeout_ms' | 'send_timeout_ms'>): Koa.Middleware {
  return async (ctx, next) => {
    // An admin reload answers when it is done (validation, every worker's prepare), silently until then; it pins nothing.
    if (ctx.path.startsWith('/admin/')) return next();
    const { res } = ctx;
    const socket = ctx.req.socket;
    // Reset, not closed: a graceful close would leave the unsent megabytes
    // queued in the kernel for a peer that does not read. A finished
    // response's socket may already carry the next request: leave it be.
    const abandon = () => {
      if (!res.writableFinished && !socket.destroyed) socket.resetAndDestroy();
    };
    if (config.send_idle_timeout_ms > 0) res.setTimeout(config.send_idle_timeout_ms, abandon);
    if (config.send_timeout_ms > 0) {
      const timer = setTimeout(abandon, config.send_timeout_ms);
      timer.unref();
      whenDone(res, () => clearTimeout(timer));
    }
    await next();
  };
}
