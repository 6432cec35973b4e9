// lanepir follow --rpc against a real local node (Hardhat): blocks with ETH
// transfers, token transfers (a slot set to zero), contract creation from a
// contract, a contract created and self-destructed, an account emptied; a
// reorg (evm_snapshot/evm_revert); the node unreachable for 10 s behind a
// proxy; a node without the debug API.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { pino } from 'pino';
import { type Hex, createPublicClient, custom, encodeDeployData, encodeFunctionData, encodeAbiParameters, erc20Abi, getContractAddress, keccak256 } from 'viem';
import { type StateRead, StateClient } from '../src/eth/client.js';
import { createLanepirProvider } from '../src/eth/provider.js';
import { ChainFollower, type ChainFollowerEvents } from '../src/eth/chain-follower.js';
import { detectChangeSource } from '../src/eth/changes/sources.js';
import { type DevChain, type DevChainOptions, startDevChain } from '../src/eth/devchain/hardhat.js';
import { Traffic, mappingSlot } from '../src/eth/devchain/traffic.js';
import { readHotManifest } from '../src/eth/generation-files.js';
import { HotManifest } from '../src/eth/hot-manifest.js';
import { accountKey, storageKey, wordToBigInt } from '../src/eth/keys.js';
import { readLaneValues } from '../src/eth/lane-reader.js';
import { decodeBasicData } from '../src/eth/values.js';
import { EthRpc } from '../src/eth/rpc/client.js';
import { Roller } from '../src/follow/roller.js';
import { loadGeneration } from '../src/store/generation.js';
import { generationDir } from '../src/store/layout.js';
import { rmrf, run, tempDir } from './helpers.js';
import { startHidingProxy, startTcpProxy } from './rpc-proxies.js';
import { serve } from './server-helpers.js';
import { BIN, freePort } from './cluster-helpers.js';

const quiet = pino({ level: process.env.TEST_LOG ?? 'silent' });

/** Compares a generation, key by key, with the node's state at the generation's block. */
async function checkGeneration(t: ExecutionContext, data: string, id: string, chain: DevChain, accounts: Hex[], slots: [Hex, Hex][]): Promise<void> {
  const g = await loadGeneration(generationDir(data, id));
  const at = `0x${g.blockNumber.toString(16)}`;
  t.is(g.manifest.block_hash, (await chain.rpc<{ hash: string }>('eth_getBlockByNumber', [at, false])).hash, `generation ${id} is of the node's block ${g.blockNumber}`);
  const hot = (await readHotManifest(g.dir, g.manifest)).manifest;
  const cold = await readLaneValues(g.lanes.cold!, g.dir, accounts.map((a) => accountKey(a)));
  for (let i = 0; i < accounts.length; i++) {
    const a = accounts[i]!;
    const [balance, nonce, code] = await Promise.all([
      chain.rpc<Hex>('eth_getBalance', [a, at]),
      chain.rpc<Hex>('eth_getTransactionCount', [a, at]),
      chain.rpc<Hex>('eth_getCode', [a, at]),
    ]);
    const got = cold[i] ? decodeBasicData(cold[i]!) : { balance: 0n, nonce: 0n, codeSize: 0 };
    t.deepEqual(got, { balance: BigInt(balance), nonce: BigInt(nonce), codeSize: (code.length - 2) / 2 }, `block ${g.blockNumber}: account ${a}`);
  }
  for (const lane of ['hot', 'cold'] as const) {
    const mine = slots.filter(([c, s]) => hot.laneOf(storageKey(c, s)) === lane);
    const values = await readLaneValues(g.lanes[lane]!, g.dir, mine.map(([c, s]) => storageKey(c, s)));
    for (let i = 0; i < mine.length; i++) {
      const [c, s] = mine[i]!;
      const want = BigInt(await chain.rpc<Hex>('eth_getStorageAt', [c, s, at]));
      t.is(values[i] ? wordToBigInt(values[i]!) : 0n, want, `block ${g.blockNumber}: slot ${s} of ${c} (${lane})`);
    }
  }
}

function waitFor<K extends keyof ChainFollowerEvents>(f: ChainFollower, event: K, pred: (e: ChainFollowerEvents[K]) => boolean, ms = 60_000): Promise<ChainFollowerEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    const on = (e: ChainFollowerEvents[K]) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      f.off(event, on);
      resolve(e);
    };
    f.on(event, on);
  });
}

/** Waits until the follower has built and the server serves the node's head block. */
async function caughtUp(follower: ChainFollower, roller: Roller, chain: DevChain, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const head = Number(await chain.rpc<Hex>('eth_blockNumber'));
    const hash = (await chain.rpc<{ hash: string }>('eth_getBlockByNumber', ['latest', false])).hash;
    if (follower.tip.number === head && follower.tip.hash === hash && roller.served === follower.tip.id) return;
    if (Date.now() > deadline) throw new Error(`not caught up: head ${head}, tip ${follower.tip.number} (${follower.tip.id}), served ${roller.served}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function setup(t: ExecutionContext, opts: { rpcUrl?: (chain: DevChain) => Promise<string>; timeoutMs?: number; chain?: DevChainOptions } = {}) {
  const chain = await startDevChain(opts.chain);
  t.teardown(() => chain.stop());
  const traffic = await new Traffic(chain.rpc).init();
  const [alice, bob] = traffic.accounts as [Hex, Hex];
  const token = await traffic.deployToken(alice, 10n ** 24n);
  const factory = await traffic.deployFactory(bob);
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const manifest = HotManifest.fromJson({ version: 1, contracts: [{ address: token, label: 'LANE', erc20: { balance_slot: 0, layout: 'solidity' } }] });
  const server = await serve(data, { shard_size_bytes: 128 * 1024 });
  t.teardown(() => server.close());
  const rpc = new EthRpc({ url: opts.rpcUrl ? await opts.rpcUrl(chain) : chain.url, timeoutMs: opts.timeoutMs ?? 5000, retryCount: 1 });
  const source = await detectChangeSource(rpc, quiet);
  const roller = new Roller({ data, admin: { url: server.adminUrl, token: undefined }, logger: quiet, retain: 64, retryMs: 100, maxRetryMs: 500 });
  const follower = new ChainFollower({ data, rpc, source, roller, logger: quiet, pollMs: 100, hotManifest: manifest });
  t.teardown(async () => {
    await follower.stop();
    await roller.stop();
  });
  await follower.start();
  return { chain, traffic, token, factory, data, server, follower, roller, rpc };
}

function universe(traffic: Traffic, tokens: Hex[], extra: Hex[]): { accounts: Hex[]; slots: [Hex, Hex][] } {
  const accounts = [...traffic.accounts.slice(0, 8), ...tokens, ...extra];
  const slots: [Hex, Hex][] = [];
  for (const tk of tokens) {
    for (const h of [...traffic.accounts.slice(0, 8), ...extra]) slots.push([tk, mappingSlot(h)]);
    slots.push([tk, `0x${'0'.repeat(63)}2` as Hex]);
  }
  return { accounts, slots };
}

test('follows a Hardhat chain block by block: every generation equals the node at its block; /info names the served block', async (t) => {
  const { chain, traffic, token, factory, data, server, follower, roller } = await setup(t);
  const [alice, bob, carol, dave, erin] = traffic.accounts as [Hex, Hex, Hex, Hex, Hex];
  const fresh = Array.from({ length: 4 }, (_, i) => `0x${String(i + 1).repeat(40)}` as Hex);
  const tokens: Hex[] = [token];
  const client = new StateClient({ url: server.publicUrl });
  const viem = createPublicClient({ transport: custom(createLanepirProvider({ url: server.publicUrl })) });
  let privateReads = 0;
  const checkAll = async () => {
    const { accounts, slots } = universe(traffic, tokens, fresh);
    await caughtUp(follower, roller, chain);
    await checkGeneration(t, data, follower.tip.id, chain, accounts, slots);
    // Private reads: every account and slot of the universe (touched or not) in one round, each equal to the node at the block the answer names.
    const reads: StateRead[] = [
      ...accounts.map((address) => ({ kind: 'account' as const, address })),
      ...slots.map(([address, slot]) => ({ kind: 'storage' as const, address, slot })),
      ...traffic.accounts.slice(0, 5).map((holder) => ({ kind: 'erc20' as const, token, holder })),
    ];
    const results = [];
    for (let i = 0; i < reads.length; i += 6) results.push(...(await client.readMany(reads.slice(i, i + 6)))); // rounds of 6 keys (each key: d queries to every lane)
    for (let i = 0; i < reads.length; i++) {
      const r = results[i]!;
      const at = `0x${r.block.number.toString(16)}`;
      t.is(r.block.hash, (await chain.rpc<{ hash: Hex }>('eth_getBlockByNumber', [at, false])).hash);
      if (r.kind === 'account') {
        const [balance, nonce] = await Promise.all([chain.rpc<Hex>('eth_getBalance', [r.address, at]), chain.rpc<Hex>('eth_getTransactionCount', [r.address, at])]);
        t.is(r.balance, BigInt(balance), `private balance of ${r.address} at ${r.block.number}`);
        t.is(r.nonce, BigInt(nonce), `private nonce of ${r.address} at ${r.block.number}`);
      } else if (r.kind === 'storage') {
        const read = reads[i] as { address: Hex; slot: Hex };
        t.is(BigInt(r.value), BigInt(await chain.rpc<Hex>('eth_getStorageAt', [read.address, read.slot, at])), `private slot ${read.slot} of ${read.address}`);
      } else {
        t.is(r.balance, await traffic.balanceOf(token, r.holder.toLowerCase() as Hex, at as Hex), `private balanceOf(${r.holder})`);
      }
      privateReads++;
    }
    // Through the EIP-1193 provider, as a wallet library would (the served block is the head: nothing is mined during the check).
    const holder = traffic.accounts[1]!;
    t.is(await viem.getBalance({ address: holder }), BigInt(await chain.rpc<Hex>('eth_getBalance', [holder, 'latest'])));
    t.is(await viem.getTransactionCount({ address: holder }), Number(await chain.rpc<Hex>('eth_getTransactionCount', [holder, 'latest'])));
    t.is(await viem.readContract({ address: token, abi: erc20Abi, functionName: 'balanceOf', args: [holder] }), await traffic.balanceOf(token, holder));
    t.is(BigInt((await viem.getStorageAt({ address: token, slot: mappingSlot(holder) })) ?? '0x0'), BigInt(await chain.rpc<Hex>('eth_getStorageAt', [token, mappingSlot(holder), 'latest'])));
  };
  await checkAll();
  const actions: (() => Promise<unknown>)[] = [
    () => traffic.transferEth(alice, fresh[0]!, 10n ** 18n),
    () => traffic.transferToken(token, alice, bob, 1000n),
    () => traffic.transferToken(token, bob, carol, 1000n), // bob's balance slot set to zero
    async () => {
      const r = await traffic.createViaFactory(factory, carol, 5n);
      const log = (await chain.rpc<{ logs: { address: string; data: Hex }[] }>('eth_getTransactionReceipt', [r.transactionHash])).logs.find((l) => l.address.toLowerCase() === factory)!;
      tokens.push(`0x${log.data.slice(26)}` as Hex);
    },
    () => traffic.ephemeral(dave, fresh[1]!, 777n),
    () => traffic.transferEth(bob, fresh[2]!, 3n),
    () => traffic.transferToken(token, alice, fresh[3]!, 42n),
  ];
  let blocks = 0;
  for (let round = 0; blocks < 22; round++) {
    await actions[round % actions.length]!();
    blocks++;
    if (round === 10) {
      await traffic.emptyAccount(erin, fresh[0]!); // an account emptied
      blocks++;
    }
    await checkAll();
  }
  t.true(blocks >= 20);
  t.true(privateReads > 20 * 40, `${privateReads} private reads`);
  const info = (await (await fetch(`${server.publicUrl}/info`)).json()) as Record<string, unknown>;
  const head = await chain.rpc<{ number: Hex; hash: string; stateRoot: string; parentHash: string }>('eth_getBlockByNumber', ['latest', false]);
  t.like(info, { block_number: Number(head.number), block_hash: head.hash, state_root: head.stateRoot, parent_hash: head.parentHash, chain_id: 31337 });
  t.true(Date.now() - Date.parse(info.served_at as string) < 60_000);
  const erinBalance = BigInt(await chain.rpc<Hex>('eth_getBalance', [erin, 'latest']));
  t.is(erinBalance, 0n, 'the emptied account is at zero on the node too');
});

test('a reorg (evm_snapshot, evm_revert, other blocks) is followed; nothing of the abandoned branch stays served', async (t) => {
  const { chain, traffic, token, data, follower, roller } = await setup(t);
  const [alice, bob] = traffic.accounts as [Hex, Hex];
  const gone = '0x' + '77'.repeat(20);
  const kept = '0x' + '88'.repeat(20);
  await caughtUp(follower, roller, chain);
  const snapshot = await chain.rpc<Hex>('evm_snapshot');
  const fork = Number(await chain.rpc<Hex>('eth_blockNumber'));
  // Branch A: three blocks paying `gone`.
  for (let i = 0; i < 3; i++) await traffic.transferEth(alice, gone as Hex, 1000n + BigInt(i));
  await traffic.transferToken(token, alice, gone as Hex, 5n);
  await caughtUp(follower, roller, chain);
  t.is(follower.tip.number, fork + 4);
  const abandoned = follower.tip.id;
  // Branch B: back to the fork, five other blocks.
  t.true(await chain.rpc<boolean>('evm_revert', [snapshot]));
  const reorg = waitFor(follower, 'reorg', () => true);
  for (let i = 0; i < 5; i++) await traffic.transferEth(bob, kept as Hex, 2000n + BigInt(i));
  const r = await reorg;
  t.is(r.to.number, fork, 'the walk stops at the fork block');
  await caughtUp(follower, roller, chain);
  t.is(follower.tip.number, fork + 5);
  t.not(follower.tip.id, abandoned);
  t.regex(follower.tip.id, /^\d+r\d+$|^\d+$/);
  const { accounts, slots } = universe(traffic, [token], [gone as Hex, kept as Hex]);
  await checkGeneration(t, data, follower.tip.id, chain, accounts, slots);
  // The abandoned branch's values are not in the served generation.
  const g = await loadGeneration(generationDir(data, follower.tip.id));
  const [goneAccount] = await readLaneValues(g.lanes.cold!, g.dir, [accountKey(gone)]);
  t.is(goneAccount, undefined);
  // Ids of rebuilt blocks are fresh: the abandoned generations are still on disk under their own ids.
  t.true(fs.existsSync(generationDir(data, abandoned)));
});

test('before Cancun: a contract self-destructed and created again in one block keeps none of its old storage; a reverted self-destruct keeps all of it', async (t) => {
  const { chain, traffic, data, server, follower, roller } = await setup(t, { chain: { hardfork: 'shanghai' } });
  const [alice, bob] = traffic.accounts as [Hex, Hex];
  const { Phoenix, PhoenixFactory } = traffic.artifacts;
  const deployed = await traffic.send({ from: alice, data: encodeDeployData({ abi: PhoenixFactory.abi, bytecode: PhoenixFactory.bytecode, args: [] }) });
  const factory = deployed.contractAddress!.toLowerCase() as Hex;
  const salt = `0x${'42'.repeat(32)}` as Hex;
  const phoenix = getContractAddress({ from: factory, opcode: 'CREATE2', salt, bytecode: Phoenix.bytecode }).toLowerCase() as Hex;
  const call = (abi: typeof Phoenix.abi, to: Hex, functionName: string, args: unknown[]) => ({ from: alice, to, data: encodeFunctionData({ abi, functionName, args } as never), gas: 3_000_000n });
  const deploy = () => call(PhoenixFactory.abi, factory, 'deploy', [salt]);
  const fill = (from: number, count: number, value: number) => call(Phoenix.abi, phoenix, 'fill', [BigInt(from), BigInt(count), BigInt(value)]);
  const slot = (k: number) => keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'uint256' }], [BigInt(k), 1n]));
  const keys = [1, 2, 3, 4, 5, 6, 100, 101];
  const universeP = { accounts: [phoenix, factory, alice, bob], slots: [[phoenix, `0x${'0'.repeat(64)}`] as [Hex, Hex], ...keys.map((k) => [phoenix, slot(k)] as [Hex, Hex])] };
  const client = new StateClient({ url: server.publicUrl });
  const privately = async (k: number) => (await client.getStorageAt(phoenix, slot(k))).value;

  t.is((await traffic.send(deploy())).status, '0x1');
  t.is((await traffic.send(fill(1, 6, 500))).status, '0x1');
  await caughtUp(follower, roller, chain);
  await checkGeneration(t, data, follower.tip.id, chain, universeP.accounts, universeP.slots);
  t.is(BigInt(await privately(3)), 502n);

  // One block: destroyed, created again at the same address, two new slots written.
  await chain.rpc('evm_setAutomine', [false]);
  const hashes = [];
  for (const tx of [call(Phoenix.abi, phoenix, 'destroy', [bob]), deploy(), fill(100, 2, 7)]) {
    hashes.push(await chain.rpc<Hex>('eth_sendTransaction', [{ ...tx, gas: `0x${tx.gas.toString(16)}` }]));
  }
  await chain.rpc('evm_mine');
  await chain.rpc('evm_setAutomine', [true]);
  const receipts = await Promise.all(hashes.map((h) => chain.rpc<{ status: Hex; blockNumber: Hex }>('eth_getTransactionReceipt', [h])));
  t.deepEqual(receipts.map((r) => r.status), ['0x1', '0x1', '0x1']);
  t.is(new Set(receipts.map((r) => r.blockNumber)).size, 1, 'the three transactions are in one block');
  t.is(BigInt(await chain.rpc<Hex>('eth_getStorageAt', [phoenix, slot(3), 'latest'])), 0n, 'the node: the old storage is gone');
  await caughtUp(follower, roller, chain);
  await checkGeneration(t, data, follower.tip.id, chain, universeP.accounts, universeP.slots);
  t.is(BigInt(await privately(3)), 0n, 'a private read of an old slot is not served stale');
  t.is(BigInt(await privately(101)), 8n);

  // A self-destruct that is reverted changes nothing.
  t.is((await traffic.send(fill(1, 2, 900))).status, '0x1');
  t.is((await traffic.send(call(PhoenixFactory.abi, factory, 'destroyReverted', [phoenix]))).status, '0x1');
  await caughtUp(follower, roller, chain);
  await checkGeneration(t, data, follower.tip.id, chain, universeP.accounts, universeP.slots);
  t.is(BigInt(await privately(2)), 901n);

  // Destroyed for good: the account and all its storage are removed.
  t.is((await traffic.send(call(Phoenix.abi, phoenix, 'destroy', [bob]))).status, '0x1');
  await caughtUp(follower, roller, chain);
  await checkGeneration(t, data, follower.tip.id, chain, universeP.accounts, universeP.slots);
  const gone = await client.getAccount(phoenix);
  t.false(gone.exists);
  t.is(BigInt(await privately(101)), 0n);
});

test('the node unreachable for 10 s is survived and followed on from where it left', async (t) => {
  let proxy!: Awaited<ReturnType<typeof startTcpProxy>>;
  const { chain, traffic, data, follower, roller } = await setup(t, {
    rpcUrl: async (c) => {
      proxy = await startTcpProxy(c.url);
      t.teardown(() => proxy.close());
      return proxy.url;
    },
    timeoutMs: 1000,
  });
  const [alice] = traffic.accounts as [Hex];
  await caughtUp(follower, roller, chain);
  const before = follower.tip.number;
  proxy.pause();
  const away = waitFor(follower, 'unreachable', () => true, 20_000);
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < 10_000) {
    await traffic.transferEth(alice, `0x${'99'.repeat(20)}` as Hex, 1n); // the chain goes on without us
    sent++;
    await new Promise((r) => setTimeout(r, 500));
  }
  await away;
  t.is(follower.tip.number, before, 'nothing built while the node was away');
  proxy.resume();
  const head = Number(await chain.rpc<Hex>('eth_blockNumber'));
  await caughtUp(follower, roller, chain);
  t.is(follower.tip.number, head);
  t.true(sent >= 5);
  const { accounts, slots } = universe(traffic, [], [`0x${'99'.repeat(20)}` as Hex]);
  await checkGeneration(t, data, follower.tip.id, chain, accounts, slots);
  // Every block in between got its own generation, chained by parent.
  let id: string | undefined = follower.tip.id;
  const seen: number[] = [];
  while (id && seen.length < head - before + 1) {
    const g = await loadGeneration(generationDir(data, id));
    seen.push(g.blockNumber);
    id = g.manifest.parent;
  }
  t.deepEqual(seen, Array.from({ length: head - before + 1 }, (_, i) => head - i));
});

test('lanepir follow --rpc (the command, over ws://): follows into a running server, logs each block, serves its Prometheus metrics, stops on SIGTERM', async (t) => {
  const chain = await startDevChain();
  t.teardown(() => chain.stop());
  const traffic = await new Traffic(chain.rpc).init();
  const [alice, bob] = traffic.accounts as [Hex, Hex];
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const server = await serve(data, { shard_size_bytes: 128 * 1024 });
  t.teardown(() => server.close());
  const metricsPort = await freePort();
  const proc = spawn(process.execPath, [BIN, 'follow', '--data', data, '--rpc', chain.wsUrl, '--admin-url', server.adminUrl, '--metrics-port', String(metricsPort), '--poll-ms', '250'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  for (let i = 0; i < 3; i++) await traffic.transferEth(alice, bob, 1000n + BigInt(i));
  const head = Number(await chain.rpc<Hex>('eth_blockNumber'));
  const metric = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  let text = '';
  const deadline = Date.now() + 60_000;
  for (;;) {
    text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => '');
    if (metric(text, 'lanepir_follow_served_block') === head) break;
    if (Date.now() > deadline || proc.exitCode !== null) return void t.fail(`block ${head} not served:\n${out}\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const name of ['head_block', 'built_block', 'served_block', 'lag_blocks', 'build_duration_seconds', 'ingest_duration_seconds', 'reload_duration_seconds', 'block_to_served_seconds', 'blocks_total', 'changes_total', 'reorgs_total', 'rpc_errors_total', 'reload_failures_total']) {
    t.regex(text, new RegExp(`^# HELP lanepir_follow_${name} `, 'm'), `metric lanepir_follow_${name}`);
  }
  t.is(metric(text, 'lanepir_follow_head_block'), head);
  t.is(metric(text, 'lanepir_follow_built_block'), head);
  t.is(metric(text, 'lanepir_follow_lag_blocks'), 0);
  t.is(metric(text, 'lanepir_follow_blocks_total'), head, 'one generation per block after genesis');
  t.true(metric(text, 'lanepir_follow_changes_total') >= 3 * head, 'sender, recipient and fee recipient per block at least');
  t.true(metric(text, 'lanepir_follow_build_duration_seconds_count') === head && metric(text, 'lanepir_follow_reload_duration_seconds_count') >= 1);
  const info = (await (await fetch(`${server.publicUrl}/info`)).json()) as { block_number: number; block_hash: string; chain_id: number };
  t.like(info, { block_number: head, block_hash: (await chain.rpc<{ hash: string }>('eth_getBlockByNumber', ['latest', false])).hash, chain_id: 31337 });
  const logs = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.truthy(logs.find((l) => l.change_source === 'structlog'), 'the change source is logged');
  t.truthy(logs.find((l) => /newHeads subscription/.test(String(l.msg))));
  const built = logs.filter((l) => l.msg === 'built block');
  t.deepEqual(built.map((l) => l.block), Array.from({ length: head }, (_, i) => i + 1));
  t.true(built.every((l) => typeof l.changes === 'number' && typeof l.build_ms === 'number' && typeof l.ingest_ms === 'number' && typeof l.lag_blocks === 'number'));
  t.truthy(logs.find((l) => l.msg === 'serving' && l.block === head && typeof l.reload_ms === 'number'));
  proc.kill('SIGTERM');
  t.is(await exited, 0, out);
});

test('a node without debug methods is a clear error at start-up (and lanepir follow exits non-zero)', async (t) => {
  const chain = await startDevChain();
  t.teardown(() => chain.stop());
  const proxy = await startHidingProxy(chain.url, /^(debug_|trace_)/);
  t.teardown(() => proxy.close());
  const rpc = new EthRpc({ url: proxy.url });
  const err = await t.throwsAsync(detectChangeSource(rpc, quiet));
  t.is((err as { code?: string }).code, 'ENO_CHANGE_SOURCE');
  t.regex(err!.message, /debug_traceBlockByHash: not offered; trace_replayBlockTransactions: not offered; debug_traceTransaction: not offered/);
  const data = tempDir();
  t.teardown(() => rmrf(data));
  // run(): killed after its time limit and when the test process exits, whatever happens here.
  const { code, stderr } = await run(process.execPath, [BIN, 'follow', '--data', data, '--rpc', proxy.url, '--admin-url', 'http://127.0.0.1:9', '--log-level', 'silent'], { timeoutMs: 60_000 });
  t.is(code, 1);
  t.regex(stderr, /offers no way to learn a block's state changes.*\[ENO_CHANGE_SOURCE\]/s);
  t.deepEqual(fs.readdirSync(data).filter((n) => n !== '.' && !n.startsWith('.')), [], 'nothing was built');
});
