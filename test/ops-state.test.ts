// The operator's converters to state files (docs/OPERATIONS.md, "Producing a
// state file"): a genesis file's alloc and geth's iterative dump. Their output
// is what lanepir build --state reads; anything they cannot convert exactly
// leaves no state file behind (a partial one would serve missing accounts as
// absent).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseStateText } from '../src/eth/state-file.js';
import { type BlockHeaderLine } from '../src/eth/state-lines.js';
import { cli, rmrf, run, tempDir } from './helpers.js';

const GENESIS = path.resolve('ops/genesis-to-state');
const GETH = path.resolve('ops/geth-dump-to-state');
const A = '0x' + 'aa'.repeat(20);
const B = 'bb'.repeat(20);
const word = (n: number) => '0x' + n.toString(16).padStart(64, '0');

function parsed(file: string) {
  let header: BlockHeaderLine | undefined;
  const lines = parseStateText(fs.readFileSync(file, 'utf8'), 'state', file, { onHeader: (h) => (header = h) });
  return { header, lines: lines.map((l) => ({ address: l.address.toLowerCase(), balance: l.balance, nonce: l.nonce, codeSize: l.codeSize, storage: l.storage.map((s) => [Buffer.from(s.slot).toString('hex'), Buffer.from(s.value).toString('hex')]) })) };
}

test('ops/genesis-to-state: alloc to a state file at block 0 that lanepir build reads; refusals write nothing', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const genesis = path.join(dir, 'genesis.json');
  fs.writeFileSync(genesis, JSON.stringify({ config: { chainId: 1337 }, alloc: { [A]: { balance: '0x10' }, [B]: { balance: '100', nonce: '0x2', code: '0x600160', storage: { '0x01': '0x05', '0x02': '0x00' } } } }));
  const out = path.join(dir, 'state-0.jsonl');
  const r = await run(process.execPath, [GENESIS, genesis, out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /2 accounts written/);
  const { header, lines } = parsed(out);
  t.deepEqual(header, { block_number: 0, chain_id: 1337 });
  t.deepEqual(lines, [
    { address: A, balance: 16n, nonce: 0n, codeSize: 0, storage: [] },
    { address: `0x${B}`, balance: 100n, nonce: 2n, codeSize: 3, storage: [[word(1).slice(2), word(5).slice(2)]] },
  ]);
  const data = path.join(dir, 'data');
  const built = await cli('build', '--data', data, '--block', '0', '--state', out, '--chain-id', '1337');
  t.is(built.code, 0, built.stderr);

  // Something it cannot convert, an existing output file: exit 1, nothing written.
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ alloc: { [A]: { balance: 'lots' } } }));
  const refused = await run(process.execPath, [GENESIS, bad, path.join(dir, 'bad.jsonl')]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /balance: not a quantity: "lots"/);
  const again = await run(process.execPath, [GENESIS, genesis, out]);
  t.is(again.code, 1);
  t.regex(again.stderr, /exists; not overwriting it/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['bad.json', 'data', 'genesis.json', 'state-0.jsonl']);
});

test('ops/geth-dump-to-state: an iterative dump to a state file; an account without its preimage stops it and leaves no file', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const EMPTY = '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470';
  const dump = [
    { root: '0x' + '12'.repeat(32) },
    { balance: '1000000000000000000000', nonce: 7, root: '0x' + '56'.repeat(32), codeHash: EMPTY, address: A, key: '0x' + '01'.repeat(32) },
    { balance: '0', nonce: 1, root: '0x' + '78'.repeat(32), codeHash: '0x' + '9a'.repeat(32), code: '0x60016002', storage: { [word(3)]: '2a', [word(4)]: 'ff00' }, address: `0x${B}`, key: '0x' + '02'.repeat(32) },
  ];
  const file = path.join(dir, 'dump.jsonl');
  fs.writeFileSync(file, dump.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const out = path.join(dir, 'state.jsonl');
  const r = await run(process.execPath, [GETH, file, '21000000', out]);
  t.is(r.code, 0, r.stderr);
  const { header, lines } = parsed(out);
  t.deepEqual(header, { block_number: 21000000, state_root: '0x' + '12'.repeat(32) }, "the dump's root is the state file's state_root");
  t.deepEqual(lines, [
    { address: A, balance: 10n ** 21n, nonce: 7n, codeSize: 0, storage: [] },
    { address: `0x${B}`, balance: 0n, nonce: 1n, codeSize: 4, storage: [[word(3).slice(2), word(0x2a).slice(2)], [word(4).slice(2), word(0xff00).slice(2)]] },
  ]);

  // No preimage for an account (geth without --cache.preimages): refused, and no state file, no temporary file.
  fs.writeFileSync(file, [...dump, { balance: '5', nonce: 0, root: '0x' + '56'.repeat(32), codeHash: EMPTY, key: '0x' + '03'.repeat(32) }].map((l) => JSON.stringify(l)).join('\n') + '\n');
  const out2 = path.join(dir, 'state2.jsonl');
  const refused = await run(process.execPath, [GETH, file, '21000000', out2]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /dump\.jsonl:4: an account without its address/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['dump.jsonl', 'state.jsonl']);

  // A dump without its root line cannot say which state it is: refused.
  fs.writeFileSync(file, dump.slice(1).map((l) => JSON.stringify(l)).join('\n') + '\n');
  const rootless = await run(process.execPath, [GETH, file, '21000000', out2]);
  t.is(rootless.code, 1);
  t.regex(rootless.stderr, /no "root" line before the first account/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['dump.jsonl', 'state.jsonl']);
});
