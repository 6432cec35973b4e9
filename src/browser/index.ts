// lanepir/browser: the client bundle for browsers (dist/browser/lanepir-client.js).
// Everything lanepir/client has, plus what only a browser needs: the worker
// that keeps heavy client work off the page's main thread, and the
// IndexedDB hint cache.
export * from '../pir/index.js';
export { IndexedDbHintCache, type IndexedDbHintCacheOptions } from './idb-cache.js';
export { LanepirWorker, type LanepirWorkerOptions, type CallResult, defaultWorkerUrl, startModuleWorker } from './worker-client.js';
export { WorkerSession, serveLanepirWorker, serializeError, type MessageEndpoint } from './worker-host.js';
export { WORKER_PROTOCOL, type WorkerClientOptions, type WorkerRequest, type WorkerResponse, type CallReport, type SerializedError } from './protocol.js';
