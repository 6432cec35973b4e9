// lanepir-worker.js: the worker script. It imports the bundle it sits beside
// (built as an external import, so the browser loads the client code once)
// and answers the page's requests with the full client: index-lane lookups
// and Ethereum state reads (StateWorkerSession).
import { type MessageEndpoint, StateWorkerSession, serveLanepirWorker } from './index.js';

serveLanepirWorker(globalThis as unknown as MessageEndpoint, (options) => new StateWorkerSession(options));
