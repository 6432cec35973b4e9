// lanepir follow --rpc against a node that misbehaves the ways real ones do
// (a local Hardhat node behind a JSON-RPC proxy that scripts the fault): a
// node behind our tip is waited for, not taken for a reorg; a block that
// changes while it is read is retried after a pause, not in a tight loop; a
// node without the state (not an archive node) is named as the cause; a
// state file of another block is refused; a dev chain's funded precompiles
// are in its genesis generation; a one-block reorg is followed with the
// smallest --retain, again and again at the same height.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { type Hex } from 'viem';
import { ChainFollower } from '../src/eth/chain-follower.js';
import { type ChangeSource, detectChangeSource } from '../src/eth/changes/sources.js';
import { type DevChain, startDevChain } from '../src/eth/devchain/hardhat.js';
import { Traffic } from '../src/eth/devchain/traffic.js';
import { accountKey } from '../src/eth/keys.js';
import { readLaneValues } from '../src/eth/lane-reader.js';
import { EthRpc } from '../src/eth/rpc/client.js';
import { RpcError } from '../src/eth/rpc/errors.js';
import { isStateUnavailable } from '../src/eth/state-errors.js';
import { decodeBasicData } from '../src/eth/values.js';
import { Roller } from '../src/follow/roller.js';
import { loadGeneration } from '../src/store/generation.js';
import { generationDir, generationsDir } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { type JsonRpcCall, startRewritingProxy } from './rpc-proxies.js';
import { capturingLogger, serve } from './server-helpers.js';

type Answer = { result: unknown } | { error: { code: number; message: string } } | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `cond`; a timeout names what was awaited (and the last log lines, when given). */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000, log?: string[]): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${log ? `; last log lines:\n${log.slice(-10).join('')}` : ''}`);
    await sleep(25);
  }
}

interface LogLine {
  level: number;
  msg: string;
  err?: string;
  code?: string;
  [k: string]: unknown;
}
const parsedLines = (lines: string[]) => lines.map((l) => JSON.parse(l) as LogLine);

/** The follower has built, and the server serves, the node's head block. */
async function caughtUp(follower: ChainFollower, roller: Roller, chain: DevChain, ms = 60_000): Promise<void> {
  await until(
    'the follower to catch up',
    async () => {
      const head = await chain.rpc<{ number: Hex; hash: string }>('eth_getBlockByNumber', ['latest', false]);
      return follower.tip.number === Number(head.number) && follower.tip.hash === head.hash && roller.served === follower.tip.id;
    },
    ms,
  );
  await roller.idle(); // and pruned
}

interface SetupOptions {
  /** Answers some calls in place of the node. */
  rewrite?: (call: JsonRpcCall, chain: DevChain) => Answer | Promise<Answer>;
  /** Wraps the detected change source. */
  source?: (real: ChangeSource) => ChangeSource;
  /** The Roller's --retain. */
  retain?: number;
  /** The server's retain_generations (what it holds besides current). */
  serverRetain?: number;
}

async function setup(t: ExecutionContext, opts: SetupOptions = {}) {
  const chain = await startDevChain();
  t.teardown(() => chain.stop());
  const traffic = await new Traffic(chain.rpc).init();
  let url = chain.url;
  if (opts.rewrite) {
    const rewrite = opts.rewrite;
    const proxy = await startRewritingProxy(chain.url, (c) => rewrite(c, chain));
    t.teardown(() => proxy.close());
    url = proxy.url;
  }
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const server = await serve(data, { shard_size_bytes: 128 * 1024, ...(opts.serverRetain !== undefined ? { retain_generations: opts.serverRetain } : {}) });
  t.teardown(() => server.close());
  const rpc = new EthRpc({ url, timeoutMs: 5000, retryCount: 0 });
  const real = await detectChangeSource(rpc, capturingLogger('silent').logger);
  const { logger, lines } = capturingLogger('info');
  const roller = new Roller({ data, admin: { url: server.adminUrl, token: undefined }, logger, retain: opts.retain ?? 64, retryMs: 100, maxRetryMs: 500 });
  const follower = new ChainFollower({ data, rpc, source: opts.source ? opts.source(real) : real, roller, logger, pollMs: 100 });
  t.teardown(async () => {
    await follower.stop();
    await roller.stop();
  });
  return { chain, traffic, data, server, rpc, follower, roller, lines };
}

const other = (n: number) => `0x${n.toString(16).padStart(2, '0').repeat(20)}` as Hex;

test('a node behind our tip (rewound after a restart, a backend a block behind) is waited for: no reorg, no rebuilt block', async (t) => {
  // The node's head as it says it (capHead), and the blocks it can show (none above hideAbove).
  let capHead: number | undefined;
  let hideAbove: number | undefined;
  const { chain, traffic, data, follower, roller, lines } = await setup(t, {
    rewrite: async (c, node) => {
      if (c.method === 'eth_blockNumber' && capHead !== undefined) return { result: `0x${Math.min(capHead, Number(await node.rpc<Hex>('eth_blockNumber'))).toString(16)}` };
      const at = c.params?.[0];
      if (c.method === 'eth_getBlockByNumber' && hideAbove !== undefined && typeof at === 'string' && at.startsWith('0x') && Number(at) > hideAbove) return { result: null };
      return undefined;
    },
  });
  await follower.start();
  const [alice] = traffic.accounts as [Hex];
  for (let i = 0; i < 3; i++) await traffic.transferEth(alice, other(0x51), 1n + BigInt(i));
  await caughtUp(follower, roller, chain);
  const tip = { ...follower.tip };
  const reorgs: unknown[] = [];
  follower.on('reorg', (e) => reorgs.push(e));
  const behindLine = (nodeHead: number) => `node behind our tip (node head ${nodeHead}, our tip ${tip.number})`;
  // A node that has our tip's height but cannot show the block (a backend a block behind) is waited for.
  hideAbove = tip.number - 1;
  await until('the first "node behind" log line', () => parsedLines(lines).some((l) => l.msg.includes(behindLine(tip.number))), 30_000, lines);
  // Then it comes back two blocks behind us (geth rewinds after an unclean stop) while the chain goes on:
  // logged again, since the node's head moved.
  capHead = hideAbove = tip.number - 2;
  await until('the second "node behind" log line', () => parsedLines(lines).some((l) => l.msg.includes(behindLine(tip.number - 2))), 30_000, lines);
  await traffic.transferEth(alice, other(0x52), 7n);
  await sleep(1000);
  t.deepEqual(reorgs, [], 'a node behind is not a reorg');
  t.deepEqual(follower.tip, tip, 'our tip stays');
  t.is(roller.served, tip.id);
  t.is(parsedLines(lines).filter((l) => l.msg.includes('node behind our tip')).length, 2, 'logged once per (node head, tip), not on every retry');
  // It catches up: followed on from our tip, nothing rebuilt.
  capHead = hideAbove = undefined;
  await caughtUp(follower, roller, chain);
  t.deepEqual(reorgs, []);
  t.is(follower.tip.number, tip.number + 1);
  t.deepEqual(fs.readdirSync(generationsDir(data)).filter((n) => n.includes('r')), [], 'no <block>r<k> generation');
  t.true(parsedLines(lines).some((l) => /the node has caught up with our tip/.test(l.msg)));
});

test('a block that changes while it is read (EREORG) is looked at again after a pause, not in a tight loop', async (t) => {
  let calls = 0;
  const { traffic, follower, lines } = await setup(t, {
    source: (real) => ({
      name: real.name,
      blockChanges: async () => {
        calls++;
        throw new RpcError('EREORG', 'block 1 changed while its state changes were read');
      },
    }),
  });
  await follower.start();
  const [alice] = traffic.accounts as [Hex];
  await traffic.transferEth(alice, other(0x53), 1n);
  await until('the first attempt', () => calls > 0);
  const first = calls;
  await sleep(2000);
  // Backoff 250, 500, 1000 ms…: a handful of attempts, not thousands.
  t.true(calls - first <= 6, `${calls - first} attempts in 2 s`);
  t.true(calls - first >= 1, 'but it keeps looking');
  t.true(parsedLines(lines).some((l) => /the block changed while it was read/.test(l.msg) && typeof l.retry_in_ms === 'number'));
});

test('a node without the state of the block (not an archive node) is named as the cause (ESTATE_UNAVAILABLE); following resumes when the state is there', async (t) => {
  let gone = false;
  const { chain, traffic, follower, roller, lines } = await setup(t, {
    rewrite: (c) =>
      gone && /^(debug_trace|trace_|eth_getBalance|eth_getTransactionCount|eth_getCode|eth_getStorageAt)/.test(c.method)
        ? { error: { code: -32000, message: `missing trie node ${'5e'.repeat(32)} (path ) state 0x${'4c'.repeat(32)} is not available, not found` } }
        : undefined,
  });
  await follower.start();
  const [alice] = traffic.accounts as [Hex];
  await traffic.transferEth(alice, other(0x54), 1n);
  await caughtUp(follower, roller, chain);
  const tip = follower.tip.number;
  gone = true;
  await traffic.transferEth(alice, other(0x54), 2n);
  await until('the state-unavailable log line', () => parsedLines(lines).some((l) => l.code === 'ESTATE_UNAVAILABLE'));
  const line = parsedLines(lines).find((l) => l.code === 'ESTATE_UNAVAILABLE')!;
  t.regex(line.err!, new RegExp(`^the node no longer has the state of block ${tip + 1} \\(not an archive node\\?\\): start from a more recent state file .*or use an archive node`));
  t.regex(line.err!, /missing trie node/, 'what the node said is kept');
  t.is(follower.tip.number, tip);
  gone = false; // a flapping balancer answers from a node that has it
  await caughtUp(follower, roller, chain);
  t.is(follower.tip.number, tip + 1);
});

test('state-unavailable answers of geth, Nethermind, reth, Erigon and Besu are recognised; other errors are not', (t) => {
  const rpcError = (m: string) => new RpcError('ERPC', `eth_getBalance at http://127.0.0.1:8545 failed: -32000: ${m}`, -32000);
  for (const m of [
    'missing trie node 5e1f… (path ) state 0x4c… is not available, not found',
    'historical state 0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544 is not available',
    'required historical state unavailable (reexec=128)',
    'No state available for block 0xe7b1e5b5b5c730816ef2b9627a85c227f6924f27504f1b36cc7328bff79ecc6e',
    'Node 0x6716 is missing from the DB',
    'state at block #19000000 is pruned',
    'distance to target block exceeds maximum configured value',
    'world state unavailable',
  ]) {
    t.true(isStateUnavailable(rpcError(m)), m);
  }
  for (const m of ['header not found', 'block not found', 'execution reverted', 'tracer prestateTracer not found']) t.false(isStateUnavailable(rpcError(m)), m);
  t.false(isStateUnavailable(new RpcError('EUNSUPPORTED', 'debug_traceBlockByNumber: the method does not exist/is not available')));
  t.false(isStateUnavailable(new RpcError('EUNREACHABLE', 'eth_getBalance: timed out: state unavailable')));
});

test('--state: a state file naming another state root, block or chain than --from-block is refused before anything is built', async (t) => {
  const { chain, data, rpc, roller } = await setup(t);
  const genesis = await chain.rpc<{ hash: Hex; stateRoot: Hex }>('eth_getBlockByNumber', ['0x0', false]);
  const account = JSON.stringify({ address: other(0x55), balance: '0x5', nonce: '0x0' });
  const stateFile = (header: object) => {
    const file = path.join(data, `state-${Math.random().toString(16).slice(2)}.jsonl`);
    fs.writeFileSync(file, `${JSON.stringify(header)}\n${account}\n`);
    return file;
  };
  const source = await detectChangeSource(rpc, capturingLogger('silent').logger);
  const start = (file: string) => {
    const f = new ChainFollower({ data, rpc, source, roller, logger: capturingLogger('silent').logger, pollMs: 100, fromBlock: 0, stateFile: file });
    t.teardown(() => f.stop());
    return f.start();
  };
  const wrongRoot = `0x${'ab'.repeat(32)}`;
  const e1 = await t.throwsAsync(start(stateFile({ block_number: 0, state_root: wrongRoot })));
  t.is((e1 as { code?: string }).code, 'ESTATE_MISMATCH');
  t.regex(e1!.message, new RegExp(`is not the state of block 0: its state_root ${wrongRoot} is not the block's state root ${genesis.stateRoot}`));
  const e2 = await t.throwsAsync(start(stateFile({ block_number: 7, state_root: genesis.stateRoot })));
  t.regex(e2!.message, /is not the state of block 0: it names block 7/);
  const e3 = await t.throwsAsync(start(stateFile({ chain_id: 1 })));
  t.regex(e3!.message, /it names chain 1, the node is on chain 31337/);
  t.false(fs.existsSync(generationsDir(data)) && fs.readdirSync(generationsDir(data)).some((n) => /^\d/.test(n)), 'nothing built');
  // The right state root: built, and the generation records it.
  await start(stateFile({ block_number: 0, state_root: genesis.stateRoot, block_hash: genesis.hash }));
  const g = await loadGeneration(generationDir(data, '0'));
  t.is(g.manifest.state_root, genesis.stateRoot);
});

test("a development chain's genesis generation holds its funded precompiles (geth --dev gives 0x01…0x0a 1 wei)", async (t) => {
  const precompile = (n: number) => `0x${n.toString(16).padStart(40, '0')}`;
  const funded = new Set(Array.from({ length: 10 }, (_, i) => precompile(i + 1)));
  const { data, follower } = await setup(t, {
    rewrite: (c) => (c.method === 'eth_getBalance' && funded.has(String(c.params?.[0]).toLowerCase()) ? { result: '0x1' } : undefined),
  });
  await follower.start();
  const g = await loadGeneration(generationDir(data, '0'));
  const keys = [1, 2, 9, 10, 11, 17].map((n) => accountKey(precompile(n)));
  const values = await readLaneValues(g.lanes.cold!, g.dir, keys);
  for (const i of [0, 1, 2, 3]) t.deepEqual(decodeBasicData(values[i]!), { balance: 1n, nonce: 0n, codeSize: 0 }, `precompile ${[1, 2, 9, 10][i]}`);
  t.is(values[4], undefined, 'an empty precompile stays absent');
  t.is(values[5], undefined);
});

test('the smallest --retain (2) follows one-block reorgs, again and again at the same height: abandoned branches are pruned first', async (t) => {
  const { chain, traffic, data, follower, roller } = await setup(t, { retain: 2, serverRetain: 0 });
  await follower.start();
  const [alice, bob] = traffic.accounts as [Hex, Hex];
  await traffic.transferEth(alice, other(0x56), 1n);
  await caughtUp(follower, roller, chain);
  const fork = follower.tip.number;
  const reorgs: { depth: number }[] = [];
  const fatal: unknown[] = [];
  follower.on('reorg', (e: { depth: number }) => reorgs.push(e));
  follower.on('fatal', (e) => fatal.push(e));
  let snapshot = await chain.rpc<Hex>('evm_snapshot');
  await traffic.transferEth(alice, other(0x57), 10n);
  await caughtUp(follower, roller, chain);
  for (let round = 1; round <= 3; round++) {
    // Back to the fork block; another block at the same height.
    t.true(await chain.rpc<boolean>('evm_revert', [snapshot]));
    snapshot = await chain.rpc<Hex>('evm_snapshot');
    await traffic.transferEth(bob, other(0x57 + round), 20n + BigInt(round));
    await until(`reorg ${round}`, () => reorgs.length >= round || fatal.length > 0);
    t.deepEqual(fatal, [], `round ${round}: followed`);
    await caughtUp(follower, roller, chain);
    t.is(reorgs[round - 1]!.depth, 1);
    t.is(follower.tip.number, fork + 1);
    // On disk: the tip and its parent; the abandoned blocks are gone.
    const onDisk = fs.readdirSync(generationsDir(data)).filter((n) => /^\d/.test(n));
    t.true(onDisk.includes(String(fork)), `round ${round}: the fork block is kept (${onDisk})`);
    t.deepEqual(onDisk.filter((n) => new RegExp(`^${fork + 1}(r\\d+)?$`).test(n)), [follower.tip.id], `round ${round}: abandoned blocks pruned (${onDisk})`);
  }
});
