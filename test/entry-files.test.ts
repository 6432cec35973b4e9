// Entry and update files (issue 8): one schema and one streaming reader for
// build, incremental build and follow; the format is stated or detected from
// the content, never guessed from the name alone; unknown keys are refused
// everywhere; an inherited m is announced, and refused when it does not suit
// the lane.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseUpdates } from '../src/follow/updates.js';
import { detectFormat, readChanges, readUpdatesFile } from '../src/store/entry-files.js';
import { generationDir, hintPath } from '../src/store/layout.js';
import { readManifest } from '../src/store/manifest.js';
import { cli, rmrf, tempDir } from './helpers.js';

const v = (b: number, size = 32) => '0x' + Buffer.alloc(size, b).toString('hex');
const line = (o: object) => JSON.stringify(o) + '\n';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('build: JSON Lines in a file without a .jsonl name is read as JSON Lines, and says so', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  // 3 changes padded to a multiple of 32 bytes: read as raw bytes it would be a "valid" lane of garbage.
  let text = line({ index: 1, value: v(0x11) }) + line({ index: 4, value: v(0x44) }) + line({ index: 2, value: v(0x22) });
  text += ' '.repeat(32 - (text.length % 32) - 1) + '\n';
  t.is(text.length % 32, 0);
  const file = path.join(data, 'entries.dat');
  fs.writeFileSync(file, text);
  const r = await cli('build', '--data', data, '--block', '1', '--hot-entries', file, '--quiet');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /hot: 5 x 32 B/);
  t.regex(r.stderr, /reading .*entries\.dat as JSON Lines \(detected from its content/);
  const inspect = async (i: number) => (await cli('inspect', '--data', data, '--generation', '1', '--lane', 'hot', '--index', String(i))).stdout.trim();
  t.is(await inspect(4), v(0x44));
  t.is(await inspect(3), v(0));
});

test('build: a name that contradicts the content is an error; --format states the format', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const json = path.join(data, 'entries.bin');
  const one = JSON.stringify({ index: 0, value: v(1) });
  fs.writeFileSync(json, one.padEnd(Math.ceil((one.length + 1) / 32) * 32 - 1, ' ') + '\n'); // a whole number of 32-byte "entries"
  t.is(fs.statSync(json).size % 32, 0);
  const r1 = await cli('build', '--data', data, '--block', '1', '--hot-entries', json, '--quiet');
  t.is(r1.code, 1);
  t.regex(r1.stderr, /entries\.bin: the name says binary but the content is JSON Lines .*--format jsonl .*\[EFORMAT\]/);
  const bin = path.join(data, 'entries.jsonl');
  fs.writeFileSync(bin, Buffer.alloc(32 * 10, 0x07));
  const r2 = await cli('build', '--data', data, '--block', '1', '--cold-entries', bin, '--quiet');
  t.is(r2.code, 1);
  t.regex(r2.stderr, /entries\.jsonl: the name says JSON Lines but the content is not \(its first byte is 0x07, not "\{"\); give --format binary/);
  t.false(fs.existsSync(generationDir(data, 1)));
  // Stated formats are taken as stated.
  const r3 = await cli('build', '--data', data, '--block', '1', '--cold-entries', bin, '--format', 'binary', '--quiet');
  t.is(r3.code, 0, r3.stderr);
  t.regex(r3.stdout, /cold: 10 x 32 B/);
  const r4 = await cli('build', '--data', data, '--block', '2', '--hot-entries', json, '--format', 'jsonl', '--quiet');
  t.is(r4.code, 0, r4.stderr);
  t.regex(r4.stdout, /hot: 1 x 32 B/);
  const r5 = await cli('build', '--data', data, '--block', '3', '--hot-entries', json, '--format', 'csv');
  t.is(r5.code, 2);
  t.regex(r5.stderr, /--format must be jsonl or binary, got "csv"/);
});

test('unknown keys are refused with file:line in build, incremental build and follow', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const entries = path.join(data, 'entries.jsonl');
  fs.writeFileSync(entries, line({ index: 0, value: v(1) }) + line({ index: 1, value: v(2), balance: 5 }));
  const r1 = await cli('build', '--data', data, '--block', '1', '--hot-entries', entries, '--quiet');
  t.is(r1.code, 1);
  t.regex(r1.stderr, /entries\.jsonl:2: unknown key "balance"/);

  t.is((await cli('build', '--data', data, '--block', '1', '--hot-synthetic', '100', '--quiet')).code, 0);
  const updates = path.join(data, 'updates.jsonl');
  fs.writeFileSync(updates, line({ index: 3, value: v(3) }) + '\n' + line({ index: 4, value: v(4), Value: v(5) }));
  const r2 = await cli('build', '--data', data, '--block', '2', '--from-generation', '1', '--hot-updates', updates, '--quiet');
  t.is(r2.code, 1);
  t.regex(r2.stderr, /updates\.jsonl:3: unknown key "Value"/);
  // A "lane" that names another lane than the flag's.
  fs.writeFileSync(updates, line({ lane: 'hot', index: 3, value: v(3) }) + line({ lane: 'cold', index: 4, value: v(4) }));
  const r3 = await cli('build', '--data', data, '--block', '2', '--from-generation', '1', '--hot-updates', updates, '--quiet');
  t.is(r3.code, 1);
  t.regex(r3.stderr, /updates\.jsonl:2: "lane" is "cold" in a file of hot entries/);
  t.false(fs.existsSync(generationDir(data, 2)));

  await t.throwsAsync(parseUpdates(line({ lane: 'hot', index: 1, value: v(1) }) + line({ lane: 'hot', index: 2, value: v(2), extra: true }), '7.jsonl', { hot: 32 }), {
    message: /^7\.jsonl:2: unknown key "extra"/,
  });
  await t.throwsAsync(parseUpdates(line({ index: 1, value: v(1) }), '7.jsonl', { hot: 32 }), { message: /^7\.jsonl:1: "lane" is missing/ });
  await t.throwsAsync(parseUpdates(line({ lane: 'hot', index: 1, value: v(1) }).trimEnd(), '7.jsonl', { hot: 32 }), { message: /7\.jsonl:1: the last line is not terminated/ });
  await t.throwsAsync(parseUpdates(Buffer.alloc(80), '7.jsonl', { hot: 32 }), { message: /7\.jsonl: the name says JSON Lines but the content is not/ });
  const ok = await parseUpdates(line({ lane: 'hot', index: 1, value: v(1) }) + '\r\n' + line({ lane: 'cold', index: 2, value: v(2, 8) }).replace('\n', '\r\n'), '7.jsonl', { hot: 32, cold: 8 });
  t.deepEqual(ok.hot?.get(1), Buffer.alloc(32, 1));
  t.deepEqual(ok.cold?.get(2), Buffer.alloc(8, 2));
});

test('format detection: content first, names must agree, the flag wins', (t) => {
  const json = Buffer.from(line({ index: 0, value: v(0) }));
  const record = Buffer.alloc(40);
  record.writeBigUInt64LE(0x0a7bn); // "{" then "\n": still binary (the index's top byte is 0)
  t.deepEqual(detectFormat('a', json), { format: 'jsonl', by: 'content' });
  t.deepEqual(detectFormat('a.JSONL', json), { format: 'jsonl', by: 'name and content' });
  t.deepEqual(detectFormat('a', record), { format: 'binary', by: 'content' });
  t.deepEqual(detectFormat('a.bin', record), { format: 'binary', by: 'name and content' });
  t.deepEqual(detectFormat('a.bin', Buffer.alloc(0)), { format: 'binary', by: 'name' });
  t.deepEqual(detectFormat('a', Buffer.from(' \n')), { format: 'jsonl', by: 'content' });
  t.deepEqual(detectFormat('a.bin', json, 'jsonl'), { format: 'jsonl', by: 'flag' });
  t.deepEqual(detectFormat('a.jsonl', record, 'binary'), { format: 'binary', by: 'flag' });
  t.deepEqual(detectFormat('a', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json])), { format: 'jsonl', by: 'content' });
  t.throws(() => detectFormat('a.json', record), { code: 'EFORMAT', message: /has a NUL byte at offset|first byte is/ } as never);
  t.throws(() => detectFormat('a.bin', json), { code: 'EFORMAT' } as never);
});

test('the reader streams large files: lines and records across chunk boundaries, last value wins', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const count = 60_000; // ~5.6 MB of JSON Lines, 2.4 MB of records: several 1 MiB chunks
  const expected = new Map<number, Buffer>();
  const lines: string[] = [];
  const records = Buffer.alloc(count * 40);
  for (let k = 0; k < count; k++) {
    const index = (k * 7919) % 50_000; // repeats: the later value wins
    const value = Buffer.alloc(32, k % 251);
    value.writeUInt32LE(k, 0);
    expected.set(index, value);
    lines.push(JSON.stringify({ index, value: '0x' + value.toString('hex') }));
    records.writeBigUInt64LE(BigInt(index), k * 40);
    value.copy(records, k * 40 + 8);
  }
  const jsonl = path.join(dir, 'u.jsonl');
  fs.writeFileSync(jsonl, lines.join('\n'));
  const bin = path.join(dir, 'u.bin');
  fs.writeFileSync(bin, records);
  t.deepEqual(await readUpdatesFile(jsonl, 'hot', 32), expected);
  t.deepEqual(await readUpdatesFile(bin, 'hot', 32), expected);
  const changes = await collect(readChanges(jsonl, { lane: 'hot', entrySizes: { hot: 32 } }));
  t.is(changes.length, count);
  t.is(changes[count - 1]!.where, `${jsonl}:${count}`);

  // Binary content read as JSON Lines: a clear error at line 1, not a 3 MB line in memory.
  const blob = path.join(dir, 'blob');
  fs.writeFileSync(blob, Buffer.alloc(3 << 20, 0x7b));
  await t.throwsAsync(readUpdatesFile(blob, 'hot', 32, { format: 'jsonl' }), { message: /blob:1: line longer than \d+ bytes/ });
  // Not a regular file.
  await t.throwsAsync(readUpdatesFile(dir, 'hot', 32), { message: /is not a regular file|EISDIR/ });
});

test('build: an inherited m is announced, and not kept when it does not suit the lane (no 25 MiB hint for 200 entries)', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const build = (block: number, ...args: string[]) => cli('build', '--data', data, '--block', String(block), '--quiet', ...args);
  const lane = async (block: number) => (await readManifest(generationDir(data, block))).lanes.hot!;

  t.is((await build(1, '--hot-synthetic', '1')).code, 0);
  t.is((await lane(1)).m, 1);
  const r2 = await build(2, '--hot-synthetic', '200');
  t.is(r2.code, 0, r2.stderr);
  t.is((await lane(2)).m, 200);
  t.is((await lane(2)).params_version, 2);
  t.true(fs.statSync(hintPath(generationDir(data, 2), 'hot')).size <= 128 * 1024);
  t.regex(r2.stderr, /hot: not keeping m = 1 of generation 1: for 200 entries it would make the hint 25\.0 MiB instead of 128 KiB; m = 200 \(the default\), params_version 2/);

  const r3 = await build(3, '--hot-synthetic', '300');
  t.is((await lane(3)).m, 200);
  t.is((await lane(3)).seed, (await lane(2)).seed);
  t.is((await lane(3)).params_version, 2);
  t.regex(r3.stderr, /hot: keeping m = 200 and the seed of generation 2 \(a lane keeps its parameters across generations; params_version 2\)/);

  // m far larger than the entry count: the query would be 64 KiB instead of 200 B.
  t.is((await build(4, '--hot-synthetic', '40000')).code, 0);
  t.is((await lane(4)).m, 16384);
  const r5 = await build(5, '--hot-synthetic', '50');
  t.is((await lane(5)).m, 50);
  t.regex(r5.stderr, /not keeping m = 16384 of generation 4: for 50 entries it would make each query 64 KiB instead of 200 B/);

  // --fresh-seed bumps params_version (it used to start over at 1).
  const r6 = await build(6, '--hot-synthetic', '50', '--fresh-seed');
  t.not((await lane(6)).seed, (await lane(5)).seed);
  t.is((await lane(6)).params_version, (await lane(5)).params_version + 1);
  t.regex(r6.stderr, /--fresh-seed: new seed/);
});
