// The wallet client and the EIP-1193 provider against a running server on an
// Ethereum data set: private reads equal the plaintext state (present and
// absent keys, hot and cold), reads across 20 incremental blocks name the
// block they are from, lane hiding counted at the server, viem through the
// provider, and answers that fail their checks are errors.
import test from 'ava';
import crypto from 'node:crypto';
import { createPublicClient, custom, erc20Abi, getAddress } from 'viem';
import { buildEthDiff, buildEthState } from '../src/eth/build.js';
import { type StateRead, type StateResult, StateClient } from '../src/eth/client.js';
import { HOT_MANIFEST_FILE, HotManifest } from '../src/eth/hot-manifest.js';
import { accountKey, storageKey, toHex, wordToBigInt, wordToHex } from '../src/eth/keys.js';
import { ProviderRpcError, createLanepirProvider } from '../src/eth/provider.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { decodeBasicData } from '../src/eth/values.js';
import { writeNewFile } from '../src/store/fsutil.js';
import { buildGeneration } from '../src/store/builder.js';
import { type LaneName } from '../src/store/layout.js';
import { type RunningServer } from '../src/server/server.js';
import path from 'node:path';
import { EthModel } from './eth-helpers.js';
import { rmrf, tempDir } from './helpers.js';
import { reload, serve } from './server-helpers.js';

const SHARD = 16384;
const randomAddress = () => getAddress(`0x${crypto.randomBytes(20).toString('hex')}`);
const pick = <T>(xs: T[]): T => xs[crypto.randomInt(xs.length)]!;

async function ethServer(t: import('ava').ExecutionContext, accounts = 2500) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const syn = new EthSynthetic(accounts, `client-test-${crypto.randomBytes(4).toString('hex')}`);
  const model = new EthModel(syn.hotManifest);
  model.apply(syn.state(), 'state');
  await buildEthState({ data, block: 500, state: syn.state(), hotManifest: syn.hotManifest, chainId: 31337, blockHash: `0x${'5a'.repeat(32)}`, shardSize: SHARD, publish: true });
  const server = await serve(data);
  t.teardown(() => server.close());
  return { data, syn, model, server, url: server.publicUrl };
}

/** The read a model key corresponds to. */
function readOf(keyHex: string): StateRead {
  const key = Buffer.from(keyHex, 'hex');
  const address = `0x${toHex(key.subarray(1, 21))}`;
  return key[0] === 0 ? { kind: 'account', address } : { kind: 'storage', address, slot: `0x${toHex(key.subarray(21))}` };
}

/** A result checked against the model (the value at the block the result names). */
function check(t: import('ava').ExecutionContext, model: EthModel, read: StateRead, r: StateResult, what: string) {
  if (read.kind === 'erc20') {
    const key = model.manifest.erc20BalanceKey(read.token, read.holder);
    const v = model.values.get(toHex(key));
    t.is(r.kind, 'erc20');
    if (r.kind === 'erc20') {
      t.is(r.exists, v !== undefined, what);
      t.is(r.balance, v ? wordToBigInt(v) : 0n, what);
    }
    return;
  }
  const key = read.kind === 'account' ? accountKey(read.address) : storageKey(read.address, BigInt(read.slot));
  const v = model.values.get(toHex(key));
  if (r.kind === 'account') {
    const want = v ? decodeBasicData(v) : { balance: 0n, nonce: 0n, codeSize: 0 };
    t.deepEqual({ balance: r.balance, nonce: r.nonce, codeSize: r.codeSize, exists: r.exists }, { ...want, exists: v !== undefined }, what);
  } else if (r.kind === 'storage') {
    t.deepEqual({ value: r.value, exists: r.exists }, { value: v ? wordToHex(v) : `0x${'0'.repeat(64)}`, exists: v !== undefined }, what);
  }
}

test('private reads equal the plaintext state: hundreds of present keys hot and cold, absent keys read zero', async (t) => {
  const { syn, model, url } = await ethServer(t);
  const client = new StateClient({ url });
  const keys = [...model.values.keys()];
  const hot = keys.filter((k) => model.laneOf(k) === 'hot');
  const cold = keys.filter((k) => model.laneOf(k) === 'cold');
  const accounts = cold.filter((k) => k.startsWith('00'));
  const coldSlots = cold.filter((k) => k.startsWith('01'));
  const reads: StateRead[] = [
    ...Array.from({ length: 120 }, () => readOf(pick(hot))),
    ...Array.from({ length: 120 }, () => readOf(pick(accounts))),
    ...Array.from({ length: 80 }, () => readOf(pick(coldSlots))),
    ...Array.from({ length: 40 }, (_, i) => ({ kind: 'erc20' as const, token: syn.tokens[i % 13]!.address, holder: syn.holderOf(i % 13, i * 7).address })),
    // Absent: unknown accounts, unknown slots of a hot and a cold contract, a non-holder's balance.
    ...Array.from({ length: 20 }, () => ({ kind: 'account' as const, address: randomAddress() })),
    ...Array.from({ length: 10 }, () => ({ kind: 'storage' as const, address: syn.tokens[0]!.address, slot: `0x${crypto.randomBytes(32).toString('hex')}` })),
    ...Array.from({ length: 10 }, () => ({ kind: 'storage' as const, address: syn.otherContract(0).address, slot: BigInt(crypto.randomInt(1e9)) + 10n ** 12n })),
    ...Array.from({ length: 10 }, () => ({ kind: 'erc20' as const, token: syn.tokens[1]!.address, holder: randomAddress() })),
  ];
  let absent = 0;
  // 40 keys a round: up to 120 queries a lane (d <= 3), more than a default server's max_pending_per_lane (64) at once.
  for (let i = 0; i < reads.length; i += 40) {
    const batch = reads.slice(i, i + 40);
    const results = await client.readMany(batch);
    results.forEach((r, k) => {
      check(t, model, batch[k]!, r, `read ${i + k}`);
      t.is(r.block.number, 500n);
      t.is(r.block.hash, `0x${'5a'.repeat(32)}`);
      if (!r.exists) absent++;
    });
  }
  t.true(absent >= 50, `${absent} absent keys read as zero`);
  // One-key helpers.
  const holder = syn.holderOf(2);
  const bal = await client.getErc20Balance(syn.tokens[2]!.address, holder.address);
  t.true(bal.exists && bal.balance > 0n);
  const acct = await client.getAccount(syn.account(3).address);
  t.true(acct.exists);
  t.is(acct.codeSize, 0);
  // A token the manifest does not describe: a clear error, unless the slot is given.
  const other = syn.otherContract(1).address;
  await t.throwsAsync(client.getErc20Balance(other, holder.address), { code: 'ETOKEN', message: /not an ERC-20 token/ });
  const bySlot = await client.getErc20Balance(other, holder.address, { balanceSlot: 3 });
  t.false(bySlot.exists);
  // Bad input is refused before anything is sent.
  await t.throwsAsync(client.getAccount('0x1234'), { code: 'EADDRESS' });
  await t.throwsAsync(client.getStorageAt(other, '0xzz'), { code: 'EWORD' });
  await t.throwsAsync(client.getAccount(holder.address, { block: 499 }), { code: 'EBLOCK' });
});

test('lane hiding: a hot key, a cold key and an absent key cost each lane the same queries, counted at the server', async (t) => {
  const { syn, server, url } = await ethServer(t, 800);
  const counts = async (fn: () => Promise<unknown>) => {
    const before = await served(server);
    await fn();
    const after = await served(server);
    return Object.fromEntries((['hot', 'cold'] as const).map((l) => [l, { queries: after[l].queries - before[l].queries, requests: after[l].requests - before[l].requests }]));
  };
  const client = new StateClient({ url });
  await client.getAccount(syn.account(0).address); // hints downloaded outside the counted rounds
  const holder = syn.holderOf(0).address;
  const hot = await counts(() => client.getErc20Balance(syn.tokens[0]!.address, holder));
  const cold = await counts(() => client.getAccount(holder));
  const absent = await counts(() => client.getAccount(randomAddress()));
  t.deepEqual(hot, cold);
  t.deepEqual(cold, absent);
  t.true(hot.hot!.queries > 0 && hot.cold!.queries > 0);
  // padTo: 3 keys and 1 key cost the same.
  const padded = new StateClient({ url, padTo: 4 });
  await padded.getAccount(holder);
  const one = await counts(() => padded.getAccount(holder));
  const three = await counts(() => padded.readMany([{ kind: 'account', address: holder }, { kind: 'erc20', token: syn.tokens[0]!.address, holder }, { kind: 'account', address: randomAddress() }]));
  t.deepEqual(one, three);
  // Hiding off: the server sees which lane (the counts above could fail).
  const open = new StateClient({ url, hideLanes: false });
  await open.getAccount(holder);
  const openHot = await counts(() => open.getErc20Balance(syn.tokens[0]!.address, holder));
  t.is(openHot.cold!.queries, 0);
});

async function served(server: RunningServer): Promise<Record<LaneName, { queries: number; requests: number }>> {
  const out = { hot: { queries: 0, requests: 0 }, cold: { queries: 0, requests: 0 } };
  for (const v of (await server.metrics.batchSize.get()).values) {
    if (v.metricName === 'lanepir_batch_size_sum') out[v.labels.lane as LaneName].queries += v.value;
  }
  for (const v of (await server.metrics.queries.get()).values) out[v.labels.lane as LaneName].requests += v.value;
  return out;
}

test('20 incremental blocks with inserts, changes and deletes: every read equals the state at the block it names', async (t) => {
  const { data, syn, model, server, url } = await ethServer(t, 1200);
  const models = new Map<bigint, EthModel>([[500n, model.clone()]]);
  const client = new StateClient({ url });
  const touched = new Set<string>();
  let current = model;
  for (let b = 501; b <= 520; b++) {
    const diff = syn.diff(b, { keys: 80, inserts: 12, deletes: 6 }); // blocks 510 and 520 also delete an account
    const next = current.clone();
    next.apply(diff, 'diff');
    for (const l of diff) {
      touched.add(toHex(accountKey(l.address)));
      for (const s of l.storage) touched.add(toHex(storageKey(l.address, s.slot)));
    }
    await buildEthDiff({ data, from: String(b - 1), block: b, diff, blockHash: `0x${b.toString(16).padStart(64, '0')}`, publish: true });
    models.set(BigInt(b), next);
    // Reads race the reload: each result is checked against the block it names.
    const sample = [...touched].slice(-16).map(readOf);
    const [, results] = await Promise.all([reload(server, b), client.readMany(sample)]);
    for (const [k, r] of results.entries()) {
      const at = models.get(r.block.number);
      t.truthy(at, `block ${r.block.number} is one of ours`);
      check(t, at!, sample[k]!, r, `block ${b}, read ${k} (answered at ${r.block.number})`);
      // Block 500 (built by ethServer) has hash 0x5a…5a: a read that beats block 501's reload names it.
      t.is(r.block.hash, r.block.number === 500n ? `0x${'5a'.repeat(32)}` : `0x${r.block.number.toString(16).padStart(64, '0')}`);
    }
    const after = await client.readMany(sample.slice(0, 12));
    after.forEach((r, k) => {
      t.is(r.block.number, BigInt(b));
      check(t, next, sample[k]!, r, `after reload ${b}, read ${k}`);
    });
    // Earlier blocks the server still holds: read privately at the newest block, rebuilt by the public deltas.
    if (b >= 503) {
      for (const back of [1, 2]) {
        const older = await client.readMany(sample.slice(0, 12), { block: b - back });
        older.forEach((r, k) => {
          t.is(r.block.number, BigInt(b - back));
          t.is(r.block.hash, `0x${(b - back).toString(16).padStart(64, '0')}`);
          check(t, models.get(BigInt(b - back))!, sample[k]!, r, `block ${b - back} read at ${b}, read ${k}`);
        });
      }
    }
    current = next;
  }
  await t.throwsAsync(client.getAccount(syn.account(0).address, { block: 505 }), { code: 'EBLOCK', message: /not served/ });
  t.true([...models.values()].some((m) => m.values.size !== model.values.size), 'blocks inserted and deleted keys');
  t.true((await client.getAccount(syn.account(0).address)).block.number === 520n);
});

test('viem through the EIP-1193 provider: balances, nonces, storage, balanceOf; other methods go to the passthrough or fail with 4200', async (t) => {
  const { syn, model, url } = await ethServer(t, 600);
  const passed: string[] = [];
  const passthrough = {
    async request({ method }: { method: string }) {
      passed.push(method);
      if (method === 'eth_gasPrice') return '0x3b9aca00';
      throw new ProviderRpcError(4200, `upstream does not do ${method}`);
    },
  };
  const provider = createLanepirProvider({ url, passthrough });
  // EIP-1193 events: 'connect' with the chain id after the first answer, once; a throwing listener is its own problem.
  const connects: unknown[] = [];
  const dropped: unknown[] = [];
  const drop = (info: unknown) => dropped.push(info);
  t.is(provider.on('connect', () => { throw new Error('a listener that throws'); }), provider);
  provider.on('connect', (info: unknown) => connects.push(info)).on('connect', drop).removeListener('connect', drop);
  const viem = createPublicClient({ transport: custom(provider) });
  const holder = syn.holderOf(0).address;
  const want = decodeBasicData(model.values.get(toHex(accountKey(holder)))!);
  t.is(await viem.getBalance({ address: holder }), want.balance);
  t.is(await viem.getTransactionCount({ address: holder }), Number(want.nonce));
  t.is(await viem.getBalance({ address: randomAddress() }), 0n);
  const token = syn.tokens[0]!;
  const slot = syn.balanceSlot(0, holder);
  const stored = model.values.get(toHex(storageKey(token.address, slot)))!;
  t.is(await viem.getStorageAt({ address: token.address, slot: wordToHex(slot) }), wordToHex(stored));
  t.is(await viem.readContract({ address: token.address, abi: erc20Abi, functionName: 'balanceOf', args: [holder] }), wordToBigInt(stored));
  t.is(await viem.readContract({ address: syn.tokens[6]!.address, abi: erc20Abi, functionName: 'balanceOf', args: [randomAddress()] }), 0n); // vyper token, no balance
  t.is(await viem.getBlockNumber({ cacheTime: 0 }), 500n);
  t.is(await viem.getChainId(), 31337);
  t.is(await viem.getBalance({ address: holder, blockNumber: 500n }), want.balance);
  t.is(await viem.getBalance({ address: holder, blockTag: 'finalized' }), want.balance);
  t.is(await provider.request({ method: 'eth_getBalance', params: [holder, { blockHash: `0x${'5a'.repeat(32)}` }] }), `0x${want.balance.toString(16)}`); // EIP-1898
  await t.throwsAsync(provider.request({ method: 'eth_getBalance', params: [holder, { blockHash: `0x${'5b'.repeat(32)}` }] }), { message: /not served/ });
  t.deepEqual(passed, [], 'private reads never reach the passthrough');
  t.deepEqual(connects, [{ chainId: '0x7a69' }], "one 'connect' event, naming chain 31337");
  t.deepEqual(dropped, [], 'a removed listener hears nothing');
  // A block the server does not serve fails; it is not forwarded.
  await t.throwsAsync(viem.getBalance({ address: holder, blockNumber: 12n }), { message: /block 12 is not served/ });
  t.deepEqual(passed, []);
  // Other methods go to the passthrough: gas price, and balanceOf of a token the manifest does not list.
  t.is(await viem.getGasPrice(), 1_000_000_000n);
  await t.throwsAsync(viem.readContract({ address: syn.otherContract(0).address, abi: erc20Abi, functionName: 'balanceOf', args: [holder] }));
  t.deepEqual(passed, ['eth_gasPrice', 'eth_call']);
  // Without a passthrough: EIP-1193 4200.
  const alone = createLanepirProvider({ url });
  const e = await t.throwsAsync(alone.request({ method: 'eth_gasPrice' }));
  t.is((e as ProviderRpcError).code, 4200);
  const bad = await t.throwsAsync(alone.request({ method: 'eth_getBalance', params: ['0x12', 'latest'] }));
  t.is((bad as ProviderRpcError).code, -32602);
  // A server that cannot answer makes a private method fail (no fallback), even with a passthrough.
  const down = createLanepirProvider({ url: 'http://127.0.0.1:4', passthrough });
  await t.throwsAsync(down.request({ method: 'eth_getBalance', params: [holder, 'latest'] }), { instanceOf: ProviderRpcError });
  t.deepEqual(passed, ['eth_gasPrice', 'eth_call']);
});

test('an account value that is not basic data is an error, never a balance', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const good = randomAddress();
  const bad = randomAddress();
  const word = (first: number) => {
    const w = new Uint8Array(32);
    w[0] = first;
    w[31] = 7;
    return w;
  };
  await buildGeneration({
    data,
    block: 3,
    shardSize: SHARD,
    publish: true,
    lanes: {
      hot: { layout: 'keyword', records: () => [] },
      cold: { layout: 'keyword', records: () => [{ key: accountKey(good), value: word(0) }, { key: accountKey(bad), value: word(1) }] },
    },
    extraFiles: async (tmp, files) => {
      const bytes = Buffer.from(HotManifest.empty().toJson());
      files[HOT_MANIFEST_FILE] = { size: bytes.length, sha256: await writeNewFile(path.join(tmp, HOT_MANIFEST_FILE), bytes) };
    },
  });
  const server = await serve(data);
  t.teardown(() => server.close());
  const client = new StateClient({ url: server.publicUrl });
  t.is((await client.getAccount(good)).balance, 7n);
  await t.throwsAsync(client.getAccount(bad), { code: 'EANSWER', message: /not EIP-7864 basic data/ });
});
