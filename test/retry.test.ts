// The client waits out a server's "busy, come back later" (429/503 with
// Retry-After) and sends the same request again, a few times at most, within
// the request's time limit; then it gives up with the server's code. Tested
// against a real server behind a fetch wrapper that plays the refusals, and
// against servers whose real limits are tight.
import test from 'ava';
import { retryAfterMs } from '../src/pir/http.js';
import { KeywordReader } from '../src/pir/keyword-remote.js';
import { RemoteLane } from '../src/pir/remote.js';
import { StateClient } from '../src/eth/client.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { type ConfigInput } from '../src/config.js';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, serve } from './server-helpers.js';
import { hex, keywordServer } from './keyword-helpers.js';

/** Fast retries for tests that play Retry-After: 0. */
const FAST = { attempts: 3, backoffMs: 1, maxWaitMs: 2000 };

interface Call {
  method: string;
  path: string;
  body: Buffer | undefined;
  at: number;
  status: number;
}

/**
 * A fetch in front of the real server: `refuse` may answer a request itself
 * (its refusal), else the server answers. Logs every request.
 */
function refusingFetch(refuse: (method: string, url: URL, n: number) => { status: number; code: string; retryAfter?: string } | undefined) {
  const calls: Call[] = [];
  const counts = new Map<string, number>();
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const method = init?.method ?? 'GET';
    const key = `${method} ${url.pathname}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    const body = init?.body ? Buffer.from(init.body as Uint8Array) : undefined;
    const call: Call = { method, path: url.pathname, body, at: performance.now(), status: 0 };
    calls.push(call);
    const r = refuse(method, url, n);
    if (r) {
      call.status = r.status;
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (r.retryAfter !== undefined) headers['Retry-After'] = r.retryAfter;
      return new Response(JSON.stringify({ error: 'busy \u001b[31m', code: r.code }), { status: r.status, headers });
    }
    const res = await fetch(input, init);
    call.status = res.status;
    return res;
  }) as typeof fetch;
  const of = (method: string, prefix: string) => calls.filter((c) => c.method === method && c.path.startsWith(prefix));
  return { fn, calls, of };
}

async function indexServer(t: import('ava').ExecutionContext, overrides: Partial<ConfigInput> = {}) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 3, undefined, true);
  const server = await serve(data, overrides);
  t.teardown(() => server.close());
  const plain = async (g: number, i: number) => readEntry((await loadGeneration(generationDir(data, g))).lanes.cold!, i);
  return { data, server, plain };
}

test('Retry-After is read as seconds or an HTTP date; anything else is no Retry-After', (t) => {
  t.is(retryAfterMs('1'), 1000);
  t.is(retryAfterMs(' 0 '), 0);
  t.is(retryAfterMs('120'), 120_000);
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
  t.is(retryAfterMs('Wed, 21 Oct 2015 07:28:05 GMT', now), 5000);
  t.is(retryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now), 0, 'a date in the past: now');
  for (const bad of [null, '', '-1', '1.5', 'soon', '0x10', '1e3']) t.is(retryAfterMs(bad), undefined, String(bad));
});

test('a query refused with 503 EOVERLOADED + Retry-After is sent again with the same bytes, and the lookup succeeds', async (t) => {
  const { server, plain } = await indexServer(t);
  const net = refusingFetch((method, url, n) => (method === 'POST' && n === 1 ? { status: 503, code: 'EOVERLOADED', retryAfter: '0' } : undefined));
  const lane = new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, FAST);
  const r = await lane.lookup(77);
  t.deepEqual(Buffer.from(r.entry), await plain(3, 77));
  const posts = net.of('POST', '/query/cold');
  t.deepEqual(posts.map((p) => p.status), [503, 200]);
  t.true(posts[0]!.body!.equals(posts[1]!.body!), 'the same query bytes (the same secret) went again');
  // A later lookup makes a fresh query: never the refused bytes again.
  await lane.lookup(77);
  t.false(net.of('POST', '/query/cold')[2]!.body!.equals(posts[0]!.body!));
});

test('the wait honours Retry-After (seconds), 429 included', async (t) => {
  const { server, plain } = await indexServer(t);
  const net = refusingFetch((method, url, n) => (url.pathname.startsWith('/hint/') && n === 1 ? { status: 429, code: 'ETOO_MANY_REQUESTS', retryAfter: '1' } : undefined));
  const lane = new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, { backoffMs: 1 });
  const r = await lane.lookup(5);
  t.deepEqual(Buffer.from(r.entry), await plain(3, 5));
  const hints = net.of('GET', '/hint/cold');
  t.deepEqual(hints.map((c) => c.status), [429, 200]);
  const waited = hints[1]!.at - hints[0]!.at;
  t.true(waited >= 1000 && waited < 1500 + 500, `waited ${waited} ms`);
});

test('refused on every try: gives up after the attempts with the server\'s code; no Retry-After, a longer one than the client waits, or a wait past the time limit: at once', async (t) => {
  const { server } = await indexServer(t);
  const always = (code: string, retryAfter?: string, status = 503) => refusingFetch((method) => (method === 'POST' ? { status, code, ...(retryAfter !== undefined ? { retryAfter } : {}) } : undefined));

  let net = always('EOVERLOADED', '0');
  let err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, FAST).lookup(1));
  t.is((err as { code?: string }).code, 'EOVERLOADED');
  t.regex(err!.message, /^POST http:\/\/127\.0\.0\.1:\d+\/query\/cold\?generation=3: HTTP 503: busy {2}\[31m; refused 3 times in \d+ ms, giving up$/);
  t.is(net.of('POST', '/query').length, 3);

  net = always('ETOO_MANY_REQUESTS', '0', 429);
  err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, { ...FAST, attempts: 1 }).lookup(1));
  t.is((err as { code?: string }).code, 'ETOO_MANY_REQUESTS');
  t.is(net.of('POST', '/query').length, 1, 'attempts: 1 never retries');

  // No Retry-After: not an invitation to come back.
  net = always('EOVERLOADED');
  err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, FAST).lookup(1));
  t.is((err as { code?: string }).code, 'EOVERLOADED');
  t.is(net.of('POST', '/query').length, 1);

  // Longer than the client waits.
  net = always('EROUTE_BUSY', '60');
  let started = performance.now();
  err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, FAST).lookup(1));
  t.is((err as { code?: string }).code, 'EROUTE_BUSY');
  t.regex(err!.message, /asks to wait 60000 ms, more than the 2000 ms this client waits/);
  t.is(net.of('POST', '/query').length, 1);
  t.true(performance.now() - started < 1000);

  // The time limit bounds the request, waits included: a wait that would pass it is not started.
  const lane = new RemoteLane(server.publicUrl, 'cold', undefined, fetch, 30_000);
  await lane.lookup(1); // hint fetched with the default limit
  net = always('EOVERLOADED', '1');
  const limited = new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 700, { backoffMs: 1 });
  (limited as any).client = (lane as any).client; // the hint is already held: only the query is timed
  started = performance.now();
  err = await t.throwsAsync(limited.lookup(1));
  t.is((err as { code?: string }).code, 'EOVERLOADED');
  t.regex(err!.message, /would pass the request's 700 ms limit/);
  t.is(net.of('POST', '/query').length, 1);
  t.true(performance.now() - started < 700, 'gave up within the limit');

  // A bad policy is named when the client is made.
  t.throws(() => new RemoteLane(server.publicUrl, 'cold', undefined, fetch, 1000, { attempts: 0 }), { instanceOf: RangeError, message: /retry\.attempts/ });
  t.throws(() => new KeywordReader({ url: server.publicUrl, retry: { maxWaitMs: -1 } }), { instanceOf: RangeError });
  t.throws(() => new KeywordReader({ url: server.publicUrl, postsInFlight: 0 }), { instanceOf: RangeError });
});

test('/delta busy (503 EDELTA_BUSY): retried, and when still busy the hint is downloaded instead', async (t) => {
  const { data, server, plain } = await indexServer(t);
  let busy = 1;
  const net = refusingFetch((method, url, n) => (url.pathname.startsWith('/delta/') && n <= busy ? { status: 503, code: 'EDELTA_BUSY', retryAfter: '0' } : undefined));
  const lane = new RemoteLane(server.publicUrl, 'cold', undefined, net.fn, 30_000, FAST);
  await lane.lookup(1);
  const changed = Buffer.alloc(32, 0x5a);
  await buildIncremental({ data, block: 4, from: '3', updates: { cold: new Map([[10, changed]]) }, publish: true });
  t.is((await server.reloadLocal()).new_generation, '4');
  // Busy once: the retry gets the delta.
  let r = await lane.lookup(10);
  t.is(r.hintSource, 'delta');
  t.deepEqual(Buffer.from(r.entry), changed);
  t.deepEqual(net.of('GET', '/delta/cold').map((c) => c.status), [503, 200]);
  t.deepEqual({ downloads: lane.stats.downloads, deltas: lane.stats.deltas }, { downloads: 1, deltas: 1 });
  // Busy on every try: the hint instead.
  busy = Infinity;
  await buildIncremental({ data, block: 5, from: '4', updates: { cold: new Map([[11, changed]]) }, publish: true });
  t.is((await server.reloadLocal()).new_generation, '5');
  r = await lane.lookup(11);
  t.is(r.hintSource, 'download');
  t.deepEqual(Buffer.from(r.entry), changed);
  t.deepEqual(Buffer.from((await lane.lookup(12)).entry), await plain(5, 12));
  t.is(net.of('GET', '/delta/cold').length, 2 + FAST.attempts);
  t.deepEqual({ downloads: lane.stats.downloads, deltas: lane.stats.deltas }, { downloads: 2, deltas: 1 });
});

test('a keyword round: /info and POSTs refused with Retry-After are retried with the same bytes; the round\'s requests are unchanged', async (t) => {
  const { server, hot, cold } = await keywordServer(t);
  const keys = { hot: hot.slice(0, 7).map((r) => r.key), cold: cold.slice(0, 5).map((r) => r.key) };
  // Every second POST of a lane refused once; /info refused once (a proxy in front, say).
  const net = refusingFetch((method, url, n) => {
    if (url.pathname === '/info' && n === 1) return { status: 429, code: 'ETOO_MANY_REQUESTS', retryAfter: '0' };
    if (method === 'POST' && n % 2 === 0) return { status: 503, code: 'EOVERLOADED', retryAfter: '0' };
    return undefined;
  });
  const reader = new KeywordReader({ url: server.publicUrl, fetch: net.fn, retry: FAST });
  const round = await reader.lookupRound(keys);
  t.deepEqual(round.results.hot!.map((r) => hex(r.value)), hot.slice(0, 7).map((r) => hex(r.value)));
  t.deepEqual(round.results.cold!.map((r) => hex(r.value)), cold.slice(0, 5).map((r) => hex(r.value)));
  t.is(net.of('GET', '/info')[0]!.status, 429);
  for (const lane of ['hot', 'cold']) {
    const posts = net.of('POST', `/query/${lane}`);
    const answered = posts.filter((p) => p.status === 200);
    t.is(answered.reduce((n, p) => n + p.body!.length, 0), round.queries[lane]! * (lane === 'hot' ? 32 : 64) * 4, `${lane}: every query answered once`);
    // Each refused POST was followed (in its lane) by the same bytes.
    for (const p of posts.filter((x) => x.status === 503)) t.true(answered.some((a) => a.body!.equals(p.body!)), `${lane}: a refused POST was sent again as is`);
  }
});

test('a failed POST ends the round: no further POST starts', async (t) => {
  const { server, hot } = await keywordServer(t);
  // Hints come by GET; every POST fails (not a refusal to wait out).
  const net = refusingFetch((method) => (method === 'POST' ? { status: 500, code: 'EKERNEL' } : undefined));
  const failing = new KeywordReader({ url: server.publicUrl, fetch: net.fn });
  const err = await t.throwsAsync(failing.lookupRound({ hot: hot.slice(0, 40).map((r) => r.key) }));
  t.is((err as { code?: string }).code, 'EKERNEL');
  // 40 keys are 8 POSTs per lane; only the first two of each lane (in flight together) went out.
  t.is(net.of('POST', '/query/hot').length, 2);
  t.is(net.of('POST', '/query/cold').length, 2);
});

test('a server with tight limits (max_pending_per_lane 16, max_requests_per_client 3) still serves a 40-key round', async (t) => {
  const { server, hot, cold } = await keywordServer(t, { config: { max_pending_per_lane: 16, max_requests_per_client: 3 } });
  const net = refusingFetch(() => undefined);
  const reader = new KeywordReader({ url: server.publicUrl, fetch: net.fn });
  const round = await reader.lookupRound({ hot: hot.slice(0, 20).map((r) => r.key), cold: cold.slice(0, 20).map((r) => r.key) });
  t.deepEqual(round.results.hot!.map((r) => hex(r.value)), hot.slice(0, 20).map((r) => hex(r.value)));
  t.deepEqual(round.results.cold!.map((r) => hex(r.value)), cold.slice(0, 20).map((r) => hex(r.value)));
  t.log(`refused and retried: ${net.calls.filter((c) => c.status === 429 || c.status === 503).length} of ${net.calls.length} requests`);
});

test('StateClient requests go through the same layer: a /manifest refused with 429 + Retry-After is retried', async (t) => {
  const { server } = await keywordServer(t);
  const net = refusingFetch((method, url, n) => (url.pathname === '/manifest' && n === 1 ? { status: 429, code: 'ETOO_MANY_REQUESTS', retryAfter: '0' } : undefined));
  const client = new StateClient({ url: server.publicUrl, fetch: net.fn, retry: FAST });
  // A keyword generation without a hot manifest: the server's 404 comes through with its code once the 429 was waited out.
  const err = await t.throwsAsync(client.getAccount('0x0000000000000000000000000000000000000001'));
  t.is((err as { code?: string }).code, 'ENO_HOT_MANIFEST');
  t.deepEqual(net.of('GET', '/manifest').map((c) => c.status), [429, 404]);
});
