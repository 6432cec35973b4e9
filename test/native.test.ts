// Tests of the native addon against plain TypeScript references.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native, errorCode, type KernelPath, type LaneHandle, type LaneMemory } from '../src/native.js';
import { run } from './helpers.js';

// ---------- helpers ----------

const tempDirs: string[] = [];
test.after.always(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Deterministic bytes (xorshift32) so failures are reproducible. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

function randomBytes(len: number, seed: number): Buffer {
  const next = prng(seed);
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = next() & 0xff;
  return b;
}

function randomQuery(m: number, seed: number): Uint32Array {
  const next = prng(seed);
  const q = new Uint32Array(m);
  for (let i = 0; i < m; i++) q[i] = next();
  return q;
}

interface TestLane {
  data: Buffer;
  shards: string[];
  es: number;
  m: number;
  entries: number;
  shardSize: number;
}

/** Write `data` as shard files of `shardSize` bytes (last one shorter) into a fresh temp dir. */
function writeShards(data: Buffer, es: number, m: number, shardSize: number): TestLane {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-native-'));
  tempDirs.push(dir);
  const shards: string[] = [];
  for (let off = 0, i = 0; off < data.length; off += shardSize, i++) {
    const file = path.join(dir, `shard-${String(i).padStart(5, '0')}.bin`);
    fs.writeFileSync(file, data.subarray(off, Math.min(off + shardSize, data.length)));
    shards.push(file);
  }
  return { data, shards, es, m, entries: data.length / es, shardSize };
}

function open(l: TestLane, mode: LaneMemory = 'mmap'): Promise<LaneHandle> {
  return native.openLane({ shards: l.shards, entrySize: l.es, entries: l.entries, shardSize: l.shardSize, m: l.m, mode });
}

/** ans[t] = sum_c X[t][c] * q[c] mod 2^32, with X[r*es + b][c] = byte b of entry r*m + c. */
function refAnswer(l: TestLane, q: Uint32Array): Uint32Array {
  const R = Math.ceil(l.entries / l.m);
  const out = new Uint32Array(l.es * R);
  for (let r = 0; r < R; r++) {
    for (let b = 0; b < l.es; b++) {
      let acc = 0;
      for (let c = 0; c < l.m; c++) {
        const e = r * l.m + c;
        if (e >= l.entries) break;
        acc = (acc + Math.imul(l.data[e * l.es + b]!, q[c]!)) | 0;
      }
      out[r * l.es + b] = acc >>> 0;
    }
  }
  return out;
}

/** A rows [rowStart, rowStart+rowCount) with n words each, from node:crypto AES-128-CTR. */
function refExpandA(seed: Uint8Array, rowStart: number, rowCount: number, n: number): Uint32Array {
  const offset = rowStart * n * 4;
  const block = Math.floor(offset / 16);
  const skip = offset % 16;
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(block), 8);
  const cipher = crypto.createCipheriv('aes-128-ctr', seed, iv);
  const ks = cipher.update(Buffer.alloc(skip + rowCount * n * 4));
  const bytes = ks.subarray(skip);
  const out = new Uint32Array(rowCount * n);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readUInt32LE(4 * i);
  return out;
}

/** H = (X - 128) * A mod 2^32; cells past the last entry are X = 0. */
function refHint(l: TestLane, seed: Uint8Array, n: number): Uint32Array {
  const R = Math.ceil(l.entries / l.m);
  const A = refExpandA(seed, 0, l.m, n);
  const H = new Int32Array(l.es * R * n);
  for (let r = 0; r < R; r++) {
    for (let b = 0; b < l.es; b++) {
      const row = (r * l.es + b) * n;
      for (let c = 0; c < l.m; c++) {
        const e = r * l.m + c;
        const x = (e < l.entries ? l.data[e * l.es + b]! : 0) - 128;
        const arow = c * n;
        for (let j = 0; j < n; j++) H[row + j] = (H[row + j]! + Math.imul(x, A[arow + j]!)) | 0;
      }
    }
  }
  return new Uint32Array(H.buffer);
}

function firstDiff(a: Uint32Array, b: Uint32Array): string {
  if (a.length !== b.length) return `length ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `index ${i}: ${a[i]} != ${b[i]}`;
  return 'equal';
}

function sameWords(t: { is: (a: unknown, b: unknown, msg?: string) => void }, got: Uint32Array, want: Uint32Array, msg: string) {
  t.is(firstDiff(got, want), 'equal', msg);
}

const paths: KernelPath[] = native.cpuFeatures().paths;

// ---------- cpu ----------

test('cpuFeatures reports portable first and a best path it can run', (t) => {
  const f = native.cpuFeatures();
  t.is(f.paths[0], 'portable');
  t.true(f.paths.includes(f.best));
  t.is(typeof f.avx2, 'boolean');
  if (f.avx512) t.true(f.paths.includes('avx512'));
  if (f.avx2) t.true(f.paths.includes('avx2'));
});

// ---------- answer correctness ----------

interface Shape {
  name: string;
  es: number;
  m: number;
  entries: number;
  shardSize: number;
  seed: number;
}

const shapes: Shape[] = [
  // es 32, entries not a multiple of m, several shards, last one short
  { name: 'es32 m64 partial last row', es: 32, m: 64, entries: 1000, shardSize: 32 * 37, seed: 1 },
  // es 84, shardSize not a page multiple (84 * 1560 = 131040), m even
  { name: 'es84 m1024 shard 131040', es: 84, m: 1024, entries: 4000, shardSize: 131040, seed: 2 },
  // odd m: the last column of a row has no partner in its pair
  { name: 'es84 m33 odd m', es: 84, m: 33, entries: 700, shardSize: 84 * 25, seed: 3 },
  // one record row (m > entries), one shard
  { name: 'es32 one record row', es: 32, m: 64, entries: 10, shardSize: 32 * 10, seed: 4 },
  // small entries (< 16 bytes, exercises the padded-load tails) and odd shard boundaries
  { name: 'es5 m77', es: 5, m: 77, entries: 501, shardSize: 5 * 13, seed: 5 },
  { name: 'es17 m16', es: 17, m: 16, entries: 300, shardSize: 17 * 7, seed: 6 },
  { name: 'es200 m9', es: 200, m: 9, entries: 50, shardSize: 200 * 4, seed: 7 },
];

for (const s of shapes) {
  test(`answer matches reference: ${s.name} (every path, threads 1/2/7, mmap, memory and cache)`, async (t) => {
    const l = writeShards(randomBytes(s.entries * s.es, s.seed), s.es, s.m, s.shardSize);
    const queries = [randomQuery(s.m, s.seed * 10 + 1), randomQuery(s.m, s.seed * 10 + 2), randomQuery(s.m, s.seed * 10 + 3)];
    const want = queries.map((q) => refAnswer(l, q));
    for (const mode of ['mmap', 'memory', 'cache'] as const) {
      const lane = await open(l, mode);
      t.is(lane.rows, Math.ceil(s.entries / s.m));
      t.is(lane.bytes, s.entries * s.es);
      t.is(lane.mode, mode);
      for (const p of paths) {
        for (const threads of [1, 2, 7]) {
          const got = await lane.answer(queries, { path: p, threads });
          t.is(got.length, queries.length);
          for (let k = 0; k < queries.length; k++) sameWords(t, got[k]!, want[k]!, `${mode} ${p} threads=${threads} k=${k}`);
        }
      }
      await lane.release();
    }
  });
}

test('answer on all-0x00 and all-0xFF entries', async (t) => {
  const es = 32, m = 48, entries = 200;
  for (const fill of [0x00, 0xff]) {
    const l = writeShards(Buffer.alloc(entries * es, fill), es, m, es * 64);
    const ones = new Uint32Array(m).fill(0xffffffff);
    const queries = [ones, randomQuery(m, 99), new Uint32Array(m).fill(0x80008000)];
    const lane = await open(l);
    for (const p of paths) {
      const got = await lane.answer(queries, { path: p });
      for (let k = 0; k < queries.length; k++) sameWords(t, got[k]!, refAnswer(l, queries[k]!), `fill ${fill} ${p} k=${k}`);
    }
    await lane.release();
  }
});

test('batched answers (K = 1, 3, 8, 16) equal single answers', async (t) => {
  const es = 32, m = 128, entries = 3000;
  const l = writeShards(randomBytes(entries * es, 11), es, m, es * 500);
  const lane = await open(l);
  const all = Array.from({ length: 16 }, (_, i) => randomQuery(m, 1000 + i));
  for (const p of paths) {
    const single = await Promise.all(all.map(async (q) => (await lane.answer([q], { path: p }))[0]!));
    for (const K of [1, 3, 8, 16]) {
      const got = await lane.answer(all.slice(0, K), { path: p, threads: 2 });
      t.is(got.length, K);
      for (let k = 0; k < K; k++) sameWords(t, got[k]!, single[k]!, `${p} K=${K} k=${k}`);
    }
  }
  sameWords(t, (await lane.answer([all[5]!], { path: 'portable' }))[0]!, refAnswer(l, all[5]!), 'portable vs reference');
  await lane.release();
});

test('every path equals portable on a larger lane (es 32, m 16384, many shards)', async (t) => {
  const es = 32, m = 16384, entries = 70000; // 5 record rows, last partial
  const l = writeShards(randomBytes(entries * es, 12), es, m, 128 * 1024);
  const lane = await open(l);
  const queries = Array.from({ length: 5 }, (_, i) => randomQuery(m, 2000 + i));
  const want = await lane.answer(queries, { path: 'portable', threads: 1 });
  sameWords(t, want[0]!, refAnswer(l, queries[0]!), 'portable vs reference');
  for (const p of paths)
    for (const threads of [1, 2, 7]) {
      const got = await lane.answer(queries, { path: p, threads });
      for (let k = 0; k < queries.length; k++) sameWords(t, got[k]!, want[k]!, `${p} threads=${threads} k=${k}`);
    }
  await lane.release();
});

test('readEntry returns the entry bytes and rejects out-of-range indices', async (t) => {
  const es = 84, m = 10, entries = 100;
  const l = writeShards(randomBytes(entries * es, 13), es, m, es * 30);
  const lane = await open(l);
  for (const i of [0, 29, 30, 99]) t.deepEqual(lane.readEntry(i), l.data.subarray(i * es, (i + 1) * es));
  for (const bad of [100, -1, 1.5, NaN]) {
    const err = t.throws(() => lane.readEntry(bad));
    t.is(errorCode(err), 'EPARAMS');
  }
  await lane.release();
});

// ---------- hint and A ----------

test('expandA equals node:crypto aes-128-ctr', (t) => {
  const seed = crypto.randomBytes(16);
  sameWords(t, native.expandA(seed, 0, 3, 1024), refExpandA(seed, 0, 3, 1024), 'rowStart 0');
  sameWords(t, native.expandA(seed, 7, 5, 1024), refExpandA(seed, 7, 5, 1024), 'rowStart 7');
  sameWords(t, native.expandA(seed, 3, 4, 5), refExpandA(seed, 3, 4, 5), 'unaligned offset');
  t.is(native.expandA(seed, 0, 0, 16).length, 0);
  t.is(errorCode(t.throws(() => native.expandA(seed.subarray(0, 15), 0, 1, 16))), 'EPARAMS');
});

test('expandA counter carries across 64-bit boundary like a 128-bit big-endian integer', (t) => {
  const seed = crypto.randomBytes(16);
  // Row 2^28 with n = 1024 starts at block 2^36: still exact in a double.
  const row = 2 ** 28;
  sameWords(t, native.expandA(seed, row, 1, 1024), refExpandA(seed, row, 1, 1024), 'large rowStart');
});

const hintShapes = [
  { name: 'es32 m64 n1024', es: 32, m: 64, entries: 150, shardSize: 32 * 40, n: 1024, seed: 21 },
  { name: 'es84 m33 n48 (odd m)', es: 84, m: 33, entries: 70, shardSize: 84 * 16, n: 48, seed: 22 },
  { name: 'es3 m20 n16 one row', es: 3, m: 20, entries: 17, shardSize: 3 * 17, n: 16, seed: 23 },
];

for (const s of hintShapes) {
  test(`hint matches reference: ${s.name} (every path, threads 1 and 3)`, async (t) => {
    const l = writeShards(randomBytes(s.entries * s.es, s.seed), s.es, s.m, s.shardSize);
    const seed = crypto.randomBytes(16);
    const want = refHint(l, seed, s.n);
    const lane = await open(l);
    for (const p of paths)
      for (const threads of [1, 3]) {
        const got = await native.hint(lane, seed, s.n, { path: p, threads });
        t.is(got.length, s.es * lane.rows * s.n);
        sameWords(t, got, want, `${p} threads=${threads}`);
      }
    await lane.release();
  });
}

test('hint reports progress up to the total', async (t) => {
  const es = 32, m = 64, entries = 64 * 40 + 5;
  const l = writeShards(randomBytes(entries * es, 31), es, m, es * 256);
  const lane = await open(l);
  const calls: Array<[number, number]> = [];
  await native.hint(lane, crypto.randomBytes(16), 64, { onProgress: (d, tot) => calls.push([d, tot]) });
  t.true(calls.length >= 1);
  const last = calls[calls.length - 1]!;
  t.deepEqual(last, [lane.rows, lane.rows]);
  for (let i = 1; i < calls.length; i++) t.true(calls[i]![0] >= calls[i - 1]![0]);
  await lane.release();
});

test('hint validates seed and n', async (t) => {
  const l = writeShards(randomBytes(32 * 10, 32), 32, 8, 320);
  const lane = await open(l);
  t.is(errorCode(await t.throwsAsync(native.hint(lane, new Uint8Array(15), 16))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.hint(lane, new Uint8Array(16), 24))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.hint(lane, new Uint8Array(16), 0))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.hint({} as LaneHandle, new Uint8Array(16), 16))), 'EPARAMS');
  await lane.release();
});

// ---------- errors ----------

test('openLane: ESHARD_SIZE on a truncated shard, ESHARD_OPEN on a missing one, EPARAMS on bad params', async (t) => {
  const es = 32;
  const l = writeShards(randomBytes(es * 100, 41), es, 16, es * 30);
  fs.truncateSync(l.shards[1]!, es * 30 - 1);
  const err = await t.throwsAsync(open(l));
  t.is(errorCode(err), 'ESHARD_SIZE');
  t.true(err!.message.includes(path.basename(l.shards[1]!)), err!.message);

  const l2 = writeShards(randomBytes(es * 100, 42), es, 16, es * 30);
  fs.appendFileSync(l2.shards[3]!, Buffer.alloc(es)); // last shard too long
  t.is(errorCode(await t.throwsAsync(open(l2))), 'ESHARD_SIZE');

  const l3 = writeShards(randomBytes(es * 100, 43), es, 16, es * 30);
  fs.rmSync(l3.shards[2]!);
  t.is(errorCode(await t.throwsAsync(open(l3))), 'ESHARD_OPEN');

  const l4 = writeShards(randomBytes(es * 100, 44), es, 16, es * 30);
  const base = { shards: l4.shards, entrySize: es, entries: 100, shardSize: es * 30, m: 16, mode: 'mmap' as const };
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, shardSize: es * 30 + 1 }))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, entrySize: 0 }))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, m: 0 }))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, mode: 'disk' as 'mmap' }))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, entries: 101 }))), 'ESHARD_SIZE');
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...base, shards: l4.shards.slice(0, 3) }))), 'ESHARD_SIZE');
});

test('answer: EQUERY_SIZE on a wrong length, EPARAMS on K = 0 / 17 or a bad path', async (t) => {
  const l = writeShards(randomBytes(32 * 50, 51), 32, 16, 32 * 50);
  const lane = await open(l);
  t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(15)]))), 'EQUERY_SIZE');
  t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(16), new Uint32Array(17)]))), 'EQUERY_SIZE');
  t.is(errorCode(await t.throwsAsync(lane.answer([]))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(lane.answer(Array.from({ length: 17 }, () => new Uint32Array(16))))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(lane.answer([new Int32Array(16) as unknown as Uint32Array]))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(16)], { threads: 0 }))), 'EPARAMS');
  t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(16)], { path: 'sse9' as KernelPath }))), 'EPARAMS');
  const missing = (['avx2', 'avx512'] as const).filter((p) => !paths.includes(p));
  for (const p of missing) t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(16)], { path: p }))), 'ECPU');
  await lane.release();
});

test.serial('ERELEASED after release(); release is idempotent and frees the mapping', async (t) => {
  const before = native.mappingStats();
  const l = writeShards(randomBytes(32 * 50, 61), 32, 16, 32 * 20);
  const lane = await open(l);
  t.like(native.mappingStats(), { lanes: before.lanes + 1, bytes: before.bytes + 32 * 50 });
  await lane.warm();
  t.false(lane.released);
  await lane.release();
  await lane.release();
  t.true(lane.released);
  t.like(native.mappingStats(), { lanes: before.lanes, bytes: before.bytes });
  t.is(errorCode(await t.throwsAsync(lane.answer([new Uint32Array(16)]))), 'ERELEASED');
  t.is(errorCode(await t.throwsAsync(lane.warm())), 'ERELEASED');
  t.is(errorCode(await t.throwsAsync(native.hint(lane, new Uint8Array(16), 16))), 'ERELEASED');
  t.is(errorCode(t.throws(() => lane.readEntry(0))), 'ERELEASED');
  t.is(lane.entries, 50); // metadata stays readable
});

test.serial('the mapping stays valid while a kernel call runs even if the JS handle is released', async (t) => {
  const before = native.mappingStats();
  const es = 32, m = 16384;
  const size = 64 * 1024 * 1024;
  const l = writeShards(randomBytes(size, 71), es, m, 128 * 1024);
  const queries = [randomQuery(m, 72), randomQuery(m, 73)];

  const lane = await open(l, 'mmap');
  t.is(native.mappingStats().lanes, before.lanes + 1);
  const pending = lane.answer(queries, { path: 'portable', threads: 1 }); // slowest path: still running at release()
  const pendingHint = native.hint(lane, new Uint8Array(16), 16, { threads: 1 });
  await lane.release();
  t.true(lane.released);
  t.is(native.mappingStats().lanes, before.lanes + 1, 'running calls keep the mapping');
  const got = await pending;
  await pendingHint;
  t.like(native.mappingStats(), { lanes: before.lanes, bytes: before.bytes }, 'unmapped after the last call finished');

  const check = await open(l, 'memory');
  const want = await check.answer(queries);
  await check.release();
  for (let k = 0; k < queries.length; k++) sameWords(t, got[k]!, want[k]!, `k=${k}`);
  t.like(native.mappingStats(), { lanes: before.lanes, bytes: before.bytes });
});

test('readBandwidth reads the lane', async (t) => {
  const l = writeShards(randomBytes(32 * 1000, 81), 32, 64, 32 * 100);
  const lane = await open(l);
  const r = await native.readBandwidth(lane, 2, 3);
  t.is(r.bytes, 32 * 1000 * 3);
  t.true(r.seconds >= 0);
  await lane.release();
});

/** A copy of lane `l` in a new directory: every shard hard-linked except `changed`, which get new bytes (an incremental generation). */
function childLane(l: TestLane, changed: number[], seed: number): TestLane {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-native-'));
  tempDirs.push(dir);
  const data = Buffer.from(l.data);
  const shards = l.shards.map((f, i) => {
    const file = path.join(dir, path.basename(f));
    if (changed.includes(i)) {
      const bytes = randomBytes(fs.statSync(f).size, seed + i);
      bytes.copy(data, i * l.shardSize);
      fs.writeFileSync(file, bytes);
    } else {
      fs.linkSync(f, file);
    }
    return file;
  });
  return { ...l, data, shards };
}

test.serial('cache mode: a child generation reuses its parent\'s unchanged shards and reads only the changed ones', async (t) => {
  const es = 32, m = 64, shardSize = es * 50;
  const parent = writeShards(randomBytes(es * 1000, 91), es, m, shardSize); // 20 shards
  const child = childLane(parent, [3, 19], 92);
  const queries = [randomQuery(m, 93), randomQuery(m, 94)];
  const c0 = native.mappingStats().cache;
  const a = await open(parent, 'cache');
  const c1 = native.mappingStats().cache;
  t.is(c1.misses - c0.misses, 20);
  t.is(c1.shards - c0.shards, 20);
  const b = await open(child, 'cache');
  const c2 = native.mappingStats().cache;
  t.is(c2.hits - c1.hits, 18, 'unchanged (hard-linked) shards come from the cache');
  t.is(c2.misses - c1.misses, 2, 'only the changed shards are read');
  t.is(c2.shards - c0.shards, 22, 'each distinct shard is held once');
  for (const [lane, l] of [[a, parent], [b, child]] as const) {
    const got = await lane.answer(queries);
    for (let k = 0; k < queries.length; k++) sameWords(t, got[k]!, refAnswer(l, queries[k]!), `k=${k}`);
  }
  // The parent goes; the child keeps the shared buffers and answers the same.
  await a.release();
  t.is(native.mappingStats().cache.shards - c0.shards, 20);
  const again = await b.answer(queries);
  for (let k = 0; k < queries.length; k++) sameWords(t, again[k]!, refAnswer(child, queries[k]!), `after release k=${k}`);
  await b.release();
  const c3 = native.mappingStats().cache;
  t.is(c3.shards, c0.shards);
  t.is(c3.liveBytes, c0.liveBytes);
  t.is(c3.regionBytes, c0.regionBytes, 'regions are unmapped when their last shard goes');
});

test.serial('cache mode: uneven segments (a lone first shard, the rest coalesced) are found by search, never by stride', async (t) => {
  // The child's shard 0 is its parent's (slot 0 of the parent's region); shards 1 and 2 are
  // new and land side by side in that region's free slots: segments of 1 and 2 shards.
  const es = 32, m = 16, shardSize = es * 64;
  const parent = writeShards(randomBytes(es * 192, 96), es, m, shardSize);
  const child = childLane(parent, [1, 2], 97);
  const a = await open(parent, 'cache');
  const b = await open(child, 'cache');
  const queries = [randomQuery(m, 98)];
  for (const [lane, l] of [[a, parent], [b, child]] as const) {
    for (const threads of [1, 3]) {
      const got = await lane.answer(queries, { threads });
      sameWords(t, got[0]!, refAnswer(l, queries[0]!), `threads=${threads}`);
    }
    for (const i of [0, 63, 64, 130, 191]) t.deepEqual(lane.readEntry(i), l.data.subarray(i * es, (i + 1) * es), `entry ${i}`);
  }
  await a.release();
  await b.release();
});

test.serial('cache mode: a buffer is reused only for the same checksum (content ids)', async (t) => {
  const es = 32, m = 64, shardSize = es * 50;
  const l = writeShards(randomBytes(es * 200, 95), es, m, shardSize);
  const ids = l.shards.map((_, i) => `sha-${i}`);
  const opts = { shards: l.shards, entrySize: es, entries: 200, shardSize, m, mode: 'cache' as const };
  const c0 = native.mappingStats().cache;
  const a = await native.openLane({ ...opts, contentIds: ids });
  const b = await native.openLane({ ...opts, contentIds: ids.map((id, i) => (i === 1 ? 'other' : id)) });
  const c1 = native.mappingStats().cache;
  t.is(c1.hits - c0.hits, 3);
  t.is(c1.misses - c0.misses, 5);
  t.is(errorCode(await t.throwsAsync(native.openLane({ ...opts, contentIds: ['x'] }))), 'EPARAMS');
  await a.release();
  await b.release();
});

test('LANEPIR_KERNEL_PATH forces the kernel path: the forced AVX2 path answers and builds hints exactly like the portable one', async (t) => {
  const forced = native.cpuFeatures().avx2 ? 'avx2' : 'portable'; // a machine without AVX2 still checks the mechanism
  const es = 32, m = 256;
  const l = writeShards(randomBytes(es * 5000, 111), es, m, es * 700);
  const queries = [randomQuery(m, 112), randomQuery(m, 113), randomQuery(m, 114)];
  const seed = new Uint8Array(16).fill(7);
  const script = `
    const { native } = await import(${JSON.stringify(path.resolve('dist/src/native.js'))});
    const [shards, m, es, entries, queries] = JSON.parse(process.argv[1]);
    const lane = await native.openLane({ shards, entrySize: es, entries, shardSize: es * 700, m, mode: 'cache' });
    let bad = null, answers = [], hint = new Uint32Array(0);
    try {
      answers = await lane.answer(queries.map((q) => Uint32Array.from(q)));
      hint = await native.hint(lane, new Uint8Array(16).fill(7), 64, { threads: 2 });
    } catch (e) { bad = e.code; }
    const f = native.cpuFeatures();
    process.stdout.write(JSON.stringify({ default: f.default, forced: f.forced, bad, answers: answers.map((a) => Buffer.from(a.buffer).toString('hex')), hint: Buffer.from(hint.buffer).toString('hex') }));
    await lane.release();
  `;
  const arg = JSON.stringify([l.shards, m, es, l.entries, queries.map((q) => Array.from(q))]);
  const child = (kernelPath: string, env: Record<string, string> = {}) =>
    run(process.execPath, ['--input-type=module', '-e', script, arg], { env: { ...process.env, LANEPIR_KERNEL_PATH: kernelPath, ...env } });
  const lane = await open(l, 'mmap');
  const portable = await lane.answer(queries, { path: 'portable' });
  const hint = await native.hint(lane, seed, 64, { path: 'portable', threads: 1 });
  await lane.release();
  // With and without the VNNI flavour (AVX-VNNI machines run vpdpwssd on the AVX2 path).
  for (const env of [{}, { LANEPIR_NO_VNNI: '1' }] as Record<string, string>[]) {
    const r = await child(forced, env);
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { default: string; forced: string; bad: string | null; answers: string[]; hint: string };
    t.is(out.default, forced);
    t.is(out.forced, forced);
    t.is(out.bad, null);
    t.deepEqual(out.answers, portable.map((a) => Buffer.from(a.buffer).toString('hex')), `${forced} ${JSON.stringify(env)} answers == portable`);
    t.is(out.hint, Buffer.from(hint.buffer).toString('hex'), `${forced} ${JSON.stringify(env)} hint == portable`);
  }
  // A path that does not exist fails every kernel call that relies on the default (it is never silently replaced).
  const wrong = await child('sse9');
  t.is(wrong.code, 0, wrong.stderr);
  t.like(JSON.parse(wrong.stdout), { default: null, forced: 'sse9' });
  t.regex(wrong.stdout, /"bad":"EPARAMS"/);
});
