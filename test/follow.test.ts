// Follow mode end to end: blocks of updates dropped into a directory become
// served generations while wallets keep querying and update their hints by
// deltas; reorgs rebuild from the right ancestor; bad files are refused.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { Follower, type FollowerEvents } from '../src/follow/follower.js';
import { RemoteLane } from '../src/pir/remote.js';
import { loadGeneration, readEntry, resolveGeneration } from '../src/store/generation.js';
import { type LaneName, generationDir } from '../src/store/layout.js';
import { cli, rmrf, tempDir } from './helpers.js';
import { COLD, HOT, buildBlock, serve } from './server-helpers.js';
import { json, request, startCluster } from './cluster-helpers.js';

const SIZES: Record<LaneName, number> = { hot: HOT.entries, cold: COLD.entries };

/** Writes an update file the way a block source should: to a temporary name, then rename. */
function dropBlock(dir: string, block: number, text: string): void {
  const tmp = path.join(dir, `.${block}.jsonl.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, `${block}.jsonl`));
}

function randomChanges(count: number): { lane: LaneName; index: number; value: string }[] {
  return Array.from({ length: count }, () => {
    const lane: LaneName = crypto.randomInt(2) ? 'hot' : 'cold';
    return { lane, index: crypto.randomInt(SIZES[lane]), value: '0x' + crypto.randomBytes(32).toString('hex') };
  });
}

function waitFor<K extends keyof FollowerEvents>(f: Follower, event: K, pred: (e: FollowerEvents[K]) => boolean, ms = 90_000): Promise<FollowerEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    const on = (e: FollowerEvents[K]) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      f.off(event, on);
      resolve(e);
    };
    f.on(event, on);
  });
}

test('30 blocks followed into a 2-worker cluster under queries; hints move by deltas; bad files refused; pruning spares held generations', async (t) => {
  const data = tempDir();
  const updates = path.join(data, 'updates');
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  // Plaintext model: generation 1's lanes, then every change we drop.
  const g1 = await loadGeneration(generationDir(data, 1));
  const model = new Map<string, Map<string, Buffer>>(); // generation -> changes so far, by "lane:index"
  const base: Record<LaneName, Buffer[]> = { hot: [], cold: [] };
  for (const lane of ['hot', 'cold'] as const) for (let i = 0; i < SIZES[lane]; i++) base[lane].push(await readEntry(g1.lanes[lane]!, i));
  const expected = (lane: LaneName, index: number, generation: string) =>
    model.get(generation)?.get(`${lane}:${index}`) ?? base[lane][index]!;

  const c = await startCluster(data);
  t.teardown(() => c.stop());
  const follower = new Follower({
    data,
    updatesDir: updates,
    admin: { url: c.adminUrl, token: undefined },
    logger: pino({ level: 'silent' }),
    debounceMs: 50,
    pollMs: 200,
    retain: 3,
  });
  await follower.start();
  t.teardown(() => follower.stop());
  const refused: string[] = [];
  follower.on('refused', (e: FollowerEvents['refused']) => refused.push(e.error));

  // Wallets query random indices the whole time.
  let stop = false;
  const failures: string[] = [];
  let answered = 0;
  const wallets = { hot: new RemoteLane(c.url, 'hot'), cold: new RemoteLane(c.url, 'cold') };
  const loop = async (lane: LaneName) => {
    while (!stop) {
      const index = crypto.randomInt(SIZES[lane]);
      try {
        const r = await wallets[lane].lookup(index);
        const want = expected(lane, index, r.generation);
        if (!Buffer.from(r.entry).equals(want)) failures.push(`${lane}[${index}]@${r.generation} decoded wrongly`);
        else answered++;
      } catch (err) {
        failures.push(`${lane}[${index}]: ${(err as Error).message}`);
      }
    }
  };
  // Two concurrent lookups per wallet: hint updates must not mix generations.
  const loops = [loop('hot'), loop('hot'), loop('cold'), loop('cold')];

  let changes = new Map<string, Buffer>();
  for (let block = 2; block <= 31; block++) {
    const list = block % 10 === 0 ? [] : randomChanges(5); // some blocks change nothing
    changes = new Map(changes);
    for (const ch of list) changes.set(`${ch.lane}:${ch.index}`, Buffer.from(ch.value.slice(2), 'hex'));
    model.set(String(block), changes);
    dropBlock(updates, block, list.map((ch) => JSON.stringify(ch) + '\n').join(''));
    await new Promise((r) => setTimeout(r, 120));
  }
  await waitFor(follower, 'reloaded', (e) => e.generation === '31');

  // A truncated file and a malformed one are refused; serving goes on.
  dropBlock(updates, 32, '{"lane": "hot", "index": 1, "value": "0x12');
  await waitFor(follower, 'refused', () => true);
  dropBlock(updates, 32, '{"lane": "warm", "index": 1, "value": "0x00"}\n');
  await waitFor(follower, 'refused', (e) => /"lane"/.test(e.error));
  t.is(json(await request(`${c.url}/info`)).generation, '31');
  // The fixed file is picked up.
  const fixed = randomChanges(3);
  const m32 = new Map(changes);
  for (const ch of fixed) m32.set(`${ch.lane}:${ch.index}`, Buffer.from(ch.value.slice(2), 'hex'));
  model.set('32', m32);
  dropBlock(updates, 32, fixed.map((ch) => JSON.stringify(ch) + '\n').join(''));
  await waitFor(follower, 'reloaded', (e) => e.generation === '32');
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(loops);

  t.deepEqual(failures, []);
  t.true(answered > 20, `${answered} lookups`);
  t.is(refused.length, 2);
  for (const lane of ['hot', 'cold'] as const) {
    t.is(wallets[lane].stats.downloads, 1, `${lane}: one full hint download, then deltas only`);
    t.true(wallets[lane].stats.deltas >= 1);
  }
  // Follow mode pruned as it went (a generation still held at one of its
  // prunes can outlive it). One more prune now that nothing is in flight
  // must keep exactly what workers hold plus the newest few.
  t.true(fs.readdirSync(path.join(data, 'generations')).filter((n) => !n.startsWith('.')).length < 20, 'follow mode pruned old generations');
  const pruned = await cli('prune', '--data', data, '--retain', '3', '--admin-url', c.adminUrl);
  t.is(pruned.code, 0, pruned.stderr);
  const held = new Set<string>();
  for (const w of json(await request(`${c.adminUrl}/admin/generations`)).workers) for (const g of w.generations) held.add(g.generation);
  const onDisk = fs.readdirSync(path.join(data, 'generations')).filter((n) => !n.startsWith('.'));
  for (const g of held) t.true(onDisk.includes(g), `held generation ${g} is still on disk`);
  const newest = ['30', '31', '32'];
  t.true(onDisk.every((g) => held.has(g) || newest.includes(g)), `on disk: ${onDisk}; held: ${[...held]}`);
  t.true(onDisk.length < 20, `old generations were pruned: ${onDisk}`);
});

test('a reorg rebuilds from the right ancestor under a fresh id', async (t) => {
  const data = tempDir();
  const updates = path.join(data, 'updates');
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const server = await serve(data);
  t.teardown(() => server.close());
  const follower = new Follower({ data, updatesDir: updates, admin: { url: server.adminUrl, token: undefined }, logger: pino({ level: 'silent' }), debounceMs: 30, pollMs: 100 });
  await follower.start();
  t.teardown(() => follower.stop());
  const v = (b: number) => '0x' + Buffer.alloc(32, b).toString('hex');
  const line = (index: number, b: number) => JSON.stringify({ lane: 'hot', index, value: v(b) }) + '\n';
  dropBlock(updates, 2, line(10, 2));
  dropBlock(updates, 3, line(11, 3));
  dropBlock(updates, 4, line(12, 4));
  await waitFor(follower, 'reloaded', (e) => e.generation === '4');
  // The chain switches at block 3: new contents for 3 and 4.
  dropBlock(updates, 3, line(11, 33));
  await waitFor(follower, 'reloaded', (e) => e.generation === '3r1');
  dropBlock(updates, 4, line(20, 44));
  await waitFor(follower, 'reloaded', (e) => e.generation === '4r1');
  t.is((await resolveGeneration(data)).id, '4r1');
  const g = await loadGeneration(generationDir(data, '4r1'));
  t.is(g.blockNumber, 4);
  t.is(g.manifest.parent, '3r1');
  const hot = g.lanes.hot!;
  t.deepEqual(await readEntry(hot, 10), Buffer.alloc(32, 2), 'block 2 is shared');
  t.deepEqual(await readEntry(hot, 11), Buffer.alloc(32, 33), 'the new block 3');
  t.deepEqual(await readEntry(hot, 20), Buffer.alloc(32, 44), 'the new block 4');
  t.notDeepEqual(await readEntry(hot, 12), Buffer.alloc(32, 4), 'the old block 4 is not in this chain');
  // The old generations are untouched.
  t.deepEqual(await readEntry((await loadGeneration(generationDir(data, 3))).lanes.hot!, 11), Buffer.alloc(32, 3));
  // A client pinned to the old chain gets a delta refusal, not a wrong hint.
  const res = await fetch(`${server.publicUrl}/delta/hot?from=4`);
  t.is(res.status, 410);
});
