// Following a chain (issue 10), three parts:
//
// 1. Block-to-private-read latency against a real node (Hardhat, the npm
//    devDependency): a block that changes K keys (10, 100, 1,000: one
//    transaction of contracts/Phoenix.sol's fill updating K - 3 storage
//    slots, plus the sender, the contract and the fee recipient) is mined; the time
//    from the moment the node has mined it (eth_sendTransaction returns,
//    Hardhat automines) until a wallet's private read (StateClient, back to
//    back reads of the last slot written) returns the new value. The
//    follower (ChainFollower over ws:// newHeads, struct-log source) and a
//    2-worker `lanepir serve` cluster run as in production, on a state
//    padded with a synthetic one (default 100,000 accounts, ~380,000 keys)
//    so that lanes, builds and reads have a realistic cost. Reference in the
//    same run: one private read of an unchanged key.
// 2. Struct-log ingestion rate (changes/s) on the blocks of part 1, against
//    the same node (debug_traceTransaction, then every touched key read
//    back). Reference: the read-back alone of the same keys.
// 3. Ingestion rate of the prestate and stateDiff sources, which Hardhat does
//    not offer: a fake node on loopback serving answers in the shapes geth
//    and Erigon/reth send, through the real client (JSON-RPC batching,
//    parsing, read-back of the block's extras). Reference: the same keys
//    folded into a BlockDiff directly (no RPC, no parsing).
//
// Run alone: node dist/bench/chain.js [--json] [--blocks N] [--accounts N]
// (also `npm run bench -- --only chain`).
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { type Hex, encodeAbiParameters, encodeDeployData, encodeFunctionData, keccak256 } from 'viem';
import { devChainGenesis, ChainFollower, type ChainFollowerEvents } from '../src/eth/chain-follower.js';
import { BlockDiff } from '../src/eth/changes/diff.js';
import { readBack } from '../src/eth/changes/readback.js';
import { changeSource, detectChangeSource } from '../src/eth/changes/sources.js';
import { emptyTouched, touchAccount, touchSlot } from '../src/eth/changes/structlog.js';
import { StateClient } from '../src/eth/client.js';
import { startDevChain } from '../src/eth/devchain/hardhat.js';
import { Traffic } from '../src/eth/devchain/traffic.js';
import { type BlockHeader, EthRpc, parseHeader } from '../src/eth/rpc/client.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { type AccountLine } from '../src/eth/state-lines.js';
import { Roller, type RollerEvents } from '../src/follow/roller.js';
import { type ClusterProcess, type Log, freePort, fmt, fmtMs, fmtRatio, removeDir, round, roundSummary, sleep, startClusterProcess, summarize, tempDataDir } from './util.js';

export interface ChainBenchOptions {
  /** Measured blocks per size (default 20; one more, not measured, warms each size up). */
  blocks?: number;
  /** Changed keys per block (default 10, 100, 1000). */
  sizes?: number[];
  /** Synthetic accounts the served state is padded with (default 100,000). */
  accounts?: number;
  workers?: number;
  log?: Log;
}

const BLOCK_DEADLINE_MS = 120_000;
/** Pause after each measured read before the next block (the follower prunes and goes idle; a real chain has 12 s). */
const SETTLE_MS = 300;
/** sender, contract, fee recipient: what a fill transaction changes besides its slots. */
const EXTRA_KEYS = 3;

const mapSlot = (k: number) => keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'uint256' }], [BigInt(k), 1n]));

// ---- 1 and 2: a real node ----

interface BlockSample {
  size: number;
  block: number;
  changes: number;
  latencyMs: number;
  servedMs: number;
  ingestMs: number;
  buildMs: number;
  reloadMs: number;
  readAfterServedMs: number;
  reads: number;
}

async function againstHardhat(opts: Required<Omit<ChainBenchOptions, 'log'>> & { log: Log }) {
  const { log } = opts;
  const quiet = pino({ level: 'silent' });
  const data = tempDataDir('lanepir-bench-chain-');
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    log('starting a Hardhat node ...');
    const chain = await startDevChain();
    cleanups.push(() => chain.stop());
    const http_ = new EthRpc({ url: chain.url });
    const genesis = (await http_.header(0))!;
    const synthetic = new EthSynthetic(opts.accounts, 'lanepir-bench-chain');
    const genesisLines = await devChainGenesis(http_, genesis);
    function* state(): Generator<AccountLine> {
      yield* genesisLines;
      yield* synthetic.state();
    }
    const port = await freePort();
    const adminPort = await freePort();
    const roller = new Roller({ data, admin: { url: `http://127.0.0.1:${adminPort}`, token: undefined }, logger: quiet, retain: 16, retryMs: 100, maxRetryMs: 500 });
    cleanups.push(() => roller.stop());
    const ws = new EthRpc({ url: chain.wsUrl });
    cleanups.push(() => ws.close());
    const source = await detectChangeSource(ws, quiet);
    const follower = new ChainFollower({ data, rpc: ws, source, roller, logger: quiet, pollMs: 1000, fromBlock: 0, stateFile: state(), hotManifest: synthetic.hotManifest });
    cleanups.push(() => follower.stop());
    log(`building block 0 (the node's genesis accounts + ${opts.accounts} synthetic accounts, ~${synthetic.approximateKeys} keys) ...`);
    let t = performance.now();
    await follower.start();
    const firstBuildMs = performance.now() - t;
    log(`  ${fmt(firstBuildMs / 1000, 1)} s; starting a ${opts.workers}-worker cluster ...`);
    const cluster: ClusterProcess = await startClusterProcess({ data, workers: opts.workers, shardSize: 128 * 1024, port, adminPort });
    cleanups.push(() => cluster.stop());

    const built = new Map<number, ChainFollowerEvents['built']>();
    const reloaded = new Map<number, RollerEvents['reloaded'] & { at: number }>();
    follower.on('built', (e: ChainFollowerEvents['built']) => built.set(e.block, e));
    roller.on('reloaded', (e: RollerEvents['reloaded']) => reloaded.set(e.block, { ...e, at: performance.now() }));

    const traffic = await new Traffic(chain.rpc).init();
    const alice = traffic.accounts[0]!;
    const { Phoenix } = traffic.artifacts;
    const deployed = await traffic.send({ from: alice, data: encodeDeployData({ abi: Phoenix.abi, bytecode: Phoenix.bytecode }) });
    const phoenix = deployed.contractAddress!.toLowerCase() as Hex;
    const client = new StateClient({ url: cluster.url });
    const served = async (block: number) => {
      const deadline = Date.now() + BLOCK_DEADLINE_MS;
      while ((await client.latestBlock()).number < BigInt(block)) {
        if (Date.now() > deadline) throw new Error(`block ${block} was not served within ${BLOCK_DEADLINE_MS} ms`);
        await sleep(50);
      }
    };
    await served(Number(deployed.blockNumber));

    // Reference: private reads of an unchanged key (a synthetic account), hints current.
    const still = synthetic.account(7).address;
    await client.getAccount(still);
    const readMs: number[] = [];
    for (let i = 0; i < 10; i++) {
      t = performance.now();
      await client.getAccount(still);
      readMs.push(performance.now() - t);
    }
    const read = summarize(readMs);
    log(`  reference: a private read of an unchanged key: p50 ${fmtMs(read.p50, 1)}`);

    const samples: BlockSample[] = [];
    const headers: { size: number; header: BlockHeader }[] = [];
    let serial = 0;
    for (const size of opts.sizes) {
      const count = Math.max(1, size - EXTRA_KEYS);
      const slot = mapSlot(count - 1);
      log(`  ${size} keys per block: ${opts.blocks} blocks (+1 warm-up) ...`);
      const fill = (from: number, n: number, value: bigint) => ({
        from: alice,
        to: phoenix,
        data: encodeFunctionData({ abi: Phoenix.abi, functionName: 'fill', args: [BigInt(from), BigInt(n), value] }),
        gas: `0x${(16_000_000).toString(16)}`, // under the EIP-7825 cap; no estimate: the block is mined as the call returns
      });
      // The slots exist before the measured blocks (they are updates, as most changes are); a new slot
      // costs 22,100 gas, so they are created 400 a transaction.
      for (let from = 0; from < count; from += 400) {
        const r = await chain.rpc<{ status: Hex } | null>('eth_getTransactionReceipt', [await chain.rpc<Hex>('eth_sendTransaction', [fill(from, Math.min(400, count - from), 1n)])]);
        if (r?.status !== '0x1') throw new Error(`creating slots ${from}.. failed: ${JSON.stringify(r)}`);
      }
      for (let i = 0; i <= opts.blocks; i++) {
        const value = BigInt(++serial) * 1_000_000n;
        const hash = await chain.rpc<Hex>('eth_sendTransaction', [fill(0, count, value)]);
        const minedAt = performance.now(); // Hardhat automines: the block exists when the call returns
        const receipt = await chain.rpc<{ status: Hex; blockNumber: Hex }>('eth_getTransactionReceipt', [hash]);
        if (receipt?.status !== '0x1') throw new Error(`fill(${count}) failed: ${JSON.stringify(receipt)}`);
        const block = Number(receipt.blockNumber);
        const want = value + BigInt(count - 1);
        let reads = 0;
        let readAt: number;
        for (;;) {
          const r = await client.getStorageAt(phoenix, slot);
          reads++;
          if (BigInt(r.value) === want) {
            readAt = performance.now();
            if (r.block.number < BigInt(block)) throw new Error(`block ${block}'s value read at block ${r.block.number}`);
            break;
          }
          if (performance.now() - minedAt > BLOCK_DEADLINE_MS) throw new Error(`block ${block}: the new value was not read within ${BLOCK_DEADLINE_MS} ms (last: ${r.value} at block ${r.block.number})`);
        }
        const b = built.get(block);
        const rl = [...reloaded.values()].find((x) => x.block >= block);
        if (i > 0 && b && rl) {
          samples.push({
            size,
            block,
            changes: b.changes,
            latencyMs: readAt - minedAt,
            servedMs: rl.at - minedAt,
            ingestMs: b.ingestMs,
            buildMs: b.buildMs,
            reloadMs: rl.ms,
            readAfterServedMs: readAt - rl.at,
            reads,
          });
          headers.push({ size, header: (await http_.header(block))! });
        }
        await sleep(SETTLE_MS);
      }
    }

    // 2. Struct-log ingestion of the same blocks, and the read-back alone of what they changed.
    const structlog = changeSource('structlog', http_);
    const ingestion: { size: number; changes: number; ms: number; readBackMs: number; requests: number }[] = [];
    for (const { size, header } of headers) {
      t = performance.now();
      const { diff, changes, requests } = await structlog.blockChanges(header);
      const ms = performance.now() - t;
      const touched = emptyTouched();
      for (const [address, c] of diff.entries()) {
        touchAccount(touched, address);
        for (const s of c.storage.keys()) touchSlot(touched, address, s);
      }
      t = performance.now();
      await readBack(http_, { blockHash: header.hash }, touched, new BlockDiff());
      ingestion.push({ size, changes, ms, readBackMs: performance.now() - t, requests });
    }
    return { samples, ingestion, read, firstBuildMs, keys: synthetic.approximateKeys, workers: opts.workers };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    removeDir(data);
  }
}

// ---- 3. prestate and stateDiff against a fake node ----

const hash32 = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;
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
      slotsPre[hash32(k + t * 1e6)] = hash32(1);
      slotsPost[hash32(k + t * 1e6)] = hash32(2 + k);
      sdSlots[hash32(k + t * 1e6)] = { '*': { from: hash32(1), to: hash32(2 + k) } };
    }
    pre[addr(0x10 + t)] = { balance: '0x1000000', nonce: 1 };
    post[addr(0x10 + t)] = { balance: '0xf00000', nonce: 2 };
    pre[contract] = { balance: '0x0', nonce: 1, storage: slotsPre };
    post[contract] = { storage: slotsPost };
    sd[addr(0x10 + t)] = { balance: { '*': { from: '0x1000000', to: '0xf00000' } }, nonce: { '*': { from: '0x1', to: '0x2' } }, code: '=', storage: {} };
    sd[contract] = { balance: '=', nonce: '=', code: '=', storage: sdSlots };
    prestate.push({ txHash: hash32(t + 1), result: { pre, post } });
    statediff.push({ transactionHash: hash32(t + 1), stateDiff: sd, output: '0x', trace: [] });
  }
  return { prestate, statediff };
}

async function fakeNode(keys: number, txs: number) {
  const a = answers(keys, txs);
  const header = { number: '0x1', hash: hash32(0xb1), parentHash: hash32(0xb0), stateRoot: hash32(0x5), timestamp: '0x1', miner: addr(0xfee), transactions: Array.from({ length: txs }, (_, i) => hash32(i + 1)), withdrawals: [] };
  const full = { ...header, transactions: header.transactions.map((hash) => ({ hash, from: addr(0x10), to: addr(0x1000), type: '0x2' })) };
  const one = (r: { id: number; method: string; params?: unknown[] }) => {
    const result =
      r.method === 'debug_traceBlockByHash' ? a.prestate
      : r.method === 'trace_replayBlockTransactions' ? a.statediff
      : r.method === 'eth_getBlockByNumber' || r.method === 'eth_getBlockByHash' ? (r.params?.[1] ? full : header)
      : r.method === 'eth_getCode' ? '0x'
      : '0x1';
    return { jsonrpc: '2.0', id: r.id, result };
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Parameters<typeof one>[0] | Parameters<typeof one>[0][];
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(Array.isArray(body) ? body.map(one) : one(body)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, header, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function tracedSources(sizes: number[]) {
  const rows: { keys: number; source: string; msPerBlock: number; changesPerS: number; referencePerS: number }[] = [];
  for (const keys of sizes) {
    const txs = Math.max(1, Math.min(200, Math.floor(keys / 10)));
    const node = await fakeNode(keys, txs);
    try {
      const rpc = new EthRpc({ url: node.url });
      const header = parseHeader(node.header, 'header');
      const reps = Math.max(3, Math.floor(20000 / keys));
      // Reference: the same keys set directly on a BlockDiff.
      const r0 = performance.now();
      let refChanges = 0;
      for (let i = 0; i < reps; i++) {
        const d = new BlockDiff();
        for (let k = 0; k < keys; k++) d.setStorage(addr(0x1000 + (k % txs)), BigInt(k), BigInt(k + 2));
        refChanges += d.changes;
      }
      const referencePerS = refChanges / ((performance.now() - r0) / 1000);
      for (const name of ['prestate', 'statediff'] as const) {
        const source = changeSource(name, rpc);
        await source.blockChanges(header); // warm up
        const t0 = performance.now();
        let changes = 0;
        for (let i = 0; i < reps; i++) changes += (await source.blockChanges(header)).changes;
        const s = (performance.now() - t0) / 1000;
        rows.push({ keys, source: name, msPerBlock: (s * 1000) / reps, changesPerS: changes / s, referencePerS });
      }
    } finally {
      await node.close();
    }
  }
  return rows;
}

export async function runChainBench(opts: ChainBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const log = opts.log ?? (() => {});
  const sizes = opts.sizes ?? [10, 100, 1000];
  const real = await againstHardhat({ blocks: opts.blocks ?? 20, sizes, accounts: opts.accounts ?? 100_000, workers: opts.workers ?? 2, log });
  log('prestate and stateDiff sources against a fake node ...');
  const traced = await tracedSources([...sizes, 10_000]);

  const lines: string[] = [];
  const figures: Record<string, unknown> = { latency: {}, structlog: {}, traced: traced.map((r) => ({ ...r, msPerBlock: round(r.msPerBlock), changesPerS: Math.round(r.changesPerS), referencePerS: Math.round(r.referencePerS) })) };
  lines.push(`## Chain: block mined -> a private read returns its value (Hardhat node, ws newHeads, struct-log source, ${real.workers}-worker cluster, state padded to ~${real.keys.toLocaleString('en')} keys)`);
  lines.push(`reference: one private read of an unchanged key p50 ${fmtMs(real.read.p50, 1)} (p99 ${fmtMs(real.read.p99, 1)}); first generation built in ${fmt(real.firstBuildMs / 1000, 1)} s`);
  lines.push('| keys/block (measured) | blocks | latency p50 | latency p99 | ratio p50 / read | served p50 (ingest + build + reload) | read after served p50 | reads per block |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const size of sizes) {
    const s = real.samples.filter((x) => x.size === size);
    if (!s.length) continue;
    const lat = summarize(s.map((x) => x.latencyMs));
    const med = (f: (x: BlockSample) => number) => summarize(s.map(f)).p50;
    (figures.latency as Record<string, unknown>)[size] = {
      changesMean: round(s.reduce((n, x) => n + x.changes, 0) / s.length, 1),
      latencyMs: roundSummary(lat, 1),
      servedMs: roundSummary(summarize(s.map((x) => x.servedMs)), 1),
      ingestMsP50: round(med((x) => x.ingestMs), 1),
      buildMsP50: round(med((x) => x.buildMs), 1),
      reloadMsP50: round(med((x) => x.reloadMs), 1),
      readAfterServedMsP50: round(med((x) => x.readAfterServedMs), 1),
      readsMean: round(s.reduce((n, x) => n + x.reads, 0) / s.length, 2),
      referenceReadMsP50: round(real.read.p50, 1),
    };
    lines.push(
      `| ${size} (${fmt(s.reduce((n, x) => n + x.changes, 0) / s.length, 0)}) | ${s.length} | ${fmtMs(lat.p50, 0)} | ${fmtMs(lat.p99, 0)} | ${fmtRatio(lat.p50 / real.read.p50)} | ${fmtMs(med((x) => x.servedMs), 0)} (${fmt(med((x) => x.ingestMs), 0)} + ${fmt(med((x) => x.buildMs), 0)} + ${fmt(med((x) => x.reloadMs), 0)}) | ${fmtMs(med((x) => x.readAfterServedMs), 0)} | ${fmt(s.reduce((n, x) => n + x.reads, 0) / s.length, 1)} |`,
    );
  }
  lines.push(`(p99 is nearest-rank: of ${opts.blocks ?? 20} blocks, the slowest; 'served' ends when POST /admin/reload answers; the wallet reads back to back, so 'read after served' includes a read that started before the switch)`);
  lines.push('');
  lines.push('## Chain: struct-log ingestion against the Hardhat node (debug_traceTransaction + read-back at the block)');
  lines.push('| keys/block (measured) | blocks | ms/block p50 | changes/s | RPC requests/block | reference: read-back alone, changes/s | ratio |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const size of sizes) {
    const s = real.ingestion.filter((x) => x.size === size);
    if (!s.length) continue;
    const changes = s.reduce((n, x) => n + x.changes, 0);
    const rate = changes / (s.reduce((n, x) => n + x.ms, 0) / 1000);
    const ref = changes / (s.reduce((n, x) => n + x.readBackMs, 0) / 1000);
    (figures.structlog as Record<string, unknown>)[size] = { changesMean: round(changes / s.length, 1), msPerBlock: roundSummary(summarize(s.map((x) => x.ms)), 1), changesPerS: Math.round(rate), readBackChangesPerS: Math.round(ref), requestsMean: round(s.reduce((n, x) => n + x.requests, 0) / s.length, 1) };
    lines.push(`| ${size} (${fmt(changes / s.length, 0)}) | ${s.length} | ${fmtMs(summarize(s.map((x) => x.ms)).p50, 1)} | ${Math.round(rate).toLocaleString('en')} | ${fmt(s.reduce((n, x) => n + x.requests, 0) / s.length, 0)} | ${Math.round(ref).toLocaleString('en')} | ${fmtRatio(rate / ref)} |`);
  }
  lines.push('');
  lines.push('## Chain: prestate and stateDiff ingestion (a fake node on loopback serving the shapes geth and Erigon/reth send; Hardhat offers neither)');
  lines.push('| keys/block | source | ms/block | changes/s | reference: fold only, changes/s | ratio |');
  lines.push('| --- | --- | --- | --- | --- | --- |');
  for (const r of traced) lines.push(`| ${r.keys} | ${r.source} | ${fmt(r.msPerBlock, 1)} | ${Math.round(r.changesPerS).toLocaleString('en')} | ${Math.round(r.referencePerS).toLocaleString('en')} | ${fmt(r.changesPerS / r.referencePerS, 3)} |`);
  return { figures, lines };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const num = (flag: string) => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    const n = Number(argv[i + 1]);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer, got ${argv[i + 1]}`);
    return n;
  };
  const json = argv.includes('--json');
  runChainBench({ ...(num('--blocks') ? { blocks: num('--blocks')! } : {}), ...(num('--accounts') ? { accounts: num('--accounts')! } : {}), log: (line) => process.stderr.write(`${line}\n`) }).then(
    ({ figures, lines }) => process.stdout.write(json ? `${JSON.stringify(figures)}\n` : `${lines.join('\n')}\n`),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
