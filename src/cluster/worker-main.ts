// Entry point of a forked worker or kernel process (see primary.ts).
import { ListenError } from '../server/server.js';
import { type WorkerMessage } from './messages.js';
import { runExecutor } from './executor.js';
import { runWorker } from './worker.js';

// The primary forks its workers and the kernel process from this one entry (node:cluster).
(process.env.LANEPIR_ROLE === 'executor' ? runExecutor() : runWorker()).catch(async (err: Error & { code?: unknown }) => {
  // Tell the primary why (it decides whether to re-fork, and reports a listener
  // that cannot be opened in one line); say it here too if it cannot hear.
  const report: WorkerMessage = {
    t: 'start-failed',
    code: typeof err.code === 'string' ? err.code : 'EWORKER_START',
    message: err.message,
    listen: err instanceof ListenError,
  };
  const told = process.connected && process.send
    ? await new Promise<boolean>((resolve) => process.send!(report, undefined, {}, (e) => resolve(!e)))
    : false;
  if (!told || !report.listen) process.stderr.write(`lanepir worker ${process.pid}: ${err.message}\n`);
  process.exit(1);
});
