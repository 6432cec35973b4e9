// Per-block state changes from a node: the prestateTracer and stateDiff
// parsers on hand-written answers in the shapes geth and Erigon/reth send,
// the struct-log walker on hand-made call frames, and the struct-log source
// against a real Hardhat node, checked key by key against the node's state.
import test from 'ava';
import { pino } from 'pino';
import { type Hex, zeroAddress } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { BlockDiff, ZERO_WORD, word } from '../src/eth/changes/diff.js';
import { applyPrestateBlock } from '../src/eth/changes/prestate.js';
import { changeSource, detectChangeSource } from '../src/eth/changes/sources.js';
import { applyStateDiffBlock } from '../src/eth/changes/statediff.js';
import { emptyTouched, walkStructLogs } from '../src/eth/changes/structlog.js';
import { startDevChain } from '../src/eth/devchain/hardhat.js';
import { Traffic, mappingSlot } from '../src/eth/devchain/traffic.js';
import { EthRpc } from '../src/eth/rpc/client.js';
import { parseStateText } from '../src/eth/state-file.js';
import { type FakeNodeOptions, startFakeNode } from './fake-node.js';

const A = '0x' + 'aa'.repeat(20);
const B = '0x' + 'bb'.repeat(20);
const C = '0x' + 'cc'.repeat(20);
const D = '0x' + 'dd'.repeat(20);
const MINER = '0x' + '11'.repeat(20);
const s = (n: number) => word(BigInt(n));
const TX1 = '0x' + '01'.repeat(32);
const TX2 = '0x' + '02'.repeat(32);

test('prestateTracer diff mode: transfers, new and cleared slots, code, removal, fold across transactions', (t) => {
  const answer = [
    {
      txHash: '0x' + '01'.repeat(32),
      result: {
        // A pays B 1 ETH, the miner earns the fee; C's slot 1 goes 5 -> 0, slot 2 0 -> 7, slot 3 changes.
        pre: {
          [A]: { balance: '0x10000', nonce: 3 },
          [B]: { balance: '0x0' },
          [MINER]: { balance: '0x5' },
          [C]: { balance: '0x0', nonce: 1, code: '0x6000', storage: { [s(1)]: s(5), [s(3)]: s(9) } },
        },
        post: {
          [A]: { balance: '0xf000', nonce: 4 },
          [B]: { balance: '0x100' },
          [MINER]: { balance: '0x6' },
          [C]: { storage: { [s(2)]: s(7), [s(3)]: s(10) } },
        },
      },
    },
    {
      txHash: '0x' + '02'.repeat(32),
      result: {
        // D is created with code; B is removed (in pre, not in post); C's slot 2 set again.
        pre: { [A]: { balance: '0xf000', nonce: 4 }, [B]: { balance: '0x100' }, [D]: { balance: '0x0' }, [C]: { storage: { [s(2)]: s(7) } } },
        post: { [A]: { balance: '0xe000', nonce: 5 }, [D]: { balance: '0x0', nonce: 1, code: '0x60016002' }, [C]: { storage: { [s(2)]: s(8) } } },
      },
    },
  ];
  const diff = new BlockDiff();
  const { removed } = applyPrestateBlock(diff, answer, [TX1, TX2], 7);
  t.deepEqual(removed, [B]);
  t.deepEqual(diff.lines(), [
    { address: MINER, balance: '0x6' },
    { address: A, balance: '0xe000', nonce: '0x5' },
    { address: B, deleted: true },
    { address: C, storage: { [s(1)]: ZERO_WORD, [s(2)]: s(8), [s(3)]: s(10) } },
    { address: D, balance: '0x0', nonce: '0x1', code_size: 4 },
  ]);
  t.is(diff.changes, 5 + 3);
  // Every line parses as JSON Lines.
  t.is(diff.toJsonl().split('\n').filter(Boolean).length, 5);
});

test('prestateTracer: malformed answers are refused, never half-applied silently', (t) => {
  t.throws(() => applyPrestateBlock(new BlockDiff(), [{ txHash: TX1, result: { pre: {}, post: {} } }], [TX1, TX2], 1), { message: /2 transactions, the trace has 1/ });
  t.throws(() => applyPrestateBlock(new BlockDiff(), [{ txHash: TX1, error: 'execution timeout' }], [TX1], 1), { message: /failed to trace/ });
  t.throws(() => applyPrestateBlock(new BlockDiff(), [{ txHash: TX1, result: { pre: {}, post: { [A]: { balance: 'lots' } } } }], [TX1], 1), { message: /balance: expected a hex quantity/ });
  t.throws(() => applyPrestateBlock(new BlockDiff(), [{ txHash: TX1, result: { pre: {}, post: { '0x12': {} } } }], [TX1], 1), { message: /address/ });
  t.throws(() => applyPrestateBlock(new BlockDiff(), { not: 'an array' }, [TX1], 1), { message: /one result per transaction/ });
});

test('trace_replayBlockTransactions stateDiff: born, died, changed and unchanged fields, folded in order', (t) => {
  const answer = [
    {
      transactionHash: '0x' + '01'.repeat(32),
      output: '0x',
      trace: [],
      vmTrace: null,
      stateDiff: {
        [A]: { balance: { '*': { from: '0x10000', to: '0xf000' } }, nonce: { '*': { from: '0x3', to: '0x4' } }, code: '=', storage: {} },
        [B]: { balance: { '+': '0x100' }, nonce: { '+': '0x0' }, code: { '+': '0x' }, storage: {} },
        [C]: {
          balance: '=',
          nonce: '=',
          code: '=',
          storage: { [s(1)]: { '-': s(5) }, [s(2)]: { '+': s(7) }, [s(3)]: { '*': { from: s(9), to: s(10) } } },
        },
      },
    },
    {
      transactionHash: '0x' + '02'.repeat(32),
      stateDiff: {
        [B]: { balance: { '-': '0x100' }, nonce: { '-': '0x0' }, code: { '-': '0x' }, storage: {} },
        [D]: { balance: { '+': '0x0' }, nonce: { '+': '0x1' }, code: { '+': '0x60016002' }, storage: { [s(0)]: { '+': s(1) } } },
        [MINER]: { balance: { '*': { from: '0x5', to: '0x6' } }, nonce: '=', code: '=', storage: {} },
      },
    },
  ];
  const diff = new BlockDiff();
  const { removed } = applyStateDiffBlock(diff, answer, [TX1, TX2], 9);
  t.deepEqual(removed, [B]);
  t.deepEqual(diff.lines(), [
    { address: MINER, balance: '0x6' },
    { address: A, balance: '0xf000', nonce: '0x4' },
    { address: B, deleted: true },
    { address: C, storage: { [s(1)]: ZERO_WORD, [s(2)]: s(7), [s(3)]: s(10) } },
    { address: D, balance: '0x0', nonce: '0x1', code_size: 4, storage: { [s(0)]: s(1) } },
  ]);
  t.throws(() => applyStateDiffBlock(new BlockDiff(), [{ transactionHash: TX1, stateDiff: null }], [TX1], 1), { message: /no stateDiff/ });
  t.throws(() => applyStateDiffBlock(new BlockDiff(), [{ transactionHash: TX1, stateDiff: { [A]: { balance: { '?': 1 } } } }], [TX1], 1), { message: /"=", \+, - or \*/ });
});

test('a removed account set again in the same block is removed with its storage, then written whole', (t) => {
  const diff = new BlockDiff();
  diff.setBalance(A, 5n);
  diff.setStorage(A, 1n, 2n);
  diff.deleteAccount(A);
  diff.setNonce(A, 1n);
  t.deepEqual(diff.lines(), [
    { address: A, deleted: true },
    { address: A, balance: '0x0', nonce: '0x1', code_size: 0 },
  ]);
  // Read back as empty: removed (EIP-161).
  diff.setAccount(B, { balance: 0n, nonce: 0n, codeSize: 0 });
  t.deepEqual(diff.lines()[2], { address: B, deleted: true });
  // The diff file a follower builds from: the repeated address is the one repetition the format allows.
  t.is(parseStateText(diff.toJsonl(), 'diff', 'block').length, 3);
});

test('prestateTracer: a contract self-destructed in one transaction and re-created (CREATE2) in the next is removed, then set anew', (t) => {
  const answer = [
    // tx 0: C self-destructs (pre pre-Cancun semantics: removed at the end of the transaction), paying A.
    { txHash: '0x' + '01'.repeat(32), result: { pre: { [C]: { balance: '0x5', nonce: 1, code: '0x6000', storage: { [s(1)]: s(5) } }, [A]: { balance: '0x0' } }, post: { [A]: { balance: '0x5' } } } },
    // tx 1: C is created again at the same address; its constructor writes slot 2.
    { txHash: '0x' + '02'.repeat(32), result: { pre: { [C]: { balance: '0x0' } }, post: { [C]: { nonce: 1, code: '0x6001', storage: { [s(2)]: s(9) } } } } },
  ];
  const diff = new BlockDiff();
  applyPrestateBlock(diff, answer, [TX1, TX2], 3);
  t.deepEqual(diff.lines().filter((l) => l.address === C), [
    { address: C, deleted: true },
    { address: C, balance: '0x0', nonce: '0x1', code_size: 2, storage: { [s(2)]: s(9) } },
  ]);
});

test('struct logs: SSTORE targets by call frame (CALL, DELEGATECALL, STATICCALL, nested CREATE), value transfers, self-destruct', (t) => {
  const w = (n: bigint | number) => BigInt(n).toString(16).padStart(64, '0'); // Hardhat's stack words
  const addr = (a: string) => w(BigInt(a));
  const NEW = '0x' + 'ee'.repeat(20);
  const logs = [
    { depth: 1, op: 'PUSH1', stack: [] },
    { depth: 1, op: 'SSTORE', stack: [w(42), w(1)] }, // A[1]
    // CALL(gas, to=B, value, ...): stack top is gas, then to
    { depth: 1, op: 'CALL', stack: [w(0), w(0), w(0), w(0), w(5), addr(B), w(1000)] },
    { depth: 2, op: 'SSTORE', stack: [w(1), w(2)] }, // B[2]
    // B delegates to C: writes land in B
    { depth: 2, op: 'DELEGATECALL', stack: [w(0), w(0), w(0), w(0), addr(C), w(1000)] },
    { depth: 3, op: 'SSTORE', stack: [w(1), w(3)] }, // B[3]
    { depth: 3, op: 'RETURN', stack: [w(0), w(0)] },
    // B creates a contract whose constructor writes slot 4 (address known only on return)
    { depth: 2, op: 'CREATE', stack: [w(0), w(0), w(0)] },
    { depth: 3, op: 'SSTORE', stack: [w(9), w(4)] }, // NEW[4]
    { depth: 3, op: 'RETURN', stack: [w(0), w(0)] },
    { depth: 2, op: 'POP', stack: [addr(NEW)] },
    { depth: 2, op: 'STATICCALL', stack: [w(0), w(0), w(0), w(0), addr(D), w(1000)] },
    { depth: 3, op: 'STOP', stack: [] },
    { depth: 2, op: 'RETURN', stack: [w(0), w(0)] },
    // Back in A: a failed CREATE (address 0) leaves nothing; then A self-destructs to D
    { depth: 1, op: 'CREATE2', stack: [w(0), w(0), w(0), w(0)] },
    { depth: 2, op: 'SSTORE', stack: [w(1), w(5)] },
    { depth: 2, op: 'REVERT', stack: [w(0), w(0)] },
    { depth: 1, op: 'POP', stack: [w(0)] },
    { depth: 1, op: 'SELFDESTRUCT', stack: [addr(D)] },
  ];
  const touched = emptyTouched();
  walkStructLogs(logs, A, touched);
  t.deepEqual([...touched.accounts].sort(), [A, B, D, NEW].sort());
  t.deepEqual(
    Object.fromEntries([...touched.slots].map(([a, set]) => [a, [...set].sort()])),
    { [A]: [s(1)], [B]: [s(2), s(3)], [NEW]: [s(4)] },
  );
  t.deepEqual([...touched.destructed], [A], 'the self-destructed account (before Cancun its old storage is read back)');
  // geth's stack words are 0x quantities: same result.
  const gethLogs = logs.map((l) => ({ ...l, stack: l.stack.map((x) => '0x' + BigInt('0x' + x).toString(16)) }));
  const t2 = emptyTouched();
  walkStructLogs(gethLogs, A, t2);
  t.deepEqual(t2, touched);
});

test('struct logs: a CREATE that halts its own frame (write protection in a STATICCALL) is dropped, not resolved from an unrelated callee', (t) => {
  const w = (n: bigint | number) => BigInt(n).toString(16).padStart(64, '0');
  const addr = (a: string) => w(BigInt(a));
  const logs = [
    // A STATICCALLs B; B's CREATE is a state change in a static context: B's frame halts on it (no child frame, no step after it at depth 2).
    { depth: 1, op: 'STATICCALL', stack: [w(0), w(0), w(0), w(0), addr(B), w(1000)] },
    { depth: 2, op: 'PUSH1', stack: [] },
    { depth: 2, op: 'CREATE', stack: [w(0), w(0), w(0)] },
    // Back in A (the STATICCALL failed: 0), which then CALLs C: C's first step is at depth 2 with an empty stack.
    { depth: 1, op: 'POP', stack: [w(0)] },
    { depth: 1, op: 'CALL', stack: [w(0), w(0), w(0), w(0), w(0), addr(C), w(1000)] },
    { depth: 2, op: 'PUSH1', stack: [] },
    { depth: 2, op: 'SSTORE', stack: [w(7), w(6)] }, // C[6]
    { depth: 2, op: 'STOP', stack: [] },
    { depth: 1, op: 'STOP', stack: [w(1)] },
  ];
  const touched = emptyTouched();
  t.notThrows(() => walkStructLogs(logs, A, touched));
  t.deepEqual([...touched.accounts].sort(), [A, B, C].sort());
  t.deepEqual(Object.fromEntries([...touched.slots].map(([a, set]) => [a, [...set]])), { [C]: [s(6)] });

  // The same halt in the root frame (out of gas on CREATE) ends the trace: nothing is left to resolve.
  const root = emptyTouched();
  t.notThrows(() => walkStructLogs([{ depth: 1, op: 'CREATE2', stack: [w(0), w(0), w(0), w(0)] }], A, root));
  t.deepEqual([...root.accounts], [A]);
});

test('struct logs: nested CREATEs resolve on return to their creators, a CREATE failing without a frame resolves to nothing', (t) => {
  const w = (n: bigint | number) => BigInt(n).toString(16).padStart(64, '0');
  const addr = (a: string) => w(BigInt(a));
  const OUTER = '0x' + 'e1'.repeat(20);
  const INNER = '0x' + 'e2'.repeat(20);
  const logs = [
    { depth: 1, op: 'CREATE', stack: [w(0), w(0), w(0)] },
    { depth: 2, op: 'SSTORE', stack: [w(1), w(1)] }, // OUTER[1] (address unknown yet)
    { depth: 2, op: 'CREATE2', stack: [w(0), w(0), w(0), w(0)] },
    { depth: 3, op: 'SSTORE', stack: [w(1), w(2)] }, // INNER[2]
    // INNER's constructor fails to create (insufficient balance): no frame, 0 on the next step at the same depth.
    { depth: 3, op: 'CREATE', stack: [w(0), w(0), w(0)] },
    { depth: 3, op: 'POP', stack: [w(0)] },
    { depth: 3, op: 'RETURN', stack: [w(0), w(0)] },
    { depth: 2, op: 'POP', stack: [addr(INNER)] }, // INNER is the creator's stack top on return
    { depth: 2, op: 'SSTORE', stack: [w(1), w(3)] }, // OUTER[3]
    { depth: 2, op: 'RETURN', stack: [w(0), w(0)] },
    { depth: 1, op: 'POP', stack: [addr(OUTER)] },
    { depth: 1, op: 'STOP', stack: [] },
  ];
  const touched = emptyTouched();
  walkStructLogs(logs, A, touched);
  t.deepEqual([...touched.accounts].sort(), [A, INNER, OUTER].sort());
  t.deepEqual(
    Object.fromEntries([...touched.slots].map(([a, set]) => [a, [...set].sort()])),
    { [OUTER]: [s(1), s(3)], [INNER]: [s(2)] },
  );
});

test('struct-log source against a Hardhat node: every changed key of every block, with the node\'s values', async (t) => {
  const chain = await startDevChain();
  t.teardown(() => chain.stop());
  const rpc = new EthRpc({ url: chain.url });
  const source = await detectChangeSource(rpc, pino({ level: 'silent' }));
  t.is(source.name, 'structlog', 'Hardhat offers struct logs only');

  const traffic = await new Traffic(chain.rpc).init();
  const [alice, bob, carol, dave] = traffic.accounts as [Hex, Hex, Hex, Hex];
  const fresh = ('0x' + 'ab'.repeat(20)) as Hex;
  const token = await traffic.deployToken(alice, 1_000_000n);
  const factory = await traffic.deployFactory(bob);
  const receipts = [
    await traffic.transferEth(alice, fresh, 10n ** 18n), // a new account
    await traffic.transferToken(token, alice, bob, 500n), // slot changes
    await traffic.transferToken(token, bob, carol, 500n), // bob's balance slot set to zero
    await traffic.createViaFactory(factory, carol, 77n), // CREATE inside a call; constructor writes
    await traffic.ephemeral(dave, fresh, 12345n), // created and self-destructed in one transaction
    await traffic.emptyAccount(traffic.accounts[5]!, fresh), // balance to exactly zero
  ];
  t.true(receipts.every((r) => r.status === '0x1'));
  const created = (await chain.rpc<{ logs: { address: Hex; data: Hex }[] }>('eth_getTransactionReceipt', [receipts[3]!.transactionHash])).logs.find(
    (l) => l.address.toLowerCase() === factory,
  )!;
  const newToken = ('0x' + created.data.slice(26)).toLowerCase() as Hex;

  // The keys a test knows about: accounts, and the tokens' balance slots and totalSupply.
  const accounts = [...traffic.accounts, fresh, token, factory, newToken, '0xc014ba5ec014ba5ec014ba5ec014ba5ec014ba5e' as Hex];
  const slots: [Hex, Hex][] = [];
  for (const tk of [token, newToken]) {
    for (const h of [alice, bob, carol, dave]) slots.push([tk, mappingSlot(h)]);
    slots.push([tk, word(2n) as Hex]);
  }
  const head = Number(await chain.rpc<Hex>('eth_blockNumber'));
  t.true(head >= 8);
  for (let n = 1; n <= head; n++) {
    const header = (await rpc.header(n))!;
    const { diff, changes } = await source.blockChanges(header);
    t.true(changes > 0, `block ${n} changes something`);
    const lines = new Map(diff.lines().map((l) => [l.address, l]));
    const at = (b: number) => `0x${b.toString(16)}`;
    for (const a of accounts) {
      const [b0, b1, n0, n1] = await Promise.all([
        chain.rpc<Hex>('eth_getBalance', [a, at(n - 1)]),
        chain.rpc<Hex>('eth_getBalance', [a, at(n)]),
        chain.rpc<Hex>('eth_getTransactionCount', [a, at(n - 1)]),
        chain.rpc<Hex>('eth_getTransactionCount', [a, at(n)]),
      ]);
      const line = lines.get(a);
      if (BigInt(b0) !== BigInt(b1) || BigInt(n0) !== BigInt(n1)) {
        t.truthy(line, `block ${n}: ${a} changed and is in the diff`);
        if (line?.deleted) t.true(BigInt(b1) === 0n && BigInt(n1) === 0n, `block ${n}: ${a} removed only when empty`);
        else {
          t.is(BigInt(line!.balance!), BigInt(b1), `block ${n}: balance of ${a}`);
          t.is(BigInt(line!.nonce!), BigInt(n1), `block ${n}: nonce of ${a}`);
        }
      }
    }
    for (const [c, slot] of slots) {
      const [v0, v1] = await Promise.all([chain.rpc<Hex>('eth_getStorageAt', [c, slot, at(n - 1)]), chain.rpc<Hex>('eth_getStorageAt', [c, slot, at(n)])]);
      if (BigInt(v0) !== BigInt(v1)) t.is(lines.get(c)?.storage?.[slot], word(v1), `block ${n}: slot ${slot} of ${c}`);
    }
  }
  // The block that zeroed bob's token balance says so explicitly.
  const zeroBlock = Number(receipts[2]!.blockNumber);
  const { diff } = await source.blockChanges((await rpc.header(zeroBlock))!);
  t.is(diff.lines().find((l) => l.address === token)?.storage?.[mappingSlot(bob)], ZERO_WORD);
  // The ephemeral contract never exists; the emptied account reads as zero.
  const ephemeral = Number(receipts[4]!.blockNumber);
  const eph = (await source.blockChanges((await rpc.header(ephemeral))!)).diff.lines();
  t.true(eph.some((l) => l.deleted), 'the self-destructed contract is reported removed (a no-op for a key that never existed)');
});

test('an answer over the response size limit is ETOO_LARGE naming the limit, not an unreachable node retried forever', async (t) => {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const { id } = JSON.parse(body) as { id: number };
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: { structLogs: Array.from({ length: 200 }, () => ({ op: 'PUSH1', depth: 1, stack: [] })) } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
  const small = new EthRpc({ url, batchSize: 1, maxResponseBytes: 2048, retryCount: 0 });
  const err = await t.throwsAsync(small.request('debug_traceTransaction', ['0x' + '00'.repeat(32), {}]));
  t.is((err as { code?: string }).code, 'ETOO_LARGE');
  t.regex(err!.message, /debug_traceTransaction at http:\/\/127\.0\.0\.1:\d+: the answer is larger than the limit of 2048 bytes \(raise --rpc-max-response-mb\)/);
  const big = new EthRpc({ url, batchSize: 1, maxResponseBytes: 1 << 20, retryCount: 0 });
  t.is((await big.request<{ structLogs: unknown[] }>('debug_traceTransaction', ['0x' + '00'.repeat(32), {}])).structLogs.length, 200);
});

// ---- prestate and stateDiff sources against a scripted node ----

const BLOCK_HASH = '0x' + 'b1'.repeat(32);

function fakeBlock(txs: Record<string, unknown>[]): FakeNodeOptions['block'] {
  return {
    number: '0x10',
    hash: BLOCK_HASH,
    parentHash: '0x' + 'b0'.repeat(32),
    stateRoot: '0x' + '55'.repeat(32),
    timestamp: '0x1000',
    miner: MINER,
    transactions: txs.map((tx) => ({ from: A, to: B, type: '0x2', blockHash: BLOCK_HASH, ...tx })),
    withdrawals: [],
  };
}

async function sourceOn(t: import('ava').ExecutionContext, name: 'prestate' | 'statediff' | 'structlog', opts: FakeNodeOptions) {
  const node = await startFakeNode(opts);
  t.teardown(() => node.close());
  const rpc = new EthRpc({ url: node.url, retryCount: 0 });
  const header = (await rpc.header(0x10))!;
  return { node, header, source: changeSource(name, rpc) };
}

test('prestate source: traces the block by its hash; every entry must name the block\'s transaction at its position', async (t) => {
  const entry = (txHash: string) => ({ txHash, result: { pre: { [A]: { balance: '0x10', nonce: 1 } }, post: { [A]: { balance: '0x8', nonce: 2 } } } });
  const block = fakeBlock([{ hash: TX1 }, { hash: TX2 }]);
  const state = { [A]: { balance: '0x8', nonce: '0x2' } };

  const ok = await sourceOn(t, 'prestate', { block, prestate: [entry(TX1), entry(TX2)], state });
  const { diff } = await ok.source.blockChanges(ok.header);
  t.deepEqual(diff.lines().find((l) => l.address === A), { address: A, balance: '0x8', nonce: '0x2' });
  const traces = ok.node.calls.filter((c) => c.method.startsWith('debug_trace'));
  t.deepEqual(traces.map((c) => [c.method, c.params[0]]), [['debug_traceBlockByHash', BLOCK_HASH]]);

  const swapped = await sourceOn(t, 'prestate', { block, prestate: [entry(TX2), entry(TX1)], state });
  const e1 = await t.throwsAsync(swapped.source.blockChanges(swapped.header));
  t.is((e1 as { code?: string }).code, 'EREORG');
  t.regex(e1!.message, /tx 0 .*0x0202.*not the block's 0x0101/);

  const unnamed = await sourceOn(t, 'prestate', { block, prestate: [{ result: entry(TX1).result }, entry(TX2)], state });
  const e2 = await t.throwsAsync(unnamed.source.blockChanges(unnamed.header));
  t.is((e2 as { code?: string }).code, 'EBAD_RESPONSE');
  t.regex(e2!.message, /txHash/);

  const short = await sourceOn(t, 'prestate', { block, prestate: [entry(TX1)], state });
  t.is(((await t.throwsAsync(short.source.blockChanges(short.header))) as { code?: string }).code, 'EBAD_RESPONSE');
});

test('statediff source: every replay entry must name the block\'s transaction at its position (the block at that number changed: EREORG)', async (t) => {
  const entry = (transactionHash: string) => ({ transactionHash, output: '0x', trace: [], stateDiff: { [A]: { balance: { '*': { from: '0x10', to: '0x8' } }, nonce: '=', code: '=', storage: {} } } });
  const block = fakeBlock([{ hash: TX1 }, { hash: TX2 }]);
  const state = { [A]: { balance: '0x8', nonce: '0x1' } };

  const ok = await sourceOn(t, 'statediff', { block, statediff: [entry(TX1), entry(TX2)], state });
  t.is((await ok.source.blockChanges(ok.header)).diff.lines().find((l) => l.address === A)?.balance, '0x8');

  const other = await sourceOn(t, 'statediff', { block, statediff: [entry(TX1), entry('0x' + '03'.repeat(32))], state });
  const err = await t.throwsAsync(other.source.blockChanges(other.header));
  t.is((err as { code?: string }).code, 'EREORG');
  t.regex(err!.message, /tx 1 .*0x0303.*not the block's 0x0202/);

  const unnamed = await sourceOn(t, 'statediff', { block, statediff: [entry(TX1), { ...entry(TX2), transactionHash: undefined }], state });
  t.is(((await t.throwsAsync(unnamed.source.blockChanges(unnamed.header))) as { code?: string }).code, 'EBAD_RESPONSE');
});

test('EIP-7702: every authority of a type-4 transaction is read back, so a cleared delegation the trace leaves out is served as code_size 0', async (t) => {
  const authority = privateKeyToAccount(('0x' + '42'.repeat(32)) as Hex);
  const AUTH = authority.address.toLowerCase();
  const signed = await authority.signAuthorization({ address: zeroAddress, chainId: 1, nonce: 5 });
  const authorizationList = [
    { address: signed.address, chainId: '0x1', nonce: '0x5', yParity: `0x${signed.yParity!.toString(16)}`, r: signed.r, s: signed.s },
    // An invalid signature changes nothing (the EVM skips it too).
    { address: zeroAddress, chainId: '0x1', nonce: '0x0', yParity: '0x0', r: '0x0', s: '0x0' },
  ];
  const block = fakeBlock([{ hash: TX1, type: '0x4', to: A, authorizationList }]);
  // The node's state after the block: the delegation (0xef0100 ‖ address, 23 bytes) is gone.
  const state = { [AUTH]: { balance: '0x7', nonce: '0x6', code: '0x' } };
  const delegated = '0xef0100' + 'cd'.repeat(20);
  // A node that leaves `code` out of post when it becomes empty, and a stateDiff that does not report 7702 code changes.
  const prestate = [{ txHash: TX1, result: { pre: { [AUTH]: { balance: '0x7', nonce: 5, code: delegated } }, post: { [AUTH]: { nonce: 6 } } } }];
  const statediff = [{ transactionHash: TX1, output: '0x', trace: [], stateDiff: { [AUTH]: { balance: '=', nonce: { '*': { from: '0x5', to: '0x6' } }, code: '=', storage: {} } } }];
  for (const name of ['prestate', 'statediff', 'structlog'] as const) {
    const { source, header } = await sourceOn(t, name, { block, prestate, statediff, state });
    const lines = (await source.blockChanges(header)).diff.lines();
    t.deepEqual(lines.find((l) => l.address === AUTH), { address: AUTH, balance: '0x7', nonce: '0x6', code_size: 0 }, `${name}: the authority is read back`);
    t.false(lines.some((l) => l.address === zeroAddress), `${name}: an invalid authorization names nobody`);
  }
});

test('read-backs are by the block hash with requireCanonical: a block reorged out is refused, not read from', async (t) => {
  const block = fakeBlock([{ hash: TX1 }]);
  const prestate = [{ txHash: TX1, result: { pre: { [A]: { balance: '0x10' } }, post: { [A]: { balance: '0x8' } } } }];
  const state = { [A]: { balance: '0x8' } };
  const canonical = await sourceOn(t, 'prestate', { block, prestate, state });
  t.is((await canonical.source.blockChanges(canonical.header)).diff.lines().find((l) => l.address === A)?.balance, '0x8');
  const reads = canonical.node.calls.filter((c) => /^eth_get(Balance|TransactionCount|Code|StorageAt)$/.test(c.method));
  t.true(reads.length > 0 && reads.every((c) => JSON.stringify(c.params.at(-1)) === JSON.stringify({ blockHash: BLOCK_HASH, requireCanonical: true })));

  const reorged = await sourceOn(t, 'prestate', { block, prestate, state, canonical: false });
  const err = await t.throwsAsync(reorged.source.blockChanges(reorged.header));
  t.is((err as { code?: string }).code, 'ERPC');
  t.regex(err!.message, /not currently canonical/);
});
