// Wallet pages on other origins can use the public API (CORS); admin routes
// stay closed to them; a wrong method on an existing route is 405, not 404.
import test from 'ava';
import { ConfigError, loadConfig } from '../src/config.js';
import { rmrf, tempDir } from './helpers.js';
import { HOT, buildBlock, serve } from './server-helpers.js';
import { json, request } from './cluster-helpers.js';

const WALLET = 'https://wallet.example';

async function served(t: import('ava').ExecutionContext, overrides: Parameters<typeof serve>[1] = {}) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const server = await serve(data, overrides);
  t.teardown(() => server.close());
  return server;
}

const preflight = (url: string, method: string, headers: Record<string, string> = {}) =>
  request(url, { method: 'OPTIONS', headers: { Origin: WALLET, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'content-type', ...headers } });

test('a wallet page on another origin can query: preflight, answers and errors carry CORS headers', async (t) => {
  const server = await served(t);
  const url = server.publicUrl;
  // The preflight an application/octet-stream POST needs.
  const pre = await preflight(`${url}/query/hot`, 'POST');
  t.is(pre.status, 204);
  t.is(pre.headers['access-control-allow-origin'], '*');
  t.regex(String(pre.headers['access-control-allow-methods']), /\bPOST\b/);
  t.regex(String(pre.headers['access-control-allow-headers']), /\bContent-Type\b/i);
  t.is(pre.headers['access-control-max-age'], '7200');
  t.is(pre.headers['access-control-allow-credentials'], undefined);
  t.regex(String(pre.headers.allow), /POST/);
  // GET routes too (If-None-Match on /hint makes a preflight).
  const hintPre = await preflight(`${url}/hint/hot?generation=1`, 'GET', { 'Access-Control-Request-Headers': 'if-none-match' });
  t.is(hintPre.status, 204);
  t.regex(String(hintPre.headers['access-control-allow-headers']), /If-None-Match/);
  // The query itself, with the headers the client reads exposed.
  const q = await request(`${url}/query/hot`, { method: 'POST', headers: { Origin: WALLET, 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(HOT.m * 4) });
  t.is(q.status, 200);
  t.is(q.headers['access-control-allow-origin'], '*');
  const exposed = String(q.headers['access-control-expose-headers']);
  for (const h of ['X-Lanepir-Generation', 'X-Lanepir-Block', 'X-Lanepir-Batch', 'X-Request-Id', 'ETag', 'Retry-After']) t.true(exposed.includes(h), h);
  for (const path of ['/info', '/health', '/ready', '/crs/hot', '/hint/cold']) {
    t.is((await request(`${url}${path}`, { headers: { Origin: WALLET } })).headers['access-control-allow-origin'], '*', path);
  }
  // Errors are readable cross-origin too (the client needs their code and current_generation).
  const gone = await request(`${url}/crs/hot?generation=999`, { headers: { Origin: WALLET } });
  t.is(gone.status, 410);
  t.is(gone.headers['access-control-allow-origin'], '*');
  const bad = await request(`${url}/query/hot`, { method: 'POST', headers: { Origin: WALLET, 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(8) });
  t.is(bad.status, 400);
  t.is(bad.headers['access-control-allow-origin'], '*');
  // Without an Origin the answer is the same (a shared cache may hand it to a browser later).
  const plain = await request(`${url}/hint/hot?generation=1`);
  t.is(plain.headers['access-control-allow-origin'], '*');
  t.is(plain.headers['access-control-expose-headers'], q.headers['access-control-expose-headers']);
  t.is(plain.headers.vary, undefined);
});

test('admin routes are never open to other origins, on either listener', async (t) => {
  const token = 'cors-test-admin-token-0123';
  const server = await served(t, { admin_token: token, public_admin: true });
  for (const base of [server.publicUrl, server.adminUrl]) {
    for (const [path, method] of [['/admin/reload', 'POST'], ['/admin/generations', 'GET'], ['/metrics', 'GET']] as const) {
      const pre = await preflight(`${base}${path}`, method, { 'Access-Control-Request-Headers': 'content-type, authorization' });
      t.is(pre.headers['access-control-allow-origin'], undefined, `${base}${path} preflight`);
      t.is(pre.headers['access-control-allow-methods'], undefined);
      const r = await request(`${base}${path}`, {
        method,
        headers: { Origin: WALLET, Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      t.is(r.status, 200, `${base}${path}`);
      t.is(r.headers['access-control-allow-origin'], undefined, `${base}${path}`);
    }
  }
  // Public routes on the admin listener are for operators: no CORS there either.
  t.is((await request(`${server.adminUrl}/info`, { headers: { Origin: WALLET } })).headers['access-control-allow-origin'], undefined);
});

test('cors_origins: an explicit list echoes allowed origins only (and varies on Origin); none turns CORS off', async (t) => {
  const server = await served(t, { cors_origins: `${WALLET}, http://localhost:8080` });
  const url = server.publicUrl;
  const ok = await request(`${url}/info`, { headers: { Origin: WALLET } });
  t.is(ok.headers['access-control-allow-origin'], WALLET);
  t.regex(String(ok.headers.vary), /Origin/);
  t.is((await request(`${url}/info`, { headers: { Origin: 'http://localhost:8080' } })).headers['access-control-allow-origin'], 'http://localhost:8080');
  const other = await request(`${url}/info`, { headers: { Origin: 'https://evil.example' } });
  t.is(other.headers['access-control-allow-origin'], undefined);
  t.regex(String(other.headers.vary), /Origin/);
  const pre = await preflight(`${url}/query/cold`, 'POST', { Origin: 'https://evil.example' });
  t.is(pre.headers['access-control-allow-origin'], undefined);
  t.is(pre.headers['access-control-allow-methods'], undefined);

  const off = await served(t, { cors_origins: 'none' });
  t.is((await request(`${off.publicUrl}/info`, { headers: { Origin: WALLET } })).headers['access-control-allow-origin'], undefined);
  t.deepEqual(loadConfig({ env: { LANEPIR_CORS_ORIGINS: `${WALLET},https://b.example` } }).cors_origins, [WALLET, 'https://b.example']);
  t.deepEqual(loadConfig({}).cors_origins, ['*']);
  for (const bad of ['https://wallet.example/', 'wallet.example', 'https://wallet.example/path', 'https://*.example']) {
    t.throws(() => loadConfig({ flags: { cors_origins: bad } }), { instanceOf: ConfigError, message: /cors_origins/ }, bad);
  }
});

test('a wrong method on an existing route is 405 with Allow and a JSON error; unknown paths stay 404', async (t) => {
  const server = await served(t, { admin_token: 'method-test-admin-token-01', public_admin: true });
  const url = server.publicUrl;
  const hot = await request(`${url}/query/hot`);
  t.is(hot.status, 405);
  t.is(hot.headers.allow, 'POST, OPTIONS');
  t.like(json(hot), { code: 'EMETHOD_NOT_ALLOWED' });
  t.is(typeof json(hot).error, 'string');
  for (const [path, method] of [['/info', 'POST'], ['/info', 'DELETE'], ['/hint/hot', 'PUT'], ['/admin/reload', 'GET'], ['/metrics', 'POST']] as const) {
    const r = await request(`${url}${path}`, { method, headers: { 'Content-Type': 'application/json' }, body: method === 'POST' || method === 'PUT' ? '{}' : undefined });
    t.is(r.status, 405, `${method} ${path}`);
    t.is(json(r).code, 'EMETHOD_NOT_ALLOWED');
    t.truthy(r.headers.allow);
  }
  t.regex(String((await request(`${url}/info`, { method: 'POST' })).headers.allow), /^GET, HEAD, OPTIONS$/);
  t.is((await request(`${server.adminUrl}/admin/reload`)).status, 405, 'on the admin listener too');
  // Plain OPTIONS answers Allow.
  const opt = await request(`${url}/info`, { method: 'OPTIONS' });
  t.is(opt.status, 204);
  t.is(opt.headers.allow, 'GET, HEAD, OPTIONS');
  t.is((await request(`${url}/nope`)).status, 404);
  t.is((await request(`${url}/nope`, { method: 'OPTIONS' })).status, 404);
  t.is(json(await request(`${url}/query`)).code, 'ENOT_FOUND');
});
