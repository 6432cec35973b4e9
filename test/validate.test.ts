// Generation validation on reload (one server process): regular files only,
// symlinks only inside the data directory, bounded reads, every file's sha256
// before first serve (once per inode), time-limited steps, abandoned reloads.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { native } from '../src/native.js';
import { loadGeneration } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { crsPath, generationDir, hintPath, manifestPath, shardPath } from '../src/store/layout.js';
import { type RunningServer } from '../src/server/server.js';
import { rmrf, tempDir } from './helpers.js';
import { COLD, HOT, TestWallet, buildBlock, currentGeneration, serve } from './server-helpers.js';
import { changeSeed, fifoAt, flipByte, hugeFile, symlinkTo, symlinkToCopy, timed, unblockFifo } from './validate-helpers.js';

/** POST /admin/reload that gives up after `ms` (old code hangs on a FIFO: the test must fail, not hang). */
async function reloadWithin(server: RunningServer, generation: string | undefined, ms = 10_000) {
  const res = await fetch(`${server.adminUrl}/admin/reload`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: generation === undefined ? '' : JSON.stringify({ generation }),
    signal: AbortSignal.timeout(ms),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** A reload request whose client disconnects after `ms` (before the answer). */
function abandonedReload(server: RunningServer, generation: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ generation });
    const req = http.request(`${server.adminUrl}/admin/reload`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } });
    req.on('error', () => resolve());
    req.on('response', (res) => {
      res.resume();
      resolve();
    });
    req.end(body);
    setTimeout(() => {
      req.destroy();
      resolve();
    }, ms);
  });
}

/** Resolves once the server has seen the next admin connection close (and so its request's 'close'). */
function nextAdminClose(server: RunningServer): Promise<void> {
  return new Promise((resolve) => server.adminServer.once('connection', (sock) => sock.once('close', () => setImmediate(resolve))));
}

/** This process's mapped lanes once releases in progress are done (waits up to 5 s for `expected`). */
async function settledLanes(expected: number): Promise<number> {
  for (let i = 0; i < 250 && native.mappingStats().lanes !== expected; i++) await new Promise((r) => setTimeout(r, 20));
  return native.mappingStats().lanes;
}

/** Private lookups against generation `g` until stopped; every one must answer and decode to the plaintext. */
function keepQuerying(wallet: TestWallet, g: string) {
  let stop = false;
  let answered = 0;
  const failures: string[] = [];
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      const index = (i * 7919) % HOT.entries;
      const r = await wallet.lookup('hot', index, g);
      if (r.status !== 200) failures.push(`status ${r.status}`);
      else if (!r.entry!.equals(await wallet.plaintext('hot', index, g))) failures.push(`wrong entry ${index}`);
      else answered++;
    }
  })();
  return {
    stop: async () => {
      stop = true;
      await loop;
      return { answered, failures };
    },
  };
}

test('non-regular files, files outside the data directory and oversized metadata are refused at once while queries keep answering', async (t) => {
  const data = tempDir();
  const outside = tempDir('lanepir-foreign-');
  const fifos: string[] = [];
  t.teardown(() => {
    fifos.forEach(unblockFifo);
    rmrf(data);
    rmrf(outside);
  });
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4, 5, 6, 7, 8, 9]) await buildBlock(data, b, seeds);
  const g = (id: number) => generationDir(data, id);
  fifoAt(crsPath(g(2), 'hot'));
  fifos.push(crsPath(g(2), 'hot'));
  fifoAt(shardPath(g(3), 'cold', 1));
  fifos.push(shardPath(g(3), 'cold', 1));
  fs.rmSync(crsPath(g(4), 'cold'));
  fs.symlinkSync('/dev/zero', crsPath(g(4), 'cold'));
  hugeFile(crsPath(g(5), 'hot'), 300 * 2 ** 20);
  hugeFile(manifestPath(g(6)), 300 * 2 ** 20);
  symlinkTo(shardPath(g(7), 'cold', 2), outside);
  // Inside the data directory a symlink is fine, but the file must still be the right one.
  symlinkTo(shardPath(g(8), 'hot', 0), path.join(data, 'elsewhere'));
  symlinkToCopy(shardPath(g(9), 'cold', 2), path.join(data, 'elsewhere', 'copy.bin'));

  const server = await serve(data, { reload_step_timeout_ms: 5_000 });
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);
  const queries = keepQuerying(wallet, '1');

  const expected: [number, string][] = [
    [2, 'ENOT_REGULAR'],
    [3, 'ENOT_REGULAR'],
    [4, 'EOUTSIDE_DATA'],
    [5, 'ETOO_LARGE'],
    [6, 'ETOO_LARGE'],
    [7, 'EOUTSIDE_DATA'],
    [8, 'ECHECKSUM'],
  ];
  for (const [gen, code] of expected) {
    const { ms, value: r } = await timed(reloadWithin(server, String(gen)));
    t.is(r.status, 422, `generation ${gen}: ${JSON.stringify(r.body)}`);
    t.is(r.body.code, code, `generation ${gen}: ${r.body.error}`);
    t.is(r.body.current_generation, '1');
    t.true(ms < 5_000, `generation ${gen} refused in ${ms} ms, within the step timeout`);
  }
  // A no-op reload of the served generation answers promptly after all that.
  const { ms, value: noop } = await timed(reloadWithin(server, undefined));
  t.is(noop.status, 200);
  t.true(noop.body.unchanged);
  t.true(ms < 2_000, `no-op reload took ${ms} ms`);

  const { answered, failures } = await queries.stop();
  t.deepEqual(failures, []);
  t.true(answered > 0);
  t.is(await currentGeneration(server.publicUrl), '1');
  // The symlink to an identical copy inside the data directory is served.
  const ok = await reloadWithin(server, '9');
  t.is(ok.status, 200, JSON.stringify(ok.body));
  const r = await wallet.lookup('cold', 2 * (16384 / 32) + 5, '9');
  t.deepEqual(r.entry, await wallet.plaintext('cold', 2 * (16384 / 32) + 5, '9'));
});

test('a flipped shard byte, a swapped seed or a damaged hint is refused with 422 and the old generation keeps serving', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4, 5]) await buildBlock(data, b, seeds);
  flipByte(shardPath(generationDir(data, 2), 'cold', 3), 1000);
  changeSeed(data, '3', 'cold');
  flipByte(hintPath(generationDir(data, 4), 'hot'), 4096);
  const server = await serve(data);
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);

  const flipped = await reloadWithin(server, '2');
  t.is(flipped.status, 422);
  t.is(flipped.body.code, 'ECHECKSUM');
  t.regex(flipped.body.error, /cold\/shards\/shard-000003\.bin has sha256/);
  const seed = await reloadWithin(server, '3');
  t.is(seed.status, 422);
  t.is(seed.body.code, 'ECHECKSUM');
  t.regex(seed.body.error, /cold\/crs\.json/);
  const hint = await reloadWithin(server, '4');
  t.is(hint.status, 422);
  t.is(hint.body.code, 'ECHECKSUM');
  t.regex(hint.body.error, /hot\/hint\.bin/);

  t.is(await currentGeneration(server.publicUrl), '1');
  for (const index of [0, 777, COLD.entries - 1]) {
    const r = await wallet.lookup('cold', index, '1');
    t.deepEqual(r.entry, await wallet.plaintext('cold', index, '1'));
  }
  // A sound generation is still accepted, and its first reload hashed every file.
  const good = await reloadWithin(server, '5');
  t.is(good.status, 200);
  const files = Object.keys((await loadGeneration(generationDir(data, 5))).manifest.files).length;
  t.like(good.body.validation, { files, hashed_files: files, cached_files: 0 });
});

test('an incremental reload hashes only the files that are new: hard-linked shards come from the checksum cache', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const server = await serve(data);
  t.teardown(() => server.close());
  const wallet = new TestWallet(server.publicUrl, data);

  const first = (await timed(reloadWithin(server, undefined))).value;
  t.true(first.body.unchanged);
  await buildIncremental({ data, block: 2, from: '1', updates: { cold: new Map([[5, Buffer.alloc(32, 7)]]), hot: new Map([[HOT.entries - 1, Buffer.alloc(32, 9)]]) } });
  const inode = (g: number, name: string) => {
    const st = fs.statSync(path.join(generationDir(data, g), ...name.split('/')));
    return `${st.dev}:${st.ino}`;
  };
  const inodes1 = new Set(Object.keys((await loadGeneration(generationDir(data, 1))).manifest.files).map((n) => inode(1, n)));
  const names = Object.keys((await loadGeneration(generationDir(data, 2))).manifest.files);
  const fresh = names.filter((n) => !inodes1.has(inode(2, n)));
  t.true(fresh.length < names.length / 4, `${fresh.length} new files of ${names.length}`);

  const r = await reloadWithin(server, '2');
  t.is(r.status, 200);
  t.like(r.body.validation, { files: names.length, hashed_files: fresh.length, cached_files: names.length - fresh.length });
  t.deepEqual((await wallet.lookup('cold', 5, '2')).entry, Buffer.alloc(32, 7));

  // A hard link whose content no longer matches its manifest entry is still refused (the cache vouches for inodes, not names).
  await buildIncremental({ data, block: 3, from: '2', updates: { cold: new Map([[6, Buffer.alloc(32, 8)]]) } });
  const m3 = JSON.parse(fs.readFileSync(manifestPath(generationDir(data, 3)), 'utf8'));
  const linked = 'cold/shards/shard-000004.bin';
  m3.files[linked].sha256 = 'f'.repeat(64);
  fs.rmSync(manifestPath(generationDir(data, 3)));
  fs.writeFileSync(manifestPath(generationDir(data, 3)), JSON.stringify(m3));
  const bad = await reloadWithin(server, '3');
  t.is(bad.status, 422);
  t.is(bad.body.code, 'ECHECKSUM');
  t.regex(bad.body.error, /shard-000004\.bin/);
  t.is(await currentGeneration(server.publicUrl), '2');
});

// Serial: they compare the process's mapping count, which concurrent tests would change.
test.serial('every reload step is time-limited: a stuck step is refused in time and the next reload runs', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  // Mapping (mmap mode) is bounded by reload_step_timeout_ms; reading a lane into memory (cache, memory) by validate_timeout_ms.
  const server = await serve(data, { reload_step_timeout_ms: 400, lane_memory: 'mmap' });
  t.teardown(() => server.close());
  let stuck: 'resolve' | 'open' | undefined = 'resolve';
  server.reloader.hooks.beforeStep = (step) => (step === stuck ? new Promise(() => {}) : Promise.resolve());

  const a = await timed(reloadWithin(server, '2'));
  t.is(a.value.status, 422);
  t.is(a.value.body.code, 'ERELOAD_TIMEOUT');
  t.true(a.ms < 3_000, `${a.ms} ms`);
  stuck = 'open';
  const b = await reloadWithin(server, '2');
  t.is(b.body.code, 'ERELOAD_TIMEOUT');
  t.regex(b.body.error, /mapping the hot lane/);
  t.is(await settledLanes(2), 2, 'nothing mapped but generation 1');
  stuck = undefined;
  const c = await timed(reloadWithin(server, '2'));
  t.is(c.value.status, 200);
  t.is(await currentGeneration(server.publicUrl), '2');
});

test.serial('a reload whose caller disconnected switches nothing, whether it was queued or running', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4]) await buildBlock(data, b, seeds);
  const server = await serve(data, { retain_generations: 0 });
  t.teardown(() => server.close());
  // Holds the reload in progress where it maps the new generation (before it switches).
  const reloader = server.reloader as unknown as { open: (...args: unknown[]) => Promise<unknown> };
  const open = reloader.open.bind(reloader);
  let hold: Promise<void> | undefined;
  reloader.open = async (...args) => {
    await hold;
    return open(...args);
  };

  // Queued: reload 3 waits behind reload 2 (held), and its client gives up meanwhile.
  let release!: () => void;
  hold = new Promise<void>((r) => (release = r));
  const a = reloadWithin(server, '2');
  await new Promise((r) => setTimeout(r, 100));
  const closed = nextAdminClose(server);
  await abandonedReload(server, '3', 300);
  await closed;
  release();
  t.is((await a).status, 200);
  const after = await reloadWithin(server, '2');
  t.like(after.body, { unchanged: true, new_generation: '2' });

  // Running: reload 4 is held while it maps until its client has given up.
  const closed4 = nextAdminClose(server);
  hold = closed4;
  await abandonedReload(server, '4', 500);
  await closed4;
  hold = undefined;
  const noop = await reloadWithin(server, '2');
  t.like(noop.body, { unchanged: true, new_generation: '2' });
  t.is(await currentGeneration(server.publicUrl), '2');
  // Nothing it may have mapped is left behind: only generation 2's two lanes stay (retain_generations 0).
  t.is(await settledLanes(2), 2);
  // A caller that stays gets its reload.
  t.is((await reloadWithin(server, '4')).status, 200);
});
