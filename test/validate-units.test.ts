// Validation building blocks: the addon's hashFiles and openLane checks, the
// checksum cache, the worker-side digest confirmation, manifest file names.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errorCode, native } from '../src/native.js';
import { ChecksumCache } from '../src/store/checksums.js';
import { type FileIdentity } from '../src/store/files.js';
import { loadGeneration } from '../src/store/generation.js';
import { generationDir, hintPath, manifestPath, shardPath } from '../src/store/layout.js';
import { verifyGeneration } from '../src/store/verify.js';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, serve } from './server-helpers.js';
import { fifoAt, flipByte, unblockFifo } from './validate-helpers.js';

test('cluster worker paths: a prepare with the primary digest maps without hashing and refuses other files; a reload without one hashes', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  await buildBlock(data, 3, seeds);
  const server = await serve(data);
  t.teardown(() => server.close());
  const primary = await serve(data); // stands in for the primary's validator
  t.teardown(() => primary.close());
  const v2 = await primary.reloader.validator.validate(generationDir(data, 2), []);
  t.true(v2.validation!.hashed_files > 0);

  const wrong = await t.throwsAsync(server.reloader.prepare('2', { digest: 'f'.repeat(64) }));
  t.is((wrong as { code?: string }).code, 'EFILE_CHANGED');
  const cached = server.reloader.validator.cache.size;
  const snap = await server.reloader.prepare('2', { digest: v2.digest });
  t.is(snap.id, '2');
  t.is(server.reloader.validator.cache.size, cached, 'the worker hashed nothing');
  server.reloader.abort('2');

  // Files replaced after the primary validated: the digest no longer matches.
  const v3 = await primary.reloader.validator.validate(generationDir(data, 3), []);
  const shard = shardPath(generationDir(data, 3), 'hot', 1);
  const copy = fs.readFileSync(shard);
  fs.rmSync(shard);
  fs.writeFileSync(shard, copy);
  const changed = await t.throwsAsync(server.reloader.prepare('3', { digest: v3.digest }));
  t.is((changed as { code?: string }).code, 'EFILE_CHANGED');
  // The worker's own fallback (followSegment -> reload without a digest) validates in full.
  flipByte(shard, 3);
  const full = await t.throwsAsync(server.reloader.reload('3'));
  t.is((full as { code?: string }).code, 'ECHECKSUM');
  const ok = await server.reloader.reload('2');
  t.true(ok.validation!.hashed_files > 0);
});

test('native: hashFiles and openLane never block on a FIFO, refuse non-regular files and insist on the validated inode', async (t) => {
  const dir = tempDir();
  t.teardown(() => {
    unblockFifo(path.join(dir, 'fifo'));
    rmrf(dir);
  });
  const file = path.join(dir, 'a.bin');
  fs.writeFileSync(file, Buffer.alloc(3 * 2 ** 20 + 5, 1));
  const digest = await native.hashFiles([file, file], { threads: 2 }).promise;
  const want = crypto.createHash('sha256').update(fs.readFileSync(file)).digest();
  t.deepEqual(digest.subarray(0, 32), want);
  t.deepEqual(digest.subarray(32, 64), want);
  fs.writeFileSync(path.join(dir, 'fifo'), '');
  fifoAt(path.join(dir, 'fifo'));
  t.is(errorCode(await t.throwsAsync(native.hashFiles([path.join(dir, 'fifo')]).promise)), 'ENOT_REGULAR');
  t.is(errorCode(await t.throwsAsync(native.hashFiles(['/dev/zero']).promise)), 'ENOT_REGULAR');
  t.is(errorCode(await t.throwsAsync(native.hashFiles([dir]).promise)), 'ENOT_REGULAR');
  const st = fs.statSync(file, { bigint: true });
  const id = { dev: st.dev, ino: st.ino, size: Number(st.size), mtimeNs: st.mtimeNs };
  t.is((await native.hashFiles([file], { expect: [id] }).promise).length, 32);
  t.is(errorCode(await t.throwsAsync(native.hashFiles([file], { expect: [{ ...id, ino: id.ino + 1n }] }).promise)), 'EFILE_CHANGED');
  // Enough work (1.5 GiB) that the cancel lands while it runs.
  const job = native.hashFiles(Array(500).fill(file));
  job.cancel();
  t.is(errorCode(await t.throwsAsync(job.promise)), 'ECANCELED');

  const lane = { entrySize: 32, entries: 1024, shardSize: 32 * 1024, m: 32, mode: 'mmap' as const };
  const shard = path.join(dir, 'shard.bin');
  fs.writeFileSync(shard, Buffer.alloc(32 * 1024, 3));
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...lane, shards: [path.join(dir, 'fifo')] }))), 'ENOT_REGULAR');
  const sst = fs.statSync(shard, { bigint: true });
  const sid = { dev: sst.dev, ino: sst.ino, size: Number(sst.size), mtimeNs: sst.mtimeNs };
  const h = await native.openLane({ ...lane, shards: [shard], expect: [sid] });
  await h.release();
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...lane, shards: [shard], expect: [{ ...sid, mtimeNs: sid.mtimeNs + 1n }] }))), 'EFILE_CHANGED');
});

test('ChecksumCache: stale on a new mtime, size or birth time; bounded by generations', (t) => {
  const cache = new ChecksumCache(2);
  const id = (ino: number, extra: Partial<FileIdentity> = {}): FileIdentity => ({ dev: 1n, ino: BigInt(ino), size: 100, mtimeNs: 5n, birthtimeNs: 4n, ...extra });
  cache.record('1', [
    { identity: id(1), sha256: 'a' },
    { identity: id(2), sha256: 'b' },
  ]);
  t.is(cache.lookup(id(1)), 'a');
  t.is(cache.lookup(id(1, { mtimeNs: 6n })), undefined);
  t.is(cache.lookup(id(1, { size: 101 })), undefined);
  t.is(cache.lookup(id(1, { birthtimeNs: 9n })), undefined, 'an inode number reused for a new file');
  t.is(cache.lookup(id(1, { dev: 2n })), undefined);
  cache.record('2', [
    { identity: id(1), sha256: 'a' },
    { identity: id(3), sha256: 'c' },
  ]);
  cache.record('3', [{ identity: id(1), sha256: 'a' }]);
  // Generation 1 dropped out: inode 2 (only in 1) is forgotten, inode 1 (in 2 and 3) is kept.
  t.is(cache.lookup(id(2)), undefined);
  t.is(cache.lookup(id(1)), 'a');
  t.is(cache.lookup(id(3)), 'c');
  t.is(cache.size, 2);
  cache.record('4', []);
  t.is(cache.lookup(id(3)), undefined);
  t.is(cache.size, 1);
});

test('manifests naming files outside the generation, and verify on a FIFO, are refused', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  const m = JSON.parse(fs.readFileSync(manifestPath(generationDir(data, 1)), 'utf8'));
  m.files['hot/../../../../etc/passwd'] = { size: 1, sha256: '0'.repeat(64) };
  fs.rmSync(manifestPath(generationDir(data, 1)));
  fs.writeFileSync(manifestPath(generationDir(data, 1)), JSON.stringify(m));
  const err = await t.throwsAsync(loadGeneration(generationDir(data, 1)));
  t.is((err as { code?: string }).code, 'EMANIFEST');
  fifoAt(hintPath(generationDir(data, 2), 'cold'));
  t.teardown(() => unblockFifo(hintPath(generationDir(data, 2), 'cold')));
  const v = await t.throwsAsync(verifyGeneration(generationDir(data, 2)));
  t.is((v as { code?: string }).code, 'ENOT_REGULAR');
});
