// The admin API is for operators only: the token never reaches the log,
// request headers are summarized in bounded lines, and the admin listener
// refuses what a browser on another site could send it.
import test from 'ava';
import crypto from 'node:crypto';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, capturingLogger, serve } from './server-helpers.js';

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
