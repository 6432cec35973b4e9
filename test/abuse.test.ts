// Abuse controls of the public port (issue 8): a cap on requests in
// progress per client address (429), caps per expensive route (503), both
// with Retry-After and JSON {error, code}; the client address behind a
// trusted reverse proxy; cheap routes always answer.
import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { loadConfig } from '../src/config.js';
import { ClientAddresses, clientKey, isAddressOrRange } from '../src/server/client-address.js';
import { type RunningServer } from '../src/server/server.js';
import { rmrf, tempDir } from './helpers.js';
import { HOT, buildBlock, serve } from './server-helpers.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  json: Record<string, unknown> | undefined;
}

/** One request on a fresh connection from `localAddress` (any 127.x.y.z is this machine). */
function request(url: string, path: string, opts: { method?: string; localAddress?: string; headers?: Record<string, string>; body?: Uint8Array } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, url), { method: opts.method ?? 'GET', agent: false, localAddress: opts.localAddress ?? '127.0.0.1', headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const json = res.headers['content-type']?.startsWith('application/json') ? (JSON.parse(text) as Record<string, unknown>) : undefined;
        resolve({ status: res.statusCode!, headers: res.headers, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${path}: no answer in 30 s`)));
    req.end(opts.body);
  });
}

/**
 * A query whose body never finishes arriving: the request stays in progress
 * (holding its client's and its route's slots) until the socket is closed.
 */
async function heldQuery(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port), localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(`POST /query/hot HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${HOT.m * 4}\r\n${extra}\r\n`);
  socket.write(Buffer.alloc(16));
  return socket;
}

/** Waits until the server holds `n` requests on a snapshot (the held queries are in their handlers). */
async function inFlight(server: RunningServer, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const v = (await server.metrics.inFlight.get()).values[0]?.value ?? 0;
    if (v === n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never reached ${n} requests in flight`);
}

function closeAll(sockets: net.Socket[]): void {
  for (const s of sockets) s.destroy();
}

async function setup(t: import('ava').ExecutionContext, overrides: Parameters<typeof serve>[1]): Promise<RunningServer> {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const server = await serve(data, overrides);
  t.teardown(() => server.close());
  return server;
}

function refused(t: import('ava').ExecutionContext, r: Reply, status: number, code: string): void {
  t.is(r.status, status);
  t.is(r.json?.code, code);
  t.is(typeof r.json?.error, 'string');
  t.is(r.headers['retry-after'], '1');
}

test('per-client cap: 429 with Retry-After; other clients, cheap routes and the client once its requests end are served', async (t) => {
  const server = await setup(t, { max_requests_per_client: 3 });
  const url = server.publicUrl;
  const held = await Promise.all([1, 2, 3].map(() => heldQuery(url, '127.0.0.1')));
  t.teardown(() => closeAll(held));
  await inFlight(server, 3);

  // The same address: refused on every counted route, whatever the route.
  refused(t, await request(url, '/hint/hot'), 429, 'ETOO_MANY_REQUESTS');
  refused(t, await request(url, '/delta/hot?from=1'), 429, 'ETOO_MANY_REQUESTS');
  refused(t, await request(url, '/query/hot', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(HOT.m * 4) }), 429, 'ETOO_MANY_REQUESTS');
  // Cheap routes are never counted.
  for (const path of ['/health', '/ready', '/info', '/crs/hot']) t.is((await request(url, path)).status, 200, path);
  // Another address is served.
  t.is((await request(url, '/hint/hot', { localAddress: '127.0.0.2' })).status, 200);
  t.is((await request(url, '/delta/hot?from=1', { localAddress: '127.0.0.3' })).status, 200);
  // The admin listener has no such cap.
  t.is((await request(server.adminUrl, '/hint/hot')).status, 200);

  // Once one of its requests ends, the client is served again.
  held[0]!.destroy();
  await inFlight(server, 2);
  t.is((await request(url, '/hint/hot')).status, 200);
  const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
  t.regex(metrics, /lanepir_refused_requests_total\{route="query",reason="client"\} 1/);
});

test('X-Forwarded-For names the client only behind a trusted proxy, read from the right', async (t) => {
  const server = await setup(t, { max_requests_per_client: 2, trusted_proxies: ['127.0.0.1', '10.0.0.0/8'] });
  const url = server.publicUrl;
  // Through the proxy (127.0.0.1) for client 203.0.113.7, via a second trusted hop.
  const xff = { 'X-Forwarded-For': '203.0.113.7, 10.1.2.3' };
  const held = await Promise.all([1, 2].map(() => heldQuery(url, '127.0.0.1', xff)));
  t.teardown(() => closeAll(held));
  await inFlight(server, 2);
  refused(t, await request(url, '/hint/hot', { headers: xff }), 429, 'ETOO_MANY_REQUESTS');
  // What the client wrote itself (left of the proxies' entries) is not believed.
  refused(t, await request(url, '/hint/hot', { headers: { 'X-Forwarded-For': '198.51.100.1, 203.0.113.7' } }), 429, 'ETOO_MANY_REQUESTS');
  // Another client behind the same proxy is served.
  t.is((await request(url, '/hint/hot', { headers: { 'X-Forwarded-For': '203.0.113.8' } })).status, 200);
  // From a peer that is not a trusted proxy, the header is ignored: the peer is the client.
  const untrusted = await Promise.all([1, 2].map(() => heldQuery(url, '127.0.0.9', { 'X-Forwarded-For': '192.0.2.1' })));
  t.teardown(() => closeAll(untrusted));
  await inFlight(server, 4);
  refused(t, await request(url, '/hint/hot', { localAddress: '127.0.0.9', headers: { 'X-Forwarded-For': '192.0.2.2' } }), 429, 'ETOO_MANY_REQUESTS');
  t.is((await request(url, '/hint/hot', { localAddress: '127.0.0.10', headers: { 'X-Forwarded-For': '192.0.2.1' } })).status, 200);
});

test('per-route cap: 503 EROUTE_BUSY with Retry-After while the route is full; other routes and cheap routes answer', async (t) => {
  const server = await setup(t, { max_concurrent_queries: 2 });
  const url = server.publicUrl;
  const held = await Promise.all(['127.0.0.11', '127.0.0.12'].map((a) => heldQuery(url, a)));
  t.teardown(() => closeAll(held));
  await inFlight(server, 2);
  const query = () => request(url, '/query/hot', { method: 'POST', localAddress: '127.0.0.13', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(HOT.m * 4) });
  refused(t, await query(), 503, 'EROUTE_BUSY');
  for (const path of ['/health', '/ready', '/info', '/crs/hot', '/hint/hot', '/delta/hot?from=1']) t.is((await request(url, path, { localAddress: '127.0.0.13' })).status, 200, path);
  closeAll(held);
  await inFlight(server, 0);
  t.is((await query()).status, 200);
});

test('client addresses: IPv4 as is, IPv6 per /64, mapped IPv4 unwrapped; trusted proxies walked from the right', (t) => {
  t.is(clientKey('203.0.113.7'), '203.0.113.7');
  t.is(clientKey('::ffff:203.0.113.7'), '203.0.113.7');
  t.is(clientKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  t.is(clientKey('2001:db8:1:2::ffff'), '2001:db8:1:2::/64');
  t.is(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.is(clientKey('::1'), '0:0:0:0::/64');
  const none = new ClientAddresses([]);
  t.is(none.resolve('127.0.0.1', '203.0.113.7'), '127.0.0.1');
  const proxies = new ClientAddresses(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
  t.is(proxies.resolve('::ffff:127.0.0.1', '203.0.113.7'), '203.0.113.7');
  t.is(proxies.resolve('127.0.0.1', ['198.51.100.1, 203.0.113.7', '10.0.0.2']), '203.0.113.7');
  t.is(proxies.resolve('fd00::1', '2001:db8::5'), '2001:db8::5');
  t.is(proxies.resolve('127.0.0.1', '10.0.0.3, 10.0.0.2'), '10.0.0.3'); // all trusted: the leftmost
  t.is(proxies.resolve('127.0.0.1', 'garbage, 10.0.0.2'), '10.0.0.2'); // malformed: the last trusted hop
  t.is(proxies.resolve('192.0.2.9', '203.0.113.7'), '192.0.2.9'); // not a proxy
  t.is(proxies.resolve('127.0.0.1', undefined), '127.0.0.1');
  for (const ok of ['10.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8', '0.0.0.0/0']) t.true(isAddressOrRange(ok), ok);
  for (const bad of ['10.0.0.0/33', 'fd00::/129', 'example.org', '10.0.0.1/8/2', '', '10.0.0.0/x']) t.false(isAddressOrRange(bad), bad);
});

test('config: abuse-control keys have defaults, come from the environment, and bad values are named', (t) => {
  const c = loadConfig({ flags: { data_dir: '/tmp/x' } });
  t.is(c.max_requests_per_client, 32);
  t.deepEqual(c.trusted_proxies, []);
  t.true(c.send_idle_timeout_ms > 0 && c.send_timeout_ms > 0 && c.delta_max_concurrent > 0 && c.delta_cache_bytes > 0);
  const e = loadConfig({ env: { LANEPIR_TRUSTED_PROXIES: '10.0.0.1, 192.168.0.0/16', LANEPIR_MAX_CONCURRENT_QUERIES: '5' } });
  t.deepEqual(e.trusted_proxies, ['10.0.0.1', '192.168.0.0/16']);
  t.is(e.max_concurrent_queries, 5);
  t.throws(() => loadConfig({ flags: { trusted_proxies: ['10.0.0.1', 'proxy.local'] } }), { message: /trusted_proxies.*"proxy\.local" is not an IP address/s });
  t.throws(() => loadConfig({ flags: { delta_max_concurrent: 0 } }), { message: /delta_max_concurrent/ });
});
