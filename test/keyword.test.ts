// Keyword lanes without a server: the hash contract, placement, full and
// incremental builds, private reads through the kernel, grinding.
import test from 'ava';
import crypto from 'node:crypto';
import path from 'node:path';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { native } from '../src/native.js';
import { PirClient, PirClientError } from '../src/pir/client.js';
import { parseCrs } from '../src/pir/crs.js';
import { candidateColumns, decodeKeyword, keywordHash, keywordQueries, locateKey } from '../src/pir/keyword.js';
import { littleEndianWords, wordsToLittleEndian } from '../src/pir/prg.js';
import { buildGeneration } from '../src/store/builder.js';
import { type KeywordRecord, PlacementCache, hashKeys, loadPlacement } from '../src/store/keyword-builder.js';
import { KeywordTable, TagConflictError, checkTags, hashWords, planKeywordLane } from '../src/store/keyword-placement.js';
import { loadGeneration } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { verifyGeneration } from '../src/store/verify.js';
import { referenceAnswer, referenceLane, rmrf, tempDir } from './helpers.js';
import { grindKeys, hex, laneBytes, laneClient, plainLookup, privateLookup, randomRecords } from './keyword-helpers.js';

test('hash contract: native keccak equals @noble/hashes; candidate columns are u64le(h[8+8j..]) mod m', (t) => {
  for (const len of [0, 1, 21, 53, 119, 120, 135, 136, 137, 300]) {
    const seed = crypto.randomBytes(16);
    const key = crypto.randomBytes(len);
    const noble = keccak_256(Buffer.concat([seed, key]));
    t.is(hex(native.keccakBatch(seed, key, new Uint32Array([0, len]))), hex(noble), `length ${len}`);
    t.is(hex(keywordHash(seed, key)), hex(noble));
  }
  // Known vector: keccak256("") (Ethereum's, not SHA3-256's).
  t.is(hex(keccak_256(new Uint8Array(0))), 'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470');
  for (let i = 0; i < 200; i++) {
    const h = crypto.randomBytes(32);
    const m = 1 + crypto.randomInt(1 << 20);
    const want = [0, 1, 2].map((j) => Number(h.readBigUInt64LE(8 + 8 * j) % BigInt(m)));
    t.deepEqual(candidateColumns(h, 3, m), want);
    // The builder's word arithmetic agrees (a smaller m keeps the table small).
    const small = 1 + (m % 4096);
    const table = KeywordTable.create(small, 3, 1);
    t.deepEqual(table.candidates(hashWords(h)), [...new Set([0, 1, 2].map((j) => Number(h.readBigUInt64LE(8 + 8 * j) % BigInt(small))))]);
  }
});

test('crs: keyword fields are validated', (t) => {
  const base = {
    scheme: 'simplepir', n: 1024, q_bits: 32, p: 256, sigma: 6.4, m: 10, R: 4, entry_size: 40, entries: 40,
    seed: '00'.repeat(16), prg: 'aes-128-ctr', hint_sha256: '00'.repeat(32),
  };
  t.notThrows(() => parseCrs({ ...base, layout: 'keyword', key_seed: '11'.repeat(16), bucket_choices: 2 }));
  t.notThrows(() => parseCrs({ ...base, entry_size: 32, entries: 37, layout: 'index' }));
  t.throws(() => parseCrs({ ...base, layout: 'keyword', key_seed: '11'.repeat(16), bucket_choices: 4 }), { message: /bucket_choices/ });
  t.throws(() => parseCrs({ ...base, layout: 'keyword', key_seed: 'xyz', bucket_choices: 2 }), { message: /key_seed/ });
  t.throws(() => parseCrs({ ...base, layout: 'keyword', key_seed: '11'.repeat(16), bucket_choices: 2, entries: 39 }), { message: /m \* R/ });
  t.throws(() => parseCrs({ ...base, entry_size: 32, layout: 'keyword', key_seed: '11'.repeat(16), bucket_choices: 2 }), { message: /entry_size/ });
  t.throws(() => parseCrs({ ...base, layout: 'rows' }), { message: /layout/ });
  t.throws(() => parseCrs({ ...base, key_seed: '11'.repeat(16) }), { message: /keyword lanes/ });
});

test('placement plan: load at least 0.8 with headroom; tall columns; m bounded', (t) => {
  for (const keys of [1, 100, 5000, 1_000_000, 10_000_000, 200_000_000]) {
    const p = planKeywordLane(keys);
    const load = keys / (p.m * p.R);
    t.true(p.m * p.R >= keys, `${keys} keys fit`);
    if (keys >= 100) t.true(load >= 0.8 && load <= 0.86, `${keys}: load ${load}`);
    t.true(p.m <= 2 ** 20);
    // Short columns get a third choice against grinding; 1024-row columns absorb it with two.
    t.is(p.d, p.R >= 1024 ? 2 : 3);
  }
  t.is(planKeywordLane(10_000_000).m, 16384);
  t.is(planKeywordLane(200_000_000).R, 1024);
  t.is(planKeywordLane(200_000_000).d, 2);
});

test('placement table: relocation moves residents to their other candidate; growth adds rows; removes free slots', (t) => {
  const m = 8;
  const table = KeywordTable.create(m, 2, 2);
  // Hash words with chosen candidate columns: words 2..3 give c0, words 4..5 give c1.
  const key = (tag: number, c0: number, c1: number) => new Uint32Array([tag, 1, c0, 0, c1, 0, 7, 7]);
  t.deepEqual(table.insert(key(1, 0, 1)), { slot: 0, moves: [] }); // columns 0 and 1 equally empty: the first
  t.deepEqual(table.insert(key(2, 0, 0)), { slot: 8, moves: [] }); // bound to column 0
  // Column 0 is full: key 1 moves to its other candidate, column 1.
  t.deepEqual(table.insert(key(3, 0, 0)), { slot: 0, moves: [{ from: 0, to: 1 }] });
  t.is(table.slotOf(key(1, 0, 1)), 1);
  t.is(table.counts[0], 2);
  t.is(table.counts[1], 1);
  // Column 0 holds only keys bound to it: no chain exists, the lane must grow.
  t.is(table.insert(key(4, 0, 0)), undefined);
  table.grow(1);
  t.deepEqual(table.insert(key(4, 0, 0)), { slot: 16, moves: [] });
  t.is(table.R, 3);
  // A resident that can move: fill column 5 (candidates 5 or 6) and insert a key bound to 5.
  const t2 = KeywordTable.create(m, 2, 1);
  t2.insert(key(10, 5, 6));
  const r = t2.insert(key(11, 5, 5))!;
  t.deepEqual(r.moves, [{ from: 5, to: 6 }]);
  t.is(r.slot, 5);
  t.is(t2.slotOf(key(10, 5, 6)), 6);
  t2.remove(6);
  t.is(t2.slotOf(key(10, 5, 6)), -1);
  t.is(t2.keys, 1);
});

test('placement table: equal tags sharing a candidate column are refused; disjoint ones are allowed', (t) => {
  const m = 64;
  const table = KeywordTable.create(m, 2, 4);
  const key = (lo: number, c0: number, c1: number, extra = 0) => new Uint32Array([lo, 99, c0, 0, c1, 0, extra, 0]);
  table.insert(key(5, 1, 2));
  table.insert(key(5, 3, 4)); // same tag, no shared column
  t.notThrows(() => checkTags(table));
  const s = table.insert(key(5, 4, 9, 1))!.slot; // shares column 4 with the second
  t.throws(() => checkTags(table), { instanceOf: TagConflictError, message: /share candidate column 4/ });
  t.throws(() => checkTags(table, [s]), { instanceOf: TagConflictError });
  table.remove(s);
  t.notThrows(() => checkTags(table));
  table.insert(key(5, 1, 2)); // the same key again: a duplicate
  t.throws(() => checkTags(table), { message: /duplicate key/ });
});

test('full build: private reads equal the plaintext for hundreds of present keys; absent keys are absent; the placement index matches the lane', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const records = randomRecords(2000, 21).concat(randomRecords(500, 53));
  const res = await buildGeneration({ data, block: 1, shardSize: 16384, lanes: { hot: { layout: 'keyword', records: () => records, m: 128 } } });
  const summary = res.manifest.lanes.hot!;
  t.is(summary.layout, 'keyword');
  t.is(summary.bucket_choices, 3);
  t.is(summary.entry_size, 40);
  t.is(summary.entries, summary.m * summary.R);
  t.true(records.length / summary.entries >= 0.8, `load ${records.length / summary.entries}`);
  await t.notThrowsAsync(verifyGeneration(res.dir));
  const info = (await loadGeneration(res.dir)).lanes.hot!;
  // The placement index holds each slot's key hash: its tags are the lane's.
  const table = await loadPlacement(info, res.dir);
  t.is(table.keys, records.length);
  for (const r of records.slice(0, 100)) {
    const s = table.slotOf(hashWords(keywordHash(Buffer.from(info.crs.key_seed!, 'hex'), r.key)));
    t.true(s >= 0);
  }
  const { client, handle } = await laneClient(info);
  t.teardown(() => handle.release());
  const bytes = await laneBytes(info);
  for (const r of records.slice(0, 300)) {
    const got = await privateLookup(client, handle, r.key);
    t.true(got.exists);
    t.is(hex(got.value), hex(r.value));
    t.deepEqual((await plainLookup(info, r.key, bytes)).map(hex), [hex(r.value)]);
  }
  for (let i = 0; i < 100; i++) {
    const got = await privateLookup(client, handle, crypto.randomBytes(21));
    t.false(got.exists);
    t.is(hex(got.value), '00'.repeat(32));
  }
});

test('client: exactly d queries even when candidates coincide; two entries with the key\'s tag fail closed', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const records = randomRecords(300);
  // m = 1: both candidates are column 0.
  const res = await buildGeneration({ data, block: 1, shardSize: 16384, lanes: { hot: { layout: 'keyword', records: () => records, m: 1, d: 2 } } });
  const info = (await loadGeneration(res.dir)).lanes.hot!;
  const { client, handle } = await laneClient(info);
  t.teardown(() => handle.release());
  const q = await keywordQueries(client, records[7]!.key);
  t.is(q.queries.length, 2);
  t.deepEqual(q.location.columns, [0, 0]);
  const answers = (await handle.answer(q.queries.map((b) => littleEndianWords(b)))).map((a) => wordsToLittleEndian(a).slice());
  t.is(hex(decodeKeyword(client, q, answers).value), hex(records[7]!.value));
  // A lane in which a second slot carries the key's tag (as a faulty builder or a lying server would
  // make it, with a hint that matches): the client refuses to choose.
  const loc = locateKey(info.crs, records[7]!.key);
  const forged = await laneBytes(info);
  const otherRow = [...Array(info.crs.R).keys()].find((r) => !forged.subarray(r * 40, r * 40 + 8).equals(Buffer.from(loc.tag)))!;
  Buffer.from(loc.tag).copy(forged, otherRow * 40);
  const ref = await referenceLane(forged, 40, 1);
  const forgedClient = await PirClient.create({ ...ref.crs, layout: 'keyword', key_seed: info.crs.key_seed, bucket_choices: 2 }, ref.hint);
  const q2 = await keywordQueries(forgedClient, records[7]!.key);
  const forgedAnswers = q2.queries.map((b) => wordsToLittleEndian(referenceAnswer(forged, 40, 1, littleEndianWords(b))).slice());
  const err = t.throws(() => decodeKeyword(forgedClient, q2, forgedAnswers), { instanceOf: PirClientError });
  t.is(err?.code, 'EKEYWORD_AMBIGUOUS');
});

test('full build: a tag collision re-seeds a fresh lane when the records can be read again, and is refused otherwise', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const records = randomRecords(500);
  let calls = 0;
  // The first reading has a duplicate key (a collision under any seed); the second is clean.
  const source = (): KeywordRecord[] => (++calls === 1 ? [...records, records[3]!] : records);
  const res = await buildGeneration({ data, block: 1, shardSize: 16384, lanes: { hot: { layout: 'keyword', records: source } } });
  t.is(calls, 2);
  t.is((await loadPlacement((await loadGeneration(res.dir)).lanes.hot!, res.dir)).keys, 500);
  // A one-shot iterable cannot be re-read; an inherited key_seed must not change.
  const err = await t.throwsAsync(buildGeneration({ data, block: 2, lanes: { hot: { layout: 'keyword', records: [...records, records[3]!] } } }));
  t.is((err as { code?: string }).code, 'ETAG_COLLISION');
  t.regex(err!.message, /duplicate key/);
  const err2 = await t.throwsAsync(buildGeneration({ data, block: 2, lanes: { hot: { layout: 'keyword', keySeed: crypto.randomBytes(16), records: () => [...records, records[3]!] } } }));
  t.regex(err2!.message, /keeps its key_seed/);
  await t.throwsAsync(buildGeneration({ data, block: 2, lanes: { hot: { layout: 'keyword', records: [{ key: new Uint8Array(3), value: new Uint8Array(31) }] } } }), { message: /value must be 32 bytes/ });
});

test('incremental builds: inserts, value changes and deletes over 20 generations; every read equals the state of its generation; deltas update a client hint', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const state = new Map<string, Buffer | null>();
  const initial = randomRecords(1500);
  for (const r of initial) state.set(hex(r.key), r.value);
  const cache = new PlacementCache();
  await buildGeneration({ data, block: 1, shardSize: 8192, placementCache: cache, lanes: { hot: { layout: 'keyword', records: () => initial, m: 64 } } });
  const first = (await loadGeneration(generationDir(data, 1))).lanes.hot!;
  const { client } = await laneClient(first);
  const { deltaChain } = await import('../src/server/delta.js');
  for (let g = 2; g <= 21; g++) {
    const present = [...state].filter(([, v]) => v !== null).map(([k]) => k);
    const changes: { key: Buffer; value: Buffer | null }[] = [];
    for (let i = 0; i < 60; i++) changes.push({ key: crypto.randomBytes(21), value: crypto.randomBytes(32) });
    for (let i = 0; i < 40; i++) changes.push({ key: Buffer.from(present[crypto.randomInt(present.length)]!, 'hex'), value: crypto.randomBytes(32) });
    for (let i = 0; i < 30; i++) changes.push({ key: Buffer.from(present[crypto.randomInt(present.length)]!, 'hex'), value: null });
    changes.push({ key: crypto.randomBytes(21), value: null }); // deleting an absent key changes nothing
    for (const c of changes) state.set(hex(c.key), c.value);
    // Every other generation reads its parent's placement from disk instead of the cache.
    const res = await buildIncremental({ data, block: g, from: String(g - 1), updates: {}, keywordChanges: { hot: changes }, ...(g % 2 === 0 ? { placementCache: cache } : {}) });
    t.is(res.stats.hot!.keyword!.keys, [...state.values()].filter((v) => v !== null).length);
    const info = (await loadGeneration(res.dir)).lanes.hot!;
    // The client follows by deltas (each step checked against the new crs's hint sha256).
    await client.applyDelta(await deltaChain(data, 'hot', String(g - 1), String(g)), info.crs);
    const { handle } = await laneClient(info);
    try {
      // Every key of the state in plaintext; a sample privately.
      const bytes = await laneBytes(info);
      for (const [k, v] of state) {
        const found = await plainLookup(info, Buffer.from(k, 'hex'), bytes);
        t.deepEqual(found.map(hex), v === null ? [] : [hex(v)], `generation ${g}, key ${k}`);
      }
      for (const c of changes.slice(50, 80)) {
        const got = await privateLookup(client, handle, c.key);
        const want = state.get(hex(c.key));
        t.is(got.exists, want !== null && want !== undefined);
        t.is(hex(got.value), want ? hex(want) : '00'.repeat(32));
      }
    } finally {
      await handle.release();
    }
    if (g % 5 === 0) await t.notThrowsAsync(verifyGeneration(res.dir));
  }
  t.true(state.size > 2000);
});

test('grinding: 1,000 keys whose candidates all hit one column are all placed (incremental and full), at a measured growth', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const m = 8; // d = 3 (the default for short columns): one key in 512 is ground
  const normal = randomRecords(400);
  const res1 = await buildGeneration({ data, block: 1, shardSize: 8192, lanes: { hot: { layout: 'keyword', records: () => normal, m } } });
  const info1 = (await loadGeneration(res1.dir)).lanes.hot!;
  t.is(info1.crs.bucket_choices, 3);
  const ground = grindKeys(info1.crs.key_seed!, m, 3, 3, 1000);
  const values = new Map(ground.map((k) => [hex(k), crypto.randomBytes(32)]));
  const res2 = await buildIncremental({ data, block: 2, from: '1', updates: {}, keywordChanges: { hot: ground.map((k) => ({ key: k, value: values.get(hex(k))! })) } });
  const info2 = (await loadGeneration(res2.dir)).lanes.hot!;
  const stats = res2.stats.hot!.keyword!;
  t.is(stats.inserted, 1000);
  t.true(info2.crs.R >= 1000, `column 3 needs 1000 slots: R = ${info2.crs.R}`);
  // Residents of column 3 moved out: the lane grew only by what the keys bound to column 3 need
  // (the ground ones, and any ordinary key whose candidates all happen to be column 3 too).
  const probe = KeywordTable.create(m, 3, 1);
  const words = hashKeys(Buffer.from(info1.crs.key_seed!, 'hex'), normal.map((r) => r.key));
  const bound = normal.filter((_, i) => { const c = probe.candidates(words, i * 8); return c.length === 1 && c[0] === 3; }).length;
  t.true(info2.crs.R >= 1000 + bound && info2.crs.R <= 1000 + bound + 1, `R = ${info2.crs.R}, ${bound} ordinary keys bound to column 3`);
  t.log(`grinding: R ${info1.crs.R} -> ${info2.crs.R}, lane ${info1.summary.bytes} -> ${info2.summary.bytes} bytes, ${stats.moved} residents moved`);
  const bytes2 = await laneBytes(info2);
  for (const k of ground) t.deepEqual((await plainLookup(info2, k, bytes2)).map(hex), [hex(values.get(hex(k))!)]);
  for (const r of normal) t.deepEqual((await plainLookup(info2, r.key, bytes2)).map(hex), [hex(r.value)]);
  const { client, handle } = await laneClient(info2);
  try {
    for (const k of ground.slice(0, 3)) t.is(hex((await privateLookup(client, handle, k)).value), hex(values.get(hex(k))!));
  } finally {
    await handle.release();
  }
  await t.notThrowsAsync(verifyGeneration(res2.dir));
  // A full build with the same key_seed places them too.
  const all = [...normal, ...ground.map((k) => ({ key: k, value: values.get(hex(k))! }))];
  const full = path.join(data, 'full');
  const res3 = await buildGeneration({ data: full, block: 1, shardSize: 8192, lanes: { hot: { layout: 'keyword', keySeed: Buffer.from(info1.crs.key_seed!, 'hex'), records: all, m } } });
  const info3 = (await loadGeneration(res3.dir)).lanes.hot!;
  t.true(info3.crs.R >= 1000);
  for (const k of ground.slice(0, 50)) t.is((await plainLookup(info3, k)).length, 1);
  t.is((await loadPlacement(info3, res3.dir)).keys, all.length);
});

test('incremental: a new key whose tag equals a resident\'s with a shared candidate column is refused and nothing is written', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const records = randomRecords(300);
  const res = await buildGeneration({ data, block: 1, shardSize: 8192, lanes: { hot: { layout: 'keyword', records: () => records, m: 16 } } });
  const info = (await loadGeneration(res.dir)).lanes.hot!;
  // Stand-in for an attacker's birthday-ground pair (2^32 work, too slow for a test): rewrite one
  // resident's hash in the placement index so that it carries the new key's tag and candidates.
  const key = crypto.randomBytes(21);
  const h = Buffer.from(keywordHash(Buffer.from(info.crs.key_seed!, 'hex'), key));
  const table = await loadPlacement(info, res.dir);
  const column = table.candidates(hashWords(h))[0]!;
  const slot = column; // row 0 of the column: occupied at this load
  t.false(table.isEmpty(slot));
  const forged = Buffer.from(h);
  forged[31] ^= 0xff; // another key: same tag and candidates, different hash
  const file = path.join(res.dir, 'hot', 'placement', 'shard-000000.bin');
  const fs = await import('node:fs');
  const bytes = fs.readFileSync(file);
  forged.copy(bytes, slot * 32);
  fs.rmSync(file);
  fs.writeFileSync(file, bytes);
  const err = await t.throwsAsync(buildIncremental({ data, block: 2, from: '1', updates: {}, keywordChanges: { hot: [{ key, value: crypto.randomBytes(32) }] } }));
  t.is((err as { code?: string }).code, 'ETAG_COLLISION');
  t.regex(err!.message, /same tag .* share candidate column/);
  t.false(fs.existsSync(generationDir(data, 2)));
  t.deepEqual(fs.readdirSync(path.join(data, 'generations')), ['1']);
});
