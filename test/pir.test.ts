// The TypeScript client against a plain-TypeScript reference server: the
// client is tested on its own, independent of the native kernels.
import test from 'ava';
import crypto from 'node:crypto';
import { PirClient } from '../src/pir/client.js';
import { parseCrs } from '../src/pir/crs.js';
import { type LaneDelta } from '../src/pir/delta.js';
import { DEFAULT_COLUMNS, LWE_N, checkColumns, defaultColumns, failureLog2, maxColumnsForCorrectness } from '../src/pir/params.js';
import { MatrixStream, littleEndianWords, wordsToLittleEndian } from '../src/pir/prg.js';
import { TABLE_SIZE, buildTable, sampleErrors } from '../src/pir/sampler.js';
import { randomIndices, referenceAnswer, referenceHint, referenceLane } from './helpers.js';

async function roundTrips(t: import('ava').ExecutionContext, data: Uint8Array, es: number, m: number, count: number) {
  const { crs, hint } = await referenceLane(data, es, m);
  const client = await PirClient.create(crs, hint);
  const entries = data.length / es;
  const indices = [0, entries - 1, ...randomIndices(count, entries)];
  for (const index of indices) {
    const { query, state } = await client.query(index);
    const answer = wordsToLittleEndian(referenceAnswer(data, es, m, littleEndianWords(query)));
    const got = client.decode(answer, state);
    t.deepEqual(Buffer.from(got), Buffer.from(data.subarray(index * es, (index + 1) * es)), `index ${index}`);
  }
}

test('decodes random indices: entries not a multiple of m, entry size 32', async (t) => {
  await roundTrips(t, crypto.randomBytes(32 * 203), 32, 16, 60);
});

test('decodes random indices: entry size 84, one record row', async (t) => {
  await roundTrips(t, crypto.randomBytes(84 * 40), 84, 40, 40);
});

test('decodes all-0x00 and all-0xFF entries', async (t) => {
  await roundTrips(t, new Uint8Array(32 * 50).fill(0), 32, 8, 20);
  await roundTrips(t, new Uint8Array(32 * 50).fill(0xff), 32, 8, 20);
});

test('TypeScript expansion of A equals node:crypto AES-128-CTR, from any row', async (t) => {
  const seed = crypto.randomBytes(16);
  const stream = await MatrixStream.create(seed, 1024);
  const rows = await stream.rows(3, 2);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(3 * 256, 12);
  const ks = crypto.createCipheriv('aes-128-ctr', seed, iv).update(Buffer.alloc(2 * 4096));
  t.deepEqual(Buffer.from(wordsToLittleEndian(rows)), ks);
  const all = await stream.rows(0, 5);
  t.deepEqual(all.subarray(3 * 1024), rows);
});

test('C++ (expandA) and TypeScript (WebCrypto) expansions of A agree', async (t) => {
  const { native } = await import('../src/native.js');
  const seed = crypto.randomBytes(16);
  const stream = await MatrixStream.create(seed, 1024);
  for (const [start, count] of [[0, 4], [1, 1], [16383, 2], [123456, 3]] as const) {
    t.deepEqual(native.expandA(seed, start, count, 1024), await stream.rows(start, count), `rows ${start}..${start + count}`);
  }
});

test('counter carries across 64-bit halves like a 128-bit big-endian integer', async (t) => {
  // A row far enough out that its counter block passes 2^32 (row 2^24 + 1 at n = 1024).
  const seed = crypto.randomBytes(16);
  const row = 2 ** 24 + 1;
  const got = await (await MatrixStream.create(seed, 1024)).rows(row, 1);
  const iv = Buffer.alloc(16);
  iv.writeUIntBE(row * 256, 10, 6);
  t.deepEqual(Buffer.from(wordsToLittleEndian(got)), crypto.createCipheriv('aes-128-ctr', seed, iv).update(Buffer.alloc(4096)));
});

test('error sampler: mean 0 and standard deviation 6.4 over 10^6 samples', (t) => {
  const n = 1_000_000;
  const samples = sampleErrors(new Uint32Array(n));
  let sum = 0;
  let sq = 0;
  let maxAbs = 0;
  const counts = new Map<number, number>();
  for (const w of samples) {
    const x = w | 0;
    sum += x;
    sq += x * x;
    maxAbs = Math.max(maxAbs, Math.abs(x));
    counts.set(x, (counts.get(x) ?? 0) + 1);
  }
  const mean = sum / n;
  const sd = Math.sqrt(sq / n - mean * mean);
  t.true(Math.abs(mean) < 0.05, `mean ${mean}`);
  t.true(Math.abs(sd - 6.4) < 0.03, `sd ${sd}`);
  t.true(maxAbs < 60, `max |x| ${maxAbs}`);
  // Symmetric: +k and -k about equally often.
  t.true(Math.abs((counts.get(5) ?? 0) - (counts.get(-5) ?? 0)) < 1000);
  // Pr[x = 0] = 1 / (sigma sqrt(2 pi)) ~ 0.0623
  t.true(Math.abs((counts.get(0) ?? 0) / n - 0.0623) < 0.002);
});

test('sampler table ends where the tail drops below 2^-62 and is increasing', (t) => {
  const { hi, lo } = buildTable(6.4);
  t.is(hi.length, TABLE_SIZE);
  t.true(TABLE_SIZE > 50 && TABLE_SIZE < 70, `table size ${TABLE_SIZE}`);
  for (let k = 1; k < hi.length; k++) t.true(hi[k]! > hi[k - 1]! || (hi[k] === hi[k - 1] && lo[k]! > lo[k - 1]!));
});

test('two queries for the same index differ (fresh secret and errors)', async (t) => {
  const data = crypto.randomBytes(32 * 64);
  const { crs, hint } = await referenceLane(data, 32, 16);
  const client = await PirClient.create(crs, hint);
  const a = await client.query(7);
  const b = await client.query(7);
  t.notDeepEqual(Buffer.from(a.query), Buffer.from(b.query));
  t.notDeepEqual(a.state.secret, b.state.secret);
});

test('a query state decodes once; its secret is wiped', async (t) => {
  const data = crypto.randomBytes(32 * 64);
  const { crs, hint } = await referenceLane(data, 32, 16);
  const client = await PirClient.create(crs, hint);
  const { query, state } = await client.query(9);
  const answer = wordsToLittleEndian(referenceAnswer(data, 32, 16, littleEndianWords(query)));
  client.decode(answer, state);
  t.true(state.secret.every((w) => w === 0));
  t.throws(() => client.decode(answer, state), { message: /single use/ });
});

test('client rejects a wrong hint, a wrong answer size and an index outside the lane', async (t) => {
  const data = crypto.randomBytes(32 * 64);
  const { crs, hint } = await referenceLane(data, 32, 16);
  const bad = Uint8Array.from(hint);
  bad[5] ^= 1;
  await t.throwsAsync(PirClient.create(crs, bad), { message: /sha256/ });
  await t.throwsAsync(PirClient.create(crs, hint.subarray(4)), { message: /expected/ });
  const client = await PirClient.create(crs, hint);
  const { state } = await client.query(1);
  t.throws(() => client.decode(new Uint8Array(12), state), { message: /expected/ });
});

test('an index outside the lane gets a query like any other; decode reports it (EINDEX) and wipes the secret', async (t) => {
  const data = crypto.randomBytes(32 * 60);
  const { crs, hint } = await referenceLane(data, 32, 16); // R = 4: indices 60..63 are padding
  const client = await PirClient.create(crs, hint);
  for (const index of [60, 63, 64, 1e15, -1, 2.5, Number.NaN]) {
    const { query, state } = await client.query(index);
    t.is(query.byteLength, 16 * 4, `index ${index}`);
    const answer = wordsToLittleEndian(referenceAnswer(data, 32, 16, littleEndianWords(query)));
    t.throws(() => client.decode(answer, state), { code: 'EINDEX', message: /outside the lane/ } as never, `index ${index}`);
    t.true(state.secret.every((w) => w === 0));
  }
});

test("the client owns its hint: changing the caller's bytes after create changes nothing", async (t) => {
  const data = crypto.randomBytes(32 * 64);
  const { crs, hint } = await referenceLane(data, 32, 16);
  const bytes = Uint8Array.from(hint);
  const client = await PirClient.create(crs, bytes);
  bytes.fill(7); // e.g. a buffer the caller reuses
  const { query, state } = await client.query(20);
  const got = client.decode(wordsToLittleEndian(referenceAnswer(data, 32, 16, littleEndianWords(query))), state);
  t.deepEqual(Buffer.from(got), data.subarray(20 * 32, 21 * 32));
});

/** Two generations of a small lane (entry `index` changed), their crs and hints, and the delta between them. */
async function twoGenerations(index: number) {
  const es = 32;
  const m = 16;
  const seed = crypto.randomBytes(16);
  const data1 = crypto.randomBytes(es * 64);
  const data2 = Buffer.from(data1);
  crypto.randomBytes(es).copy(data2, index * es);
  const lane = async (data: Buffer) => {
    const hint = wordsToLittleEndian(await referenceHint(data, es, m, seed));
    const crs = {
      scheme: 'simplepir', n: LWE_N, q_bits: 32, p: 256, sigma: 6.4, m, R: 4, entry_size: es, entries: 64,
      seed: seed.toString('hex'), prg: 'aes-128-ctr', hint_sha256: crypto.createHash('sha256').update(hint).digest('hex'), params_version: 1,
    };
    return { data, hint, crs };
  };
  const g1 = await lane(data1);
  const g2 = await lane(data2);
  const delta: LaneDelta = {
    entrySize: es, m, n: LWE_N, seed, from: '1', to: '2', fromEntries: 64, toEntries: 64,
    fromHintSha256: g1.crs.hint_sha256, toHintSha256: g2.crs.hint_sha256,
    indices: [index], oldValues: data1.subarray(index * es, (index + 1) * es), newValues: data2.subarray(index * es, (index + 1) * es),
  };
  return { g1, g2, delta, es, m };
}

test('a query whose preparation is overtaken by applyDelta never decodes with the new hint', async (t) => {
  const index = 21;
  const { g1, g2, delta, es, m } = await twoGenerations(index);
  const client = await PirClient.create(g1.crs, g1.hint);
  // Hold the query at its first await (preparing a fresh secret) until the delta has landed.
  const c = client as any;
  const makePrepared = c.makePrepared.bind(client);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  c.makePrepared = async (count: number) => {
    await gate;
    return makePrepared(count);
  };
  const pending = client.query(index);
  c.makePrepared = makePrepared;
  await client.applyDelta(delta, g2.crs);
  release();
  const { query, state } = await pending;
  // The query was made while the client held generation 1: the server answers it from generation 1.
  const answer = wordsToLittleEndian(referenceAnswer(g1.data, es, m, littleEndianWords(query)));
  const err = t.throws(() => client.decode(answer, state));
  t.is((err as { code?: string })?.code, 'ESTATE');
  // Queries made after the update decode against generation 2.
  const next = await client.query(index);
  const got = client.decode(wordsToLittleEndian(referenceAnswer(g2.data, es, m, littleEndianWords(next.query))), next.state);
  t.deepEqual(Buffer.from(got), g2.data.subarray(index * es, (index + 1) * es));
});

test('applyDelta with no changed entries still checks the hint it starts from against the new crs', async (t) => {
  const { g1, g2 } = await twoGenerations(5);
  const client = await PirClient.create(g1.crs, g1.hint);
  // A delta that claims no entry changed, yet ends at another hint.
  const empty: LaneDelta = {
    entrySize: 32, m: 16, n: LWE_N, seed: Buffer.from(g1.crs.seed, 'hex'), from: '1', to: '2', fromEntries: 64, toEntries: 64,
    fromHintSha256: g1.crs.hint_sha256, toHintSha256: g2.crs.hint_sha256, indices: [], oldValues: new Uint8Array(0), newValues: new Uint8Array(0),
  };
  await t.throwsAsync(client.applyDelta(empty, g2.crs), { code: 'EDELTA' } as never);
  t.is(client.crs.hint_sha256, g1.crs.hint_sha256);
  // A true no-op (a block that changed nothing in this lane) is taken.
  await client.applyDelta({ ...empty, toHintSha256: g1.crs.hint_sha256 }, g1.crs);
  t.is(client.crs.hint_sha256, g1.crs.hint_sha256);
});

test('prepared queries: A s precomputed before the index is known, without caching A', async (t) => {
  const data = crypto.randomBytes(32 * 300);
  const { crs, hint } = await referenceLane(data, 32, 300);
  const client = await PirClient.create(crs, hint, { cacheMatrix: false });
  await client.prepare(3);
  t.is(client.prepared, 3);
  for (const index of [0, 150, 299]) {
    const { query, state } = await client.query(index);
    const got = client.decode(wordsToLittleEndian(referenceAnswer(data, 32, 300, littleEndianWords(query))), state);
    t.deepEqual(Buffer.from(got), data.subarray(index * 32, index * 32 + 32));
  }
  t.is(client.prepared, 0);
});

test('parameters: failure bound and default width', (t) => {
  t.true(failureLog2(DEFAULT_COLUMNS) < -4000);
  const max = maxColumnsForCorrectness();
  t.true(max > 1_800_000 && max < 1_900_000, `max m ${max}`);
  t.true(failureLog2(max) <= -40 && failureLog2(max + 1000) > -40);
  t.is(defaultColumns(100), 100);
  t.is(defaultColumns(1 << 20), 16384);
  t.notThrows(() => checkColumns(16384));
  t.throws(() => checkColumns(2_000_000), { message: /exceeds|failure/ });
  t.throws(() => checkColumns(0));
});

test('parseCrs names the bad field', (t) => {
  const good = {
    scheme: 'simplepir', n: 1024, q_bits: 32, p: 256, sigma: 6.4, m: 16, R: 2, entry_size: 32, entries: 20,
    seed: '00'.repeat(16), prg: 'aes-128-ctr', hint_sha256: 'ab'.repeat(32),
  };
  t.notThrows(() => parseCrs(good));
  t.throws(() => parseCrs({ ...good, R: 3 }), { message: /crs.R/ });
  t.throws(() => parseCrs({ ...good, n: 512 }), { message: /crs.n/ });
  t.throws(() => parseCrs({ ...good, seed: 'xyz' }), { message: /crs.seed/ });
  t.throws(() => parseCrs('nope'), { message: /object/ });
});

test('the client path uses no Node-only module (it must run in browsers)', async (t) => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const dir = path.resolve('src/pir');
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
    // Relative imports, and the audited browser-safe hash library (keccak for keyword lanes).
    for (const spec of imports) t.true(spec.startsWith('./') || spec.startsWith('@noble/hashes/'), `${file} imports ${spec}`);
    t.false(/\b(Buffer|process|require)\b[.(]/.test(text), `${file} uses a Node global`);
  }
});

test('concurrent queries each get their own fresh secret', async (t) => {
  const data = crypto.randomBytes(32 * 100);
  const { crs, hint } = await referenceLane(data, 32, 25);
  const client = await PirClient.create(crs, hint);
  await client.prepare(1); // fewer prepared than asked for at once
  const indices = [0, 7, 33, 50, 99, 64, 12, 80];
  const made = await Promise.all(indices.map((i) => client.query(i)));
  t.is(new Set(made.map((m) => Buffer.from(m.state.secret).toString('hex'))).size, indices.length);
  made.forEach((m, k) => {
    const got = client.decode(wordsToLittleEndian(referenceAnswer(data, 32, 25, littleEndianWords(m.query))), m.state);
    t.deepEqual(Buffer.from(got), data.subarray(indices[k]! * 32, indices[k]! * 32 + 32));
  });
});
