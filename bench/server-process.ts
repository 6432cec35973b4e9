// A single-process lanepir server for the benchmarks, run by
// startServerProcess (util.ts) as a forked child: startServer(loadConfig({flags}))
// with the flags from LANEPIR_BENCH_FLAGS; reports its URLs over IPC, answers
// {t: 'stats'} with its GC and CPU time (whole process and JS thread), and stops on SIGTERM or when the
// parent goes away.
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { type ConfigInput, loadConfig } from '../src/config.js';
import { startServer } from '../src/server/server.js';
import { readProcStat } from './proc-stat.js';

// Garbage collection time of this process, for the bench's GC share of server CPU.
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ['gc'] });

const flags = JSON.parse(process.env.LANEPIR_BENCH_FLAGS ?? '{}') as Partial<ConfigInput>;
const server = await startServer(loadConfig({ flags }));
/**
 * CPU time of the main (JS) thread alone, kernel threads excluded: Linux's
 * /proc/self/task/<pid>/stat (utime + stime, in clock ticks of 10 ms); NaN elsewhere.
 */
function mainThreadCpuMs(): number {
  return readProcStat(`/proc/self/task/${process.pid}/stat`)?.cpuMs ?? NaN;
}
process.on('message', (m: { t?: string }) => {
  if (m?.t !== 'stats') return;
  const cpu = process.cpuUsage();
  process.send?.({ t: 'stats', gcMs, cpuMs: (cpu.user + cpu.system) / 1000, mainThreadCpuMs: mainThreadCpuMs(), activeMs: performance.eventLoopUtilization().active });
});
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
