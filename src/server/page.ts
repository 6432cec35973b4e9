// The private-lookup page on the public listener (config `page`, default on):
// GET / is the page, GET /assets/<file> its script, style and the client
// bundle (lanepir/browser), built by `npm run build` into dist/browser/.
// Files are read once at start-up and served from memory (gzipped too, for
// clients that accept it) with their sha256 as ETag; a fixed list of names
// is served, nothing else from the disk.
// The page gets a strict Content-Security-Policy: scripts, styles, workers
// and connections only from this server, nothing inline, no framing.
// Assets are open to other origins (CORS on public routes), so a wallet page
// elsewhere can import the bundle and start its worker.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import Router, { type RouterContext } from '@koa/router';
import { HttpError } from './errors.js';

/** Where `npm run build` puts the page and the bundle (dist/browser, from dist/src/server). */
export const PAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../browser');

/** The page's files: URL path under /assets/ (or / for the page) to file name. */
const ASSET_NAMES = [
  'page.js',
  'page.js.map',
  'page.css',
  'lanepir-client.js',
  'lanepir-client.js.map',
  'lanepir-worker.js',
  'lanepir-worker.js.map',
] as const;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/** The page's policy: everything from this server only; nothing inline; no plugins, frames or form posts elsewhere. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "worker-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** A worker started from our script inherits nothing from the page: its own policy (connections to this server only). */
export const SCRIPT_CSP = ["default-src 'none'", "script-src 'self'", "connect-src 'self'"].join('; ');

export class PageError extends Error {
  readonly code = 'EPAGE_MISSING';
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  /** The body gzipped, when that is smaller. */
  gzip?: Buffer;
}

export class PageAssets {
  private constructor(private readonly files: Map<string, Asset>) {}

  /** Reads the page's files from `dir`; a missing one is an error naming it (the build did not run). */
  static load(dir = PAGE_DIR): PageAssets {
    const files = new Map<string, Asset>();
    for (const name of ['index.html', ...ASSET_NAMES]) {
      let body: Buffer;
      try {
        body = fs.readFileSync(path.join(dir, name));
      } catch {
        throw new PageError(`the lookup page's file ${name} is missing from the package (dist/browser): run npm run build, or turn the page off (config page: false)`);
      }
      const etag = `"${crypto.createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;
      const gzip = zlib.gzipSync(body, { level: 9 });
      files.set(name, { body, type: CONTENT_TYPES[path.extname(name)]!, etag, ...(gzip.length < body.length ? { gzip } : {}) });
    }
    return new PageAssets(files);
  }

  get(name: string): Asset | undefined {
    return this.files.get(name);
  }
}

function send(ctx: RouterContext, asset: Asset, csp: string): void {
  const gzip = asset.gzip !== undefined && ctx.acceptsEncodings('gzip', 'identity') === 'gzip';
  // Each encoding is its own representation: its own ETag, and caches told the answer depends on Accept-Encoding.
  const etag = gzip ? `${asset.etag.slice(0, -1)}-gzip"` : asset.etag;
  if (asset.gzip !== undefined) ctx.vary('Accept-Encoding');
  ctx.set('ETag', etag);
  // Revalidated on each load (a 304 costs one round trip): a server upgrade never mixes old and new files.
  ctx.set('Cache-Control', 'no-cache');
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Content-Security-Policy', csp);
  ctx.set('Referrer-Policy', 'no-referrer');
  if (ctx.get('If-None-Match') === etag) {
    ctx.status = 304;
    return;
  }
  ctx.type = asset.type;
  if (gzip) ctx.set('Content-Encoding', 'gzip');
  ctx.body = gzip ? asset.gzip : asset.body;
}

export function pageRouter(assets: PageAssets): Router {
  const router = new Router();
  router.get('/', (ctx) => {
    send(ctx, assets.get('index.html')!, PAGE_CSP);
    ctx.set('X-Frame-Options', 'DENY');
  });
  router.get('/assets/:name', (ctx) => {
    const asset = (ASSET_NAMES as readonly string[]).includes(ctx.params.name!) ? assets.get(ctx.params.name!) : undefined;
    if (!asset) throw new HttpError(404, 'ENOT_FOUND', `no asset ${JSON.stringify(ctx.params.name)}`);
    send(ctx, asset, SCRIPT_CSP);
    // Other origins' pages may load the bundle (also under Cross-Origin-Embedder-Policy).
    ctx.set('Cross-Origin-Resource-Policy', 'cross-origin');
  });
  return router;
}
