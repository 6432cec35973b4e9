// Operator tooling against a running server: ops/roll-generation (verify,
// selftest, publish, reload, prune) and its refusals.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { resolveGeneration } from '../src/store/generation.js';
import { generationDir, shardPath } from '../src/store/layout.js';
import { rmrf, run, tempDir } from './helpers.js';
import { COLD, buildBlock, currentGeneration, serve } from './server-helpers.js';

const roll = (...args: string[]) => run(path.resolve('ops/roll-generation'), args);

test('roll-generation verifies, selftests, publishes, reloads and prunes what nobody holds', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  const server = await serve(data, { retain_generations: 4 });
  t.teardown(() => server.close());
  for (const b of [2, 3, 4, 5, 6, 7]) await buildBlock(data, b, seeds);

  const r = await roll('--data', data, '--generation', '7', '--admin-url', server.adminUrl, '--retain', '2', '--selftest-count', '8');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /selftest ok/);
  t.regex(r.stdout, /"new_generation":"7"/);
  t.is((await resolveGeneration(data)).id, '7');
  t.is(await currentGeneration(server.publicUrl), '7');
  // 1 is still held by the server (retained), 6 and 7 are the newest two.
  t.deepEqual(fs.readdirSync(path.join(data, 'generations')).sort(), ['1', '6', '7']);
  t.regex(r.stdout, /keep {3}1 \(held by a server\)/);
});

test('roll-generation refuses a corrupt generation and restores current when the server refuses', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  const server = await serve(data, { cold_entries: COLD.entries });
  t.teardown(() => server.close());
  await buildBlock(data, 2, seeds);
  fs.truncateSync(shardPath(generationDir(data, 2), 'hot', 0), 5);
  const corrupt = await roll('--data', data, '--generation', '2', '--admin-url', server.adminUrl);
  t.not(corrupt.code, 0);
  t.regex(corrupt.stderr, /failed verification; not published/);
  t.is((await resolveGeneration(data)).id, '1');

  // Sound on disk, but the server's configuration expects another cold lane size.
  const strict = await serve(data, { cold_entries: COLD.entries + 1, retain_generations: 0 });
  t.teardown(() => strict.close());
  await buildBlock(data, 3, seeds);
  const refused = await roll('--data', data, '--generation', '3', '--admin-url', strict.adminUrl);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /refused generation 3/);
  t.regex(refused.stderr, /EENTRIES|expects/);
  t.is((await resolveGeneration(data)).id, '1', 'current restored');
  t.true(fs.existsSync(generationDir(data, 3)), 'nothing deleted on failure');
});
