// Follows an Ethereum node over JSON-RPC: one incremental generation per
// block, rolled into the running server by the Roller.
//   - Start: resume from the generation built last (follow-chain.json, else
//     DIR/current), or build the first one: from a state file at a block
//     (--from-block B --state FILE), or from genesis on a development chain.
//   - Each step: the node's head (woken by newHeads over WebSocket, or by
//     polling), then every block up to head - confirmations in order: its
//     header must continue our tip (parentHash), its state changes come from
//     the change source, its generation is built on the tip's.
//   - Reorg: the tip's hash is no longer the node's block at that height, or
//     a new block's parent is not our tip. Walk back along our generations
//     (each records block_hash) to the newest one the node still has, serve
//     that ancestor at once, and build the new branch on it (ids <block>r<k>).
//   - A node that is away: retried with backoff, resumed from the tip.
import { EventEmitter } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Logger } from 'pino';
import { type Roller } from '../follow/roller.js';
import { type FollowMetrics } from '../follow/metrics.js';
import { freeGenerationId } from '../follow/chain.js';
import { resolveGeneration } from '../store/generation.js';
import { PlacementCache } from '../store/keyword-builder.js';
import { generationDir } from '../store/layout.js';
import { type Manifest, readManifest } from '../store/manifest.js';
import { type EthStateBuildOptions, buildEthDiff, buildEthState } from './build.js';
import { type BlockContext, type ChangeSource } from './changes/sources.js';
import { BlockDiff } from './changes/diff.js';
import { readBack } from './changes/readback.js';
import { emptyTouched, touchAccount } from './changes/structlog.js';
import { SYSTEM_CONTRACTS } from './changes/system.js';
import { type HotManifest } from './hot-manifest.js';
import { addressBytes, toHex } from './keys.js';
import { SlotIndex } from './slot-index.js';
import { type BlockHeader, type EthRpc } from './rpc/client.js';
import { RpcError } from './rpc/errors.js';
import { parseStateText } from './state-file.js';
import { type AccountLine } from './state-lines.js';

/** Chain ids of development chains (Hardhat/anvil 31337, geth --dev and ganache 1337): the only ones started from genesis over RPC. */
export const DEV_CHAIN_IDS = new Set([31337, 1337]);

export interface ChainFollowerOptions {
  data: string;
  rpc: EthRpc;
  source: ChangeSource;
  roller: Roller;
  logger: Logger;
  metrics?: FollowMetrics;
  /** Serve only blocks this many below the head. Default 0. */
  confirmations?: number;
  /** Head polling interval (also a safety net under WebSocket newHeads). Default 1000 ms. */
  pollMs?: number;
  /** The hot manifest for the first generation (and carried to later ones when given). */
  hotManifest?: HotManifest;
  /** Start from a state file (or its lines) at this block (when the data directory has no generation yet). */
  fromBlock?: number;
  stateFile?: EthStateBuildOptions['state'];
  /** At most this many blocks built before the server is asked to reload (a catch-up rolls in steps). Default 16. */
  blocksPerRoll?: number;
  /** How far back a reorg may go (generations walked). Default 256. */
  maxReorgDepth?: number;
}

/** Our newest block: its generation and its hash. */
export interface Tip {
  id: string;
  number: number;
  hash: string;
}

export interface ChainFollowerEvents {
  built: { generation: string; block: number; hash: string; changes: number; buildMs: number; ingestMs: number; lag: number };
  reorg: { from: Tip; to: Tip; depth: number };
  unreachable: { error: string };
  fatal: { error: Error };
}

interface FollowChainState {
  head: string;
}

export class ChainFollower extends EventEmitter {
  tip!: Tip;
  chainId!: number;
  /** The node's head at the last look. */
  nodeHead = -1;
  private readonly placementCache = new PlacementCache();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private pending = false;
  private poller: NodeJS.Timeout | undefined;
  private unsubscribe: (() => Promise<unknown>) | undefined;
  private awayLogged = false;
  /** When each block was first seen at the head (for block-to-served latency). */
  readonly seenAt = new Map<number, number>();

  constructor(private readonly opts: ChainFollowerOptions) {
    super();
  }

  private get statePath(): string {
    return path.join(this.opts.data, 'follow-chain.json');
  }

  /** Connects, checks the chain, finds or builds the first generation, and starts following. */
  async start(): Promise<void> {
    const { rpc, logger } = this.opts;
    this.chainId = await rpc.chainId();
    this.tip = await this.initialTip();
    logger.info({ generation: this.tip.id, block: this.tip.number, hash: this.tip.hash, chain_id: this.chainId, change_source: this.opts.source.name }, 'following the chain');
    await this.opts.roller.request(this.tip.id);
    const sub = rpc.subscriber;
    if (sub) {
      try {
        const s = await sub.subscribe({ params: ['newHeads'], onData: () => this.wake(), onError: () => {} });
        this.unsubscribe = s.unsubscribe;
        logger.info('newHeads subscription (polling continues as a safety net)');
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'newHeads subscription failed; polling');
      }
    }
    this.poller = setInterval(() => this.wake(), this.opts.pollMs ?? 1000);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    this.wake();
    await this.loop;
    await this.unsubscribe?.().catch(() => {});
  }

  private wake(): void {
    this.pending = true;
    this.wakeUp?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    }).finally(() => (this.wakeUp = undefined));
  }

  private async run(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      this.pending = false;
      try {
        const more = await this.step();
        if (this.awayLogged) this.opts.logger.info({ tip: this.tip.number }, 'the node answers again; following on');
        this.awayLogged = false;
        backoff = 250;
        if (more) continue;
        if (!this.pending) await this.sleep(this.opts.pollMs ?? 1000);
      } catch (err) {
        const e = err as RpcError;
        if (this.stopped) break;
        this.opts.metrics?.rpcErrors.inc({ code: e.code ?? 'EUNKNOWN' });
        if (e instanceof RpcError && e.code === 'EREORG') continue; // the walk happens on the next step
        if (e instanceof RpcError && (e.code === 'ECHAIN' || e.code === 'ENO_CHANGE_SOURCE' || e.code === 'ETOO_LARGE')) {
          this.opts.logger.fatal({ err: e.message }, 'cannot follow this chain');
          this.emit('fatal', { error: e });
          return;
        }
        if (e instanceof RpcError && e.code === 'EUNREACHABLE') {
          if (!this.awayLogged) this.opts.logger.warn({ err: e.message, tip: this.tip.number }, 'the node is unreachable; retrying (serving goes on)');
          this.awayLogged = true;
          this.emit('unreachable', { error: e.message });
        } else {
          this.opts.logger.error({ err: e.message, code: e.code, tip: this.tip.number }, 'follow step failed; retrying');
        }
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  /** One look at the node: returns true when there is more to do right away. */
  async step(): Promise<boolean> {
    const { rpc, metrics } = this.opts;
    const head = await rpc.blockNumber();
    this.nodeHead = head;
    metrics?.headBlock.set(head);
    const now = Date.now();
    for (let n = Math.max(this.tip.number + 1, head - 64); n <= head; n++) if (!this.seenAt.has(n)) this.seenAt.set(n, now);
    const target = head - (this.opts.confirmations ?? 0);
    // Is our tip still the node's block at its height? (A node behind our tip has reorged to a shorter chain, or resynced.)
    if (this.tip.number > head) {
      await this.reorg();
      return true;
    }
    const canonical = await rpc.header(this.tip.number);
    if (!canonical) return false; // the node names a head it cannot show yet
    if (canonical.hash !== this.tip.hash) {
      await this.reorg();
      return true;
    }
    let built = 0;
    for (let n = this.tip.number + 1; n <= target && !this.stopped; n++) {
      const header = await rpc.header(n);
      if (!header) break; // not there yet
      if (header.parentHash !== this.tip.hash) {
        await this.reorg();
        return true;
      }
      await this.buildBlock(header, head);
      if (++built >= (this.opts.blocksPerRoll ?? 16)) break;
    }
    if (built) await this.opts.roller.request(this.tip.id);
    return built > 0 && this.tip.number < target;
  }

  private async buildBlock(header: BlockHeader, head: number): Promise<void> {
    const { rpc, source, metrics, logger } = this.opts;
    const t0 = performance.now();
    const { diff, changes, requests } = await source.blockChanges(header, this.blockContext());
    // The block must still be the node's after its changes were read (a reorg mid-way is caught here or by the EIP-1898 reads).
    const again = await rpc.header(header.number);
    if (!again || again.hash !== header.hash) throw new RpcError('EREORG', `block ${header.number} changed while its state changes were read`);
    const t1 = performance.now();
    const id = await freeGenerationId(this.opts.data, header.number);
    await this.buildDiff(id, header, diff);
    const t2 = performance.now();
    const lag = head - header.number;
    this.tip = { id, number: header.number, hash: header.hash };
    await this.saveState();
    metrics?.blocks.inc();
    metrics?.changes.inc(changes);
    metrics?.builtBlock.set(header.number);
    metrics?.ingestSeconds.observe((t1 - t0) / 1000);
    metrics?.buildSeconds.observe((t2 - t1) / 1000);
    logger.info(
      { block: header.number, generation: id, hash: header.hash, changes, rpc_requests: requests, ingest_ms: Math.round(t1 - t0), build_ms: Math.round(t2 - t1), lag_blocks: lag },
      'built block',
    );
    this.emit('built', { generation: id, block: header.number, hash: header.hash, changes, buildMs: t2 - t1, ingestMs: t1 - t0, lag });
  }

  /** The state before the next block: the tip's generation (its slot index opened only if a source asks). */
  private blockContext(): BlockContext {
    const dir = generationDir(this.opts.data, this.tip.id);
    let index: Promise<SlotIndex> | undefined;
    return {
      slotsOf: async (address) => {
        index ??= SlotIndex.open(dir);
        return (await (await index).slotsOf(addressBytes(address))).map((s) => `0x${toHex(s)}`);
      },
    };
  }

  private async buildDiff(id: string, header: BlockHeader, diff: BlockDiff): Promise<void> {
    // Through the state-diff parser: the same checks as a diff file (fail closed on anything odd).
    const lines = parseStateText(diff.toJsonl(), 'diff', `block ${header.number}`);
    await buildEthDiff({
      data: this.opts.data,
      block: header.number,
      id,
      from: this.tip.id,
      diff: lines,
      blockHash: header.hash,
      parentHash: header.parentHash,
      stateRoot: header.stateRoot,
      chainId: this.chainId,
      placementCache: this.placementCache,
      ...(this.opts.hotManifest ? { hotManifest: this.opts.hotManifest } : {}),
    });
  }

  /** Walks back to the newest generation whose block the node still has, and makes it the tip. */
  private async reorg(): Promise<void> {
    const { rpc, logger, metrics } = this.opts;
    const from = this.tip;
    let id: string | undefined = this.tip.id;
    for (let depth = 0; id && depth <= (this.opts.maxReorgDepth ?? 256); depth++) {
      const m: Manifest | undefined = await readManifest(generationDir(this.opts.data, id)).catch(() => undefined);
      if (!m?.block_hash) break;
      const canonical = await rpc.header(m.block_number);
      if (canonical && canonical.hash === m.block_hash) {
        this.tip = { id, number: m.block_number, hash: m.block_hash };
        await this.saveState();
        metrics?.reorgs.inc();
        logger.warn({ from_block: from.number, from_hash: from.hash, ancestor: this.tip.number, ancestor_generation: id, depth: from.number - this.tip.number }, 'reorg: back to the common ancestor');
        this.emit('reorg', { from, to: this.tip, depth: from.number - this.tip.number });
        // Nothing of the abandoned branch stays served: the ancestor is on the new branch too.
        await this.opts.roller.request(id);
        return;
      }
      id = m.parent;
    }
    throw new RpcError(
      'ECHAIN',
      `reorg deeper than the generations kept: none of the blocks from ${from.number} back to our oldest generation is the node's any more; start again from a state file (--from-block B --state FILE)`,
    );
  }

  private async saveState(): Promise<void> {
    const tmp = `${this.statePath}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify({ head: this.tip.id } satisfies FollowChainState));
    await fsp.rename(tmp, this.statePath);
  }

  /** The generation to follow from: the last built, else current, else a new first generation. */
  private async initialTip(): Promise<Tip> {
    const { data, logger } = this.opts;
    const saved = await fsp
      .readFile(this.statePath, 'utf8')
      .then((t) => (JSON.parse(t) as FollowChainState).head, () => undefined);
    const existing = saved ?? (await resolveGeneration(data).then((g) => g.id, () => undefined));
    if (existing) {
      const m = await readManifest(generationDir(data, existing));
      if (m.chain_id != null && m.chain_id !== this.chainId) {
        throw new RpcError('ECHAIN', `generation ${existing} is of chain ${m.chain_id}, the node is on chain ${this.chainId}`);
      }
      if (!m.block_hash) {
        throw new RpcError('ECHAIN', `generation ${existing} has no block hash, so it cannot be checked against the chain: build it with --block-hash, or start from a state file (--from-block B --state FILE)`);
      }
      if (this.opts.stateFile) logger.info({ generation: existing }, 'the data directory has generations: resuming from the newest (--state is used only for a new data directory)');
      return { id: existing, number: m.block_number, hash: m.block_hash };
    }
    return this.opts.stateFile ? this.buildFromState() : this.buildFromGenesis();
  }

  private async blockInfo(n: number): Promise<BlockHeader> {
    const h = await this.opts.rpc.header(n);
    if (!h) throw new RpcError('ECHAIN', `the node has no block ${n}`);
    return h;
  }

  private async buildFromState(): Promise<Tip> {
    const { data, logger, fromBlock, stateFile } = this.opts;
    if (fromBlock === undefined) throw new RpcError('ECHAIN', '--state needs --from-block (the block the state is at)');
    const header = await this.blockInfo(fromBlock);
    logger.info({ block: fromBlock, hash: header.hash, state: typeof stateFile === 'string' ? stateFile : '(lines)' }, 'building the first generation from the state file');
    const t0 = performance.now();
    await buildEthState({
      data,
      block: fromBlock,
      state: stateFile!,
      blockHash: header.hash,
      parentHash: header.parentHash,
      stateRoot: header.stateRoot,
      chainId: this.chainId,
      placementCache: this.placementCache,
      ...(this.opts.hotManifest ? { hotManifest: this.opts.hotManifest } : {}),
    });
    logger.info({ block: fromBlock, build_ms: Math.round(performance.now() - t0) }, 'first generation built');
    const tip = { id: String(fromBlock), number: fromBlock, hash: header.hash };
    this.tip = tip;
    await this.saveState();
    return tip;
  }

  /**
   * A development chain from genesis: its prefunded accounts (eth_accounts)
   * and the system contracts, read at block 0; everything else starts empty
   * and every later block is replayed. Refused for other chains, whose
   * genesis allocations cannot be listed over JSON-RPC.
   */
  private async buildFromGenesis(): Promise<Tip> {
    const { rpc, data, logger } = this.opts;
    if (!DEV_CHAIN_IDS.has(this.chainId)) {
      throw new RpcError(
        'ECHAIN',
        `chain ${this.chainId} is not a development chain: its genesis state cannot be listed over JSON-RPC. Start from a state file: --from-block B --state FILE (docs/OPERATIONS.md)`,
      );
    }
    const genesis = await this.blockInfo(0);
    const stateLines = await devChainGenesis(rpc, genesis);
    logger.info({ accounts: stateLines.length, hash: genesis.hash }, 'building the genesis generation of a development chain');
    await buildEthState({
      data,
      block: 0,
      state: stateLines,
      blockHash: genesis.hash,
      parentHash: genesis.parentHash,
      stateRoot: genesis.stateRoot,
      chainId: this.chainId,
      placementCache: this.placementCache,
      ...(this.opts.hotManifest ? { hotManifest: this.opts.hotManifest } : {}),
    });
    const tip = { id: '0', number: 0, hash: genesis.hash };
    this.tip = tip;
    await this.saveState();
    return tip;
  }
}

/**
 * The state of a development chain at genesis as far as JSON-RPC can list
 * it: the node's prefunded accounts (eth_accounts), the system contracts and
 * the fee recipient, read back at block 0.
 */
export async function devChainGenesis(rpc: EthRpc, genesis: BlockHeader): Promise<AccountLine[]> {
  const accounts = await rpc.request<string[]>('eth_accounts');
  const touched = emptyTouched();
  for (const a of [...(Array.isArray(accounts) ? accounts : []), ...SYSTEM_CONTRACTS.map((c) => c.address), genesis.miner]) touchAccount(touched, a);
  const diff = new BlockDiff();
  await readBack(rpc, { blockHash: genesis.hash }, touched, diff);
  const lines = diff
    .lines()
    .filter((l) => !l.deleted)
    .map((l) => JSON.stringify({ address: l.address, balance: l.balance, nonce: l.nonce, code_size: l.code_size }))
    .join('\n');
  return parseStateText(lines ? `${lines}\n` : '', 'state', 'genesis (eth_accounts)');
}
