// The Ethereum layer's encodings: keys, basic-data values, ERC-20 balance
// slots, the hot manifest and state-file lines.
import test from 'ava';
import crypto from 'node:crypto';
import { encodeAbiParameters, keccak256 as viemKeccak, getAddress } from 'viem';
import { erc20BalanceSlot, keccak256 } from '../src/eth/erc20.js';
import { HotManifest } from '../src/eth/hot-manifest.js';
import { accountKey, decodeKey, parseAddress, parseWord, storageKey, toHex, wordToHex } from '../src/eth/keys.js';
import { parseStateLine } from '../src/eth/state-lines.js';
import { MAX_BALANCE, MAX_NONCE, decodeBasicData, encodeBasicData } from '../src/eth/values.js';

const ADDR = '0x52908400098527886E0F7030069857D2E4169EE7'; // EIP-55 test vector
const randomAddress = () => getAddress(`0x${crypto.randomBytes(20).toString('hex')}`);

test('account and storage keys have the documented bytes', (t) => {
  const a = accountKey(ADDR);
  t.is(a.length, 21);
  t.is(toHex(a), `00${ADDR.slice(2).toLowerCase()}`);
  const s = storageKey(ADDR, 9n);
  t.is(s.length, 53);
  t.is(toHex(s), `01${ADDR.slice(2).toLowerCase()}${'0'.repeat(62)}09`);
  t.deepEqual(decodeKey(a), { kind: 'account', address: ADDR });
  t.deepEqual(decodeKey(s), { kind: 'storage', address: ADDR, slot: `0x${'0'.repeat(62)}09` });
  t.deepEqual(storageKey(ADDR, '0x9'), s);
  t.deepEqual(storageKey(ADDR, '9'), s);
  t.deepEqual(storageKey(ADDR, `0x${'0'.repeat(62)}09`), s);
});

test('addresses: lowercase and checksummed accepted, a bad checksum refused', (t) => {
  t.is(parseAddress(ADDR.toLowerCase()), ADDR);
  t.is(parseAddress(ADDR), ADDR);
  const bad = ADDR.slice(0, -1) + 'e'; // last digit's case flipped
  t.throws(() => parseAddress(bad), { code: 'EADDRESS', message: /checksum/ });
  t.throws(() => parseAddress('0x1234'), { code: 'EADDRESS' });
  t.throws(() => parseAddress(42), { code: 'EADDRESS' });
});

test('words: hex, decimal, bigint; out of range refused', (t) => {
  t.is(wordToHex(parseWord('0xff')), `0x${'0'.repeat(62)}ff`);
  t.is(wordToHex(parseWord(255)), `0x${'0'.repeat(62)}ff`);
  t.is(wordToHex(parseWord('255')), `0x${'0'.repeat(62)}ff`);
  t.is(wordToHex(parseWord((1n << 256n) - 1n)), `0x${'f'.repeat(64)}`);
  t.throws(() => parseWord(1n << 256n), { code: 'EWORD' });
  t.throws(() => parseWord(`0x${'f'.repeat(65)}`), { code: 'EWORD' });
  t.throws(() => parseWord(2 ** 60), { code: 'EWORD', message: /exact/ });
  t.throws(() => parseWord(-1), { code: 'EWORD' });
  t.throws(() => parseWord('0x'), { code: 'EWORD' });
});

test('basic data: exact EIP-7864 layout, round trip, range checks', (t) => {
  const word = encodeBasicData({ codeSize: 0x123456, nonce: 0x0102030405060708n, balance: 0x0a0b0c0d0e0f101112131415161718n });
  t.is(toHex(word), '00' + '00000000' + '123456' + '0102030405060708' + '000a0b0c0d0e0f101112131415161718');
  t.deepEqual(decodeBasicData(word), { codeSize: 0x123456, nonce: 0x0102030405060708n, balance: 0x0a0b0c0d0e0f101112131415161718n });
  const max = { codeSize: 2 ** 24 - 1, nonce: MAX_NONCE, balance: MAX_BALANCE };
  t.deepEqual(decodeBasicData(encodeBasicData(max)), max);
  t.throws(() => encodeBasicData({ ...max, nonce: MAX_NONCE + 1n }), { code: 'ERANGE', message: /nonce/ });
  t.throws(() => encodeBasicData({ ...max, balance: MAX_BALANCE + 1n }), { code: 'ERANGE', message: /balance/ });
  t.throws(() => encodeBasicData({ ...max, codeSize: 2 ** 24 }), { code: 'ERANGE', message: /code_size/ });
  t.throws(() => encodeBasicData({ ...max, balance: -1n }), { code: 'ERANGE' });
  const versioned = encodeBasicData(max);
  versioned[0] = 1;
  t.throws(() => decodeBasicData(versioned), { code: 'EVALUE', message: /version/ });
  const reserved = encodeBasicData(max);
  reserved[3] = 1;
  t.throws(() => decodeBasicData(reserved), { code: 'EVALUE', message: /reserved/ });
});

test('ERC-20 balance slots match the ABI encoding of both layouts', (t) => {
  for (let k = 0; k < 20; k++) {
    const holder = randomAddress();
    const slot = BigInt(crypto.randomInt(100));
    const sol = viemKeccak(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [holder, slot]));
    const vy = viemKeccak(encodeAbiParameters([{ type: 'uint256' }, { type: 'address' }], [slot, holder]));
    t.is(wordToHex(erc20BalanceSlot(holder, slot, 'solidity')), sol);
    t.is(wordToHex(erc20BalanceSlot(holder, slot, 'vyper')), vy);
  }
  // Ethereum's keccak-256 (not SHA3-256): well-known digests.
  t.is(toHex(keccak256(new Uint8Array(0))), 'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470');
  t.is(toHex(keccak256(new Uint8Array(32))), '290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563');
});

test('hot manifest: routing, canonical form, ERC-20 keys, refusals', (t) => {
  const token = randomAddress();
  const other = randomAddress();
  const m = HotManifest.parse(
    JSON.stringify({ version: 1, contracts: [{ address: token.toLowerCase(), label: 'USDC', erc20: { balance_slot: 9, layout: 'solidity' } }, { address: other }] }),
  );
  t.is(m.laneOf(storageKey(token, 1n)), 'hot');
  t.is(m.laneOf(storageKey(other, 1n)), 'hot');
  t.is(m.laneOf(storageKey(randomAddress(), 1n)), 'cold');
  t.is(m.laneOf(accountKey(token)), 'cold');
  t.is(JSON.parse(m.toJson()).contracts[0].address, token); // checksummed
  const holder = randomAddress();
  t.deepEqual(m.erc20BalanceKey(token, holder), storageKey(token, erc20BalanceSlot(holder, 9, 'solidity')));
  t.throws(() => m.erc20BalanceKey(other, holder), { code: 'ETOKEN', message: /not an ERC-20 token/ });
  t.deepEqual(m.erc20BalanceKey(other, holder, { balanceSlot: 3, layout: 'vyper' }), storageKey(other, erc20BalanceSlot(holder, 3, 'vyper')));
  t.deepEqual(m.difference(HotManifest.empty()), [token, other]);

  const big = HotManifest.parse(JSON.stringify({ version: 1, contracts: [{ address: token, erc20: { balance_slot: `0x${'ab'.repeat(32)}`, layout: 'vyper' } }] }));
  t.deepEqual(big.contract(token)?.erc20?.balanceSlot, parseWord(`0x${'ab'.repeat(32)}`));

  const refuse = (json: unknown, re: RegExp) => t.throws(() => HotManifest.fromJson(json), { code: 'EHOT_MANIFEST', message: re });
  refuse({ version: 2, contracts: [] }, /version/);
  refuse({ version: 1, contracts: [{ address: token, balanceSlot: 9 }] }, /balanceSlot|Unrecognized/);
  refuse({ version: 1, contracts: [{ address: token }, { address: token.toLowerCase() }] }, /listed twice/);
  refuse({ version: 1, contracts: [{ address: '0x123' }] }, /address/);
  refuse({ version: 1, contracts: [{ address: token, erc20: { balance_slot: 9, layout: 'rust' } }] }, /layout/);
  refuse({ version: 1, contracts: [{ address: token, erc20: { balance_slot: -1, layout: 'vyper' } }] }, /balance_slot/);
  t.throws(() => HotManifest.parse('{"version": 1,'), { code: 'EHOT_MANIFEST', message: /JSON/ });
});

test('state lines: full state and diff shapes, with errors naming the line', (t) => {
  const a = randomAddress();
  const line = (obj: unknown, kind: 'state' | 'diff' = 'state', header = false) => parseStateLine(JSON.stringify(obj), kind, 'f:7', header);
  const ok = line({ address: a, balance: '0xde0b6b3a7640000', nonce: 5, code_size: 0, storage: { '0x1': '0x2', '0x02': '0' } });
  t.true('account' in ok);
  if ('account' in ok) {
    t.is(ok.account.balance, 10n ** 18n);
    t.is(ok.account.nonce, 5n);
    t.is(ok.account.codeSize, 0);
    t.is(ok.account.storage.length, 2);
    t.true(ok.account.storage[1]!.value.every((b) => b === 0)); // zero = absent, kept for the caller
  }
  const dec = line({ address: a, balance: '1000000000000000000000', nonce: '7' });
  t.true('account' in dec && dec.account.balance === 10n ** 21n && dec.account.codeSize === 0);
  const refuse = (obj: unknown, re: RegExp, kind: 'state' | 'diff' = 'state') => t.throws(() => line(obj, kind), { code: 'EINPUT', message: re });
  refuse({ address: a, nonce: 1 }, /^f:7: "balance" is missing/);
  refuse({ address: a, balance: 1 }, /"nonce" is missing/);
  refuse({ address: a, balance: 1e21, nonce: 1 }, /exact integer/);
  refuse({ address: a, balance: `0x1${'0'.repeat(32)}`, nonce: 1 }, /balance .* above 2\^128/);
  refuse({ address: a, balance: 1, nonce: `0x1${'0'.repeat(16)}` }, /nonce .* above 2\^64/);
  refuse({ address: a, balance: 1, nonce: 1, code_size: 2 ** 24 }, /code_size/);
  refuse({ address: a, balance: 1, nonce: 1, codeSize: 3 }, /unknown key "codeSize"/);
  refuse({ address: a, balance: 1, nonce: 1, deleted: true }, /diffs/);
  refuse({ address: a, balance: 1, nonce: 1, storage: { '0x1': 1, '0x01': 2 } }, /listed twice/);
  refuse({ address: a, balance: 1, nonce: 1, storage: { zz: 1 } }, /storage slot/);
  refuse({ address: a, balance: 1, nonce: 1, storage: [] }, /object/);
  refuse({ address: 'nope', balance: 1, nonce: 1 }, /address/);
  t.throws(() => parseStateLine('{"address": ', 'state', 'f:3', false), { message: /^f:3: not valid JSON/ });
  t.throws(() => parseStateLine('[1]', 'state', 'f:3', false), { message: /object/ });

  const diff = line({ address: a, balance: 3 }, 'diff');
  t.true('account' in diff && diff.account.nonce === undefined && diff.account.codeSize === undefined);
  const del = line({ address: a, deleted: true, storage: { '0x1': '0x0' } }, 'diff');
  t.true('account' in del && del.account.deleted);
  refuse({ address: a, deleted: true, balance: 1 }, /deleted account has no balance/, 'diff');
  refuse({ address: a, deleted: true, storage: { '0x1': '0x5' } }, /cannot set storage/, 'diff');

  const header = line({ block_number: 5, block_hash: `0x${'AB'.repeat(32)}`, chain_id: 1 }, 'diff', true);
  t.deepEqual(header, { header: { block_number: 5, block_hash: `0x${'ab'.repeat(32)}`, chain_id: 1 } });
  t.throws(() => line({ block_number: 5 }, 'diff', false), { message: /only be the first line/ });
  t.throws(() => line({ block_hash: '0x12' }, 'diff', true), { message: /block_hash/ });
});
