// Cross-origin access for wallets: a wallet page on another origin queries the
// public API with fetch(), which needs CORS headers on every answer (errors
// too: the client reads their JSON and Retry-After) and an answered preflight
// for its application/octet-stream POSTs. Only public routes on the public
// listener take part; admin routes never do, on either listener, so a page
// can neither read admin answers nor send them JSON. No credentials are ever
// allowed: the API has no cookies, and admin uses a bearer token.
//
// The same route table answers OPTIONS (204 with Allow) and a wrong method
// on an existing route (405 with Allow).
import type Koa from 'koa';
import type Router from '@koa/router';

/** A router and whether its routes are open to other origins. */
export interface Routes {
  router: Router;
  cors: boolean;
}

/** Response headers a cross-origin client may read (beyond the CORS-safelisted ones). */
export const EXPOSED_HEADERS = ['X-Lanepir-Generation', 'X-Lanepir-Block', 'X-Lanepir-Block-Hash', 'X-Lanepir-Chain-Id', 'X-Lanepir-Batch', 'X-Lanepir-Worker', 'X-Request-Id', 'ETag', 'Retry-After'];
/** Request headers a cross-origin client may send. */
export const ALLOWED_HEADERS = ['Content-Type', 'If-None-Match', 'X-Request-Id'];
/** How long a browser may cache a preflight (Chromium caps it at 2 h). */
export const PREFLIGHT_MAX_AGE_S = 7200;

/** Methods the routes serve at `path` (empty: no such route), and whether they are open to other origins. */
export function routesAt(routes: readonly Routes[], path: string): { methods: string[]; cors: boolean } {
  const methods = new Set<string>();
  let cors = false;
  for (const r of routes) {
    for (const layer of r.router.stack) {
      if (layer.methods.length === 0 || !layer.match(path)) continue;
      for (const m of layer.methods) methods.add(m);
      cors ||= r.cors;
    }
  }
  return { methods: [...methods].sort((a, b) => methodRank(a) - methodRank(b)), cors };
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const methodRank = (m: string) => {
  const i = METHOD_ORDER.indexOf(m);
  return i < 0 ? METHOD_ORDER.length : i;
};

/** Whether `origin` may read answers: `origins` lists exact origins, or holds '*'. */
function originAllowed(origins: readonly string[], origin: string): boolean {
  return origins.includes('*') || origins.includes(origin);
}

/** CORS headers on public routes, and OPTIONS (preflight or plain) on every route. */
export function corsAndOptions(routes: readonly Routes[], origins: readonly string[]): Koa.Middleware {
  const any = origins.includes('*');
  return async (ctx, next) => {
    const at = routesAt(routes, ctx.path);
    if (at.methods.length === 0) return next();
    const origin = ctx.get('Origin');
    const open = at.cors && origins.length > 0;
    // With '*' every answer carries the same headers, Origin or not, so a
    // shared cache (nginx in front of /hint) may serve one to anybody; with a
    // list the answer depends on the Origin, and caches are told so.
    if (open && !any) ctx.vary('Origin');
    const allowed = open && (any || (origin !== '' && originAllowed(origins, origin)));
    if (allowed) {
      ctx.set('Access-Control-Allow-Origin', any ? '*' : origin);
      ctx.set('Access-Control-Expose-Headers', EXPOSED_HEADERS.join(', '));
    }
    if (ctx.method !== 'OPTIONS') return next();
    ctx.status = 204;
    ctx.set('Allow', [...at.methods, 'OPTIONS'].join(', '));
    if (allowed && ctx.get('Access-Control-Request-Method')) {
      ctx.set('Access-Control-Allow-Methods', at.methods.join(', '));
      ctx.set('Access-Control-Allow-Headers', ALLOWED_HEADERS.join(', '));
      ctx.set('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE_S));
    }
  };
}
