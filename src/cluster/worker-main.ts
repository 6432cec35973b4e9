// Entry point of a forked worker process (see primary.ts).
import { runWorker } from './worker.js';

runWorker().catch((err: Error) => {
  process.stderr.write(`lanepir worker ${process.pid}: ${err.message}\n`);
  process.exit(1);
});
