// Where a block's state changes come from, best first, detected at start-up:
//   prestate   debug_traceBlockByHash + prestateTracer {diffMode: true}    (geth, reth, Nethermind)
//   statediff  trace_replayBlockTransactions [stateDiff]                   (Erigon, reth, Nethermind)
//   structlog  debug_traceTransaction struct logs + values read back       (any debug node, e.g. Hardhat)
// Every source also reads back what a block changes outside its
// transactions (system.ts) and checks removals against the node.
import { type Logger } from 'pino';
import { type Hex } from 'viem';
import { recoverAuthorizationAddress } from 'viem/utils';
import { type BlockHeader, type EthRpc, address20, isUnsupported, preview, toQuantity } from '../rpc/client.js';
import { RpcError } from '../rpc/errors.js';
import { BlockDiff } from './diff.js';
import { applyPrestateBlock } from './prestate.js';
import { readBack } from './readback.js';
import { applyStateDiffBlock } from './statediff.js';
import { type StructLog, type Touched, emptyTouched, touchAccount, touchSlot, walkStructLogs } from './structlog.js';
import { touchBlockExtras } from './system.js';

export const CHANGE_SOURCES = ['prestate', 'statediff', 'structlog'] as const;
export type ChangeSourceName = (typeof CHANGE_SOURCES)[number];

export interface BlockChanges {
  diff: BlockDiff;
  /** JSON-RPC requests it took. */
  requests: number;
  /** Keys changed (accounts + slots). */
  changes: number;
}

/** What the follower knows about the state before the block (the parent generation). */
export interface BlockContext {
  /** The storage slots (0x + 64 hex) `address` has before the block. */
  slotsOf(address: string): Promise<string[]>;
}

export interface ChangeSource {
  readonly name: ChangeSourceName;
  /** The block's state changes (the header names the block; reads are pinned to its hash). */
  blockChanges(block: BlockHeader, context?: BlockContext): Promise<BlockChanges>;
}

/** Cancun (EIP-6780: SELFDESTRUCT removes only an account created in the same transaction) came with EIP-4788's header field. */
export const isCancun = (block: BlockHeader) => block.parentBeaconBlockRoot !== undefined;

const PRESTATE_CONFIG = { tracer: 'prestateTracer', tracerConfig: { diffMode: true }, timeout: '120s' };
/** Struct logs without memory and return data (big and unused); the stack is needed (SSTORE slots, call targets). */
const STRUCT_LOG_CONFIG = { disableMemory: true, disableStorage: true, disableStack: false };

/** Reads back the block's extra keys and every account a trace says was removed, then folds them in. */
async function finish(rpc: EthRpc, block: BlockHeader, diff: BlockDiff, removed: string[], touched: Touched = emptyTouched()): Promise<number> {
  for (const a of removed) if (diff.account(a).deleted) touchAccount(touched, a); // confirm removals at the block
  await touchBlockExtras(rpc, block, touched);
  return readBack(rpc, { blockHash: block.hash }, touched, diff);
}

class PrestateSource implements ChangeSource {
  readonly name = 'prestate';
  constructor(private readonly rpc: EthRpc) {}
  async blockChanges(block: BlockHeader): Promise<BlockChanges> {
    const before = this.rpc.requests;
    const diff = new BlockDiff();
    const answer = block.transactions.length ? await this.rpc.request('debug_traceBlockByHash', [block.hash, PRESTATE_CONFIG]) : [];
    const { removed } = applyPrestateBlock(diff, answer, block.transactions, block.number);
    await finish(this.rpc, block, diff, removed);
    return { diff, requests: this.rpc.requests - before, changes: diff.changes };
  }
}

class StateDiffSource implements ChangeSource {
  readonly name = 'statediff';
  constructor(private readonly rpc: EthRpc) {}
  async blockChanges(block: BlockHeader): Promise<BlockChanges> {
    const before = this.rpc.requests;
    const diff = new BlockDiff();
    // Asked for by number (what the method takes everywhere); each entry's transactionHash pins it to this block.
    const answer = block.transactions.length ? await this.rpc.request('trace_replayBlockTransactions', [toQuantity(block.number), ['stateDiff']]) : [];
    const { removed } = applyStateDiffBlock(diff, answer, block.transactions, block.number);
    await finish(this.rpc, block, diff, removed);
    return { diff, requests: this.rpc.requests - before, changes: diff.changes };
  }
}

interface RawTx {
  hash: string;
  from: string;
  to: string | null;
  type?: string;
  authorizationList?: { address: Hex; chainId: Hex; nonce: Hex; r: Hex; s: Hex; yParity?: Hex; v?: Hex }[];
}

class StructLogSource implements ChangeSource {
  readonly name = 'structlog';
  constructor(
    private readonly rpc: EthRpc,
    /** Transactions traced at once (struct logs are large). */
    private readonly traceConcurrency = 4,
  ) {}

  async blockChanges(block: BlockHeader, context?: BlockContext): Promise<BlockChanges> {
    const before = this.rpc.requests;
    const touched = emptyTouched();
    const hashes = block.transactions;
    const meta = await this.rpc.many<Record<string, unknown> | null>(
      hashes.flatMap((h) => [
        { method: 'eth_getTransactionByHash', params: [h] },
        { method: 'eth_getTransactionReceipt', params: [h] },
      ]),
    );
    const txs = hashes.map((h, i) => {
      const tx = meta[2 * i] as RawTx | null;
      const receipt = meta[2 * i + 1] as { contractAddress?: string | null; blockHash?: string } | null;
      if (!tx || !receipt) throw new RpcError('EREORG', `transaction ${h} of block ${block.number} is not known to the node any more (reorg?)`);
      if (receipt.blockHash?.toLowerCase() !== block.hash) throw new RpcError('EREORG', `transaction ${h} is now in block ${preview(receipt.blockHash)}, not ${block.hash} (reorg)`);
      const root = tx.to ?? receipt.contractAddress;
      if (!root) throw new RpcError('EBAD_RESPONSE', `transaction ${h} creates a contract but its receipt has no contractAddress`);
      touchAccount(touched, address20(tx.from, `${h}.from`));
      touchAccount(touched, address20(root, `${h}.to`));
      return { hash: h, tx, root: root.toLowerCase() };
    });
    // EIP-7702: each authorization sets its authority's code and nonce.
    for (const { tx } of txs) {
      for (const auth of tx.authorizationList ?? []) {
        try {
          const authority = await recoverAuthorizationAddress({
            authorization: {
              address: auth.address,
              chainId: Number(BigInt(auth.chainId)),
              nonce: Number(BigInt(auth.nonce)),
              r: auth.r,
              s: auth.s,
              yParity: Number(BigInt(auth.yParity ?? auth.v ?? '0x0')),
            },
          });
          touchAccount(touched, authority);
        } catch {
          // An invalid authorization is skipped by the EVM too: it changes nothing.
        }
      }
    }
    await Promise.all(
      Array.from({ length: Math.min(this.traceConcurrency, txs.length) }, async (_, w) => {
        for (let i = w; i < txs.length; i += this.traceConcurrency) {
          const { hash, root } = txs[i]!;
          const trace = await this.rpc.request<{ structLogs?: StructLog[] }>('debug_traceTransaction', [hash, STRUCT_LOG_CONFIG]);
          if (!trace || !Array.isArray(trace.structLogs)) throw new RpcError('EBAD_RESPONSE', `debug_traceTransaction(${hash}): no structLogs in ${preview(trace)}`);
          try {
            walkStructLogs(trace.structLogs, root, touched, `debug_traceTransaction(${hash})`);
          } catch (err) {
            throw new RpcError('EBAD_RESPONSE', (err as Error).message);
          }
        }
      }),
    );
    // Before Cancun a self-destructed contract loses all its storage, and CREATE2 may bring it back in
    // the same block; its frame may also have reverted. Struct logs cannot tell these apart, so every
    // slot it had is read back at the block: the node's values are right in every case.
    if (touched.destructed.size && !isCancun(block)) {
      if (!context) {
        throw new RpcError('ECHAIN', `block ${block.number} (before Cancun) self-destructs ${[...touched.destructed].join(', ')}: the storage it had cannot be checked without the parent generation's slot index`);
      }
      for (const a of touched.destructed) for (const slot of await context.slotsOf(a)) touchSlot(touched, a, slot);
    }
    const diff = new BlockDiff();
    await finish(this.rpc, block, diff, [], touched);
    return { diff, requests: this.rpc.requests - before, changes: diff.changes };
  }
}

export function changeSource(name: ChangeSourceName, rpc: EthRpc): ChangeSource {
  switch (name) {
    case 'prestate':
      return new PrestateSource(rpc);
    case 'statediff':
      return new StateDiffSource(rpc);
    case 'structlog':
      return new StructLogSource(rpc);
  }
}

/** Whether the node offers a method: false only when it says so; other failures propagate. */
async function offers(rpc: EthRpc, method: string, params: unknown[], probes: string[], usable: (answer: unknown) => string | undefined = () => undefined): Promise<boolean> {
  try {
    const why = usable(await rpc.request(method, params));
    probes.push(`${method}: ${why ?? 'offered'}`);
    return why === undefined;
  } catch (err) {
    if (isUnsupported(err)) {
      probes.push(`${method}: not offered`);
      return false;
    }
    if (err instanceof RpcError && err.code === 'ERPC') {
      // Offered, but this call failed (e.g. an unknown tracer): not usable.
      probes.push(`${method}: ${err.message}`);
      return false;
    }
    throw err;
  }
}

/**
 * Picks the best change source the node offers (or checks the one asked
 * for). Probes at the head block; a node offering none is an error naming
 * what was tried and what it answered.
 */
export async function detectChangeSource(rpc: EthRpc, logger: Logger, wanted: ChangeSourceName | 'auto' = 'auto'): Promise<ChangeSource> {
  const head = await rpc.header('latest');
  if (!head) throw new RpcError('EBAD_RESPONSE', 'eth_getBlockByNumber(latest) answered null');
  const at = toQuantity(head.number);
  const probes: string[] = [];
  /** Each trace entry must name its transaction (checked against the block's every time). */
  const namesTransactions = (field: string) => (answer: unknown) =>
    Array.isArray(answer) && answer.every((e) => typeof (e as Record<string, unknown> | null)?.[field] === 'string') ? undefined : `offered, but its answers do not name their transactions (${field}; upgrade the node)`;
  const usable: Record<ChangeSourceName, () => Promise<boolean>> = {
    prestate: () => offers(rpc, 'debug_traceBlockByHash', [head.hash, PRESTATE_CONFIG], probes, namesTransactions('txHash')),
    statediff: () => offers(rpc, 'trace_replayBlockTransactions', [at, ['stateDiff']], probes, namesTransactions('transactionHash')),
    structlog: async () => {
      // Any transaction hash works to learn whether the method exists: an unknown one is a plain error.
      const tx = head.transactions[0] ?? `0x${'0'.repeat(64)}`;
      try {
        await rpc.request('debug_traceTransaction', [tx, STRUCT_LOG_CONFIG]);
      } catch (err) {
        if (isUnsupported(err)) {
          probes.push('debug_traceTransaction: not offered');
          return false;
        }
        if (!(err instanceof RpcError && err.code === 'ERPC' && head.transactions.length === 0)) throw err;
      }
      probes.push('debug_traceTransaction: offered');
      // The values are read back: the node must serve state at a block.
      return offers(rpc, 'eth_getStorageAt', [`0x${'0'.repeat(40)}`, '0x0', { blockHash: head.hash }], probes);
    },
  };
  const order = wanted === 'auto' ? CHANGE_SOURCES : [wanted];
  for (const name of order) {
    if (await usable[name]()) {
      logger.info({ change_source: name, probes }, `change source: ${name}`);
      return changeSource(name, rpc);
    }
  }
  throw new RpcError(
    'ENO_CHANGE_SOURCE',
    `the node offers no way to learn a block's state changes${wanted === 'auto' ? '' : ` with --change-source ${wanted}`}: ${probes.join('; ')}. ` +
      'Enable the debug API (geth/reth --http.api eth,debug; Erigon --http.api eth,debug,trace; Nethermind Debug and Trace modules).',
  );
}
