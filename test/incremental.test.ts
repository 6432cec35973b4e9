// Incremental builds: byte-for-byte equal to a full build of the same data,
// unchanged files hard-linked (and the parent untouched), growth, the diff
// file, and the CLI's update files.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeDelta } from '../src/pir/delta.js';
import { selftestLane } from '../src/selftest.js';
import { buildGeneration } from '../src/store/builder.js';
import { RawFileSource } from '../src/store/entries.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { buildIncremental, diffPath } from '../src/store/incremental.js';
import { type LaneName, generationDir, generationsDir, hintPath, shardPath } from '../src/store/layout.js';
import { readManifest } from '../src/store/manifest.js';
import { verifyGeneration } from '../src/store/verify.js';
import { rmrf, tempDir, cli } from './helpers.js';


function listFiles(root: string, dir = root): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(root, path.join(dir, e.name)) : [path.relative(root, path.join(dir, e.name))]))
    .sort();
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Every file (but manifest and diffs) byte-equal, and the same lane summaries. */
async function assertSameGeneration(t: ExecutionContext, incremental: string, full: string): Promise<void> {
  const a = listFiles(incremental).filter((f) => f !== 'manifest.json' && !f.endsWith('diff.bin') && !f.includes('/diffs/'));
  const b = listFiles(full).filter((f) => f !== 'manifest.json');
  t.deepEqual(a, b);
  for (const f of a) t.true(fs.readFileSync(path.join(incremental, f)).equals(fs.readFileSync(path.join(full, f))), `${f} differs`);
  const ma = await readManifest(incremental);
  const mb = await readManifest(full);
  t.deepEqual(ma.lanes, mb.lanes);
  for (const f of b) t.deepEqual(ma.files[f], mb.files[f], f);
}

interface Shape {
  name: string;
  entries: number;
  es: number;
  m: number;
  shard: number;
  /** Indices to change (may reach past the end: growth). */
  changes: number[];
}

async function checkShape(t: ExecutionContext, s: Shape): Promise<void> {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const data = path.join(root, 'inc');
  const ref = path.join(root, 'full');
  const seed = crypto.randomBytes(16);
  const base = crypto.randomBytes(s.entries * s.es);
  const baseFile = path.join(root, 'base.bin');
  fs.writeFileSync(baseFile, base);
  await buildGeneration({ data, block: 1, shardSize: s.shard, lanes: { hot: { source: await RawFileSource.open(baseFile, s.es), m: s.m, seed } } });
  const parentDir = generationDir(data, 1);
  const before = new Map(listFiles(parentDir).map((f) => [f, sha(path.join(parentDir, f))]));

  const updates = new Map<number, Buffer>();
  for (const i of s.changes) updates.set(i, crypto.randomBytes(s.es));
  const res = await buildIncremental({ data, block: 2, from: '1', updates: { hot: updates } });

  // The same data built in full, with the same seed and m.
  const newEntries = Math.max(s.entries, ...s.changes.map((i) => i + 1));
  const next = Buffer.alloc(newEntries * s.es);
  base.copy(next);
  for (const [i, v] of updates) v.copy(next, i * s.es);
  const nextFile = path.join(root, 'next.bin');
  fs.writeFileSync(nextFile, next);
  await buildGeneration({ data: ref, block: 2, shardSize: s.shard, lanes: { hot: { source: await RawFileSource.open(nextFile, s.es), m: s.m, seed } } });
  await assertSameGeneration(t, generationDir(data, 2), generationDir(ref, 2));

  // The parent is untouched; unchanged shards are the parent's inodes.
  for (const [f, h] of before) t.is(sha(path.join(parentDir, f)), h, `${f} of the parent changed`);
  const info = (await loadGeneration(generationDir(data, 2))).lanes.hot!;
  const touched = new Set(s.changes.map((i) => Math.floor((i * s.es) / info.summary.shard_size_bytes)));
  const oldShards = (await loadGeneration(parentDir)).lanes.hot!.summary.shards;
  let linked = 0;
  for (let k = 0; k < info.summary.shards; k++) {
    const now = fs.statSync(shardPath(generationDir(data, 2), 'hot', k));
    const lastOldGrown = k === oldShards - 1 && newEntries > s.entries && (s.entries * s.es) % s.shard !== 0;
    if (k < oldShards && !touched.has(k) && !lastOldGrown) {
      const old = fs.statSync(shardPath(parentDir, 'hot', k));
      t.is(now.ino, old.ino, `shard ${k} should be a hard link`);
      t.true(now.nlink >= 2);
      linked++;
    } else if (k < oldShards) {
      t.not(now.ino, fs.statSync(shardPath(parentDir, 'hot', k)).ino, `shard ${k} should be a new file`);
    }
  }
  t.is(res.stats.hot!.linkedShards, linked);

  // The diff records the step; the generation verifies and answers queries.
  const diff = decodeDelta(fs.readFileSync(diffPath(generationDir(data, 2), 'hot')));
  t.is(diff.from, '1');
  t.is(diff.to, '2');
  t.deepEqual(diff.indices, [...new Set(s.changes)].sort((a, b) => a - b));
  t.is((await readManifest(generationDir(data, 2))).parent, '1');
  await t.notThrowsAsync(verifyGeneration(generationDir(data, 2)));
  const indices = [...s.changes.slice(0, 20), 0, newEntries - 1];
  const r = await selftestLane(info, { count: indices.length, indices });
  t.deepEqual(r.mismatches, [], s.name);
}

const shapes: Shape[] = [
  { name: 'es 32, several shards, last short', entries: 5000, es: 32, m: 640, shard: 4096, changes: [0, 7, 127, 128, 2500, 4999, 4998, 4900] },
  { name: 'es 84, changes in the last short shard', entries: 777, es: 84, m: 100, shard: 4096, changes: [776, 770, 3, 48] },
  { name: 'growth into a new record row', entries: 1000, es: 32, m: 300, shard: 4096, changes: [5, 999, 1000, 1249] },
  { name: 'growth from full shards, sparse new index', entries: 1024, es: 32, m: 256, shard: 4096, changes: [1500] },
  { name: 'growth within the last record row', entries: 1000, es: 32, m: 300, shard: 4096, changes: [1100] },
  { name: 'es 84 growth by two record rows', entries: 250, es: 84, m: 100, shard: 4096, changes: [10, 420] },
];
for (const s of shapes) test(`incremental equals full build: ${s.name}`, (t) => checkShape(t, s));

test('a lane without updates is carried over by hard links; a no-op update links the hint', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seed = crypto.randomBytes(16);
  const file = (name: string, bytes: number) => {
    const p = path.join(data, name);
    fs.writeFileSync(p, crypto.randomBytes(bytes));
    return p;
  };
  const hot = await RawFileSource.open(file('hot.bin', 32 * 2000), 32);
  const cold = await RawFileSource.open(file('cold.bin', 32 * 3000), 32);
  await buildGeneration({ data, block: 10, shardSize: 8192, lanes: { hot: { source: hot, m: 100, seed }, cold: { source: cold, m: 200 } } });
  const g10 = generationDir(data, 10);
  const info10 = await loadGeneration(g10);
  const same = await readEntry(info10.lanes.hot!, 17);
  await buildIncremental({ data, block: 11, from: '10', updates: { hot: new Map([[17, same]]) } });
  const g11 = generationDir(data, 11);
  for (const lane of ['hot', 'cold'] as LaneName[]) {
    for (const f of listFiles(path.join(g10, lane))) {
      t.is(fs.statSync(path.join(g11, lane, f)).ino, fs.statSync(path.join(g10, lane, f)).ino, `${lane}/${f}`);
    }
    const diff = decodeDelta(fs.readFileSync(diffPath(g11, lane)));
    t.deepEqual(diff.indices, []);
    t.is(diff.fromHintSha256, diff.toHintSha256);
  }
  t.is(fs.statSync(hintPath(g11, 'cold')).nlink, 2);
  await t.notThrowsAsync(verifyGeneration(g11));
});

test('bad updates are refused and nothing is written (API and CLI)', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const built = await cli('build', '--data', data, '--block', '5', '--hot-synthetic', '1000', '--cold-synthetic', '500', '--shard-size', '4096', '--quiet');
  t.is(built.code, 0, built.stderr);
  const gens = () => fs.readdirSync(generationsDir(data)).sort();

  await t.throwsAsync(buildIncremental({ data, block: 6, from: '5', updates: { hot: new Map([[3, Buffer.alloc(31)]]) } }), { message: /31 bytes/ });
  await t.throwsAsync(buildIncremental({ data, block: 6, from: '5', updates: { hot: new Map([[10 ** 9, Buffer.alloc(32)]]) } }), { message: /grow the lane/ });
  await t.throwsAsync(buildIncremental({ data, block: 5, from: '5', updates: {} }), { message: /must be above/ });
  await t.throwsAsync(buildIncremental({ data, block: 6, from: '4', updates: {} }), { code: 'ENOGEN' } as never);
  t.deepEqual(gens(), ['5']);

  const v = (b: number) => '0x' + Buffer.alloc(32, b).toString('hex');
  const badJson = path.join(data, 'bad.jsonl');
  fs.writeFileSync(badJson, [JSON.stringify({ index: 1, value: v(1) }), '', JSON.stringify({ index: 2, value: '0x12' })].join('\n') + '\n');
  const r1 = await cli('build', '--data', data, '--block', '6', '--from-generation', '5', '--hot-updates', badJson, '--quiet');
  t.is(r1.code, 1);
  t.regex(r1.stderr, /bad\.jsonl:3: "value" must be 0x followed by 64 hex digits/);
  const badBin = path.join(data, 'bad.bin');
  fs.writeFileSync(badBin, Buffer.alloc(40 + 17));
  const r2 = await cli('build', '--data', data, '--block', '6', '--from-generation', '5', '--cold-updates', badBin, '--quiet');
  t.is(r2.code, 1);
  t.regex(r2.stderr, /bad\.bin has 57 bytes, not a whole number of 40-byte records.*record 1/);
  const r3 = await cli('build', '--data', data, '--block', '6', '--from-generation', '5', '--hot-synthetic', '10', '--quiet');
  t.is(r3.code, 2);
  t.regex(r3.stderr, /--hot-synthetic cannot be combined with --from-generation/);
  const r4 = await cli('build', '--data', data, '--block', '6', '--hot-updates', badJson, '--quiet');
  t.is(r4.code, 2);
  t.deepEqual(gens(), ['5']);

  // A good JSON Lines file and a good binary file.
  const good = path.join(data, 'good.jsonl');
  fs.writeFileSync(good, [JSON.stringify({ index: 1, value: v(1) }), JSON.stringify({ index: 1000, value: v(2) }), JSON.stringify({ index: 1, value: v(3) })].join('\n'));
  const bin = Buffer.alloc(40 * 2);
  bin.writeBigUInt64LE(7n, 0);
  bin.fill(9, 8, 40);
  bin.writeBigUInt64LE(499n, 40);
  bin.fill(0xff, 48, 80);
  const goodBin = path.join(data, 'good.bin');
  fs.writeFileSync(goodBin, bin);
  const ok = await cli('build', '--data', data, '--block', '6', '--from-generation', '5', '--hot-updates', good, '--cold-updates', goodBin, '--publish', '--quiet');
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /built generation 6 from 5 .*hot: 2 changed entries, \+1 entries/);
  const inspect = async (lane: string, index: number) => (await cli('inspect', '--data', data, '--lane', lane, '--index', String(index))).stdout.trim();
  t.is(await inspect('hot', 1), v(3)); // the last value for an index wins
  t.is(await inspect('hot', 1000), v(2));
  t.is(await inspect('cold', 7), v(9));
  t.is(await inspect('cold', 499), v(0xff));
  const verified = await cli('verify', '--data', data);
  t.is(verified.code, 0, verified.stderr);
  t.deepEqual(gens(), ['5', '6']);
});
