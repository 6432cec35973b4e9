// Generation validation in cluster mode (`lanepir serve --workers 2`): the
// primary refuses what a single process refuses, while the workers keep
// answering; it hashes a generation once (workers confirm its digest), only
// the new inodes of an incremental one; abandoned reloads switch nothing.
import test from 'ava';
import http from 'node:http';
import { buildIncremental } from '../src/store/incremental.js';
import { loadGeneration } from '../src/store/generation.js';
import { crsPath, generationDir, shardPath } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { HOT, TestWallet, buildBlock } from './server-helpers.js';
import { type Cluster, json, request, startCluster } from './cluster-helpers.js';
import { changeSeed, fifoAt, flipByte, symlinkTo, timed, unblockFifo } from './validate-helpers.js';

const reload = async (c: Cluster, generation?: string) => {
  const r = await request(`${c.adminUrl}/admin/reload`, {
    method: 'POST',
    body: generation === undefined ? '' : JSON.stringify({ generation }),
    headers: { 'Content-Type': 'application/json' },
  });
  return { status: r.status, body: json(r) };
};

/** A reload whose client disconnects after `ms`, before the answer. */
const abandonedReload = (c: Cluster, generation: string, ms: number) =>
  new Promise<void>((resolve) => {
    const body = JSON.stringify({ generation });
    const req = http.request(`${c.adminUrl}/admin/reload`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } });
    req.on('error', () => resolve());
    req.on('response', (res) => (res.resume(), resolve()));
    req.end(body);
    setTimeout(() => (req.destroy(), resolve()), ms);
  });

const published = async (c: Cluster) => json(await request(`${c.adminUrl}/admin/generations`)).published.generation as string;

test('cluster: FIFO, foreign symlink, flipped byte and swapped seed are refused at once while the workers keep answering; an incremental reload hashes only new inodes', async (t) => {
  const data = tempDir();
  const outside = tempDir('lanepir-foreign-');
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4, 5, 6]) await buildBlock(data, b, seeds);
  const g = (id: number) => generationDir(data, id);
  fifoAt(crsPath(g(2), 'cold'));
  symlinkTo(shardPath(g(3), 'hot', 1), outside);
  flipByte(shardPath(g(4), 'cold', 2), 99);
  changeSeed(data, '5', 'hot');
  let c: Cluster | undefined;
  t.teardown(async () => {
    unblockFifo(crsPath(g(2), 'cold')); // old code hangs a thread on it
    await c?.stop();
    rmrf(data);
    rmrf(outside);
  });
  c = await startCluster(data, { workers: 2 });
  const wallet = new TestWallet(c.url, data);

  let stop = false;
  const failures: string[] = [];
  let answered = 0;
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      const index = (i * 613) % HOT.entries;
      const r = await wallet.lookup('hot', index, '1');
      if (r.status !== 200) failures.push(`status ${r.status}`);
      else if (!r.entry!.equals(await wallet.plaintext('hot', index, '1'))) failures.push(`wrong entry ${index}`);
      else answered++;
    }
  })();
  try {
    for (const [gen, code] of [
      ['2', 'ENOT_REGULAR'],
      ['3', 'EOUTSIDE_DATA'],
      ['4', 'ECHECKSUM'],
      ['5', 'ECHECKSUM'],
    ] as const) {
      const { ms, value: r } = await timed(reload(c, gen));
      t.is(r.status, 422, `generation ${gen}: ${JSON.stringify(r.body)}`);
      t.is(r.body.code, code, `generation ${gen}: ${r.body.error}`);
      t.is(r.body.current_generation, '1');
      t.true(ms < 10_000, `generation ${gen} refused in ${ms} ms`);
    }
    const { ms, value: noop } = await timed(reload(c, '1'));
    t.is(noop.status, 200);
    t.true(noop.body.unchanged);
    t.true(ms < 2_000, `no-op reload took ${ms} ms`);
  } finally {
    stop = true;
    await loop;
  }
  t.deepEqual(failures, []);
  t.true(answered > 0);
  t.is(await published(c), '1');

  // A fresh generation is hashed in full, once, by the primary; its incremental successor only where it has new inodes.
  const full = await reload(c, '6');
  t.is(full.status, 200, JSON.stringify(full.body));
  const files6 = Object.keys((await loadGeneration(g(6))).manifest.files).length;
  t.like(full.body.validation, { files: files6, hashed_files: files6 });
  for (const w of full.body.workers) t.true(w.switched);
  await buildIncremental({ data, block: 7, from: '6', updates: { hot: new Map([[17, Buffer.alloc(32, 1)]]) } });
  const inc = await reload(c, '7');
  t.is(inc.status, 200, JSON.stringify(inc.body));
  const v = inc.body.validation;
  t.true(v.cached_files > 0 && v.hashed_files < v.files / 4, JSON.stringify(v));
  t.is(v.hashed_files + v.cached_files, v.files);
  t.deepEqual((await wallet.lookup('hot', 17, '7')).entry, Buffer.alloc(32, 1));
});

test('cluster: a reload whose HTTP caller went away switches nothing, queued or running', async (t) => {
  const data = tempDir();
  const seeds = await buildBlock(data, 1, undefined, true);
  for (const b of [2, 3, 4]) await buildBlock(data, b, seeds);
  let c: Cluster | undefined;
  t.teardown(async () => {
    await c?.stop();
    rmrf(data);
  });
  // Every reload waits 1.5 s in the primary before it starts (so others queue behind it).
  c = await startCluster(data, { workers: 2, env: { LANEPIR_FAILPOINTS: 'reload-stall:ms=1500' } });

  // Queued: reload 3 waits behind reload 2, and its client gives up meanwhile.
  const a = reload(c, '2');
  await new Promise((r) => setTimeout(r, 200));
  await abandonedReload(c, '3', 400);
  t.is((await a).status, 200);
  // Running: reload 4's client gives up while the primary holds it.
  await abandonedReload(c, '4', 700);
  const noop = await reload(c, '2');
  t.like(noop.body, { unchanged: true, new_generation: '2' });
  t.is(await published(c), '2');
  // A caller that stays gets its reload.
  t.is((await reload(c, '4')).status, 200);
  t.is(await published(c), '4');
});
