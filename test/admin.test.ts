// The admin API is for operators only: the token never reaches the log,
// request headers are summarized in bounded lines, and the admin listener
// refuses what a browser on another site could send it.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, configHash, loadConfig } from '../src/config.js';
import { BIN, json, request, startCluster } from './cluster-helpers.js';
import { rmrf, tempDir } from './helpers.js';
import { HOT, buildBlock, capturingLogger, currentGeneration, reload, serve } from './server-helpers.js';

const LINE_MAX = 2048;

test('the log never carries the admin token or raw headers; every line is bounded', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const token = `tok-${crypto.randomBytes(16).toString('hex')}`;
  const { logger, lines } = capturingLogger();
  const server = await serve(data, { admin_token: token, log_level: 'trace' }, { logger });
  t.teardown(() => server.close());
  const admin = server.adminUrl;
  const json = { 'Content-Type': 'application/json' };
  // 401s: no token, a wrong one, one that starts with the real one.
  t.is((await fetch(`${admin}/admin/reload`, { method: 'POST', headers: json })).status, 401);
  t.is((await fetch(`${admin}/admin/reload`, { method: 'POST', headers: { ...json, Authorization: 'Bearer wrong-token-of-some-length' } })).status, 401);
  t.is((await fetch(`${admin}/admin/reload`, { method: 'POST', headers: { ...json, Authorization: `Bearer ${token}x` } })).status, 401);
  // Refusals that passed the token check: the real token is in the request.
  t.is((await fetch(`${admin}/admin/reload`, { method: 'POST', headers: { ...json, Authorization: `Bearer ${token}` }, body: '{nope' })).status, 400);
  t.is((await fetch(`${admin}/admin/nowhere`, { headers: { Authorization: `Bearer ${token}` } })).status, 404);
  t.is((await fetch(`${admin}/admin/generations`, { headers: { Authorization: `Bearer ${token}` } })).status, 200);
  // 15 KB of headers (Node's limit is 16 KB) on a 404, a long URL on the admin listener.
  t.is((await fetch(`${server.publicUrl}/nope`, { headers: { 'X-Padding': 'h'.repeat(15_000) } })).status, 404);
  t.is((await fetch(`${server.publicUrl}/nope`, { headers: { 'X-Padding': 'h'.repeat(7_000), 'User-Agent': 'u'.repeat(7_000) } })).status, 404);
  t.is((await fetch(`${admin}/metrics?${'q'.repeat(4000)}`, { headers: { 'X-Padding': 'h'.repeat(10_000), Authorization: `Bearer ${token}` } })).status, 200);
  await new Promise((r) => setTimeout(r, 50)); // response logs are written on 'finish'
  const all = lines.join('');
  t.false(all.includes(token), 'the admin token appears in the log');
  t.false(all.includes('wrong-token-of-some-length'), 'a presented token appears in the log');
  t.false(/authorization/i.test(all), 'the Authorization header is logged');
  t.false(all.includes('x-padding'), 'arbitrary headers are logged');
  const requestLines = lines.map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.req);
  t.true(requestLines.length >= 8, `${requestLines.length} request lines`);
  for (const l of lines) t.true(l.length <= LINE_MAX, `a ${l.length}-byte log line: ${l.slice(0, 200)}…`);
  // A refusal's line names what an operator needs.
  const refused = requestLines.find((l) => l.res?.statusCode === 401)!;
  t.like(refused, { level: 40, code: 'EUNAUTHORIZED', req: { method: 'POST', url: '/admin/reload' } });
  t.is(typeof refused.req.id, 'string');
  t.is(typeof refused.req.remote, 'string');
});

test('/ready probes before the first generation log no stack and nothing at info', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const { logger, lines } = capturingLogger();
  const server = await serve(data, { log_level: 'trace' }, { logger });
  t.teardown(() => server.close());
  const before = lines.length;
  for (let i = 0; i < 5; i++) t.is((await fetch(`${server.publicUrl}/ready`)).status, 503);
  await new Promise((r) => setTimeout(r, 50));
  const probeLines = lines.slice(before).map((l) => JSON.parse(l) as Record<string, any>);
  t.is(probeLines.length, 5);
  for (const l of probeLines) {
    t.is(l.level, 20, 'probes log at debug');
    t.is(l.err, undefined);
    t.false(JSON.stringify(l).includes('stack'));
  }
});

// ---- the token off the command line ----

function tokenFile(dir: string, content: string, mode = 0o600): string {
  const file = path.join(dir, `token-${crypto.randomBytes(4).toString('hex')}`);
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode); // the umask may have cleared bits
  return file;
}

test('the admin token from a file: trimmed, layered like any setting, refused when others may read it', (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const token = 'file-token-0123456789abcdef';
  const file = tokenFile(dir, `${token}\n`);
  t.is(loadConfig({ flags: { admin_token_file: file } }).admin_token, token);
  t.is(loadConfig({ env: { LANEPIR_ADMIN_TOKEN_FILE: file } }).admin_token, token);
  t.is(loadConfig({ env: { LANEPIR_ADMIN_TOKEN: 'env-token-0123456789' } }).admin_token, 'env-token-0123456789');
  // A higher layer's file wins over a lower layer's token, and the reverse.
  const conf = path.join(dir, 'lanepir.json');
  fs.writeFileSync(conf, JSON.stringify({ admin_token: 'config-file-token-0123' }));
  t.is(loadConfig({ file: conf, flags: { admin_token_file: file } }).admin_token, token);
  fs.writeFileSync(conf, JSON.stringify({ admin_token_file: path.join(dir, 'missing') }));
  t.is(loadConfig({ file: conf, env: { LANEPIR_ADMIN_TOKEN: 'env-token-0123456789' } }).admin_token, 'env-token-0123456789', 'the lower file is not read');
  t.throws(() => loadConfig({ file: conf }), { instanceOf: ConfigError, message: /cannot open admin token file .*missing: ENOENT/ });
  t.throws(() => loadConfig({ flags: { admin_token: token, admin_token_file: file } }), { message: /both given/ });
  // The secret is not part of the config hash, wherever it comes from.
  t.is(configHash(loadConfig({ flags: { admin_token_file: file } })), configHash(loadConfig({ flags: { admin_token: 'another-token-0123456' } })));
  // Refusals.
  for (const mode of [0o644, 0o604, 0o620, 0o666]) {
    t.throws(() => loadConfig({ flags: { admin_token_file: tokenFile(dir, token, mode) } }), { message: /accessible to others \(mode 0\d+\).*chmod 600/ }, mode.toString(8));
  }
  t.is(loadConfig({ flags: { admin_token_file: tokenFile(dir, token, 0o640) } }).admin_token, token, 'group read is allowed');
  t.is(loadConfig({ flags: { admin_token_file: tokenFile(dir, token, 0o400) } }).admin_token, token);
  t.throws(() => loadConfig({ flags: { admin_token_file: tokenFile(dir, '\n') } }), { message: /is empty/ });
  t.throws(() => loadConfig({ flags: { admin_token_file: tokenFile(dir, `${token}\nsecond line\n`) } }), { message: /alone on one line/ });
  t.throws(() => loadConfig({ flags: { admin_token_file: tokenFile(dir, 'short\n') } }), { message: /at least 16 characters/ });
  t.throws(() => loadConfig({ flags: { admin_token_file: tokenFile(dir, 'x'.repeat(5000)) } }), { message: /larger than 4096 bytes/ });
  t.throws(() => loadConfig({ flags: { admin_token_file: dir } }), { message: /not a regular file/ });
  // A FIFO nobody writes to is refused at once (it would block start-up).
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  t.throws(() => loadConfig({ flags: { admin_token_file: fifo } }), { message: /not a regular file/ });
});

const execFileAsync = promisify(execFile);
async function lanepir(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await execFileAsync(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('lanepir serve and the admin commands take the token from a file or the environment, never passing it to workers', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  await buildBlock(data, 3, seeds);
  const token = `tok-${crypto.randomBytes(12).toString('hex')}`;
  const file = tokenFile(data, `${token}\n`);

  const c = await startCluster(data, { workers: 1, args: ['--admin-token-file', file], token });
  t.teardown(() => c.stop());
  t.false(fs.readFileSync(`/proc/${c.proc.pid}/cmdline`, 'latin1').includes(token));
  const post = (headers: Record<string, string>) =>
    request(`${c.adminUrl}/admin/reload`, { method: 'POST', body: JSON.stringify({ generation: 2 }), headers: { 'Content-Type': 'application/json', ...headers } });
  t.is((await post({})).status, 401);
  t.is((await post({ Authorization: `Bearer ${token}` })).status, 200);
  // The admin client commands: a file flag, the file in the environment, the token in the environment.
  let r = await lanepir(['reload', '--admin-url', c.adminUrl, '--admin-token-file', file, '--generation', '3']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /"new_generation":"3"/);
  r = await lanepir(['reload', '--admin-url', c.adminUrl, '--generation', '2'], { LANEPIR_ADMIN_TOKEN_FILE: file });
  t.is(r.code, 0, r.stderr);
  r = await lanepir(['prune', '--admin-url', c.adminUrl, '--data', data, '--retain', '3', '--dry-run'], { LANEPIR_ADMIN_TOKEN: token });
  t.is(r.code, 0, r.stderr);
  r = await lanepir(['reload', '--admin-url', c.adminUrl]);
  t.not(r.code, 0, 'no token: refused');
  t.regex(r.stderr, /401/);
  await c.stop();

  // The token in the primary's environment stays there: workers get it over IPC.
  const e = await startCluster(data, { workers: 1, env: { LANEPIR_ADMIN_TOKEN: token }, token });
  t.teardown(() => e.stop());
  const gens = json(await request(`${e.adminUrl}/admin/generations`, { headers: { Authorization: `Bearer ${token}` } }));
  t.is(gens.workers.length, 1);
  for (const w of gens.workers) t.false(fs.readFileSync(`/proc/${w.pid}/environ`, 'latin1').includes(token), `worker ${w.pid} environment`);
  t.is((await request(`${e.adminUrl}/admin/reload`, { method: 'POST', headers: { 'Content-Type': 'application/json' } })).status, 401);
});

// ---- what the admin listener refuses ----

test('a cross-site POST cannot switch generations: admin POSTs must be application/json', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  const server = await serve(data);
  t.teardown(() => server.close());
  const reloadWith = (headers: Record<string, string>, body?: string) =>
    request(`${server.adminUrl}/admin/reload`, { method: 'POST', headers, ...(body !== undefined ? { body } : {}) });
  // What a page on another site can send without a preflight.
  for (const [headers, body] of [
    [{ 'Content-Type': 'text/plain' }, '{"generation": 2}'],
    [{ 'Content-Type': 'text/plain;charset=UTF-8', Origin: 'https://evil.example' }, '{"generation": 2}'],
    [{ 'Content-Type': 'application/x-www-form-urlencoded' }, 'generation=2'],
    [{ 'Content-Type': 'multipart/form-data; boundary=x' }, '--x--'],
    [{}, undefined],
    [{ 'Content-Type': 'application/jsonp' }, '{"generation": 2}'],
  ] as const) {
    const r = await reloadWith(headers, body);
    t.is(r.status, 415, JSON.stringify(headers));
    t.is(json(r).code, 'EBAD_CONTENT_TYPE');
  }
  t.is(await currentGeneration(server.publicUrl), '1', 'nothing was switched');
  const ok = await reloadWith({ 'Content-Type': 'application/json; charset=utf-8' }, '{"generation": 2}');
  t.is(ok.status, 200, ok.body.toString());
  t.is(await currentGeneration(server.publicUrl), '2');
  // An empty JSON request reloads <data>/current (what `lanepir reload` sends).
  t.is((await reloadWith({ 'Content-Type': 'application/json' }, '')).status, 200);
  t.is(await currentGeneration(server.publicUrl), '1');
  // GETs need no Content-Type.
  t.is((await request(`${server.adminUrl}/admin/generations`)).status, 200);
});

test('the admin listener refuses a Host that is not its address (DNS rebinding)', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const server = await serve(data, { admin_allowed_hosts: 'lanepir-admin.internal, metrics.example' });
  t.teardown(() => server.close());
  const port = new URL(server.adminUrl).port;
  const withHost = (host: string, path = '/admin/generations', method = 'GET') =>
    request(`${server.adminUrl}${path}`, { method, headers: { Host: host, 'Content-Type': 'application/json' }, ...(method === 'POST' ? { body: '{}' } : {}) });
  for (const host of [`rebind.evil.example:${port}`, 'rebind.evil.example', `127.0.0.1.evil.example:${port}`, `localhost.evil.example:${port}`, 'a b', `[nope]:${port}`]) {
    const r = await withHost(host);
    t.is(r.status, 403, host);
    t.is(json(r).code, 'EHOST_NOT_ALLOWED');
    t.is((await withHost(host, '/admin/reload', 'POST')).status, 403, `${host} (reload)`);
    t.is((await withHost(host, '/metrics')).status, 403, `${host} (metrics)`);
    t.is((await withHost(host, '/info')).status, 403, `${host} (public route on the admin listener)`);
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, '127.0.0.1', `lanepir-admin.internal:${port}`, 'metrics.example', `10.1.2.3:${port}`]) {
    t.is((await withHost(host)).status, 200, host);
  }
  // The public listener answers whatever name clients use.
  t.is((await request(`${server.publicUrl}/info`, { headers: { Host: 'pir.example.org' } })).status, 200);
});

test('an admin request body over the limit is refused on its Content-Length, before it is sent', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const token = 'a-token-for-the-size-test';
  const server = await serve(data, { admin_token: token });
  t.teardown(() => server.close());
  // Headers only: the body (10 MB announced) never comes. The answer must not wait for it.
  const announce = (headers: Record<string, string>) =>
    new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
      const req = http.request(`${server.adminUrl}/admin/reload`, {
        method: 'POST',
        agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': String(10 * 1024 * 1024), ...headers },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode!, body, connection: res.headers.connection });
          req.destroy();
        });
      });
      req.on('error', reject);
      // The body never comes: an answer at all means the server did not wait for it.
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s: the server waited for the body')));
      req.flushHeaders();
      req.write('{"generation": ');
    });
  const r = await announce({ Authorization: `Bearer ${token}` });
  t.is(r.status, 413);
  t.is(JSON.parse(r.body).code, 'EBODY_TOO_LARGE');
  t.is(r.connection, 'close', 'the unread body is not drained');
  // Without the token: 401, as promptly.
  const u = await announce({});
  t.is(u.status, 401);
  t.is(u.connection, 'close');
  // Still serving, and a right-sized reload works.
  t.is((await reload(server, undefined, token)).status, 200);
});

test('an admin listener beyond loopback is refused at start-up without a token', (t) => {
  for (const host of ['0.0.0.0', '::', '10.0.0.5', 'admin.example']) {
    t.throws(() => loadConfig({ flags: { admin_host: host } }), { instanceOf: ConfigError, message: /admin_host: an admin listener beyond loopback needs admin_token/ }, host);
    t.is(loadConfig({ flags: { admin_host: host, admin_token: 'a-long-enough-admin-token' } }).admin_host, host);
  }
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) t.is(loadConfig({ flags: { admin_host: host } }).admin_host, host);
});

test('an unexpected error is logged once with its stack and the request id; an abandoned request is "aborted", not "refused"', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const { logger, lines } = capturingLogger();
  const server = await serve(data, { log_level: 'trace', batch_window_ms: 1000 }, { logger });
  t.teardown(() => server.close());
  // A query the client gives up on while it waits for its batch.
  const ac = new AbortController();
  const pending = fetch(`${server.publicUrl}/query/hot`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', 'X-Request-Id': 'abandoned-1' },
    body: new Uint8Array(HOT.m * 4),
    signal: ac.signal,
  }).catch(() => undefined);
  // Abort once the server holds it (waiting for company in its batch window).
  const inFlight = async () => (await server.metrics.inFlight.get()).values[0]?.value ?? 0;
  for (let i = 0; i < 200 && (await inFlight()) < 1; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(await inFlight(), 1);
  ac.abort();
  await pending;
  // An internal error: generations() throws.
  (server as unknown as { store: { held: () => never } }).store.held = () => {
    throw new Error('boom in a handler');
  };
  const r = await fetch(`${server.adminUrl}/admin/generations`, { headers: { 'X-Request-Id': 'broken-1' } });
  t.is(r.status, 500);
  t.like(await r.json(), { code: 'EINTERNAL' });
  const parse = () => lines.map((l) => JSON.parse(l) as Record<string, any>);
  for (let i = 0; i < 100 && !parse().some((l) => l.req?.id === 'abandoned-1'); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 50));
  const parsed = parse();
  const aborted = parsed.filter((l) => l.req?.id === 'abandoned-1');
  t.is(aborted.length, 1);
  t.like(aborted[0], { level: 30, msg: 'request aborted' });
  const broken = parsed.filter((l) => l.req?.id === 'broken-1');
  t.is(broken.length, 2, JSON.stringify(broken));
  const withStack = broken.filter((l) => typeof l.err?.stack === 'string');
  t.is(withStack.length, 1, 'one stack');
  t.regex(withStack[0]!.err.stack, /boom in a handler/);
  t.is(withStack[0]!.level, 50);
  t.like(broken.find((l) => l !== withStack[0]), { level: 50, msg: 'request failed', res: { statusCode: 500 } });
});
