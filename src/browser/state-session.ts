// The worker's Ethereum methods: a StateClient (and its EIP-1193 provider)
// living in the worker, so private reads of accounts, slots and token
// balances run entirely off the page's main thread. Results are plain data
// (bigints and strings), cloned to the page; nothing secret crosses.
import { type AccountResult, type BlockRef, type Erc20Result, type ReadOptions, type RoundStats, StateClient, type StateRead, type StateResult, type StorageResult } from '../eth/client.js';
import { type Eip1193RequestArgs, type LanepirProvider, createLanepirProvider } from '../eth/provider.js';
import { PirClientError } from '../pir/errors.js';
import { type RemoteLane } from '../pir/remote.js';
import { type WorkerClientOptions } from './protocol.js';
import { type Answer, WorkerSession } from './worker-host.js';

/** A token the server's hot manifest lists as ERC-20 (what the page offers to read). */
export interface PageToken {
  address: string;
  label: string | null;
  balanceSlot: string;
  layout: string;
}

/** The served block, as latestBlock() returns it. */
export type LatestBlock = BlockRef & { chainId: number | null };

export type { AccountResult, StorageResult, Erc20Result, StateResult, StateRead, RoundStats, ReadOptions };

/** Prepared queries kept per lane at most (each is m + n words: 68 KiB at m = 16384). */
const PREPARE_AHEAD_MAX = 64;

/** Methods the state session answers besides WorkerSession's (lookup, clearCache). */
export const STATE_METHODS = ['readMany', 'getAccount', 'getStorageAt', 'getErc20Balance', 'latestBlock', 'tokens', 'request'] as const;

function readOptions(value: unknown): ReadOptions {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object') throw new PirClientError('read options must be an object like { block }', 'EPARAMS');
  const block = (value as { block?: unknown }).block;
  if (block === undefined) return {};
  if (typeof block !== 'bigint' && typeof block !== 'number') throw new PirClientError('options.block must be a number or bigint', 'EPARAMS');
  return { block };
}

export class StateWorkerSession extends WorkerSession {
  readonly state: StateClient;
  private readonly provider: LanepirProvider;
  /** The newest round's stats, put in the report of the call that made it. */
  private round: RoundStats | undefined;
  /** The background refill of prepared queries, while it runs. */
  private preparing: Promise<void> | undefined;

  constructor(options: WorkerClientOptions) {
    super(options);
    this.state = new StateClient({
      url: options.url,
      ...(this.hintCache ? { cache: this.hintCache } : {}),
      ...(options.hideLanes !== undefined ? { hideLanes: options.hideLanes } : {}),
      ...(options.padTo !== undefined ? { padTo: options.padTo } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      cacheMatrix: options.cacheMatrix ?? false,
    });
    // No passthrough here: the page's side forwards what lanepir does not answer (4200).
    this.provider = createLanepirProvider({ url: options.url, client: this.state });
  }

  override remoteLanes(): RemoteLane[] {
    return [...super.remoteLanes(), ...this.state.remoteLanes()];
  }

  override async settle(): Promise<void> {
    while (this.preparing) await this.preparing;
    await super.settle();
  }

  /** The round a call made, if it made one (taken once). */
  override takeRound(): RoundStats | undefined {
    const r = this.round;
    this.round = undefined;
    return r;
  }

  private async reading<T>(read: () => Promise<T>): Promise<Answer> {
    const before = this.state.lastRound;
    const value = await read();
    if (this.state.lastRound !== before) {
      this.round = this.state.lastRound;
      if (this.options.prepareAhead !== false && this.round) this.prepareAhead(this.round.queries);
    }
    return { value };
  }

  /**
   * Refills each lane's pool of prepared queries to what the last round used
   * (at most PREPARE_AHEAD_MAX), once the answer has been posted. The same
   * work the next round would do first; it costs nothing when it never comes
   * but the worker's idle CPU. One refill at a time.
   */
  private prepareAhead(used: Record<string, number>): void {
    if (this.preparing) return;
    this.preparing = (async () => {
      await new Promise((r) => setTimeout(r, 0)); // after the answer is on its way
      for (const lane of this.state.remoteLanes()) {
        const client = lane.pirClient;
        const want = Math.min(used[lane.lane] ?? 0, PREPARE_AHEAD_MAX);
        if (client && client.prepared < want) await client.prepare(want - client.prepared);
      }
    })()
      .catch(() => undefined) // a failed refill only means the next round prepares its own
      .finally(() => (this.preparing = undefined));
  }

  override async call(method: string, args: unknown[]): Promise<Answer> {
    switch (method) {
      case 'readMany': {
        if (!Array.isArray(args[0])) throw new PirClientError('readMany(reads, options?): reads must be an array', 'EPARAMS');
        return this.reading(() => this.state.readMany(args[0] as StateRead[], readOptions(args[1])));
      }
      case 'getAccount':
        return this.reading(() => this.state.getAccount(args[0] as string, readOptions(args[1])));
      case 'getStorageAt':
        return this.reading(() => this.state.getStorageAt(args[0] as string, args[1] as string, readOptions(args[2])));
      case 'getErc20Balance':
        return this.reading(() => this.state.getErc20Balance(args[0] as string, args[1] as string, (args[2] ?? {}) as ReadOptions));
      case 'latestBlock':
        return { value: await this.state.latestBlock() };
      case 'tokens': {
        const { generation } = await this.state.latestBlock();
        const manifest = (await this.state.manifest(generation)).toJsonValue();
        const tokens: PageToken[] = manifest.contracts
          .filter((c) => c.erc20 !== undefined)
          .map((c) => ({ address: c.address, label: c.label ?? null, balanceSlot: String(c.erc20!.balance_slot), layout: c.erc20!.layout ?? 'solidity' }));
        return { value: tokens };
      }
      case 'request':
        return this.reading(() => this.provider.request(args[0] as Eip1193RequestArgs));
      default:
        return super.call(method, args);
    }
  }
}
