// The lookup page's files as the server serves them (no browser here; see
// browser.test.ts): content types, ETags and 304s, gzip, a strict CSP on the
// page, CORS on the assets, nothing but the listed files, the `page` switch,
// never on the admin listener, and a missing build refused at start-up.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { PAGE_DIR, PageAssets, PageError } from '../src/server/page.js';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, serve } from './server-helpers.js';

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with exactly the headers given (fetch would add Accept-Encoding and decompress). */
function raw(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function server(t: import('ava').ExecutionContext, overrides = {}) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const s = await serve(data, overrides);
  t.teardown(() => s.close());
  return s;
}

test('GET / is the page: HTML with a strict CSP, no framing, revalidated by ETag', async (t) => {
  const s = await server(t);
  const r = await raw(`${s.publicUrl}/`);
  t.is(r.status, 200);
  t.is(r.headers['content-type'], 'text/html; charset=utf-8');
  const csp = String(r.headers['content-security-policy']);
  for (const d of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "worker-src 'self'", "frame-ancestors 'none'"]) t.true(csp.includes(d), d);
  t.false(/unsafe-inline|unsafe-eval|\*/.test(csp), csp);
  t.is(r.headers['x-content-type-options'], 'nosniff');
  t.is(r.headers['x-frame-options'], 'DENY');
  t.is(r.headers['cache-control'], 'no-cache');
  const html = r.body.toString('utf8');
  t.true(html.includes('data-testid="result"') && html.includes('data-testid="error"') && html.includes('assets/page.js'));
  t.is(html, fs.readFileSync(path.join(PAGE_DIR, 'index.html'), 'utf8'));
  // No inline script or style: the CSP allows none.
  t.false(/<script(?![^>]*\bsrc=)[^>]*>/.test(html) || /\sstyle=/.test(html) || /<style/.test(html));

  const again = await raw(`${s.publicUrl}/`, { 'If-None-Match': String(r.headers.etag) });
  t.is(again.status, 304);
  t.is(again.body.length, 0);
  t.is((await raw(`${s.publicUrl}/`, {}, 'HEAD')).status, 200);
  const post = await raw(`${s.publicUrl}/`, {}, 'POST');
  t.is(post.status, 405);
  t.is(post.headers.allow, 'GET, HEAD, OPTIONS');
});

test('assets: content types, gzip for clients that accept it, open to other origins, each encoding its own ETag', async (t) => {
  const s = await server(t);
  const types: Record<string, string> = {
    'lanepir-client.js': 'text/javascript; charset=utf-8',
    'lanepir-worker.js': 'text/javascript; charset=utf-8',
    'page.js': 'text/javascript; charset=utf-8',
    'page.css': 'text/css; charset=utf-8',
    'lanepir-client.js.map': 'application/json; charset=utf-8',
  };
  for (const [name, type] of Object.entries(types)) {
    const file = fs.readFileSync(path.join(PAGE_DIR, name));
    const plain = await raw(`${s.publicUrl}/assets/${name}`, { Origin: 'https://wallet.example' });
    t.is(plain.status, 200, name);
    t.is(plain.headers['content-type'], type, name);
    t.is(plain.headers['content-encoding'], undefined, name);
    t.deepEqual(plain.body, file, name);
    t.is(plain.headers['access-control-allow-origin'], '*', name);
    t.is(plain.headers['cross-origin-resource-policy'], 'cross-origin', name);
    t.is(plain.headers['x-content-type-options'], 'nosniff', name);

    const gz = await raw(`${s.publicUrl}/assets/${name}`, { 'Accept-Encoding': 'gzip, deflate, br' });
    if (gz.headers['content-encoding'] === 'gzip') {
      t.deepEqual(zlib.gunzipSync(gz.body), file, name);
      t.not(gz.headers.etag, plain.headers.etag, name);
      t.regex(String(gz.headers.vary), /Accept-Encoding/, name);
      t.is((await raw(`${s.publicUrl}/assets/${name}`, { 'Accept-Encoding': 'gzip', 'If-None-Match': String(gz.headers.etag) })).status, 304, name);
      // The other encoding's ETag does not validate this one.
      t.is((await raw(`${s.publicUrl}/assets/${name}`, { 'Accept-Encoding': 'gzip', 'If-None-Match': String(plain.headers.etag) })).status, 200, name);
    } else {
      t.true(file.length < 200, `${name} is served uncompressed only when gzip does not help`);
    }
  }
  const bundle = await raw(`${s.publicUrl}/assets/lanepir-client.js`, { 'Accept-Encoding': 'gzip' });
  t.log(`bundle ${fs.statSync(path.join(PAGE_DIR, 'lanepir-client.js')).size} bytes, ${bundle.body.length} gzipped`);
});

test('only the listed files are served: no other name, no path outside the assets', async (t) => {
  const s = await server(t);
  for (const p of ['/assets/nope.js', '/assets/index.html', '/assets/..%2Fpackage.json', '/assets/%2e%2e%2f%2e%2e%2fpackage.json', '/assets/types', '/assets/', '/index.html', '/page.js']) {
    const r = await raw(`${s.publicUrl}${p}`);
    t.is(r.status, 404, p);
    t.is(JSON.parse(r.body.toString()).code, 'ENOT_FOUND', p);
  }
});

test('config page: false serves no page; the admin listener never does', async (t) => {
  const off = await server(t, { page: false });
  t.is((await raw(`${off.publicUrl}/`)).status, 404);
  t.is((await raw(`${off.publicUrl}/assets/lanepir-client.js`)).status, 404);
  t.is((await raw(`${off.publicUrl}/info`)).status, 200);
  const on = await server(t);
  t.is((await raw(`${on.adminUrl}/`)).status, 404);
  t.is((await raw(`${on.adminUrl}/assets/lanepir-client.js`)).status, 404);
});

test('a build without the page files is refused at start-up with the fix named', (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const err = t.throws(() => PageAssets.load(dir), { instanceOf: PageError });
  t.is(err?.code, 'EPAGE_MISSING');
  t.regex(err!.message, /index\.html .*npm run build.*page: false/);
  t.notThrows(() => PageAssets.load());
});
