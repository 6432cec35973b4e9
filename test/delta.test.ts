// Hint deltas: the wire format, chaining, deltaChain over recorded diffs, and
// PirClient.applyDelta against hints built from scratch.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PirClient } from '../src/pir/client.js';
import { type LaneDelta, DeltaError, decodeDelta, encodeDelta, mergeDeltas } from '../src/pir/delta.js';
import { littleEndianWords, wordsToLittleEndian } from '../src/pir/prg.js';
import { deltaChain, readChainIndex } from '../src/server/delta.js';
import { DeltaService } from '../src/server/deltas.js';
import { readManifest } from '../src/store/manifest.js';
import { DeltaTooLargeError, mergeEncodedDeltas } from '../src/server/delta-merge.js';
import { buildGeneration } from '../src/store/builder.js';
import { RawFileSource } from '../src/store/entries.js';
import { type LaneInfo, loadGeneration, openLane, readEntry } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { diffHistoryPath, diffPath } from '../src/store/incremental.js';
import { generationDir, hintPath } from '../src/store/layout.js';
import { verifyGeneration } from '../src/store/verify.js';
import { rmrf, tempDir } from './helpers.js';

const ES = 32;
const M = 256;
const SHARD = 8192;

interface Chain {
  data: string;
  seed: Buffer;
  /** Plaintext of the lane at each generation. */
  plain: Buffer[];
}

/** Generation 0 in full, then 1..count incrementally with random updates (repeats, reverts, growth). */
async function buildChain(root: string, count: number, diffHistory?: number): Promise<Chain> {
  const data = path.join(root, 'data');
  const seed = crypto.randomBytes(16);
  let cur = crypto.randomBytes(3000 * ES);
  const file = path.join(root, 'g0.bin');
  fs.writeFileSync(file, cur);
  await buildGeneration({ data, block: 0, shardSize: SHARD, lanes: { hot: { source: await RawFileSource.open(file, ES), m: M, seed } } });
  const plain = [cur];
  const hotSet = [1, 2, 3, 500, 2999];
  for (let g = 1; g <= count; g++) {
    const updates = new Map<number, Buffer>();
    const entries = cur.length / ES;
    for (let k = 0; k < 25; k++) updates.set(crypto.randomInt(entries), crypto.randomBytes(ES));
    updates.set(hotSet[g % hotSet.length]!, crypto.randomBytes(ES)); // the same few entries change again and again
    if (g % 4 === 0) updates.set(7, plain[0]!.subarray(7 * ES, 8 * ES)); // back to its generation-0 value
    if (g === 5) updates.set(3100, crypto.randomBytes(ES)); // grows into a new record row
    if (g === 12) updates.set(3500, crypto.randomBytes(ES)); // and two more
    if (g === 13) updates.set(3501, Buffer.alloc(ES)); // grows by one all-zero entry
    const next = Buffer.alloc(Math.max(entries, ...[...updates.keys()].map((i) => i + 1)) * ES);
    cur.copy(next);
    for (const [i, v] of updates) v.copy(next, i * ES);
    await buildIncremental({ data, block: g, from: String(g - 1), updates: { hot: updates }, ...(diffHistory ? { diffHistory } : {}) });
    cur = next;
    plain.push(cur);
  }
  return { data, seed, plain };
}

async function laneAt(data: string, g: number | string): Promise<LaneInfo> {
  return (await loadGeneration(generationDir(data, g))).lanes.hot!;
}

async function clientAt(data: string, g: number, cacheMatrix = false): Promise<PirClient> {
  const info = await laneAt(data, g);
  return PirClient.create(info.crs, fs.readFileSync(info.hintPath), { cacheMatrix });
}

/** Private lookups through the native kernel of generation g, compared with its plaintext. */
async function lookups(t: import('ava').ExecutionContext, client: PirClient, info: LaneInfo, indices: number[]): Promise<void> {
  const handle = await openLane(info, 'mmap');
  try {
    for (const index of indices) {
      const { query, state } = await client.query(index);
      const [answer] = await handle.answer([littleEndianWords(query)]);
      t.deepEqual(Buffer.from(client.decode(wordsToLittleEndian(answer!), state)), await readEntry(info, index), `index ${index}`);
    }
  } finally {
    await handle.release();
  }
}

test('20 generations: deltas (in one go, one by one) bring a client hint to the freshly built one', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  // A short diff history: 0 -> 20 reads most diffs from the generations they belong to.
  const { data, seed, plain } = await buildChain(root, 20, 4);
  const final = plain[20]!;

  // Generation 20 built from scratch has the same hint as the incremental chain.
  const refFile = path.join(root, 'g20.bin');
  fs.writeFileSync(refFile, final);
  const ref = path.join(root, 'ref');
  await buildGeneration({ data: ref, block: 20, shardSize: SHARD, lanes: { hot: { source: await RawFileSource.open(refFile, ES), m: M, seed } } });
  const freshHint = fs.readFileSync(hintPath(generationDir(ref, 20), 'hot'));
  t.true(freshHint.equals(fs.readFileSync(hintPath(generationDir(data, 20), 'hot'))));
  const info20 = await laneAt(data, 20);
  // The carried diffs are listed and verified like every other file.
  await verifyGeneration(generationDir(data, 20));
  t.deepEqual(fs.readdirSync(path.join(generationDir(data, 20), 'hot', 'diffs')).sort(), ['17.bin', '18.bin', '19.bin']);
  t.is(info20.crs.entries, 3502);
  t.is(info20.crs.R, 14);

  // In one go, streaming A's rows.
  const oneGo = await clientAt(data, 0);
  const stale = await oneGo.query(9);
  const delta = await deltaChain(data, 'hot', '0', '20');
  t.true(delta.byteLength < 80 * 20 * 27 + 4096 + 200, `${delta.byteLength} bytes`);
  await oneGo.applyDelta(delta, info20.crs);
  t.true(Buffer.from(oneGo.exportHint()).equals(freshHint));
  t.is(oneGo.crs.hint_sha256, info20.crs.hint_sha256);
  t.is(oneGo.entries, 3502);
  // A query made against the old hint cannot be decoded against the new one.
  t.throws(() => oneGo.decode(new Uint8Array(ES * 14 * 4), stale.state), { code: 'ESTATE' } as never);

  // One generation at a time, with A cached in the client.
  const stepwise = await clientAt(data, 0, true);
  await stepwise.prepare(1);
  for (let g = 1; g <= 20; g++) {
    await stepwise.applyDelta(await deltaChain(data, 'hot', String(g - 1), String(g)), (await laneAt(data, g)).crs);
  }
  t.true(Buffer.from(stepwise.exportHint()).equals(freshHint));

  // Entries decode to the new plaintext, including changed and grown ones.
  const diff20 = decodeDelta(delta);
  const picks = [...diff20.indices.slice(0, 6), 3100, 3500, 3501, 3499, 7, 0];
  await lookups(t, oneGo, info20, picks);
  await lookups(t, stepwise, info20, picks.slice(0, 4));
  for (const i of picks) t.deepEqual(await readEntry(info20, i), final.subarray(i * ES, (i + 1) * ES));
  // Entry 7 went back to its generation-0 value every 4th generation: whether it is in the delta depends on the last write.
  t.is(diff20.indices.includes(7), !final.subarray(7 * ES, 8 * ES).equals(plain[0]!.subarray(7 * ES, 8 * ES)));
});

test('a delta that does not produce the announced hint is refused and the old hint kept', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data } = await buildChain(root, 6);
  const info0 = await laneAt(data, 0);
  const original = fs.readFileSync(info0.hintPath);
  for (const [to, label] of [[3, 'in place'], [6, 'with growth']] as const) {
    const client = await clientAt(data, 0);
    const d = decodeDelta(await deltaChain(data, 'hot', '0', String(to)));
    d.newValues[5] ^= 0x40;
    if (d.oldValues[5] === d.newValues[5]) d.newValues[5] ^= 0x01;
    const err = await t.throwsAsync(client.applyDelta(encodeDelta(d), (await laneAt(data, to)).crs));
    t.is((err as { code?: string }).code, 'EDELTA', label);
    t.regex(err!.message, /old hint is kept/);
    t.true(Buffer.from(client.exportHint()).equals(original), label);
    t.is(client.crs.hint_sha256, info0.crs.hint_sha256);
    await lookups(t, client, info0, [0, 100, 2999]);
  }
  // A delta from another generation, a crs that is not the delta's end, garbage.
  const client = await clientAt(data, 0);
  await t.throwsAsync(client.applyDelta(await deltaChain(data, 'hot', '1', '2'), (await laneAt(data, 2)).crs), { code: 'EDELTA', message: /starts from/ } as never);
  await t.throwsAsync(client.applyDelta(await deltaChain(data, 'hot', '0', '2'), (await laneAt(data, 3)).crs), { code: 'EDELTA', message: /ends at/ } as never);
  await t.throwsAsync(client.applyDelta(new Uint8Array(10), (await laneAt(data, 3)).crs), { code: 'EDELTA' } as never);
  t.true(Buffer.from(client.exportHint()).equals(original));
});

test('deltaChain follows parents and refuses what is not an ancestor', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data, plain } = await buildChain(root, 3);
  // A branch: generation 4 built from 2, a sibling of 3 (as after a reorg).
  await buildIncremental({ data, block: 4, from: '2', updates: { hot: new Map([[11, crypto.randomBytes(ES)]]) } });
  // A full build has no parent.
  const file = path.join(root, 'g5.bin');
  fs.writeFileSync(file, plain[3]!);
  await buildGeneration({ data, block: 5, shardSize: SHARD, lanes: { hot: { source: await RawFileSource.open(file, ES), m: M } } });

  // A reorg rebuild of block 3 from 2.
  await buildIncremental({ data, block: 3, id: '3r1', from: '2', updates: { hot: new Map([[12, crypto.randomBytes(ES)]]) } });

  const gone = { code: 'EDELTA_GONE' } as never;
  await t.throwsAsync(deltaChain(data, 'hot', '3', '4'), gone);
  await t.throwsAsync(deltaChain(data, 'hot', '3', '3r1'), gone);
  t.is(decodeDelta(await deltaChain(data, 'hot', '1', '3r1')).to, '3r1');
  await t.throwsAsync(deltaChain(data, 'hot', '4', '5'), gone);
  await t.throwsAsync(deltaChain(data, 'hot', '3', '2'), gone);
  await t.throwsAsync(deltaChain(data, 'hot', '0', '9'), { code: 'ENOGEN' } as never);
  const d = decodeDelta(await deltaChain(data, 'hot', '0', '4'));
  t.is(d.from, '0');
  t.is(d.to, '4');
  t.true(d.indices.includes(11));
  // from == to: an empty delta, a no-op for a current client.
  const same = decodeDelta(await deltaChain(data, 'hot', '3', '3'));
  t.deepEqual(same.indices, []);
  const client = await clientAt(data, 3);
  await client.applyDelta(await deltaChain(data, 'hot', '3', '3'), (await laneAt(data, 3)).crs);

  // Generation 4 carries hard links to its ancestors' diffs: pruning them keeps 0 -> 4 possible.
  const before = await deltaChain(data, 'hot', '0', '4');
  fs.rmSync(generationDir(data, 1), { recursive: true });
  fs.rmSync(generationDir(data, 2), { recursive: true });
  t.deepEqual(await deltaChain(data, 'hot', '0', '4'), before);
  // Without the carried copy (and the generation) a step is gone.
  fs.rmSync(path.join(generationDir(data, 4), 'hot', 'diffs', '1.bin'));
  await t.throwsAsync(deltaChain(data, 'hot', '0', '4'), gone);
  t.is(decodeDelta(await deltaChain(data, 'hot', '1', '4')).from, '1');
});

function randomDelta(from: string, to: string, es: number, entries: number, count: number): LaneDelta {
  const indices = [...new Set(Array.from({ length: count }, () => crypto.randomInt(entries)))].sort((a, b) => a - b);
  const oldValues = crypto.randomBytes(indices.length * es);
  const newValues = crypto.randomBytes(indices.length * es);
  for (let k = 0; k < newValues.length; k += 3) newValues[k] = oldValues[k]!; // some bytes unchanged
  return {
    entrySize: es,
    m: 16,
    n: 1024,
    seed: crypto.randomBytes(16),
    from,
    to,
    fromEntries: entries,
    toEntries: entries,
    fromHintSha256: crypto.randomBytes(32).toString('hex'),
    toHintSha256: crypto.randomBytes(32).toString('hex'),
    indices,
    oldValues,
    newValues,
  };
}

test('wire format: round trip, unchanged bytes left out, strict decoding', (t) => {
  for (const es of [1, 32, 84]) {
    const d = randomDelta('100', '105r2', es, 5000, 200);
    const back = decodeDelta(encodeDelta(d));
    t.deepEqual(back.indices, d.indices);
    t.is(back.from, '100');
    t.is(back.to, '105r2');
    t.is(back.fromHintSha256, d.fromHintSha256);
    for (let k = 0; k < d.oldValues.length; k++) {
      const changed = d.oldValues[k] !== d.newValues[k];
      t.is(back.newValues[k], changed ? d.newValues[k] : 0);
      t.is(back.oldValues[k], changed ? d.oldValues[k] : 0);
    }
    t.deepEqual(encodeDelta(back), encodeDelta(d));
  }
  const bytes = encodeDelta(randomDelta('1', '2', 32, 1000, 10));
  t.throws(() => decodeDelta(bytes.subarray(0, bytes.length - 1)), { instanceOf: DeltaError });
  t.throws(() => decodeDelta(Uint8Array.from([...bytes, 0])), { message: /trailing/ });
  const bad = bytes.slice();
  bad[0] = 0x58;
  t.throws(() => decodeDelta(bad), { message: /magic/ });
  // Growth needs the zero row.
  const grown = { ...randomDelta('1', '2', 32, 1000, 10), toEntries: 1020 };
  t.throws(() => encodeDelta(grown), { message: /zero row/ });
  t.notThrows(() => decodeDelta(encodeDelta({ ...grown, zeroRow: new Uint32Array(1024).fill(7) })));
});

test('merging: the same entry changed twice keeps the first old and the last new value; reverts drop out', (t) => {
  const a = randomDelta('1', '2', 4, 100, 0);
  const mk = (from: string, to: string, fromSha: string, toSha: string, changes: [number, number[], number[]][]): LaneDelta => ({
    ...a,
    from,
    to,
    fromHintSha256: fromSha,
    toHintSha256: toSha,
    indices: changes.map((c) => c[0]),
    oldValues: Uint8Array.from(changes.flatMap((c) => c[1])),
    newValues: Uint8Array.from(changes.flatMap((c) => c[2])),
  });
  const h = ['a', 'b', 'c'].map((c) => c.repeat(64));
  const s1 = mk('1', '2', h[0]!, h[1]!, [
    [5, [1, 2, 3, 4], [9, 2, 3, 4]],
    [6, [0, 0, 0, 0], [1, 1, 1, 1]],
  ]);
  const s2 = mk('2', '3', h[1]!, h[2]!, [
    [5, [9, 0, 3, 4], [8, 0, 7, 4]],
    [6, [1, 1, 1, 1], [0, 0, 0, 0]],
    [40, [5, 5, 5, 5], [6, 5, 5, 5]],
  ]);
  const m = decodeDelta(encodeDelta(mergeDeltas([s1, s2]))); // canonical: unchanged bytes are 0/0
  t.is(m.from, '1');
  t.is(m.to, '3');
  t.deepEqual(m.indices, [5, 40]);
  t.deepEqual([...m.oldValues.subarray(0, 4)], [1, 0, 3, 0]);
  t.deepEqual([...m.newValues.subarray(0, 4)], [8, 0, 7, 0]);
  // Steps that do not continue each other, or disagree on a value, are refused.
  t.throws(() => mergeDeltas([s2, s1]), { message: /does not continue/ });
  const s2bad = mk('2', '3', h[1]!, h[2]!, [[5, [7, 0, 0, 0], [8, 0, 0, 0]]]);
  t.throws(() => mergeDeltas([s1, s2bad]), { message: /entry 5 byte 0/ });
});

/** The recorded diffs of generations from+1..to (oldest first), as the server reads them. */
function recordedSteps(data: string, from: number, to: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let g = from + 1; g <= to; g++) {
    const own = diffPath(generationDir(data, g), 'hot');
    const carried = diffHistoryPath(generationDir(data, to), 'hot', String(g));
    out.push(fs.readFileSync(g === to || !fs.existsSync(carried) ? own : carried));
  }
  return out;
}

test('the streaming merge is byte for byte encodeDelta(mergeDeltas(decoded steps)), growth and reverts included', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data } = await buildChain(root, 16);
  for (const [from, to] of [[0, 1], [0, 16], [3, 7], [4, 5], [11, 14], [2, 16], [12, 13]] as const) {
    const steps = recordedSteps(data, from, to);
    const reference = encodeDelta(mergeDeltas(steps.map((s) => decodeDelta(s))));
    t.deepEqual(mergeEncodedDeltas(steps), reference, `${from} -> ${to}`);
    t.deepEqual(await deltaChain(data, 'hot', String(from), String(to)), reference, `deltaChain ${from} -> ${to}`);
  }
  // Random chains whose steps rewrite each other's bytes, es not a multiple of 8.
  for (const es of [1, 5, 32]) {
    let cur = new Uint8Array(300 * es);
    crypto.randomFillSync(cur);
    const steps: LaneDelta[] = [];
    const states = [cur];
    const sha = () => crypto.randomBytes(32).toString('hex');
    let hint = sha();
    for (let s = 0; s < 6; s++) {
      const indices = [...new Set(Array.from({ length: 40 }, () => crypto.randomInt(300)))].sort((a, b) => a - b);
      const next = cur.slice();
      const oldValues = new Uint8Array(indices.length * es);
      const newValues = new Uint8Array(indices.length * es);
      indices.forEach((i, k) => {
        oldValues.set(cur.subarray(i * es, (i + 1) * es), k * es);
        // Bytes change at random, or go back to what they were two steps earlier (reverts).
        for (let b = 0; b < es; b++) if (crypto.randomInt(3) > 0) next[i * es + b] = crypto.randomInt(2) === 0 ? states[Math.max(0, s - 1)]![i * es + b]! : crypto.randomInt(256);
        newValues.set(next.subarray(i * es, (i + 1) * es), k * es);
      });
      const to = sha();
      steps.push({ ...randomDelta(String(s), String(s + 1), es, 300, 0), seed: Buffer.alloc(16, 7), fromHintSha256: hint, toHintSha256: to, indices, oldValues, newValues });
      hint = to;
      cur = next;
      states.push(cur);
    }
    const encoded = steps.map((d) => encodeDelta(d));
    for (let a = 0; a < steps.length; a++) {
      for (let b = a + 1; b <= steps.length; b++) {
        const part = encoded.slice(a, b);
        t.deepEqual(mergeEncodedDeltas(part), encodeDelta(mergeDeltas(part.map((x) => decodeDelta(x)))), `es ${es}, steps ${a}..${b}`);
      }
    }
  }
});

test('the streaming merge refuses what mergeDeltas and decodeDelta refuse, and stops at its byte limit', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data } = await buildChain(root, 6);
  const steps = recordedSteps(data, 0, 6);
  const full = mergeEncodedDeltas(steps);
  t.deepEqual(mergeEncodedDeltas(steps, full.byteLength), full);
  const err = t.throws(() => mergeEncodedDeltas(steps, full.byteLength - 1), { instanceOf: DeltaTooLargeError });
  t.is((err as DeltaTooLargeError).code, 'EDELTA_TOO_LARGE');
  t.throws(() => mergeEncodedDeltas([]), { instanceOf: DeltaError });
  // Out of order, a step missing, truncated, trailing bytes, bad magic.
  t.throws(() => mergeEncodedDeltas([steps[1]!, steps[0]!]), { message: /does not continue/ });
  t.throws(() => mergeEncodedDeltas([steps[0]!, steps[2]!]), { message: /does not continue/ });
  t.throws(() => mergeEncodedDeltas([steps[0]!, steps[1]!.subarray(0, steps[1]!.length - 1)]), { instanceOf: DeltaError });
  t.throws(() => mergeEncodedDeltas([steps[0]!, Uint8Array.from([...steps[1]!, 0])]), { message: /trailing/ });
  const bad = steps[0]!.slice();
  bad[0] = 0x58;
  t.throws(() => mergeEncodedDeltas([bad, steps[1]!]), { message: /magic/ });
  // A step whose change does not start from the value the previous one left.
  const a = randomDelta('1', '2', 4, 100, 0);
  const h = ['a', 'b', 'c'].map((c) => c.repeat(64));
  const s1 = encodeDelta({ ...a, fromHintSha256: h[0]!, toHintSha256: h[1]!, indices: [5], oldValues: Uint8Array.from([1, 2, 3, 4]), newValues: Uint8Array.from([9, 2, 3, 4]) });
  const s2 = encodeDelta({ ...a, from: '2', to: '3', fromHintSha256: h[1]!, toHintSha256: h[2]!, indices: [5], oldValues: Uint8Array.from([7, 0, 0, 0]), newValues: Uint8Array.from([8, 0, 0, 0]) });
  t.throws(() => mergeEncodedDeltas([s1, s2]), { message: /entry 5 byte 0/ });
});

test('the chain index follows diff headers back to where a budget in bytes or in steps ends it', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data } = await buildChain(root, 8);
  const toDir = generationDir(data, 8);
  const manifest = await readManifest(toDir);
  const target = { dataDir: data, to: '8', toDir, lane: 'hot' as const, parent: manifest.parent, summary: manifest.lanes.hot! };
  const all = await readChainIndex(target);
  t.deepEqual([...all.ancestors], [['7', 1], ['6', 2], ['5', 3], ['4', 4], ['3', 5], ['2', 6], ['1', 7], ['0', 8]]);
  t.regex(all.end, /generation 0 is gone|diff of generation 0/);
  const steps = await readChainIndex(target, Number.MAX_SAFE_INTEGER, 3);
  t.deepEqual([...steps.ancestors.keys()], ['7', '6', '5']);
  t.regex(steps.end, /at most 3 generations/);
  const twoSteps = all.steps[0]!.bytes + all.steps[1]!.bytes;
  const bytes = await readChainIndex(target, twoSteps);
  t.deepEqual([...bytes.ancestors.keys()], ['7', '6']);
  t.regex(bytes.end, new RegExp(`more than ${twoSteps} bytes`));
  // A full build has no chain.
  const first = await readManifest(generationDir(data, 0));
  t.is((await readChainIndex({ ...target, to: '0', toDir: generationDir(data, 0), parent: first.parent, summary: first.lanes.hot! })).ancestors.size, 0);
});

test('DeltaService: merges on threads started on demand and stopped when idle; answers equal deltaChain; refusals and busy slots', async (t) => {
  const root = tempDir();
  t.teardown(() => rmrf(root));
  const { data } = await buildChain(root, 6);
  // Idle threads stop after 2 s: long enough that a loaded machine does not stop one between the checks below.
  const service = new DeltaService({ dataDir: data, maxConcurrent: 1, maxQueued: 1, cacheBytes: 1 << 20, threadIdleMs: 2000 });
  t.teardown(() => service.close());
  const target = await loadGeneration(generationDir(data, 6));
  t.is(service.threads, 0);
  const expected = await deltaChain(data, 'hot', '2', '6');
  const merged = await service.delta(target, 'hot', '2');
  t.is(service.threads, 1);
  t.deepEqual(merged, expected);
  // The same pair again: from the cache, no merge.
  const merges = service.counts.merges;
  await service.delta(target, 'hot', '2');
  t.is(service.counts.merges, merges);
  await t.throwsAsync(service.delta(target, 'hot', '7'), { code: 'EDELTA_GONE' } as never);
  await t.throwsAsync(service.delta(target, 'cold', '2'), { code: 'EDELTA_GONE' } as never);
  // One merge running, one waiting, the third refused at once; the first two are answered.
  const [a, b, c] = [service.delta(target, 'hot', '0'), service.delta(target, 'hot', '1'), service.delta(target, 'hot', '3')];
  await t.throwsAsync(c, { code: 'EDELTA_BUSY' } as never);
  t.deepEqual(await a, await deltaChain(data, 'hot', '0', '6'));
  t.deepEqual(await b, await deltaChain(data, 'hot', '1', '6'));
  // Idle threads are stopped; the next merge starts one again.
  for (let i = 0; i < 300 && service.threads > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(service.threads, 0);
  t.deepEqual(await service.delta(target, 'hot', '3'), await deltaChain(data, 'hot', '3', '6'));
});
