// Ingestion rate of each change source (changes/s): the prestate and
// stateDiff sources against a fake node on loopback serving answers in the
// shapes geth and Erigon/reth send, with K changed keys per block, through
// the real client (JSON-RPC batching, parsing, read-back of the block's
// extras). Reference in the same run: the same K keys folded into a
// BlockDiff directly (no RPC, no parsing). Run: node dist/bench/chain.js
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { BlockDiff, word } from '../src/eth/changes/diff.js';
import { changeSource } from '../src/eth/changes/sources.js';
import { EthRpc } from '../src/eth/rpc/client.js';

const hash = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;
const addr = (n: number) => `0x${n.toString(16).padStart(40, '0')}`;

function answers(keys: number, txs: number) {
  const perTx = Math.ceil(keys / txs);
  const prestate: unknown[] = [];
  const statediff: unknown[] = [];
  for (let t = 0; t < txs; t++) {
    const pre: Record<string, unknown> = {};
    const post: Record<string, unknown> = {};
    const sd: Record<string, unknown> = {};
    const contract = addr(0x1000 + t);
    const slotsPre: Record<string, string> = {};
    const slotsPost: Record<string, string> = {};
    const sdSlots: Record<string, unknown> = {};
    for (let k = 0; k < perTx - 2; k++) {
      slotsPre[hash(k + t * 1e6)] = hash(1);
      slotsPost[hash(k + t * 1e6)] = hash(2 + k);
      sdSlots[hash(k + t * 1e6)] = { '*': { from: hash(1), to: hash(2 + k) } };
    }
    pre[addr(0x10 + t)] = { balance: '0x1000000', nonce: 1 };
    post[addr(0x10 + t)] = { balance: '0xf00000', nonce: 2 };
    pre[contract] = { balance: '0x0', nonce: 1, storage: slotsPre };
    post[contract] = { storage: slotsPost };
    sd[addr(0x10 + t)] = { balance: { '*': { from: '0x1000000', to: '0xf00000' } }, nonce: { '*': { from: '0x1', to: '0x2' } }, code: '=', storage: {} };
    sd[contract] = { balance: '=', nonce: '=', code: '=', storage: sdSlots };
    prestate.push({ txHash: hash(t + 1), result: { pre, post } });
    statediff.push({ transactionHash: hash(t + 1), stateDiff: sd, output: '0x', trace: [] });
  }
  return { prestate, statediff };
}

async function fakeNode(keys: number, txs: number) {
  const a = answers(keys, txs);
  const header = { number: '0x1', hash: hash(0xb1), parentHash: hash(0xb0), stateRoot: hash(0x5), timestamp: '0x1', miner: addr(0xfee), transactions: Array.from({ length: txs }, (_, i) => hash(i + 1)), withdrawals: [] };
  const one = (r: { id: number; method: string }) => {
    const result =
      r.method === 'debug_traceBlockByNumber' ? a.prestate
      : r.method === 'trace_replayBlockTransactions' ? a.statediff
      : r.method === 'eth_getBlockByNumber' || r.method === 'eth_getBlockByHash' ? header
      : r.method === 'eth_getCode' ? '0x'
      : '0x1';
    return { jsonrpc: '2.0', id: r.id, result };
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString());
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(Array.isArray(body) ? body.map(one) : one(body)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, header, close: () => new Promise<void>((r) => server.close(() => r())) };
}

export async function runChainBench(log: (s: string) => void = console.log): Promise<void> {
  log('\n## Change sources: RPC ingestion rate (fake node on loopback, recorded shapes)');
  log('| keys/block | source | ms/block | changes/s | reference: fold only, changes/s |');
  log('| --- | --- | --- | --- | --- |');
  for (const keys of [10, 100, 1000, 10000]) {
    const txs = Math.max(1, Math.min(200, Math.floor(keys / 10)));
    const node = await fakeNode(keys, txs);
    const rpc = new EthRpc({ url: node.url });
    const { parseHeader } = await import('../src/eth/rpc/client.js');
    const header = parseHeader(node.header, 'header');
    // Reference: the same keys set directly on a BlockDiff.
    const r0 = performance.now();
    let refChanges = 0;
    const reps = Math.max(3, Math.floor(20000 / keys));
    for (let i = 0; i < reps; i++) {
      const d = new BlockDiff();
      for (let k = 0; k < keys; k++) d.setStorage(addr(0x1000 + (k % txs)), BigInt(k), BigInt(k + 2));
      refChanges += d.changes;
    }
    const refRate = refChanges / ((performance.now() - r0) / 1000);
    for (const name of ['prestate', 'statediff'] as const) {
      const source = changeSource(name, rpc);
      await source.blockChanges(header); // warm up
      const t0 = performance.now();
      let changes = 0;
      for (let i = 0; i < reps; i++) changes += (await source.blockChanges(header)).changes;
      const s = (performance.now() - t0) / 1000;
      log(`| ${keys} | ${name} | ${((s * 1000) / reps).toFixed(1)} | ${Math.round(changes / s).toLocaleString('en')} | ${Math.round(refRate).toLocaleString('en')} (ratio ${(changes / s / refRate).toFixed(3)}) |`);
    }
    await node.close();
  }
  void pino;
  void word;
}

if (import.meta.url === `file://${process.argv[1]}`) await runChainBench();
