// A single-process lanepir server for the benchmarks, run by
// startServerProcess (util.ts) as a forked child: startServer(loadConfig({flags}))
// with the flags from LANEPIR_BENCH_FLAGS; reports its URLs over IPC and stops
// on SIGTERM or when the parent goes away.
import { type ConfigInput, loadConfig } from '../src/config.js';
import { startServer } from '../src/server/server.js';

const flags = JSON.parse(process.env.LANEPIR_BENCH_FLAGS ?? '{}') as Partial<ConfigInput>;
const server = await startServer(loadConfig({ flags }));
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void server.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The parent died or closed the channel: never linger.
process.once('disconnect', stop);
process.send?.({ publicUrl: server.publicUrl, adminUrl: server.adminUrl });
