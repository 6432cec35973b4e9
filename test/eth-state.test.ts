// State files (streaming reader, errors by line), the slot index (base,
// logs, compaction) and the synthetic state generator.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { toHex } from '../src/eth/keys.js';
import { MAX_LOGS, SlotIndex, SlotIndexWriter, type FileList } from '../src/eth/slot-index.js';
import { readStateFile } from '../src/eth/state-file.js';
import { type AccountLine } from '../src/eth/state-lines.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { rmrf, tempDir } from './helpers.js';

async function collect(file: string, kind: 'state' | 'diff', opts = {}): Promise<AccountLine[]> {
  const out: AccountLine[] = [];
  for await (const a of readStateFile(file, kind, opts)) out.push(a);
  return out;
}

test('readStateFile streams accounts with line numbers; header line; blank lines skipped', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const file = path.join(dir, 'state.jsonl');
  const a = `0x${'11'.repeat(20)}`;
  const b = `0x${'22'.repeat(20)}`;
  fs.writeFileSync(
    file,
    [
      JSON.stringify({ block_number: 7, block_hash: `0x${'cd'.repeat(32)}`, chain_id: 5 }),
      JSON.stringify({ address: a, balance: '0x10', nonce: 1 }),
      '',
      JSON.stringify({ address: b, balance: 0, nonce: 0, code_size: 10, storage: { '0x0': '0x1' } }),
    ].join('\n') + '\n',
  );
  let header: unknown;
  const got = await collect(file, 'state', { onHeader: (h: unknown) => (header = h) });
  t.deepEqual(header, { block_number: 7, block_hash: `0x${'cd'.repeat(32)}`, chain_id: 5 });
  t.deepEqual(got.map((g) => [g.line, g.address.toLowerCase(), g.balance, g.codeSize]), [
    [2, a, 16n, 0],
    [4, b, 0n, 10],
  ]);
});

test('readStateFile: the first bad line stops the read, naming file and line', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const file = path.join(dir, 's.jsonl');
  const good = (i: number) => JSON.stringify({ address: `0x${i.toString(16).padStart(40, '0')}`, balance: i, nonce: 0 });
  const lines = Array.from({ length: 100 }, (_, i) => good(i + 1));
  lines[57] = '{"address": "0x12", "balance": 1, "nonce": 0}';
  fs.writeFileSync(file, lines.join('\n') + '\n');
  await t.throwsAsync(collect(file, 'state'), { code: 'EINPUT', message: new RegExp(`^${file}:58: "address" must be 0x`) });
  lines[57] = good(3); // a duplicate of line 3
  fs.writeFileSync(file, lines.join('\n') + '\n');
  await t.throwsAsync(collect(file, 'state'), { code: 'EINPUT', message: /:58: account 0x0+3 is listed twice/ });
  await t.throwsAsync(collect(path.join(dir, 'missing.jsonl'), 'state'), { code: 'EINPUT', message: /cannot read/ });
  fs.writeFileSync(file, good(1) + '\n' + good(2));
  await t.throwsAsync(collect(file, 'diff', { requireFinalNewline: true }), { message: /:2: the last line is not terminated/ });
  t.is((await collect(file, 'diff')).length, 2);
});

/** address hex -> set of slot hex: the model the index must reproduce. */
type Model = Map<string, Set<string>>;

async function checkIndex(t: import('ava').ExecutionContext, genDir: string, model: Model, probe: string[]) {
  const index = await SlotIndex.open(genDir);
  for (const a of probe) {
    const got = (await index.slotsOf(Buffer.from(a, 'hex'))).map(toHex).sort();
    t.deepEqual(got, [...(model.get(a) ?? [])].sort(), `slots of ${a}`);
  }
  return index;
}

async function checkFiles(t: import('ava').ExecutionContext, genDir: string, files: FileList) {
  for (const [rel, { size, sha256 }] of Object.entries(files)) {
    const p = path.join(genDir, rel);
    t.is(fs.statSync(p).size, size, rel);
    t.is(crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'), sha256, rel);
  }
}

test('slot index: full build, child logs, compaction, deletes and re-inserts', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const rnd = (n: number) => crypto.randomBytes(n).toString('hex');
  const model: Model = new Map();
  const addresses = Array.from({ length: 300 }, () => rnd(20));
  addresses.push('00'.repeat(20), 'ff'.repeat(20)); // the ends of the order
  const g0 = path.join(dir, '0');
  await fsp.mkdir(g0);
  const writer = await SlotIndexWriter.create(path.join(dir, 'scratch.bin'));
  for (const a of addresses) {
    const slots = Array.from({ length: crypto.randomInt(0, 40) }, () => rnd(32));
    if (slots.length) model.set(a, new Set(slots));
    await writer.add(Buffer.from(a, 'hex'), slots.map((s) => Buffer.from(s, 'hex')));
  }
  let files = await writer.finish(g0, '0');
  t.false(fs.existsSync(path.join(dir, 'scratch.bin')));
  await checkFiles(t, g0, files);
  let index = await checkIndex(t, g0, model, [...addresses, rnd(20)]);

  // Blocks of changes: deletes of existing slots, inserts (new and existing addresses), re-inserts.
  let parentDir = g0;
  let compactions = 0;
  for (let b = 1; b <= MAX_LOGS + 5; b++) {
    const changes = [];
    for (let k = 0; k < 20; k++) {
      const a = addresses[crypto.randomInt(addresses.length)]!;
      const existing = [...(model.get(a) ?? [])];
      if (existing.length && k % 2 === 0) {
        const s = existing[crypto.randomInt(existing.length)]!;
        changes.push({ address: Buffer.from(a, 'hex'), slot: Buffer.from(s, 'hex'), present: false });
        model.get(a)!.delete(s);
      } else {
        const s = rnd(32);
        changes.push({ address: Buffer.from(a, 'hex'), slot: Buffer.from(s, 'hex'), present: true });
        if (!model.has(a)) model.set(a, new Set());
        model.get(a)!.add(s);
      }
    }
    const fresh = rnd(20);
    addresses.push(fresh);
    const s = rnd(32);
    changes.push({ address: Buffer.from(fresh, 'hex'), slot: Buffer.from(s, 'hex'), present: true });
    model.set(fresh, new Set([s]));
    const gDir = path.join(dir, String(b));
    await fsp.mkdir(gDir);
    files = await index.writeChild(gDir, String(b), changes, files);
    await checkFiles(t, gDir, files);
    // Every address at the end and around compactions; a sample otherwise (keeps the test quick).
    const sample = b === MAX_LOGS + 5 || b % 16 === 0 ? addresses : [...changes.map((c) => toHex(c.address)), ...addresses.slice(0, 20)];
    index = await checkIndex(t, gDir, model, sample);
    if (index.meta.logs.length === 0) compactions++;
    // The parent generation is untouched (hard links, never rewritten).
    t.true(fs.existsSync(path.join(parentDir, 'eth', 'slots.json')));
    parentDir = gDir;
  }
  t.true(compactions >= 1, 'the logs were merged into a new base at least once');
});

test('synthetic state: deterministic, sized, tokens in the hot manifest with real holders', (t) => {
  const a = new EthSynthetic(2000, 'test-seed');
  const b = new EthSynthetic(2000, 'test-seed');
  const linesA = [...a.state()];
  const linesB = [...b.state()];
  t.deepEqual(linesA, linesB);
  t.notDeepEqual([...new EthSynthetic(2000, 'other').state()][0], linesA[0]);
  const keys = linesA.reduce((n, l) => n + 1 + l.storage.length, 0);
  t.true(Math.abs(keys - a.approximateKeys) / keys < 0.15, `${keys} keys, about ${a.approximateKeys} expected`);
  t.is(new Set(linesA.map((l) => l.address.toLowerCase())).size, linesA.length, 'one line per address');
  t.is(a.hotManifest.contracts.length, 13);
  // Holder 0 of token 0 has a balance at the manifest's slot.
  const holder = a.holderOf(0);
  const tokenLine = linesA.find((l) => l.address === a.tokens[0]!.address)!;
  const slot = toHex(a.balanceSlot(0, holder.address));
  t.truthy(tokenLine.storage.find((s) => toHex(s.slot) === slot));
  // Diffs: deterministic, about the asked size, one line per address.
  const d1 = a.diff(11, { keys: 400, inserts: 40, deletes: 10 });
  t.deepEqual(d1, b.diff(11, { keys: 400, inserts: 40, deletes: 10 }));
  const changed = d1.reduce((n, l) => n + l.storage.length + (l.deleted || l.balance !== undefined || l.nonce !== undefined ? 1 : 0), 0);
  t.true(changed >= 400 && changed <= 402, `${changed} changed keys`);
  t.is(new Set(d1.map((l) => l.address)).size, d1.length);
  t.false(d1.some((l) => l.deleted));
  t.true(a.diff(20, { keys: 100 }).some((l) => l.deleted), 'every 10th block deletes an account');
});
