// /delta under abuse: the load of issue 8 against one server process, with
// its CPU time and peak RSS read from /proc. A hot lane of 81,920 x 32 B with
// m = 16384 (5 record rows: a 655,360-byte hint), generation 1 built in full and 2..41
// incrementally with 1,700 random changes each (~117 KB per step), the
// server serving 41 with 37..40 retained. Scenarios:
//   A. 200 concurrent GET /delta/hot?from=0 (not an ancestor), several rounds
//   B. the 130 distinct valid pairs (5 targets x 26 ancestors), twice, 8 at a time
//   C. a 30-step delta (11 -> 41): its status and size against the hint
//   D. what wallets ask for: 1..3 blocks behind the current generation, repeatedly
//   E. 200 concurrent distinct valid pairs on a fresh target (nothing cached)
// All requests come from one loopback address: the per-client cap (where the
// server has one) is turned off, as if the load came from many addresses.
// For each: CPU ms per request (utime + stime of the whole process, threads
// included), peak RSS during the scenario (VmHWM after resetting it), and
// the slowest GET /health probed every 50 ms meanwhile.
// Part of `node dist/bench/index.js` (as `delta`); alone:
//   node dist/bench/delta.js [--json] [--rounds N]
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { configSchema } from '../src/config.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type Log, fmt, httpRequest, passFail, postReload, round, startServerProcess, tempDataDir, removeDir } from './util.js';

export interface DeltaBenchOptions {
  /** Rounds of scenario A (default 3) and B (half as many, at least 1). */
  rounds?: number;
  log?: Log;
}

const ES = 32;
const M = 16384;
const ENTRIES = 5 * M;
const HINT_BYTES = ES * 5 * 1024 * 4;
const CHANGES_PER_STEP = 1700;
const LAST = 41;
/** Generations 42..46, built after the others, are E's fresh targets. */
const FRESH = 5;
const RETAINED = 4;

// ---- /proc ----

const TICK_MS = 10; // USER_HZ is 100 on Linux

function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

function memKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resets VmHWM to the current RSS (Linux >= 4.0). */
function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

interface Scenario {
  requests: number;
  statuses: Record<string, number>;
  cpuMsPerRequest: number;
  wallMs: number;
  rssBeforeMiB: number;
  peakRssMiB: number;
  healthMaxMs: number;
  bytes: number;
}

/** Runs `work` while probing /health; measures the server process around it. */
async function measure(pid: number, url: string, work: () => Promise<{ status: number | string; bytes: number }[]>): Promise<Scenario> {
  const rssBefore = memKiB(pid, 'VmRSS');
  const peakReset = resetPeak(pid);
  const healthAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let probing = true;
  let healthMax = 0;
  const prober = (async () => {
    while (probing) {
      const t0 = performance.now();
      try {
        await httpRequest(`${url}/health`, { agent: healthAgent, timeoutMs: 60_000 });
      } catch {
        // a failed probe counts with its time
      }
      healthMax = Math.max(healthMax, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();
  let results: { status: number | string; bytes: number }[];
  try {
    results = await work();
  } finally {
    probing = false;
    await prober;
    healthAgent.destroy();
  }
  const wallMs = performance.now() - t0;
  const cpu = cpuMs(pid) - cpu0;
  const statuses: Record<string, number> = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  return {
    requests: results.length,
    statuses,
    cpuMsPerRequest: round(cpu / results.length, 2),
    wallMs: round(wallMs, 0),
    rssBeforeMiB: round(rssBefore / 1024, 1),
    peakRssMiB: peakReset ? round(memKiB(pid, 'VmHWM') / 1024, 1) : NaN,
    healthMaxMs: round(healthMax, 1),
    bytes: results.reduce((a, r) => a + r.bytes, 0),
  };
}

async function get(url: string, agent: http.Agent): Promise<{ status: number | string; bytes: number }> {
  try {
    const r = await httpRequest(url, { agent, timeoutMs: 120_000 });
    return { status: r.status, bytes: r.body.length };
  } catch (err) {
    return { status: (err as { code?: string }).code ?? 'error', bytes: 0 };
  }
}

const describe = (name: string, s: Scenario) =>
  `  ${name}: ${s.requests} requests ${JSON.stringify(s.statuses)}, ${fmt(s.cpuMsPerRequest, 2)} ms CPU each, ${fmt(s.wallMs / 1000, 1)} s wall, RSS ${fmt(s.rssBeforeMiB, 0)} -> peak ${fmt(s.peakRssMiB, 0)} MiB, slowest /health ${fmt(s.healthMaxMs, 0)} ms`;

export async function runDeltaBench(opts: DeltaBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const log = opts.log ?? (() => {});
  const rounds = opts.rounds ?? 3;
  const data = tempDataDir('lanepir-bench-delta-');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let server: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  try {
    log(`  building generation 1 (${ENTRIES} x ${ES} B, m ${M}) and 2..${LAST} incrementally (${CHANGES_PER_STEP} changes each) ...`);
    await buildGeneration({ data, block: 1, lanes: { hot: { source: new SyntheticSource('hot', ENTRIES, ES, 1), m: M } } });
    for (let g = 2; g <= LAST; g++) {
      const updates = new Map<number, Buffer>();
      for (let k = 0; k < CHANGES_PER_STEP; k++) updates.set(crypto.randomInt(ENTRIES), crypto.randomBytes(ES));
      await buildIncremental({ data, block: g, from: String(g - 1), updates: { hot: updates }, publish: g === LAST - RETAINED });
    }
    for (let g = LAST + 1; g <= LAST + FRESH; g++) {
      const updates = new Map<number, Buffer>();
      for (let k = 0; k < 200; k++) updates.set(crypto.randomInt(ENTRIES), crypto.randomBytes(ES));
      await buildIncremental({ data, block: g, from: String(g - 1), updates: { hot: updates } });
    }
    const stepBytes = fs.statSync(path.join(data, 'generations', String(LAST), 'hot', 'diff.bin')).size;
    // Only keys this version of the server knows (the bench also runs against older code, for before/after figures).
    const perClientOff = 'max_requests_per_client' in configSchema.shape ? { max_requests_per_client: 0 } : {};
    server = await startServerProcess({ data_dir: data, host: '127.0.0.1', port: 0, admin_host: '127.0.0.1', admin_port: 0, log_level: 'error', retain_generations: RETAINED, ...perClientOff });
    for (let g = LAST - RETAINED + 1; g <= LAST; g++) await postReload(server.adminUrl, String(g), false);
    const { pid, publicUrl: url } = server;
    const idle = memKiB(pid, 'VmRSS') / 1024;

    log('  A: 200 concurrent /delta/hot?from=0 ...');
    const a = await measure(pid, url, async () => {
      const all: { status: number | string; bytes: number }[] = [];
      for (let r = 0; r < rounds; r++) all.push(...(await Promise.all(Array.from({ length: 200 }, () => get(`${url}/delta/hot?from=0`, agent)))));
      return all;
    });
    log(describe('A', a));

    const pairs: string[] = [];
    for (let to = LAST - RETAINED; to <= LAST; to++) for (let back = 1; back <= 26; back++) pairs.push(`${url}/delta/hot?from=${to - back}&to=${to}`);
    log(`  B: ${pairs.length} distinct valid pairs, twice, 8 at a time ...`);
    const b = await measure(pid, url, async () => {
      const all: { status: number | string; bytes: number }[] = [];
      for (let r = 0; r < 2; r++) {
        for (let i = 0; i < pairs.length; i += 8) all.push(...(await Promise.all(pairs.slice(i, i + 8).map((p) => get(p, agent)))));
      }
      return all;
    });
    log(describe('B', b));

    log('  C: a 30-step delta ...');
    const c = await get(`${url}/delta/hot?from=${LAST - 30}&to=${LAST}`, agent);

    log('  D: 1..3 blocks behind, 300 requests, 10 at a time ...');
    const d = await measure(pid, url, async () => {
      const all: { status: number | string; bytes: number }[] = [];
      for (let r = 0; r < 30; r++) all.push(...(await Promise.all(Array.from({ length: 10 }, (_, k) => get(`${url}/delta/hot?from=${LAST - 1 - (k % 3)}&to=${LAST}`, agent)))));
      return all;
    });
    log(describe('D', d));

    // E: the fresh targets (served after a reload), 40 ancestors each, 200 at once.
    for (let g = LAST + 1; g <= LAST + FRESH; g++) await postReload(server.adminUrl, String(g), false);
    const fresh: string[] = [];
    for (let to = LAST + 1; to <= LAST + FRESH; to++) for (let back = 1; back <= 40; back++) fresh.push(`${url}/delta/hot?from=${to - back}&to=${to}`);
    log(`  E: ${fresh.length} distinct valid pairs on fresh targets, all at once ...`);
    const e = await measure(pid, url, async () => Promise.all(fresh.map((p) => get(p, agent))));
    log(describe('E', e));

    const healthOk = a.healthMaxMs < 1000 && b.healthMaxMs < 1000 && e.healthMaxMs < 1000;
    const cOk = c.status === 410 || (c.status === 200 && c.bytes <= HINT_BYTES);
    const figures = {
      hintBytes: HINT_BYTES,
      stepBytes,
      idleRssMiB: round(idle, 1),
      nonAncestor: a,
      distinctPairs: b,
      thirtySteps: c,
      nearDeltas: d,
      freshAtOnce: e,
      targets: {
        healthUnder1s: { pass: healthOk, value: Math.max(a.healthMaxMs, b.healthMaxMs, e.healthMaxMs), target: 'slowest /health < 1000 ms under A, B and E' },
        noDeltaLargerThanHint: { pass: cOk, value: c.bytes, target: `30-step delta: 410 or <= ${HINT_BYTES} B` },
      },
    };
    const lines = [
      `delta — hot lane ${ENTRIES} x ${ES} B, m ${M}, hint ${HINT_BYTES} B, ${CHANGES_PER_STEP} changes (${stepBytes} B) per step, ${LAST - 1} steps; one server process, idle RSS ${fmt(idle, 0)} MiB`,
      describe('A  200 concurrent from=0 (no ancestor)', a),
      describe(`B  ${pairs.length} distinct valid pairs, twice, 8 at a time`, b),
      `  C  30-step delta: HTTP ${c.status}, ${c.bytes} B (hint ${HINT_BYTES} B)`,
      describe('D  1..3 blocks behind', d),
      describe(`E  ${fresh.length} distinct pairs on fresh targets at once`, e),
      `  ${passFail(healthOk)} /health under 1 s during A, B and E; ${passFail(cOk)} no delta larger than the hint`,
    ];
    return { figures, lines };
  } finally {
    agent.destroy();
    await server?.stop();
    removeDir(data);
  }
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  const r = argv.indexOf('--rounds');
  runDeltaBench({ ...(r >= 0 ? { rounds: Number(argv[r + 1]) } : {}), log: (line) => process.stderr.write(`${line}\n`) }).then(
    ({ figures, lines }) => process.stdout.write(json ? JSON.stringify(figures) + '\n' : lines.join('\n') + '\n'),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
