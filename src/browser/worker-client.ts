// The page's side of the browser client: starts a lanepir worker and calls
// it. Nothing heavy runs on the calling thread; it only posts requests and
// receives values, so the page stays responsive during a lookup.
//
//   const lanepir = await LanepirWorker.start({ url: 'https://pir.example' });
//   const { value, report } = await lanepir.call('readMany', [[{ kind: 'account', address }]]);
//
// The worker script is lanepir-worker.js next to the bundle. A page on
// another origin than the bundle cannot start a worker from the bundle's URL
// (browsers refuse cross-origin worker scripts), so it gets a one-line
// module worker of its own origin that imports the worker script from the
// bundle's server (which serves it with CORS).
import { PirClientError } from '../pir/errors.js';
import { type LookupResult } from '../pir/remote.js';
import { type Eip1193Like, type Eip1193RequestArgs } from '../eth/provider.js';
import { ProviderRpcError } from '../eth/rpc-error.js';
import { type AccountResult, type Erc20Result, type LatestBlock, type PageToken, type ReadOptions, type StateRead, type StateResult, type StorageResult } from './state-session.js';
import { type CallReport, type SerializedError, type WorkerClientOptions, type WorkerRequest, type WorkerResponse, WORKER_PROTOCOL } from './protocol.js';
import { type ProviderListener, providerEvents } from '../eth/provider-events.js';

export interface LanepirWorkerOptions extends WorkerClientOptions {
  /** The worker script (default: lanepir-worker.js next to this bundle). */
  workerUrl?: string | URL;
}

export interface CallResult<T> {
  value: T;
  report: CallReport;
}

/** The default worker script: beside the bundle this module was loaded from. */
export function defaultWorkerUrl(): URL {
  return new URL('./lanepir-worker.js', import.meta.url);
}

/** A module worker running `scriptUrl`, also when it is on another origin than the page. */
export function startModuleWorker(scriptUrl: URL, name = 'lanepir'): Worker {
  const here = globalThis.location?.origin;
  if (here === undefined || scriptUrl.origin === here) return new Worker(scriptUrl, { type: 'module', name });
  const source = `import ${JSON.stringify(scriptUrl.href)};\n`;
  const blobUrl = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  try {
    return new Worker(blobUrl, { type: 'module', name });
  } finally {
    // The worker has fetched its (tiny) script by the time it runs; revoke once it had the chance.
    setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
  }
}

/** The worker's error as an error of this thread: ProviderRpcError for EIP-1193 errors, else PirClientError with the code. */
export function deserializeError(e: SerializedError): Error {
  if (typeof e.rpcCode === 'number') return new ProviderRpcError(e.rpcCode, e.message, e.data);
  const err = new PirClientError(e.message, e.code);
  err.name = e.name;
  return err;
}

interface Pending {
  resolve: (r: CallResult<unknown>) => void;
  reject: (err: Error) => void;
}

export class LanepirWorker {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Set for good once the worker failed or was terminated. */
  private dead: PirClientError | undefined;

  private constructor(readonly worker: Worker) {
    worker.addEventListener('message', (event: MessageEvent) => this.receive(event.data as WorkerResponse));
    worker.addEventListener('error', (event: ErrorEvent) => {
      event.preventDefault();
      this.fail(new PirClientError(`the lanepir worker failed: ${event.message || 'its script could not be loaded or threw'}`, 'EWORKER'));
    });
    worker.addEventListener('messageerror', () => this.fail(new PirClientError('the lanepir worker sent a message that could not be read', 'EWORKER')));
  }

  /** Starts a worker and opens its client for `options.url`. */
  static async start(options: LanepirWorkerOptions): Promise<LanepirWorker> {
    const { workerUrl, ...clientOptions } = options;
    const script = workerUrl !== undefined ? new URL(workerUrl, globalThis.location?.href) : defaultWorkerUrl();
    // Relative server URLs are the page's.
    const url = new URL(clientOptions.url, globalThis.location?.href).href;
    const w = new LanepirWorker(startModuleWorker(script));
    try {
      await w.send({ v: WORKER_PROTOCOL, id: 0, op: 'open', options: { ...clientOptions, url } });
    } catch (err) {
      w.terminate();
      throw err;
    }
    return w;
  }

  /** Calls `method` in the worker (see WorkerSession.call for the methods). */
  call<T = unknown>(method: string, args: unknown[] = []): Promise<CallResult<T>> {
    return this.send({ v: WORKER_PROTOCOL, id: 0, op: 'call', method, args }) as Promise<CallResult<T>>;
  }

  /** Privately retrieves entry `index` of an index lane (RemoteLane.lookup in the worker). */
  lookup(lane: string, index: number): Promise<CallResult<LookupResult>> {
    return this.call<LookupResult>('lookup', [lane, index]);
  }

  /** Several private reads in one round, all from one generation (StateClient.readMany in the worker); report.round says what it cost. */
  readMany(reads: StateRead[], options: ReadOptions = {}): Promise<CallResult<StateResult[]>> {
    return this.call<StateResult[]>('readMany', [reads, options]);
  }

  getAccount(address: string, options: ReadOptions = {}): Promise<CallResult<AccountResult>> {
    return this.call<AccountResult>('getAccount', [address, options]);
  }

  getStorageAt(address: string, slot: bigint | number | string, options: ReadOptions = {}): Promise<CallResult<StorageResult>> {
    return this.call<StorageResult>('getStorageAt', [address, slot, options]);
  }

  getErc20Balance(token: string, holder: string, options: ReadOptions & { balanceSlot?: bigint | number | string; layout?: 'solidity' | 'vyper' } = {}): Promise<CallResult<Erc20Result>> {
    return this.call<Erc20Result>('getErc20Balance', [token, holder, options]);
  }

  /** The block the server serves now (number, hash, generation, chain id). */
  latestBlock(): Promise<CallResult<LatestBlock>> {
    return this.call<LatestBlock>('latestBlock');
  }

  /** The ERC-20 tokens the served generation's hot manifest lists. */
  tokens(): Promise<CallResult<PageToken[]>> {
    return this.call<PageToken[]>('tokens');
  }

  /** Waits for the worker's background work: hints written to IndexedDB, queries prepared ahead. */
  async settle(): Promise<void> {
    await this.call('settle');
  }

  /** Stops the worker; calls in flight fail with ETERMINATED. */
  terminate(): void {
    this.worker.terminate();
    this.fail(new PirClientError('the lanepir worker was terminated', 'ETERMINATED'));
  }

  private send(req: WorkerRequest): Promise<CallResult<unknown>> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id });
    });
  }

  private receive(res: WorkerResponse): void {
    if (typeof res !== 'object' || res === null) return;
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    if (res.ok) p.resolve({ value: res.value, report: res.report });
    else p.reject(deserializeError(res.error));
  }

  private fail(err: PirClientError): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
  }
}

export interface WorkerProviderOptions {
  /** Where methods lanepir does not answer go (never the private ones). */
  passthrough?: Eip1193Like;
}

type Listener = ProviderListener;

export interface LanepirWorkerProvider extends Eip1193Like {
  on(event: string, listener: Listener): LanepirWorkerProvider;
  removeListener(event: string, listener: Listener): LanepirWorkerProvider;
  readonly worker: LanepirWorker;
}

/**
 * An EIP-1193 provider whose private reads run in the worker (the provider
 * of lanepir/client, createLanepirProvider, lives there). Methods lanepir
 * does not answer (error 4200 from the worker) go to `passthrough` when one
 * is given; a private method that fails fails: it never falls back.
 */
export function createWorkerProvider(worker: LanepirWorker, options: WorkerProviderOptions = {}): LanepirWorkerProvider {
  const events = providerEvents(() => provider);
  let connected = false;
  const { emit } = events;
  const provider: LanepirWorkerProvider = {
    worker,
    async request(args: Eip1193RequestArgs): Promise<unknown> {
      let result: unknown;
      try {
        result = (await worker.call('request', [args])).value;
      } catch (err) {
        // Not answered by lanepir at all (4200): the passthrough's. Anything else stays an error.
        if (err instanceof ProviderRpcError && err.code === 4200 && options.passthrough) return options.passthrough.request(args);
        if (err instanceof ProviderRpcError) throw err;
        throw new ProviderRpcError(-32603, `lanepir: ${(err as Error).message}`, { code: (err as { code?: unknown }).code });
      }
      if (!connected) {
        connected = true;
        const chainId = await worker.call('request', [{ method: 'eth_chainId' }]).then((r) => r.value, () => null);
        emit('connect', { chainId });
      }
      return result;
    },
    on: events.on,
    removeListener: events.removeListener,
  };
  return provider;
}
