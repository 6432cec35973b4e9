// RemoteLane against a real server, with a fetch wrapper that records every
// request and can play a lying server: the client's requests never depend on
// the index, it refuses what the server did not publish, and a concurrent
// delta update never makes a query decode with the wrong hint.
import test from 'ava';
import net from 'node:net';
import { fetchError } from '../src/pir/errors.js';
import { RemoteLane } from '../src/pir/remote.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { COLD, buildBlock, serve } from './server-helpers.js';

type Rewrite = (url: URL, res: Response) => Promise<Response> | Response;

/** A fetch that logs "METHOD path?query bodyBytes" per request and lets a test rewrite responses. */
function recordingFetch(rewrite?: Rewrite) {
  const log: string[] = [];
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const body = init?.body as Uint8Array | undefined;
    log.push(`${init?.method ?? 'GET'} ${url.pathname}${url.search} ${body?.byteLength ?? 0}`);
    const res = await fetch(input, init);
    return rewrite ? rewrite(url, res) : res;
  }) as typeof fetch;
  return { fn, log };
}

/** A copy of a JSON response with `edit` applied to its body (headers kept). */
async function editJson(res: Response, edit: (body: any) => void): Promise<Response> {
  const body = await res.json();
  edit(body);
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  return new Response(JSON.stringify(body), { status: res.status, headers });
}

async function start(t: import('ava').ExecutionContext) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 3, undefined, true);
  const server = await serve(data);
  t.teardown(() => server.close());
  const plain = async (g: number, i: number) => readEntry((await loadGeneration(generationDir(data, g))).lanes.cold!, i);
  return { data, server, plain };
}

test('the same requests go out for an index inside and outside the lane; the bad index is reported after the round', async (t) => {
  const { server, plain } = await start(t);
  const inside = recordingFetch();
  const r = await new RemoteLane(server.publicUrl, 'cold', undefined, inside.fn).lookup(5);
  t.deepEqual(Buffer.from(r.entry), await plain(3, 5));
  t.true(inside.log.some((l) => l.startsWith('POST /query/cold')));
  // Past the last entry but inside the last record row, past the matrix, and far beyond.
  for (const index of [COLD.entries, COLD.entries + 100, 2048 * 10 + 7, 1e12]) {
    const outside = recordingFetch();
    const err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, outside.fn).lookup(index));
    t.is((err as { code?: string }).code, 'EINDEX', `index ${index}`);
    t.regex(err!.message, /outside the lane/);
    t.deepEqual(outside.log, inside.log, `index ${index}: requests differ`);
  }
});

test('a lane whose entry count shrinks for a generation the client knew is refused, and stays refused', async (t) => {
  const { server } = await start(t);
  let lie = false;
  const { fn, log } = recordingFetch((url, res) =>
    lie && url.pathname === '/info'
      ? editJson(res, (b) => {
          b.lanes.cold.entries -= 100;
        })
      : res,
  );
  const remote = new RemoteLane(server.publicUrl, 'cold', undefined, fn);
  await remote.lookup(19990);
  lie = true;
  const err = await t.throwsAsync(remote.lookup(19990));
  t.is((err as { code?: string }).code, 'EGENERATION_CONFLICT');
  t.regex(err!.message, /generation 3/);
  // No query went out after the lie, and the lane stays refused even if the server "repents".
  t.is(log.filter((l) => l.startsWith('POST')).length, 1);
  lie = false;
  await t.throwsAsync(remote.lookup(1), { code: 'EGENERATION_CONFLICT' } as never);
});

test('a crs that differs from what /info publishes is refused', async (t) => {
  const { server } = await start(t);
  // Edits that keep the crs consistent with the hint it announces (same record rows, same hint_sha256).
  const edits: [string, (crs: any) => void][] = [
    ['entries', (b) => (b.entries -= 5)],
    ['seed', (b) => (b.seed = b.seed.replace(/^./, (c: string) => (c === '0' ? '1' : '0')))],
  ];
  for (const [key, edit] of edits) {
    const { fn } = recordingFetch((url, res) => (url.pathname === '/crs/cold' ? editJson(res, edit) : res));
    const err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, fn).lookup(3));
    t.is((err as { code?: string }).code, 'ECRS_MISMATCH', key);
    t.regex(err!.message, new RegExp(key));
  }
});

test('an answer that names another generation than the one asked for is refused', async (t) => {
  const { server } = await start(t);
  for (const [header, value] of [['X-Lanepir-Generation', '2'], ['X-Lanepir-Block', 'x'], ['X-Lanepir-Block', '4']] as const) {
    const { fn } = recordingFetch((url, res) => {
      if (!url.pathname.startsWith('/query/')) return res;
      const headers = new Headers(res.headers);
      headers.set(header, value);
      return new Response(res.body, { status: res.status, headers });
    });
    const err = await t.throwsAsync(new RemoteLane(server.publicUrl, 'cold', undefined, fn).lookup(3));
    t.is((err as { code?: string }).code, 'EBAD_RESPONSE', `${header}: ${value}`);
  }
});

test('a delta that lands while a lookup builds its query: the query goes out and decodes for one generation', async (t) => {
  const { data, server, plain } = await start(t);
  const remote = new RemoteLane(server.publicUrl, 'cold');
  await remote.lookup(1); // hint of generation 3
  const index = 4242;
  const changed = Buffer.alloc(32, 0x5a);
  await buildIncremental({ data, block: 4, from: '3', updates: { cold: new Map([[index, changed]]) }, publish: true });

  // Lookup A has checked that its hint is current (generation 3) and is about to build its
  // query when lookup B updates the shared hint to generation 4 by a delta.
  const client = (remote as any).client;
  const query = client.query.bind(client);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inQuery = new Promise<void>((r) => (entered = r));
  client.query = async (i: number) => {
    entered();
    await gate;
    return query(i);
  };
  const a = remote.lookup(index);
  await inQuery;
  client.query = query;
  t.is((await server.reloadLocal()).new_generation, '4');
  const b = await remote.lookup(index);
  t.is(b.hintSource, 'delta');
  t.is(b.generation, '4');
  t.deepEqual(Buffer.from(b.entry), changed);
  release();
  const ra = await a;
  t.deepEqual(Buffer.from(ra.entry), ra.generation === '4' ? changed : await plain(3, index), `answered by generation ${ra.generation}`);
  t.deepEqual(Buffer.from(ra.entry), changed);
});

test('network failures name their cause: refused addresses, unknown hosts, undici errors, timeouts', async (t) => {
  const refused = (address: string, port: number) => Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), { code: 'ECONNREFUSED', address, port });
  const failed = (cause: unknown) => Object.assign(new TypeError('fetch failed'), { cause });
  t.is(fetchError('GET http://127.0.0.1:3199/info', failed(refused('127.0.0.1', 3199))).message, 'GET http://127.0.0.1:3199/info failed: ECONNREFUSED 127.0.0.1:3199');
  // localhost tried on both families.
  const both = Object.assign(new AggregateError([refused('::1', 3199), refused('127.0.0.1', 3199)]), { code: 'ECONNREFUSED' });
  t.regex(fetchError('GET x', failed(both)).message, /ECONNREFUSED \[::1\]:3199, ECONNREFUSED 127\.0\.0\.1:3199$/);
  t.regex(fetchError('GET x', failed(Object.assign(new Error('getaddrinfo ENOTFOUND a.invalid'), { code: 'ENOTFOUND', hostname: 'a.invalid' }))).message, /ENOTFOUND a\.invalid$/);
  t.regex(fetchError('GET x', failed(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }))).message, /UND_ERR_SOCKET: other side closed$/);
  t.is(fetchError('GET x', new TypeError('Failed to fetch')).message, 'GET x failed: Failed to fetch'); // a browser gives no cause
  t.is(fetchError('GET x', failed(refused('127.0.0.1', 1))).code, 'ENETWORK');

  // A server that accepts the connection and never answers: ETIMEDOUT after the per-request limit.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => sockets.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as net.AddressInfo).port;
  const err = await t.throwsAsync(new RemoteLane(`http://127.0.0.1:${port}`, 'hot', undefined, fetch, 300).lookup(1));
  t.is((err as { code?: string }).code, 'ETIMEDOUT');
  t.regex(err!.message, new RegExp(`GET http://127.0.0.1:${port}/info: no answer within 300 ms`));
});
