// The Roller (follow mode's publish, reload and prune): which reload failures
// are retried and which refuse a generation, against a scripted admin API.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { Roller, type RollerEvents } from '../src/follow/roller.js';
import { resolveGeneration } from '../src/store/generation.js';
import { rmrf, tempDir } from './helpers.js';

/** A data directory whose generations exist as far as publishing goes (a manifest file each). */
function fakeData(ids: string[]): string {
  const data = tempDir();
  for (const id of ids) {
    fs.mkdirSync(path.join(data, 'generations', id), { recursive: true });
    fs.writeFileSync(path.join(data, 'generations', id, 'manifest.json'), '{}');
  }
  return data;
}

/** An admin API answering each POST /admin/reload with the next scripted [status, body]; /admin/generations fails (prune is skipped). */
async function scriptedAdmin(script: [number, unknown][]) {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url !== '/admin/reload') return void res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":"not scripted","code":"ETEST"}');
      asked.push((JSON.parse(body) as { generation: string }).generation);
      const [status, answer] = script.shift() ?? [200, { generation: 'x' }];
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const quiet = pino({ level: 'silent' });
const once = <K extends keyof RollerEvents>(roller: Roller, event: K, pred: (e: RollerEvents[K]) => boolean = () => true) =>
  new Promise<RollerEvents[K]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event`)), 10_000);
    const on = (e: RollerEvents[K]) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      roller.off(event, on);
      resolve(e);
    };
    roller.on(event, on);
  });

test('a busy or failing server (503 with a code, 500) is retried until it reloads; the generation is not refused', async (t) => {
  const data = fakeData(['5']);
  t.teardown(() => rmrf(data));
  const admin = await scriptedAdmin([
    [503, { error: 'a reload is running', code: 'ERELOAD_BUSY' }],
    [500, { error: 'boom', code: 'EINTERNAL' }],
    [200, { generation: '5' }],
  ]);
  t.teardown(() => admin.close());
  const roller = new Roller({ data, admin: { url: admin.url, token: undefined }, logger: quiet, retryMs: 20, maxRetryMs: 50 });
  t.teardown(() => roller.stop());
  const failed: RollerEvents['failed'][] = [];
  roller.on('failed', (e: RollerEvents['failed']) => failed.push(e));
  const reloaded = once(roller, 'reloaded');
  await roller.request('5');
  t.is((await reloaded).generation, '5');
  t.deepEqual(admin.asked, ['5', '5', '5']);
  t.deepEqual(failed.map((f) => f.retrying), [true, true]);
  t.is(roller.served, '5');
});

test('a generation the server refuses (422) is not retried, and current goes back to what the server serves', async (t) => {
  const data = fakeData(['5', '6', '7']);
  t.teardown(() => rmrf(data));
  const admin = await scriptedAdmin([
    [200, { generation: '5' }],
    [422, { error: 'checksum mismatch', code: 'ECHECKSUM' }],
    [200, { generation: '7' }],
  ]);
  t.teardown(() => admin.close());
  const roller = new Roller({ data, admin: { url: admin.url, token: undefined }, logger: quiet, retryMs: 20 });
  t.teardown(() => roller.stop());
  let reloaded = once(roller, 'reloaded');
  await roller.request('5');
  await reloaded;
  const refused = once(roller, 'failed');
  await roller.request('6');
  t.false((await refused).retrying);
  await roller.idle();
  t.is((await resolveGeneration(data)).id, '5', 'current is the served generation again');
  t.is(roller.served, '5');
  reloaded = once(roller, 'reloaded');
  await roller.request('7');
  t.is((await reloaded).generation, '7');
  t.deepEqual(admin.asked, ['5', '6', '7'], 'the refused generation was asked for once');
});

test('a server that is not listening yet gets the published generation once it is', async (t) => {
  const data = fakeData(['9']);
  t.teardown(() => rmrf(data));
  // A port nobody listens on (yet): take one, close it, listen on it later.
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const roller = new Roller({ data, admin: { url: `http://127.0.0.1:${port}`, token: undefined }, logger: quiet, retryMs: 20, maxRetryMs: 100 });
  t.teardown(() => roller.stop());
  const away = once(roller, 'failed');
  await roller.request('9');
  t.is((await resolveGeneration(data)).id, '9', 'published at once');
  t.true((await away).retrying);
  const late = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.url === '/admin/reload' ? 200 : 500, { 'Content-Type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((r) => late.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => late.close(() => r())));
  t.is((await once(roller, 'reloaded')).generation, '9');
});
