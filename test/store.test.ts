// Generations end to end: build (synthetic, raw and JSON Lines input), verify,
// private round trips through the native kernel, and the CLI.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildGeneration, publishGeneration } from '../src/store/builder.js';
import { JsonlSource, RawFileSource, SyntheticSource } from '../src/store/entries.js';
import { loadGeneration, readEntry, resolveGeneration } from '../src/store/generation.js';
import { crsPath, generationDir, manifestPath, shardPath } from '../src/store/layout.js';
import { verifyGeneration } from '../src/store/verify.js';
import { selftestLane } from '../src/selftest.js';
import { rmrf, tempDir, cli } from './helpers.js';


test('round trips on lanes of several shapes through the native kernel, mmap and memory', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const shapes = [
    // entries not a multiple of m, several shards with the last one short
    { block: 1, entries: 5000, es: 32, m: 640, shard: 4096 },
    // entry size 84: shards not a page multiple (4032 = 48 * 84)
    { block: 2, entries: 777, es: 84, m: 100, shard: 4096 },
    // one record row
    { block: 3, entries: 300, es: 32, m: 300, shard: 1 << 17 },
  ];
  for (const s of shapes) {
    await buildGeneration({
      data,
      block: s.block,
      shardSize: s.shard,
      lanes: { hot: { source: new SyntheticSource('hot', s.entries, s.es, s.block), m: s.m } },
    });
    const info = await loadGeneration(generationDir(data, s.block));
    const lane = info.lanes.hot!;
    t.is(lane.crs.R, Math.ceil(s.entries / s.m));
    for (const mode of ['mmap', 'memory'] as const) {
      const r = await selftestLane(lane, { count: 120, mode, batch: 7 });
      t.deepEqual(r.mismatches, [], `${JSON.stringify(s)} ${mode}`);
      t.is(r.matched, 120);
    }
  }
});

test('entries of all 0x00 and all 0xFF from raw files; JSON Lines input', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const zeros = path.join(data, 'zeros.bin');
  const ones = path.join(data, 'ones.bin');
  fs.writeFileSync(zeros, Buffer.alloc(32 * 1000));
  fs.writeFileSync(ones, Buffer.alloc(32 * 1000, 0xff));
  await buildGeneration({
    data,
    block: 10,
    lanes: { hot: { source: await RawFileSource.open(zeros, 32) }, cold: { source: await RawFileSource.open(ones, 32) } },
  });
  const info = await loadGeneration(generationDir(data, 10));
  for (const lane of [info.lanes.hot!, info.lanes.cold!]) {
    const r = await selftestLane(lane, { count: 50, indices: [0, 999, ...Array.from({ length: 48 }, () => crypto.randomInt(1000))] });
    t.deepEqual(r.mismatches, []);
  }

  const jsonl = path.join(data, 'entries.jsonl');
  const value = (i: number) => '0x' + Buffer.alloc(32, i % 256).toString('hex');
  fs.writeFileSync(jsonl, [3, 17, 99].map((i) => JSON.stringify({ index: i, value: value(i) })).join('\n') + '\n');
  const src = await JsonlSource.open(jsonl, 32);
  t.is(src.entries, 100);
  await buildGeneration({ data, block: 11, lanes: { hot: { source: src } } });
  const hot = (await loadGeneration(generationDir(data, 11))).lanes.hot!;
  t.deepEqual(await readEntry(hot, 17), Buffer.alloc(32, 17));
  t.deepEqual(await readEntry(hot, 18), Buffer.alloc(32));
  const r = await selftestLane(hot, { count: 3, indices: [3, 17, 50] });
  t.deepEqual(r.mismatches, []);
});

test('synthetic data is deterministic per block and a later block changes a few entries', async (t) => {
  const a = Buffer.alloc(32 * 4096);
  const b = Buffer.alloc(32 * 4096);
  const a2 = Buffer.alloc(32 * 4096);
  await new SyntheticSource('hot', 4096, 32, 5).fill(0, a);
  await new SyntheticSource('hot', 4096, 32, 5).fill(0, a2);
  await new SyntheticSource('hot', 4096, 32, 6).fill(0, b);
  t.deepEqual(a, a2);
  let differing = 0;
  for (let i = 0; i < 4096; i++) if (!a.subarray(i * 32, i * 32 + 32).equals(b.subarray(i * 32, i * 32 + 32))) differing++;
  t.true(differing > 0 && differing <= 16, `${differing} entries differ`);
  // Filling from an offset gives the same bytes as a whole fill.
  const part = Buffer.alloc(32 * 10);
  await new SyntheticSource('hot', 4096, 32, 5).fill(1000, part);
  t.deepEqual(part, a.subarray(32 * 1000, 32 * 1010));
});

test('verify catches a truncated shard, a flipped byte and a wrong entry count', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const build = (block: number) =>
    buildGeneration({ data, block, shardSize: 4096, lanes: { hot: { source: new SyntheticSource('hot', 1000, 32, block) } } });
  for (const block of [1, 2, 3, 4]) await build(block);
  await t.notThrowsAsync(verifyGeneration(generationDir(data, 1)));

  fs.truncateSync(shardPath(generationDir(data, 2), 'hot', 1), 1000);
  await t.throwsAsync(verifyGeneration(generationDir(data, 2)), { message: /shard-000001.bin has 1000 bytes/ });
  await t.throwsAsync(loadGeneration(generationDir(data, 2)), { message: /shard-000001.bin/ });

  const shard = shardPath(generationDir(data, 3), 'hot', 2);
  const bytes = fs.readFileSync(shard);
  bytes[77] ^= 0x01;
  fs.writeFileSync(shard, bytes);
  await t.throwsAsync(verifyGeneration(generationDir(data, 3)), { message: /shard-000002.bin has sha256/ });

  const crsFile = crsPath(generationDir(data, 4), 'hot');
  const crs = JSON.parse(fs.readFileSync(crsFile, 'utf8'));
  crs.entries = 999;
  fs.writeFileSync(crsFile, JSON.stringify(crs));
  await t.throwsAsync(verifyGeneration(generationDir(data, 4)), { message: /entries|crs/ });
  const manifest = JSON.parse(fs.readFileSync(manifestPath(generationDir(data, 1)), 'utf8'));
  t.is(manifest.lanes.hot.entries, 1000);
  await t.throwsAsync(loadGeneration(generationDir(data, 1), { hotEntries: 1001 }), { message: /expects 1001/ });
});

test('the builder refuses unsafe parameters and never overwrites a generation', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await t.throwsAsync(
    buildGeneration({ data, block: 1, lanes: { hot: { source: new SyntheticSource('hot', 100, 32, 1), m: 2_000_000 } } }),
    { message: /exceeds|failure/ },
  );
  t.false(fs.existsSync(generationDir(data, 1)));
  await buildGeneration({ data, block: 1, lanes: { hot: { source: new SyntheticSource('hot', 100, 32, 1) } } });
  await t.throwsAsync(buildGeneration({ data, block: 1, lanes: { hot: { source: new SyntheticSource('hot', 100, 32, 1) } } }), {
    message: /immutable/,
  });
  // No temporary directories are left behind.
  t.deepEqual(fs.readdirSync(path.join(data, 'generations')), ['1']);
  await publishGeneration(data, '1');
  t.deepEqual(await resolveGeneration(data), { id: '1', dir: path.resolve(generationDir(data, 1)) });
});

test('CLI: build --publish, inspect, verify, selftest, and clear errors', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const help = await cli('--help');
  for (const cmd of ['build', 'inspect', 'verify', 'selftest']) t.regex(help.stdout, new RegExp(`\\b${cmd}\\b`));

  const built = await cli('build', '--data', data, '--block', '7', '--hot-synthetic', '3000', '--cold-synthetic', '5000', '--shard-size', '8192', '--publish', '--quiet');
  t.is(built.code, 0, built.stderr);
  t.regex(built.stdout, /built generation 7/);

  const inspected = await cli('inspect', '--data', data, '--lane', 'cold', '--index', '4321');
  t.is(inspected.code, 0, inspected.stderr);
  const expected = Buffer.alloc(32);
  await new SyntheticSource('cold', 5000, 32, 7).fill(4321, expected);
  t.is(inspected.stdout.trim(), `0x${expected.toString('hex')}`);

  const verified = await cli('verify', '--data', data);
  t.is(verified.code, 0, verified.stderr);
  t.regex(verified.stdout, /generation 7 .* is sound/);

  const st = await cli('selftest', '--data', data, '--lane', 'hot', '--count', '40');
  t.is(st.code, 0, st.stderr);
  t.regex(st.stdout, /selftest ok: .* 40\/40/);

  // The next block keeps the lane's seed (so client hints can be updated).
  t.is((await cli('build', '--data', data, '--block', '8', '--hot-synthetic', '3000', '--quiet')).code, 0);
  const seed = (id: number) => JSON.parse(fs.readFileSync(crsPath(generationDir(data, id), 'hot'), 'utf8')).seed;
  t.is(seed(8), seed(7));

  fs.truncateSync(shardPath(generationDir(data, 7), 'cold', 0), 10);
  const bad = await cli('verify', '--data', data);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /shard-000000.bin has 10 bytes/);

  const usage = await cli('inspect', '--data', data, '--lane', 'warm', '--index', '1');
  t.is(usage.code, 2);
  t.regex(usage.stderr, /--lane must be hot or cold/);
  const missing = await cli('verify', '--data', path.join(data, 'nope'));
  t.is(missing.code, 1);
  t.regex(missing.stderr, /no generation is published/);
  const noLane = await cli('build', '--data', data, '--block', '9');
  t.is(noLane.code, 2);
});
