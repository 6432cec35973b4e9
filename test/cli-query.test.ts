// `lanepir query` against a running server: prints the entry, reports sizes
// and timings on stderr, and reuses its cached hint.
import test from 'ava';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, serve } from './server-helpers.js';

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
