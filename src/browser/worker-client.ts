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
import { type CallReport, type WorkerClientOptions, type WorkerRequest, type WorkerResponse, WORKER_PROTOCOL } from './protocol.js';

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
    else {
      const err = new PirClientError(res.error.message, res.error.code);
      err.name = res.error.name;
      p.reject(err);
    }
  }

  private fail(err: PirClientError): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
  }
}
