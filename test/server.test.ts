// The single-process server over real HTTP: decoding, reloads under load,
// refused generations, retired generations, bad input and overload.
import test from 'ava';
import crypto from 'node:crypto';
import http from 'node:http';
import { loadConfig } from '../src/config.js';
import { native } from '../src/native.js';
import { publishGeneration } from '../src/store/builder.js';
import { crsPath, generationDir, shardPath } from '../src/store/layout.js';
import { RemoteLane } from '../src/pir/remote.js';
import { rmrf, tempDir } from './helpers.js';
import { COLD, HOT, TestWallet, buildBlock, corrupt, currentGeneration, reload, serve } from './server-helpers.js';

for (const mode of ['mmap', 'memory', 'cache'] as const) {
  test(`decodes random indices in both lanes (${mode})`, async (t) => {
    const data = tempDir();
    t.teardown(() => rmrf(data));
    await buildBlock(data, 1, undefined, true);
    const server = await serve(data, mode === 'memory' ? { use_mmap: false } : { lane_memory: mode });
    t.teardown(() => server.close());
    const info = (await (await fetch(`${server.publicUrl}/info`)).json()) as Record<string, any>;
    t.is(info.generation, '1');
    t.is(info.mmap_mode, mode === 'mmap');
    t.is(info.lane_memory, mode);
    t.is(info.lanes.hot.entries, HOT.entries);
    const wallet = new TestWallet(server.publicUrl, data);
    for (const lane of ['hot', 'cold'] as const) {
      const n = lane === 'hot' ? HOT.entries : COLD.entries;
      const indices = [0, n - 1, ...Array.from({ length: 30 }, () => crypto.randomInt(n))];
      const results = await Promise.all(indices.map((i) => wallet.lookup(lane, i, '1')));
      for (let k = 0; k < indices.length; k++) {
        t.is(results[k]!.status, 200);
        t.deepEqual(results[k]!.entry, await wallet.plaintext(lane, indices[k]!, '1'), `${lane}[${indices[k]}]`);
      }
    }
    // The HTTP client used by `lanepir query` works against it too.
    const remote = new RemoteLane(server.publicUrl, 'cold');
    const r = await remote.lookup(12345);
    t.deepEqual(Buffer.from(r.entry), await wallet.plaintext('cold', 12345, '1'));
  });
}

test('reload while queries are in flight: every query answers and decodes against the generation it names', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  await buildBlock(data, 3, seeds);
  const server = await serve(data);
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);
  let stop = false;
  let answered = 0;
  const failures: string[] = [];
  const byGeneration = new Map<string, number>();
  const clientLoop = async (lane: 'hot' | 'cold') => {
    while (!stop) {
      const g = await currentGeneration(server.publicUrl);
      const index = crypto.randomInt(lane === 'hot' ? HOT.entries : COLD.entries);
      const r = await wallet.lookup(lane, index, g);
      if (r.status !== 200) {
        failures.push(`${lane}[${index}]@${g}: ${r.status} ${r.body}`);
        continue;
      }
      answered++;
      byGeneration.set(r.generation!, (byGeneration.get(r.generation!) ?? 0) + 1);
      if (r.generation !== g) failures.push(`asked generation ${g}, answered by ${r.generation}`);
      if (!r.entry!.equals(await wallet.plaintext(lane, index, r.generation!))) failures.push(`${lane}[${index}]@${r.generation} decoded wrongly`);
    }
  };
  const loops = [clientLoop('hot'), clientLoop('cold'), clientLoop('hot'), clientLoop('cold')];
  // 50 reloads alternating between generations (2 and 3 stay retained, so queries pinned to either keep working).
  const reloadFailures: unknown[] = [];
  for (let i = 0; i < 50; i++) {
    const target = [2, 3][i % 2]!;
    const r = await reload(server, target);
    if (r.status !== 200 || r.body.new_generation !== String(target)) reloadFailures.push(r);
    await new Promise((res) => setTimeout(res, 10));
  }
  stop = true;
  await Promise.all(loops);
  t.deepEqual(failures, []);
  t.deepEqual(reloadFailures, []);
  t.true(answered > 20, `${answered} answered`);
  t.true(byGeneration.size >= 2, `answers from generations ${[...byGeneration.keys()]}`);
});

test('reload answers the seed fields; reloading the served generation is a no-op', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 10, undefined, true);
  await buildBlock(data, 11, seeds);
  const server = await serve(data);
  t.teardown(() => server.close());
  await publishGeneration(data, '11');
  const r = await reload(server);
  t.is(r.status, 200);
  for (const key of ['old_block_number', 'new_block_number', 'reload_duration_ms', 'hot_loaded', 'cold_loaded', 'mmap_mode', 'lane_memory', 'old_generation', 'new_generation']) {
    t.true(key in r.body, key);
  }
  t.like(r.body, { old_block_number: 10, new_block_number: 11, hot_loaded: true, cold_loaded: true, old_generation: '10', new_generation: '11' });
  t.is(r.body.mmap_mode, r.body.lane_memory === 'mmap');
  const again = await reload(server);
  t.like(again.body, { old_block_number: 11, new_block_number: 11, unchanged: true });
  // Concurrent reloads of the same target join one another.
  const both = await Promise.all([reload(server, 10), reload(server, 10)]);
  t.deepEqual(both.map((b) => b.status), [200, 200]);
  t.is(await currentGeneration(server.publicUrl), '10');
});

test('an invalid generation is refused with 422 and the old one keeps answering', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4]) await buildBlock(data, b, seeds);
  await corrupt(shardPath(generationDir(data, 2), 'cold', 3), 'truncate');
  await corrupt(crsPath(generationDir(data, 4), 'hot'), 'delete');
  const server = await serve(data, { cold_entries: COLD.entries });
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);

  const truncated = await reload(server, 2);
  t.is(truncated.status, 422);
  t.is(truncated.body.code, 'ESHARD_SIZE');
  t.regex(String(truncated.body.error), /shard-000003.bin/);
  const missing = await reload(server, 4);
  t.is(missing.status, 422);
  t.regex(String(missing.body.error), /crs/);
  const unknown = await reload(server, 99);
  t.is(unknown.status, 422);

  // A configuration that expects another entry count refuses generation 3.
  const strict = await serve(data, { cold_entries: COLD.entries + 1 });
  t.teardown(() => strict.close());
  t.is((await fetch(`${strict.publicUrl}/ready`)).status, 503);
  const wrongCount = await reload(strict, 3);
  t.is(wrongCount.status, 422);
  t.is(wrongCount.body.code, 'EENTRIES');

  t.is(await currentGeneration(server.publicUrl), '1');
  const r = await wallet.lookup('cold', 777, '1');
  t.deepEqual(r.entry, await wallet.plaintext('cold', 777, '1'));
  t.is((await reload(server, 3)).status, 200);
});

test('a query for a retired or unknown generation gets 410 with the current generation', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  await buildBlock(data, 3, seeds);
  const server = await serve(data, { retain_generations: 1 });
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);
  await wallet.client('hot', '1');
  await reload(server, 2);
  t.is((await wallet.lookup('hot', 5, '1')).status, 200, 'one past generation is retained');
  await reload(server, 3);
  const gone = await wallet.lookup('hot', 5, '1');
  t.is(gone.status, 410);
  t.like(JSON.parse(gone.body!), { code: 'EGENERATION_GONE', current_generation: '3' });
  const res = await fetch(`${server.publicUrl}/crs/hot?generation=12345`);
  t.is(res.status, 410);
});

test.serial('the old mapping is released after its last request, not before', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  const before = native.mappingStats().lanes;
  const server = await serve(data, { retain_generations: 0 });
  t.teardown(() => server.close());
  t.is(native.mappingStats().lanes, before + 2);
  // A query whose body is still arriving holds generation 1 pinned.
  const body = new Uint8Array(COLD.m * 4);
  const req = http.request(`${server.publicUrl}/query/cold`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length },
  });
  const answered = new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve));
  req.write(body.subarray(0, 100));
  await new Promise((r) => setTimeout(r, 100));
  t.is((await reload(server, 2)).status, 200);
  t.is(native.mappingStats().lanes, before + 4, 'generation 1 stays mapped while a request holds it');
  t.deepEqual(server.store.queryable().map((s) => s.id), ['2']);
  req.end(body.subarray(100));
  const res = await answered;
  t.is(res.statusCode, 200);
  t.is(res.headers['x-lanepir-generation'], '1', 'the query finished on the generation it started on');
  res.resume();
  await new Promise((r) => res.on('end', r));
  // The unmap runs off the JS thread: give it a moment.
  for (let i = 0; i < 100 && native.mappingStats().lanes !== before + 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(native.mappingStats().lanes, before + 2, 'generation 1 is unmapped after its last request');
});

test('bad input gets the right 4xx and the server keeps serving', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const token = 'a-very-secret-admin-token';
  const server = await serve(data, { admin_token: token });
  t.teardown(() => server.close());
  const url = server.publicUrl;
  const post = (path: string, body: Uint8Array | string, type = 'application/octet-stream') =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'Content-Type': type }, body });
  const expectError = async (res: Response, status: number, code?: string) => {
    t.is(res.status, status);
    const body = (await res.json()) as { error: string; code: string };
    t.is(typeof body.error, 'string');
    if (code) t.is(body.code, code);
  };
  await expectError(await post('/query/hot', new Uint8Array(100)), 400, 'EQUERY_SIZE');
  // Several queries may share a request (up to batch_max, 16): a body that is not whole queries is refused, more than 16 too.
  await expectError(await post('/query/hot', new Uint8Array(HOT.m * 4 + 4)), 400, 'EQUERY_SIZE');
  await expectError(await post('/query/hot', new Uint8Array(17 * HOT.m * 4)), 413, 'EQUERY_TOO_LARGE');
  await expectError(await post('/query/hot', new Uint8Array(0)), 400, 'EQUERY_SIZE');
  await expectError(await post('/query/hot', new Uint8Array(64 * 1024 * 1024)), 413);
  await expectError(await post('/query/hot', 'garbage', 'text/plain'), 415);
  await expectError(await post('/query/warm', new Uint8Array(HOT.m * 4)), 404, 'EUNKNOWN_LANE');
  await expectError(await fetch(`${url}/nope`), 404);
  await expectError(await fetch(`${url}/admin/reload`, { method: 'POST' }), 404);
  await expectError(await fetch(`${server.adminUrl}/admin/reload`, { method: 'POST' }), 401, 'EUNAUTHORIZED');
  await expectError(
    await fetch(`${server.adminUrl}/admin/reload`, { method: 'POST', headers: { Authorization: 'Bearer wrong' } }),
    401,
  );
  await expectError(
    await fetch(`${server.adminUrl}/admin/reload`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{nope' }),
    400,
    'EBAD_JSON',
  );
  t.is((await reload(server, undefined, token)).status, 200);
  // Still serving.
  const wallet = new TestWallet(url, data);
  const r = await wallet.lookup('hot', 42, '1');
  t.deepEqual(r.entry, await wallet.plaintext('hot', 42, '1'));
});

test('admin routes reach the public listener only when configured, and only with the token', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  t.throws(() => loadConfig({ flags: { public_admin: true } }), { message: /public_admin needs admin_token/ });
  const token = 'another-long-admin-token';
  const server = await serve(data, { admin_token: token, public_admin: true });
  t.teardown(() => server.close());
  t.is((await fetch(`${server.publicUrl}/info`)).status, 200, 'public routes need no token');
  t.is((await fetch(`${server.publicUrl}/admin/reload`, { method: 'POST' })).status, 401);
  const ok = await fetch(`${server.publicUrl}/admin/reload`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } });
  t.is(ok.status, 200);
  t.is((await fetch(`${server.publicUrl}/admin/generations`, { headers: { Authorization: `Bearer ${token}` } })).status, 200);
});

test('no generation at start: not ready, queries 503, a later reload makes it ready', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const server = await serve(data);
  t.teardown(() => server.close());
  t.is((await fetch(`${server.publicUrl}/health`)).status, 200);
  const ready = await fetch(`${server.publicUrl}/ready`);
  t.is(ready.status, 503);
  t.is(((await ready.json()) as { code: string }).code, 'ENOT_READY');
  t.is((await fetch(`${server.publicUrl}/query/hot`, { method: 'POST', body: new Uint8Array(4) })).status, 503);
  t.is((await reload(server)).status, 422);
  await buildBlock(data, 5, undefined, true);
  const r = await reload(server);
  t.is(r.status, 200);
  t.like(r.body, { old_block_number: null, new_block_number: 5 });
  t.is((await fetch(`${server.publicUrl}/ready`)).status, 200);
});

test('a flood beyond the pending bound gets 503 with Retry-After at once', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  // A long batching window holds the first queries, so the rest find the lane full.
  const server = await serve(data, { max_pending_per_lane: 2, batch_window_ms: 300 });
  t.teardown(() => server.close());
  const body = new Uint8Array(COLD.m * 4);
  const results = await Promise.all(
    Array.from({ length: 24 }, () =>
      fetch(`${server.publicUrl}/query/cold`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body }),
    ),
  );
  const statuses = results.map((r) => r.status);
  t.true(statuses.includes(200));
  const refused = results.filter((r) => r.status === 503);
  t.true(refused.length > 0, `statuses ${statuses}`);
  t.is(refused[0]!.headers.get('Retry-After'), '1');
  t.is(((await refused[0]!.json()) as { code: string }).code, 'EOVERLOADED');
});
