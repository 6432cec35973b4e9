// lanepir/browser: the client bundle for browsers (dist/browser/lanepir-client.js).
// Everything lanepir/client has (the PIR client, keyword reader, StateClient
// and EIP-1193 provider), plus what only a browser needs: the worker that
// keeps heavy client work off the page's main thread, and the IndexedDB
// hint cache.
export * from '../client.js';
export { IndexedDbHintCache, type IndexedDbHintCacheOptions } from './idb-cache.js';
export {
  LanepirWorker,
  type LanepirWorkerOptions,
  type CallResult,
  createWorkerProvider,
  type LanepirWorkerProvider,
  type WorkerProviderOptions,
  defaultWorkerUrl,
  deserializeError,
  startModuleWorker,
} from './worker-client.js';
export { WorkerSession, serveLanepirWorker, serializeError, type MessageEndpoint, type Answer } from './worker-host.js';
export { StateWorkerSession, STATE_METHODS, type PageToken, type LatestBlock } from './state-session.js';
export { WORKER_PROTOCOL, type WorkerClientOptions, type WorkerRequest, type WorkerResponse, type CallReport, type SerializedError } from './protocol.js';
