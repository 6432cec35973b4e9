// Where a block's state changes come from, best first, detected at start-up:
//   prestate   debug_traceBlockByHash + prestateTracer {diffMode: true}    (geth, reth, Nethermind)
//   statediff  trace_replayBlockTransactions [stateDiff]                   (Erigon, reth, Nethermind)
//   structlog  debug_traceTransaction struct logs + values read back       (any debug node, e.g. Hardhat)
// Every source also reads back what a block changes outside its
// transactions (system.ts), the EIP-7702 authorities its transactions name
// (transactions.ts), and checks removals against the node.
import { type Logger } from 'pino';
import { type BlockHeader, type EthRpc, type TxInfo, blockParam, isUnsupported, preview, toQuantity } from '../rpc/client.js';
import { RpcError } from '../rpc/errors.js';
import { BlockDiff } from './diff.js';
import { applyPrestateBlock } from './prestate.js';
import { readBack } from './readback.js';
import { applyStateDiffBlock } from './statediff.js';
import { type StructLog, type Touched, emptyTouched, touchAccount, touchSlot, walkStructLogs } from './structlog.js';
import { touchBlockExtras } from './system.js';
import { blockTransactions, touchAuthorities } from './transactions.js';

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

/**
 * The step every source ends with: reads back the block's extra keys, the
 * EIP-7702 authorities of its transactions and every account a trace says
 * was removed, then folds them in (read-back values are the node's at the
 * block, so they win over the trace).
 */
async function finish(rpc: EthRpc, block: BlockHeader, txs: readonly TxInfo[], diff: BlockDiff, removed: string[], touched: Touched = emptyTouched()): Promise<number> {
  for (const a of removed) if (diff.account(a).deleted) touchAccount(touched, a); // confirm removals at the block
  await touchAuthorities(touched, txs);
  await touchBlockExtras(rpc, block, touched);
  return readBack(rpc, { blockHash: block.hash }, touched, diff);
}

/**
 * A source that traces the whole block in one request (prestate, stateDiff):
 * the answer is folded into a diff (each entry must name the block's
 * transaction at its position), then the common read-back step.
 */
class BlockTraceSource implements ChangeSource {
  constructor(
    readonly name: 'prestate' | 'statediff',
    private readonly rpc: EthRpc,
    private readonly trace: (block: BlockHeader) => Promise<unknown>,
    private readonly apply: typeof applyPrestateBlock,
  ) {}
  async blockChanges(block: BlockHeader): Promise<BlockChanges> {
    const before = this.rpc.requests;
    const diff = new BlockDiff();
    const [txs, answer] = await Promise.all([blockTransactions(this.rpc, block), block.transactions.length ? this.trace(block) : []]);
    const { removed } = this.apply(diff, answer, block.transactions, block.number);
    await finish(this.rpc, block, txs, diff, removed);
    return { diff, requests: this.rpc.requests - before, changes: diff.changes };
  }
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
    const [txs, receipts] = await Promise.all([
      blockTransactions(this.rpc, block),
      this.rpc.many<{ contractAddress?: string | null; blockHash?: string } | null>(block.transactions.map((h) => ({ method: 'eth_getTransactionReceipt', params: [h] }))),
    ]);
    const roots = txs.map((tx, i) => {
      const receipt = receipts[i];
      if (!receipt) throw new RpcError('EREORG', `transaction ${tx.hash} of block ${block.number} has no receipt any more (reorg?)`);
      if (receipt.blockHash?.toLowerCase() !== block.hash) throw new RpcError('EREORG', `transaction ${tx.hash} is now in block ${preview(receipt.blockHash)}, not ${block.hash} (reorg)`);
      const root = tx.to ?? receipt.contractAddress;
      if (!root) throw new RpcError('EBAD_RESPONSE', `transaction ${tx.hash} creates a contract but its receipt has no contractAddress`);
      touchAccount(touched, tx.from);
      touchAccount(touched, root);
      return root.toLowerCase();
    });
    await Promise.all(
      Array.from({ length: Math.min(this.traceConcurrency, txs.length) }, async (_, w) => {
        for (let i = w; i < txs.length; i += this.traceConcurrency) {
          const hash = txs[i]!.hash;
          const trace = await this.rpc.request<{ structLogs?: StructLog[] }>('debug_traceTransaction', [hash, STRUCT_LOG_CONFIG]);
          if (!trace || !Array.isArray(trace.structLogs)) throw new RpcError('EBAD_RESPONSE', `debug_traceTransaction(${hash}): no structLogs in ${preview(trace)}`);
          try {
            walkStructLogs(trace.structLogs, roots[i]!, touched, `debug_traceTransaction(${hash})`);
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
    await finish(this.rpc, block, txs, diff, [], touched);
    return { diff, requests: this.rpc.requests - before, changes: diff.changes };
  }
}

export function changeSource(name: ChangeSourceName, rpc: EthRpc): ChangeSource {
  switch (name) {
    case 'prestate':
      return new BlockTraceSource('prestate', rpc, (block) => rpc.request('debug_traceBlockByHash', [block.hash, PRESTATE_CONFIG]), applyPrestateBlock);
    case 'statediff':
      // Asked for by number (what the method takes everywhere); each entry's transactionHash pins it to this block.
      return new BlockTraceSource('statediff', rpc, (block) => rpc.request('trace_replayBlockTransactions', [toQuantity(block.number), ['stateDiff']]), applyStateDiffBlock);
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
      return offers(rpc, 'eth_getStorageAt', [`0x${'0'.repeat(40)}`, '0x0', blockParam({ blockHash: head.hash })], probes);
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
