// `lanepir prune` never deletes what a server holds: every generation a
// worker serves, retains, prepares or still answers on is listed in the
// control segment (or the server says its list is incomplete, and prune
// refuses); a served generation's hint stays readable even if its directory
// goes; error messages on the public port never show server paths.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { control } from '../src/native.js';
import { hintBytes } from '../src/pir/crs.js';
import { publishGeneration } from '../src/store/builder.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type LaneName, generationDir, generationsDir } from '../src/store/layout.js';
import { planPrune } from '../src/store/prune.js';
import { cli, rmrf, tempDir } from './helpers.js';
import { HOT, buildBlock, reload as reloadLocal, serve } from './server-helpers.js';
import { type Cluster, json, request, startCluster } from './cluster-helpers.js';

/** Generation 1 in full (published), then `last - 1` incremental generations changing one hot entry each. */
async function manyGenerations(last: number): Promise<string> {
  const data = tempDir();
  await buildBlock(data, 1, undefined, true);
  for (let b = 2; b <= last; b++) {
    const value = crypto.randomBytes(32);
    await buildIncremental({ data, block: b, from: String(b - 1), updates: { hot: new Map([[b % HOT.entries, value]]) } });
  }
  return data;
}

const reload = async (c: Cluster, generation: number) =>
  request(`${c.adminUrl}/admin/reload`, { method: 'POST', body: JSON.stringify({ generation }), headers: { 'Content-Type': 'application/json' } });

const onDisk = (data: string) => fs.readdirSync(generationsDir(data)).sort((a, b) => Number(a) - Number(b));
const sha256 = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

/** Generation `g`'s crs and hint of `lane` over the public API: both answer, and the hint is the one the crs names. */
async function servesGeneration(url: string, lane: LaneName, g: string): Promise<string | undefined> {
  const crs = await request(`${url}/crs/${lane}?generation=${g}`);
  if (crs.status !== 200) return `crs ${crs.status} ${crs.body}`;
  const hint = await request(`${url}/hint/${lane}?generation=${g}`);
  if (hint.status !== 200) return `hint ${hint.status} ${hint.body}`;
  const c = json(crs);
  if (hint.body.length !== hintBytes(c as never)) return `hint has ${hint.body.length} bytes, expected ${hintBytes(c as never)}`;
  if (sha256(hint.body) !== c.hint_sha256) return 'hint does not match the crs';
  return undefined;
}

test('prune --retain 1 keeps every generation a 2-worker cluster with retain_generations 32 holds', async (t) => {
  const LAST = 40;
  const data = await manyGenerations(LAST);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data, { workers: 2, env: { LANEPIR_RETAIN_GENERATIONS: '32' } });
  t.teardown(() => c.stop());
  for (let g = 2; g <= LAST; g++) t.is((await reload(c, g)).status, 200, `reload ${g}`);

  const expected = Array.from({ length: 33 }, (_, i) => String(LAST - 32 + i));
  const r = await cli('prune', '--data', data, '--retain', '1', '--admin-url', c.adminUrl);
  t.is(r.code, 0, r.stderr);
  // What nobody holds is gone (but 1, which <data>/current names), everything held is still on disk...
  t.deepEqual(onDisk(data), ['1', ...expected]);
  t.regex(r.stdout, /^remove 2$/m);
  // ...because each worker lists all it holds: the current generation and 32 retained ones.
  const gens = json(await request(`${c.adminUrl}/admin/generations`));
  t.is(gens.held_complete, true);
  for (const w of gens.workers as { held_total: number; held_complete: boolean; generations: { generation: string }[] }[]) {
    t.is(w.held_total, 33);
    t.is(w.held_complete, true);
    t.deepEqual(w.generations.map((h) => h.generation).sort((a, b) => Number(a) - Number(b)), expected);
  }
  // ...and still served by every worker: the crs and the hint of each held generation (ask a few times: either worker answers).
  for (const g of expected) {
    for (const lane of ['hot', 'cold'] as const) {
      for (let k = 0; k < 2; k++) t.is(await servesGeneration(c.url, lane, g), undefined, `${lane} generation ${g}`);
    }
  }
});

test('a worker that holds more generations than its slot lists makes prune refuse, removing nothing', async (t) => {
  const data = await manyGenerations(5);
  t.teardown(() => rmrf(data));
  // Failpoint: each worker lists at most 2 held generations in its slot (as if the slot had overflowed).
  const c = await startCluster(data, { workers: 2, env: { LANEPIR_RETAIN_GENERATIONS: '4', LANEPIR_FAILPOINTS: 'held-list:2' } });
  t.teardown(() => c.stop());
  for (let g = 2; g <= 5; g++) t.is((await reload(c, g)).status, 200);
  const gens = json(await request(`${c.adminUrl}/admin/generations`));
  t.false(gens.held_complete);
  for (const w of gens.workers as { held_total: number; held_complete: boolean; generations: unknown[] }[]) {
    t.is(w.held_total, 5);
    t.is(w.generations.length, 2);
    t.false(w.held_complete);
  }
  for (const dryRun of [['--dry-run'], []]) {
    const r = await cli('prune', '--data', data, '--retain', '1', '--admin-url', c.adminUrl, ...dryRun);
    t.is(r.code, 1, r.stdout);
    t.regex(r.stderr, /^lanepir: prune refused, nothing removed: the server cannot list every generation it holds \(worker-\d-\d+ holds 5 generations, 2 listed; worker-\d-\d+ holds 5 generations, 2 listed\)/);
    t.is(r.stdout, '');
  }
  t.deepEqual(onDisk(data), ['1', '2', '3', '4', '5']);
});

test('the control segment lists 100 held generations per worker and records how many there are', (t) => {
  const name = `/lanepir-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const seg = control.controlCreate(name, 2);
  t.teardown(() => {
    seg.unlink();
    seg.close();
  });
  t.is(control.controlLayout.version, 2);
  t.is(control.controlLayout.heldMax, 100);
  t.is(control.controlLayout.slotBytes, 4096);
  const held = Array.from({ length: 150 }, (_, i) => ({ generation: String(1000 + i), inFlight: i % 3 }));
  seg.writeSlot(1, { pid: 42, serving: '1000', requests: 7, held });
  const s = seg.readSlot(1);
  t.is(s.heldTotal, 150);
  t.deepEqual(s.held, held.slice(0, 100));
  seg.writeSlot(0, { pid: 43, serving: '9', held: [{ generation: '9', inFlight: 1 }], heldTotal: 4 });
  t.like(seg.readSlot(0), { heldTotal: 4, held: [{ generation: '9', inFlight: 1 }] });
  seg.writeSlot(0, { pid: 43, serving: '9', held: [{ generation: '9', inFlight: 0 }] });
  t.is(seg.readSlot(0).heldTotal, 1);
  // The documented raw layout (docs/ARCHITECTURE.md).
  const raw = fs.readFileSync(`/dev/shm${name}`);
  t.is(raw.length, 4096 + 2 * 4096);
  t.is(raw.readUInt32LE(8), 2, 'layout version');
  t.is(raw.readUInt32LE(20), 4096, 'slot bytes');
  const slot1 = 4096 + 4096;
  t.is(Number(raw.readBigUInt64LE(slot1 + 8)), 42, 'pid');
  t.is(Number(raw.readBigUInt64LE(slot1 + 32)), 100, 'listed');
  t.is(raw.subarray(slot1 + 40, slot1 + 72).toString().replace(/\0+$/, ''), '1000', 'serving');
  t.is(Number(raw.readBigUInt64LE(slot1 + 72)), 150, 'held total');
  t.is(raw.subarray(slot1 + 96, slot1 + 128).toString().replace(/\0+$/, ''), '1000', 'first held id');
  t.is(Number(raw.readBigUInt64LE(slot1 + 96 + 32)), 0, 'first in-flight');
  t.is(raw.subarray(slot1 + 96 + 99 * 40, slot1 + 96 + 99 * 40 + 32).toString().replace(/\0+$/, ''), '1099', 'last listed id');
  t.is(Number(raw.readBigUInt64LE(slot1 + 96 + 99 * 40 + 32)), 99 % 3, 'last in-flight');
});

test('a held generation whose directory was deleted still serves its hint and crs; errors never show server paths', async (t) => {
  const data = await manyGenerations(3);
  t.teardown(() => rmrf(data));
  const server = await serve(data, { retain_generations: 4 });
  t.teardown(() => server.close());
  t.is((await reloadLocal(server, 2)).status, 200);
  t.is((await reloadLocal(server, 3)).status, 200);
  const crs1 = json(await request(`${server.publicUrl}/crs/cold?generation=1`));
  // Someone deletes generations 1 and 2 while the server still holds them.
  fs.rmSync(generationDir(data, 1), { recursive: true });
  fs.rmSync(generationDir(data, 2), { recursive: true });
  for (const g of ['1', '2']) {
    for (const lane of ['hot', 'cold'] as const) t.is(await servesGeneration(server.publicUrl, lane, g), undefined, `${lane} ${g}`);
  }
  t.deepEqual(json(await request(`${server.publicUrl}/crs/cold?generation=1`)), crs1);

  // Deltas to a generation whose files are gone: a clean 410 naming ids, never the data directory.
  const real = fs.realpathSync(data);
  const bodies: string[] = [];
  for (const q of ['from=1&to=2', 'from=2&to=2', 'from=1&to=1', 'from=0', 'from=1', 'from=2&to=7']) {
    const r = await request(`${server.publicUrl}/delta/hot?${q}`);
    bodies.push(r.body.toString());
    if (r.status !== 200) {
      t.true(r.status === 410 || r.status === 400, `${q}: ${r.status}`);
      t.is(typeof json(r).code, 'string', q);
    }
  }
  const toGone = JSON.parse(bodies[0]!);
  t.is(toGone.code, 'EDELTA_GONE');
  t.regex(toGone.error, /generation 2 is not on disk|diff of generation 2 is gone/);
  for (const b of bodies) {
    t.false(b.includes(data) || b.includes(real) || b.includes(path.basename(data)), b);
  }
});

test('prune on a missing data directory exits non-zero naming it', async (t) => {
  const data = await manyGenerations(1);
  t.teardown(() => rmrf(data));
  const server = await serve(data);
  t.teardown(() => server.close());
  const missing = path.join(data, 'no-such-dir');
  const r = await cli('prune', '--data', missing, '--retain', '1', '--admin-url', server.adminUrl);
  t.is(r.code, 1);
  t.is(r.stderr, `lanepir: data directory ${missing} does not exist [ENODATA]\n`);
  const notData = await cli('prune', '--data', path.join(data, 'generations', '1'), '--retain', '1', '--admin-url', server.adminUrl);
  t.is(notData.code, 1);
  t.regex(notData.stderr, /is not a lanepir data directory/);
  t.deepEqual(onDisk(data), ['1']);
});

test('follow mode prunes along the chain of current: its ancestors first, abandoned branches before them, and what is built on current is kept', async (t) => {
  // 1 - 2 - 3 - 4 (abandoned), and 2 - 3r1 - 4r1 (the served branch).
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const next = (block: number, from: string, id = String(block)) =>
    buildIncremental({ data, block, id, from, updates: { hot: new Map([[block % HOT.entries, crypto.randomBytes(32)]]) } });
  await next(2, '1');
  await next(3, '2');
  await next(4, '3');
  await next(3, '2', '3r1');
  await next(4, '3r1', '4r1');
  await publishGeneration(data, '4r1');
  const removed = async (retain: number) => (await planPrune(data, new Set(), retain, { chain: true })).remove.sort();
  t.deepEqual(await removed(2), ['1', '2', '3', '4'], 'the tip and its parent; the abandoned branch goes though it is newer');
  t.deepEqual(await removed(3), ['1', '3', '4']);
  t.deepEqual(await removed(5), ['3'], 'the whole chain, then the newest other');
  t.deepEqual((await planPrune(data, new Set(), 2)).remove.sort(), ['1', '2', '3', '3r1'], 'plain prune: the newest --retain, whatever their branch');
  // Built on current but not yet published: kept whatever --retain.
  await publishGeneration(data, '3r1');
  t.deepEqual(await removed(2), ['1', '3', '4']);
  t.deepEqual(await removed(1), ['1', '2', '3', '4']);
});
