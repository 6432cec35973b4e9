// `lanepir query` against a running server: prints the entry, reports sizes
// and timings on stderr, and reuses its cached hint.
import test from 'ava';
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { COLD, HOT, SHARD_SIZE, buildBlock, serve } from './server-helpers.js';

const exec = promisify(execFile);
const BIN = path.resolve('bin/lanepir.js');

test('lanepir query retrieves an entry privately and caches the hint', async (t) => {
  const data = tempDir();
  const cache = tempDir('lanepir-cache-');
  t.teardown(() => {
    rmrf(data);
    rmrf(cache);
  });
  await buildBlock(data, 3, undefined, true);
  const server = await serve(data);
  t.teardown(() => server.close());
  const expected = await readEntry((await loadGeneration(generationDir(data, 3))).lanes.cold!, 4242);
  const args = [BIN, 'query', '--url', server.publicUrl, '--lane', 'cold', '--index', '4242', '--cache-dir', cache];
  const first = await exec(process.execPath, args);
  t.is(first.stdout.trim(), `0x${expected.toString('hex')}`);
  t.regex(first.stderr, /generation 3 .*sent 8192 B, received \d+ B; hint: downloaded/);
  const second = await exec(process.execPath, args);
  t.is(second.stdout.trim(), first.stdout.trim());
  t.regex(second.stderr, /hint: cached/);
  // The server moves on: the cached hint is brought up to date by a delta, not downloaded.
  const changed = Buffer.alloc(32, 0xab);
  await buildIncremental({ data, block: 4, from: '3', updates: { cold: new Map([[4242, changed]]) }, publish: true });
  t.is((await server.reloadLocal()).new_generation, '4');
  const third = await exec(process.execPath, args);
  t.is(third.stdout.trim(), `0x${changed.toString('hex')}`);
  t.regex(third.stderr, /generation 4 .*hint: updated by delta/);
  const bad = await exec(process.execPath, [BIN, 'query', '--url', server.publicUrl, '--lane', 'cold', '--index', '999999999', '--cache-dir', cache]).catch((e) => e);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /outside the lane/);
});

test('lanepir query: two data sets at the same URL under the same generation id; the second does not use the first one\'s cached hint', async (t) => {
  const a = tempDir();
  const b = tempDir();
  const cache = tempDir('lanepir-cache-');
  t.teardown(() => [a, b, cache].forEach(rmrf));
  await buildBlock(a, 3, undefined, true);
  // Another data set, also generation 3: other entries, another seed.
  await buildGeneration({
    data: b,
    block: 3,
    shardSize: SHARD_SIZE,
    publish: true,
    lanes: {
      hot: { source: new SyntheticSource('other-hot', HOT.entries, 32, 3), m: HOT.m },
      cold: { source: new SyntheticSource('other-cold', COLD.entries, 32, 3), m: COLD.m },
    },
  });
  const index = '777';
  const expected = async (data: string) => `0x${(await readEntry((await loadGeneration(generationDir(data, 3))).lanes.cold!, 777)).toString('hex')}`;
  t.not(await expected(a), await expected(b));

  const first = await serve(a);
  const url = first.publicUrl;
  const args = [BIN, 'query', '--url', url, '--lane', 'cold', '--index', index, '--cache-dir', cache];
  try {
    const r = await exec(process.execPath, args);
    t.is(r.stdout.trim(), await expected(a));
  } finally {
    await first.close();
  }
  const second = await serve(b, { port: Number(new URL(url).port) });
  t.teardown(() => second.close());
  t.is(second.publicUrl, url);
  const r = await exec(process.execPath, args);
  t.is(r.stdout.trim(), await expected(b));
  t.regex(r.stderr, /generation 3 .*hint: downloaded/);
});

test('lanepir query against an unreachable server names the cause and exits non-zero', async (t) => {
  // A port nobody listens on: bind one, then close it.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const cache = tempDir('lanepir-cache-');
  t.teardown(() => rmrf(cache));
  const r = await exec(process.execPath, [BIN, 'query', '--url', `http://127.0.0.1:${port}`, '--lane', 'hot', '--index', '1', '--cache-dir', cache]).catch((e) => e);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  t.regex(r.stderr, /\/info/);
});
