// Ethereum generations: full builds from state files and the synthetic
// generator, incremental builds from diffs (partial accounts, deletes with
// their storage, manifest changes moving keys), refusals that publish
// nothing. Values are read back in plaintext from the lanes.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildEthDiff, buildEthState } from '../src/eth/build.js';
import { readHotManifest } from '../src/eth/generation-files.js';
import { HotManifest } from '../src/eth/hot-manifest.js';
import { accountKey, storageKey, toHex } from '../src/eth/keys.js';
import { readLaneValues } from '../src/eth/lane-reader.js';
import { SlotIndex } from '../src/eth/slot-index.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { type AccountLine } from '../src/eth/state-lines.js';
import { loadGeneration } from '../src/store/generation.js';
import { generationDir, generationsDir } from '../src/store/layout.js';
import { verifyGeneration } from '../src/store/verify.js';
import { EthModel } from './eth-helpers.js';
import { rmrf, tempDir } from './helpers.js';

const SHARD = 16384;

/** Every key of the model reads its value from its lane; `absent` keys read nothing. */
async function checkGeneration(t: import('ava').ExecutionContext, data: string, id: string, model: EthModel, absent: Uint8Array[] = [], sample?: number) {
  const dir = generationDir(data, id);
  const gen = await loadGeneration(dir);
  let entries = [...model.values];
  if (sample !== undefined && entries.length > sample) entries = Array.from({ length: sample }, () => entries[crypto.randomInt(entries.length)]!);
  for (const lane of ['hot', 'cold'] as const) {
    const mine = entries.filter(([k]) => model.laneOf(k) === lane);
    const got = await readLaneValues(gen.lanes[lane]!, dir, mine.map(([k]) => Buffer.from(k, 'hex')));
    let bad = 0;
    mine.forEach(([k, v], i) => {
      if (!got[i] || toHex(got[i]!) !== toHex(v)) bad++;
      if (bad === 1 && (!got[i] || toHex(got[i]!) !== toHex(v))) t.log(`first mismatch: ${lane} ${k}: ${got[i] ? toHex(got[i]!) : 'absent'} != ${toHex(v)}`);
    });
    t.is(bad, 0, `${lane}: ${mine.length} keys read back in generation ${id}`);
    // Absent keys (and keys of the other lane) are not here.
    const other = [...absent, ...entries.filter(([k]) => model.laneOf(k) !== lane).slice(0, 50).map(([k]) => Buffer.from(k, 'hex'))];
    const none = await readLaneValues(gen.lanes[lane]!, dir, other);
    t.true(none.every((v) => v === undefined), `${lane}: absent keys are absent`);
  }
  // The slot index lists exactly the model's slots (for a sample of addresses).
  const index = await SlotIndex.open(dir);
  for (const a of [...model.slots.keys()].slice(0, 40)) {
    t.deepEqual((await index.slotsOf(Buffer.from(a, 'hex'))).map(toHex).sort(), [...model.slots.get(a)!].sort());
  }
  await verifyGeneration(dir); // every file listed, checksums right
}

test('synthetic state: full build, 6 incremental blocks, reads equal the model', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const syn = new EthSynthetic(1500, 'build-test');
  const model = new EthModel(syn.hotManifest);
  model.apply(syn.state(), 'state');
  const full = await buildEthState({ data, block: 100, state: syn.state(), hotManifest: syn.hotManifest, shardSize: SHARD, chainId: 5, blockHash: `0x${'aa'.repeat(32)}` });
  t.is(full.manifest.block_hash, `0x${'aa'.repeat(32)}`);
  t.is(full.manifest.chain_id, 5);
  t.is(full.stats.keys!.hot + full.stats.keys!.cold, model.values.size);
  const absent = [accountKey(`0x${'ee'.repeat(20)}`), storageKey(syn.tokens[0]!.address, 123456789n)];
  await checkGeneration(t, data, '100', model, absent);
  t.is((await readHotManifest(generationDir(data, '100'), full.manifest)).manifest.toJson(), syn.hotManifest.toJson());

  let from = '100';
  for (let b = 101; b <= 106; b++) {
    const diff = syn.diff(b === 106 ? 110 : b, { keys: 300, inserts: 40, deletes: 20 }); // block 110's diff deletes an account
    model.apply(diff, 'diff');
    const r = await buildEthDiff({ data, from, block: b, diff });
    t.is(r.manifest.chain_id, 5, 'the chain id is inherited');
    t.is(r.manifest.block_hash, null);
    await checkGeneration(t, data, String(b), model, absent, 400);
    // Every key the diff touched reads right (not just a sample).
    const touched = new EthModel(model.manifest);
    for (const l of diff) {
      const k = toHex(accountKey(l.address));
      if (model.values.has(k)) touched.values.set(k, model.values.get(k)!);
      for (const s of l.storage) {
        const sk = toHex(storageKey(l.address, s.slot));
        if (model.values.has(sk)) touched.values.set(sk, model.values.get(sk)!);
      }
    }
    await checkGeneration(t, data, String(b), touched);
    from = String(b);
  }
});

test('state diffs: partial accounts keep old fields, deleted accounts lose their storage, manifest changes move keys', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}`;
  const token = addr(0xabc);
  const plain = addr(0xdef);
  const lines: AccountLine[] = [];
  for (let i = 1; i <= 50; i++) lines.push({ line: i, address: addr(i) as `0x${string}`, deleted: false, balance: BigInt(i) * 10n ** 18n, nonce: BigInt(i), codeSize: 0, storage: [] });
  const slots = (n: number, base: number) => Array.from({ length: n }, (_, s) => ({ slot: Buffer.from(toHex(storageKey(addr(1), BigInt(base + s))).slice(-64), 'hex'), value: Buffer.from(`${'00'.repeat(31)}${(s % 250 + 1).toString(16).padStart(2, '0')}`, 'hex') }));
  lines.push({ line: 51, address: token as `0x${string}`, deleted: false, balance: 0n, nonce: 1n, codeSize: 100, storage: slots(30, 0) });
  lines.push({ line: 52, address: plain as `0x${string}`, deleted: false, balance: 7n, nonce: 1n, codeSize: 200, storage: slots(25, 1000) });
  const manifest = HotManifest.fromJson({ version: 1, contracts: [{ address: token, erc20: { balance_slot: 0, layout: 'solidity' } }] });
  const model = new EthModel(manifest);
  model.apply(lines, 'state');
  await buildEthState({ data, block: 1, state: lines, hotManifest: manifest, shardSize: SHARD });
  await checkGeneration(t, data, '1', model);

  // Block 2: partial updates, a deleted contract (storage and all), a slot cleared, a new account with storage.
  const diff2: AccountLine[] = [
    { line: 1, address: addr(3) as `0x${string}`, deleted: false, balance: 5n, storage: [] }, // nonce and code size kept
    { line: 2, address: addr(4) as `0x${string}`, deleted: false, nonce: 99n, storage: [] },
    { line: 3, address: plain as `0x${string}`, deleted: true, storage: [] },
    { line: 4, address: token as `0x${string}`, deleted: false, storage: [{ slot: slots(1, 0)[0]!.slot, value: Buffer.alloc(32) }] },
    { line: 5, address: addr(777) as `0x${string}`, deleted: false, codeSize: 5, storage: slots(3, 5000) }, // new: balance and nonce 0
  ];
  model.apply(diff2, 'diff');
  await buildEthDiff({ data, from: '1', block: 2, diff: diff2 });
  await checkGeneration(t, data, '2', model, [accountKey(plain), storageKey(plain, slots(1, 1000)[0]!.slot)]);
  const a3 = await readLaneValues((await loadGeneration(generationDir(data, '2'))).lanes.cold!, generationDir(data, '2'), [accountKey(addr(3))]);
  t.is(toHex(a3[0]!), toHex(model.values.get(toHex(accountKey(addr(3))))!));

  // Block 3: the manifest drops the token and lists addr(777): their storage changes lanes.
  const next = HotManifest.fromJson({ version: 1, contracts: [{ address: addr(777) }] });
  const diff3: AccountLine[] = [{ line: 1, address: addr(777) as `0x${string}`, deleted: false, storage: [{ slot: slots(1, 6000)[0]!.slot, value: Buffer.from('01'.repeat(32), 'hex') }] }];
  model.manifest = next;
  model.apply(diff3, 'diff');
  const r3 = await buildEthDiff({ data, from: '2', block: 3, diff: diff3, hotManifest: next });
  t.is(r3.stats.eth.moved, 29 + 3, 'the token\'s 29 slots and addr(777)\'s 3 moved');
  const old = HotManifest.fromJson({ version: 1, contracts: [{ address: token }] });
  // Keys that moved are no longer in their old lane.
  const movedKeys = [...model.values.keys()].filter((k) => k.startsWith('01') && old.laneOf(Buffer.from(k, 'hex')) !== next.laneOf(Buffer.from(k, 'hex')));
  t.true(movedKeys.length >= 29);
  await checkGeneration(t, data, '3', model);
  const gen3 = await loadGeneration(generationDir(data, '3'));
  const stale = await readLaneValues(gen3.lanes.hot!, generationDir(data, '3'), movedKeys.filter((k) => next.laneOf(Buffer.from(k, 'hex')) === 'cold').map((k) => Buffer.from(k, 'hex')));
  t.true(stale.every((v) => v === undefined), 'keys moved to cold are gone from hot');
  t.is((await readHotManifest(generationDir(data, '3'), gen3.manifest)).manifest.toJson(), next.toJson());

  // Block 4 keeps the manifest: hot-manifest.json is a hard link to block 3's.
  await buildEthDiff({ data, from: '3', block: 4, diff: [] });
  t.is(fs.statSync(path.join(generationDir(data, '4'), 'hot-manifest.json')).ino, fs.statSync(path.join(generationDir(data, '3'), 'hot-manifest.json')).ino);
});

test('state diffs: an account destroyed and re-created in one block ("deleted", then a line setting it anew) keeps none of its old storage or fields', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}` as `0x${string}`;
  const hotC = addr(0xabc);
  const coldC = addr(0xdef);
  const word = (n: number) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex');
  const slots = (from: number, n: number, v: number) => Array.from({ length: n }, (_, i) => ({ slot: word(from + i), value: word(v + i) }));
  const manifest = HotManifest.fromJson({ version: 1, contracts: [{ address: hotC }] });
  const state: AccountLine[] = [
    { line: 1, address: hotC, deleted: false, balance: 9n, nonce: 4n, codeSize: 300, storage: slots(0, 20, 100) },
    { line: 2, address: coldC, deleted: false, balance: 8n, nonce: 3n, codeSize: 200, storage: slots(0, 20, 200) },
    { line: 3, address: addr(1), deleted: false, balance: 1n, nonce: 1n, codeSize: 0, storage: [] },
  ];
  const model = new EthModel(manifest);
  model.apply(state, 'state');
  await buildEthState({ data, block: 1, state, hotManifest: manifest, shardSize: SHARD });
  // Block 2, as a follower writes it: each contract removed, then set anew with two slots (one of them an old slot number) and no nonce.
  const file = path.join(data, 'diff-2.jsonl');
  const text = [
    { address: coldC, deleted: true },
    { address: addr(1), balance: '0x2' },
    { address: coldC, balance: '0x5', code_size: 40, storage: { '0x3': '0x77', '0x100': '0x78' } },
    { address: hotC, deleted: true },
    { address: hotC, nonce: '0x1', storage: { '0x0': '0x1' } },
  ].map((l) => JSON.stringify(l)).join('\n') + '\n';
  fs.writeFileSync(file, text);
  const { parseStateText } = await import('../src/eth/state-file.js');
  model.apply(parseStateText(text, 'diff', 'diff-2'), 'diff');
  await buildEthDiff({ data, from: '1', block: 2, diff: file });
  const gone = [...slots(0, 20, 0).filter((s) => !s.slot.equals(word(3))).map((s) => storageKey(coldC, s.slot)), ...slots(1, 19, 0).map((s) => storageKey(hotC, s.slot))];
  await checkGeneration(t, data, '2', model, gone);
  const gen = await loadGeneration(generationDir(data, '2'));
  const [cold, hot] = await readLaneValues(gen.lanes.cold!, gen.dir, [accountKey(coldC), accountKey(hotC)]);
  const { decodeBasicData } = await import('../src/eth/values.js');
  t.deepEqual(decodeBasicData(cold!), { balance: 5n, nonce: 0n, codeSize: 40 }, 'the nonce is not the old account\'s');
  t.deepEqual(decodeBasicData(hot!), { balance: 0n, nonce: 1n, codeSize: 0 });
  t.deepEqual(await (await SlotIndex.open(gen.dir)).slotsOf(Buffer.from(coldC.slice(2), 'hex')).then((s) => s.map((x) => toHex(x)).sort()), [toHex(word(3)), toHex(word(0x100))]);

  // Any other repetition of an address is refused, naming both lines.
  const refuse = async (lines: object[], message: RegExp) => {
    fs.writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    await t.throwsAsync(buildEthDiff({ data, from: '2', block: 3, diff: file }), { code: 'EINPUT', message });
  };
  await refuse([{ address: coldC, balance: '0x1' }, { address: coldC, deleted: true }], /:2: account .* is listed twice \(first on line 1\); an account may appear twice only as a "deleted" line followed by one line/);
  await refuse([{ address: coldC, deleted: true }, { address: coldC, deleted: true }], /:2: account .* is listed twice/);
  await refuse([{ address: coldC, deleted: true }, { address: coldC, balance: '0x1' }, { address: coldC, nonce: '0x1' }], /:3: account .* is listed twice/);
  t.deepEqual(fs.readdirSync(generationsDir(data)).sort(), ['1', '2']);
});

test('a state file with a bad line is refused and nothing is published', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const file = path.join(data, 'state.jsonl');
  const good = (i: number) => JSON.stringify({ address: `0x${i.toString(16).padStart(40, '0')}`, balance: `0x${i.toString(16)}`, nonce: i, storage: { '0x1': '0x2' } });
  const lines = Array.from({ length: 500 }, (_, i) => good(i + 1));
  lines[321] = JSON.stringify({ address: `0x${'12'.repeat(20)}`, balance: '0x1', nonce: '-1' });
  fs.writeFileSync(file, lines.join('\n') + '\n');
  await t.throwsAsync(buildEthState({ data, block: 9, state: file, shardSize: SHARD, publish: true }), { code: 'EINPUT', message: new RegExp(`${file}:322: .*nonce`) });
  t.deepEqual(fs.readdirSync(generationsDir(data)), [], 'no generation, no temporary or scratch directory');
  t.false(fs.existsSync(path.join(data, 'current')));
  // A state diff with a bad line: the same.
  lines[321] = good(322);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  await buildEthState({ data, block: 9, state: file, shardSize: SHARD, publish: true });
  const diff = path.join(data, 'diff.jsonl');
  fs.writeFileSync(diff, `${good(1)}\n{"address": "0x${'34'.repeat(20)}", "deleted": true, "balance": 1}\n`);
  await t.throwsAsync(buildEthDiff({ data, from: '9', block: 10, diff, publish: true }), { code: 'EINPUT', message: /diff.jsonl:2: a deleted account has no balance/ });
  t.deepEqual(fs.readdirSync(generationsDir(data)), ['9']);
  t.is(fs.readlinkSync(path.join(data, 'current')), path.join('generations', '9'));
  // An existing generation is refused before the state is read (it may take minutes).
  const untouched = {
    *[Symbol.iterator](): Generator<AccountLine> {
      throw new Error('the state was read');
    },
  };
  await t.throwsAsync(buildEthState({ data, block: 9, state: untouched }), { code: 'EEXIST', message: /immutable/ });
  t.deepEqual(fs.readdirSync(generationsDir(data)), ['9']);
});
