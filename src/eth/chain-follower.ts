// Follows an Ethereum node over JSON-RPC: one incremental generation per
// block, rolled into the running server by the Roller.
//   - Start: resume from the generation built last (follow-chain.json, else
//     DIR/current), or build the first one: from a state file at a block
//     (--from-block B --state FILE), or from genesis on a development chain.
//   - Each step: the node's head (woken by newHeads over WebSocket, or by
//     polling), then every block up to head - confirmations in order: its
//     header must continue our tip (parentHash), its state changes come from
//     the change source, its generation is built on the tip's.
//   - Reorg: the node has a different block at a height we hold (our tip, or
//     an ancestor when the node's head is below our tip), or a new block's
//     parent is not our tip. Walk back along our generations (each records
//     block_hash) to the newest one the node still has, serve that ancestor
//     at once, and build the new branch on it (ids <block>r<k>). How deep a
//     reorg can go is how many of the tip's ancestors are kept (--retain).
//   - A node behind our tip (rewound after an unclean restart, a load
//     balancer's backend a block behind) or without our tip's header is not
//     a reorg: we wait for it, with backoff, serving what we serve.
//   - A node that is away: retried with backoff, resumed from the tip. A node
//     that no longer has the state a block is read against (not an archive
//     node) is retried too, under a log line that says so.
import { EventEmitter } from 'node:events';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { type Logger } from 'pino';
import { type Roller } from '../follow/roller.js';
import { type FollowMetrics } from '../follow/metrics.js';
import { freeGenerationId } from '../follow/chain.js';
import { writeJsonAtomic } from '../store/fsutil.js';
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
import { EthError } from './errors.js';
import { isStateUnavailable, stateUnavailableError } from './state-errors.js';
import { parseStateText } from './state-file.js';
import { type AccountLine, type BlockHeaderLine, parseStateLine } from './state-lines.js';

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
  /** The node's head is below our tip, or it cannot show our tip's block: waiting for it. */
  behind: { nodeHead: number; tip: number };
  /** The node lacks the state to follow `block` (ESTATE_UNAVAILABLE): retrying. */
  stateUnavailable: { block: number; error: Error };
  fatal: { error: Error };
}

interface FollowChainState {
  head: string;
}

/** The node is behind our tip: not a reorg, wait for it. */
class NodeBehind extends Error {
  readonly code = 'ENODE_BEHIND';
  constructor(
    readonly nodeHead: number,
    readonly tip: number,
  ) {
    super(`node behind our tip (node head ${nodeHead}, our tip ${tip})`);
  }
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
  private cancelSleep: (() => void) | undefined;
  private pending = false;
  private poller: NodeJS.Timeout | undefined;
  private unsubscribe: (() => Promise<unknown>) | undefined;
  private awayLogged = false;
  /** The (node head, our tip) last logged as behind: logged again when either moves, not on every retry. */
  private behindLogged: string | undefined;
  private stateFailures = 0;

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
    this.cancelSleep?.();
    await this.loop;
    await this.unsubscribe?.().catch(() => {});
  }

  private wake(): void {
    this.pending = true;
    this.wakeUp?.();
  }

  /** Sleeps `ms`; a new head (newHeads, the poll timer) ends it early unless it is a backoff. stop() always does. */
  private sleep(ms: number, wakeable = true): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      if (wakeable) this.wakeUp = done;
      this.cancelSleep = done;
    }).finally(() => (this.wakeUp = this.cancelSleep = undefined));
  }

  private async run(): Promise<void> {
    let backoff = 250;
    const wait = async () => {
      await this.sleep(backoff, false); // a backoff: the poll timer does not cut it short
      backoff = Math.min(backoff * 2, 5000);
    };
    while (!this.stopped) {
      this.pending = false;
      try {
        const more = await this.step();
        if (this.awayLogged) this.opts.logger.info({ tip: this.tip.number }, 'the node answers again; following on');
        if (this.behindLogged) this.opts.logger.info({ tip: this.tip.number, node_head: this.nodeHead }, 'the node has caught up with our tip; following on');
        if (this.stateFailures) this.opts.logger.info({ tip: this.tip.number, after_failures: this.stateFailures }, 'the node has the state again; following on');
        this.awayLogged = false;
        this.behindLogged = undefined;
        this.stateFailures = 0;
        backoff = 250;
        if (more) continue;
        if (!this.pending) await this.sleep(this.opts.pollMs ?? 1000);
      } catch (err) {
        const e = err as Error & { code?: string };
        if (this.stopped) break;
        if (e instanceof NodeBehind) {
          this.opts.metrics?.rpcErrors.inc({ code: e.code });
          if (this.behindLogged !== e.message) this.opts.logger.warn({ node_head: e.nodeHead, tip: e.tip }, `${e.message}; waiting for it (serving goes on)`);
          this.behindLogged = e.message;
          this.emit('behind', { nodeHead: e.nodeHead, tip: e.tip });
          await wait();
          continue;
        }
        if (isStateUnavailable(e)) {
          // Kept retrying (a flapping balancer may answer from a node that has it), under a line that names the cause.
          const error = stateUnavailableError(this.tip.number + 1, e);
          this.opts.metrics?.rpcErrors.inc({ code: error.code });
          if (this.stateFailures++ % 12 === 0) this.opts.logger.error({ err: error.message, code: error.code, tip: this.tip.number, failures: this.stateFailures }, 'cannot follow: the node lacks the state; retrying');
          this.emit('stateUnavailable', { block: this.tip.number + 1, error });
          await wait();
          continue;
        }
        this.opts.metrics?.rpcErrors.inc({ code: e.code ?? 'EUNKNOWN' });
        if (e instanceof RpcError && (e.code === 'ECHAIN' || e.code === 'ENO_CHANGE_SOURCE' || e.code === 'ETOO_LARGE')) {
          this.opts.logger.fatal({ err: e.message }, 'cannot follow this chain');
          this.emit('fatal', { error: e });
          return;
        }
        if (e instanceof RpcError && e.code === 'EREORG') {
          // The block changed while it was read (a reorg, or backends that disagree): look again after a pause, not at once.
          this.opts.logger.warn({ err: e.message, tip: this.tip.number, retry_in_ms: backoff }, 'the block changed while it was read; looking again');
        } else if (e instanceof RpcError && e.code === 'EUNREACHABLE') {
          if (!this.awayLogged) this.opts.logger.warn({ err: e.message, tip: this.tip.number }, 'the node is unreachable; retrying (serving goes on)');
          this.awayLogged = true;
          this.emit('unreachable', { error: e.message });
        } else {
          this.opts.logger.error({ err: e.message, code: e.code, tip: this.tip.number }, 'follow step failed; retrying');
        }
        await wait();
      }
    }
  }

  /** One look at the node: returns true when there is more to do right away. */
  async step(): Promise<boolean> {
    const { rpc, metrics, roller } = this.opts;
    const head = await rpc.blockNumber();
    this.nodeHead = head;
    metrics?.headBlock.set(head);
    const now = Date.now();
    for (let n = Math.max(this.tip.number + 1, head - 64); n <= head; n++) roller.seen(n, now);
    const target = head - (this.opts.confirmations ?? 0);
    // Is our tip still the node's block at its height? Only a different hash at a height we hold is a reorg;
    // a node below our tip, or one that cannot show our tip's block, is behind: wait for it.
    if (this.tip.number > head) {
      if (await this.differsAt(head)) {
        await this.reorg();
        return true;
      }
      throw new NodeBehind(head, this.tip.number);
    }
    const canonical = await rpc.header(this.tip.number);
    if (!canonical) throw new NodeBehind(head, this.tip.number);
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

  /** What every generation of this chain records of its block, and the builders' shared state. */
  private generationFields(header: BlockHeader) {
    return {
      blockHash: header.hash,
      parentHash: header.parentHash,
      stateRoot: header.stateRoot,
      chainId: this.chainId,
      placementCache: this.placementCache,
      ...(this.opts.hotManifest ? { hotManifest: this.opts.hotManifest } : {}),
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
      ...this.generationFields(header),
    });
  }

  /**
   * When the node's head is below our tip: does the node have a different
   * block at its head's height than our chain? (False when we hold no
   * generation at that height or the node cannot show the block: then we wait.)
   */
  private async differsAt(height: number): Promise<boolean> {
    let id: string | undefined = this.tip.id;
    while (id) {
      const m: Manifest | undefined = await readManifest(generationDir(this.opts.data, id)).catch(() => undefined);
      if (!m?.block_hash || m.block_number < height) return false;
      if (m.block_number === height) {
        const node = await this.opts.rpc.header(height);
        return node !== undefined && node.hash !== m.block_hash;
      }
      id = m.parent;
    }
    return false;
  }

  /** Walks back to the newest generation whose block the node still has, and makes it the tip. */
  private async reorg(): Promise<void> {
    const { rpc, logger, metrics } = this.opts;
    const from = this.tip;
    let id: string | undefined = this.tip.id;
    while (id) {
      const m: Manifest | undefined = await readManifest(generationDir(this.opts.data, id)).catch(() => undefined);
      if (!m?.block_hash) break;
      const canonical = await rpc.header(m.block_number);
      if (canonical && canonical.hash === m.block_hash) {
        if (id === from.id) {
          // Our tip is still the node's: the node contradicted itself (a next block whose parent is not its own block). Not a reorg.
          throw new RpcError('EREORG', `the node's block ${from.number + 1} does not continue its own block ${from.number} (inconsistent answers; a load balancer?)`);
        }
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
      `reorg deeper than the generations kept: none of the blocks from ${from.number} back to our oldest generation is the node's any more (keep more with --retain); start again from a state file (--from-block B --state FILE)`,
    );
  }

  private async saveState(): Promise<void> {
    await writeJsonAtomic(this.statePath, { head: this.tip.id } satisfies FollowChainState);
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
    if (typeof stateFile === 'string') {
      // Before a build that may take an hour: the file must be the state of this block (a dump of another block would be served as this one's).
      const named = await readStateHeader(stateFile);
      checkStateHeader(stateFile, named, header, this.chainId);
      if (named?.state_root === undefined) logger.warn({ state: stateFile, block: fromBlock }, 'the state file names no state_root: it cannot be checked against the block (ops/geth-dump-to-state writes one)');
    }
    logger.info({ block: fromBlock, hash: header.hash, state_root: header.stateRoot, state: typeof stateFile === 'string' ? stateFile : '(lines)' }, 'building the first generation from the state file');
    const t0 = performance.now();
    await buildEthState({
      data,
      block: fromBlock,
      state: stateFile!,
      ...this.generationFields(header),
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
      ...this.generationFields(genesis),
    });
    const tip = { id: '0', number: 0, hash: genesis.hash };
    this.tip = tip;
    await this.saveState();
    return tip;
  }
}

/** The first line of a state file, when it is a block header line (read alone: the file may be many GB). */
export async function readStateHeader(file: string): Promise<BlockHeaderLine | undefined> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    throw new EthError('EINPUT', `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const end = text.indexOf('\n');
    const first = (end < 0 ? text : text.slice(0, end)).replace(/\r$/, '');
    if (!first.trim() || (end < 0 && bytesRead === buf.length)) return undefined;
    const parsed = parseStateLine(first, 'state', `${file}:1`, true);
    return 'header' in parsed ? parsed.header : undefined;
  } finally {
    await fh.close();
  }
}

/** Refuses a state file whose header line names another block, state root or chain than the node's block it is to start from. */
export function checkStateHeader(file: string, named: BlockHeaderLine | undefined, block: BlockHeader, chainId: number): void {
  if (!named) return;
  const refuse = (what: string) => {
    throw new EthError('ESTATE_MISMATCH', `${file} is not the state of block ${block.number}: ${what}; produce the state file at --from-block, or give the block it is at`);
  };
  if (named.block_number !== undefined && named.block_number !== block.number) refuse(`it names block ${named.block_number}`);
  if (named.state_root !== undefined && named.state_root !== block.stateRoot.toLowerCase()) {
    refuse(`its state_root ${named.state_root} is not the block's state root ${block.stateRoot} (a dump of another block?)`);
  }
  if (named.block_hash !== undefined && named.block_hash !== block.hash.toLowerCase()) refuse(`its block_hash ${named.block_hash} is not the node's block ${block.hash}`);
  if (named.chain_id !== undefined && named.chain_id !== chainId) refuse(`it names chain ${named.chain_id}, the node is on chain ${chainId}`);
}

/** Precompiles 0x01…0x11 (up to BLS12-381, EIP-2537): geth --dev gives them 1 wei at genesis, other dev chains may too. */
export const PRECOMPILES = Array.from({ length: 0x11 }, (_, i) => `0x${(i + 1).toString(16).padStart(40, '0')}`);

/**
 * The state of a development chain at genesis as far as JSON-RPC can list
 * it: the node's prefunded accounts (eth_accounts), the system contracts, the
 * precompiles (funded by some dev chains) and the fee recipient, read back at
 * block 0 (those found empty stay absent).
 */
export async function devChainGenesis(rpc: EthRpc, genesis: BlockHeader): Promise<AccountLine[]> {
  const accounts = await rpc.request<string[]>('eth_accounts');
  const touched = emptyTouched();
  for (const a of [...(Array.isArray(accounts) ? accounts : []), ...SYSTEM_CONTRACTS.map((c) => c.address), ...PRECOMPILES, genesis.miner]) touchAccount(touched, a);
  const diff = new BlockDiff();
  await readBack(rpc, { blockHash: genesis.hash }, touched, diff);
  const lines = diff
    .lines()
    .filter((l) => !l.deleted)
    .map((l) => JSON.stringify({ address: l.address, balance: l.balance, nonce: l.nonce, code_size: l.code_size }))
    .join('\n');
  return parseStateText(lines ? `${lines}\n` : '', 'state', 'genesis (eth_accounts)');
}
