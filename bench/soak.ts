// Soak (issue 4): a 2-worker cluster over small hot and cold lanes, private
// queries on both lanes from several concurrent clients, a reload every
// 200 ms alternating between two generations, and one worker killed with
// SIGKILL midway. Every answer is decoded and compared with the plaintext of
// the generation that answered. Failures of requests that were in flight on
// the victim (started before the kill + 200 ms) are expected; any other
// failure, and any wrong answer, is a bug.
//
//   node dist/bench/soak.js [--seconds 60] [--workers 2] [--reload-every-ms 200] [--no-kill]
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PirClient, type QueryState } from '../src/pir/client.js';
import { readEntry } from '../src/store/generation.js';
import { type LaneName } from '../src/store/layout.js';
import { type BenchData, type ClusterProcess, type HttpOptions, type HttpReply, buildBenchData, fmt, httpRequest, parseJson, sleep, startClusterProcess } from './util.js';

export interface SoakOptions {
  seconds: number;
  workers?: number;
  reloadEveryMs?: number;
  killWorker?: boolean;
  /** Concurrent query loops (default 4: two per lane). */
  clients?: number;
  log?: (s: string) => void;
}

export interface SoakReport {
  seconds: number;
  workers: number;
  /** Query attempts (a 410 retry counts as a new attempt). */
  sent: number;
  /** Answers decoded and compared with the plaintext. */
  answered: number;
  /** Requests that failed (status or transport), the expected ones at the kill included. */
  failed: number;
  /** Failures that cannot be blamed on the kill: the bug count. */
  failedOnSurvivors: number;
  /** Decoded entries that differ from the plaintext, or answers from another generation than pinned. */
  mismatches: number;
  /** 410 answers (a pinned generation the answering worker does not hold), retried on the current one as clients do. */
  retried410: number;
  reloads: number;
  reloadFailures: number;
  /**
   * Requests around the kill that got neither an answer nor an error for over
   * a second (a connection handed to the dying worker); dropped at the end.
   */
  stuckAtKill: number;
  /** Reload requests that failed because they were in flight on the killed worker. */
  reloadsFailedAtKill: number;
  killedPid?: number;
  /** Ms after the kill until both workers were ready again (undefined: not within the run). */
  replacedAfterMs?: number;
  answeredByLane: Record<LaneName, number>;
  answeredByGeneration: Record<string, number>;
  /** The first few failures and mismatches, for diagnosis. */
  samples: string[];
}

// Small lanes: a build takes a fraction of a second, a pass microseconds.
const LANES = {
  hot: { entries: 3000, entrySize: 32, m: 256 },
  cold: { entries: 20000, entrySize: 32, m: 2048 },
} as const;
const SHARD_SIZE = 16384;
const REQUEST_TIMEOUT_MS = 10_000;
/** A request without an answer this long is reported as stuck (answers on these lanes take milliseconds). */
const STUCK_MS = 1_000;
/**
 * Transport failures (no HTTP answer) of requests started up to this long after
 * the kill are the victim's: node:cluster can still hand it a connection until
 * the primary has processed the exit, which takes longer on a loaded machine.
 */
const KILL_GRACE_MS = 2_000;

class SoakError extends Error {
  constructor(
    message: string,
    readonly startedAt: number,
    readonly reply?: HttpReply,
  ) {
    super(message);
  }
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? (() => {});
  const workers = opts.workers ?? 2;
  const reloadEveryMs = opts.reloadEveryMs ?? 200;
  const killWorker = opts.killWorker ?? true;
  const clients = opts.clients ?? 4;
  const report: SoakReport = {
    seconds: opts.seconds,
    workers,
    sent: 0,
    answered: 0,
    failed: 0,
    failedOnSurvivors: 0,
    mismatches: 0,
    retried410: 0,
    reloads: 0,
    reloadFailures: 0,
    reloadsFailedAtKill: 0,
    stuckAtKill: 0,
    answeredByLane: { hot: 0, cold: 0 },
    answeredByGeneration: {},
    samples: [],
  };
  const sample = (s: string) => {
    if (report.samples.length < 20) report.samples.push(s);
  };

  let data: BenchData | undefined;
  let cluster: ClusterProcess | undefined;
  try {
    data = await buildBenchData({ lanes: LANES, blocks: [1, 2], shardSize: SHARD_SIZE, prefix: 'lanepir-soak-' });
    cluster = await startClusterProcess({ data: data.data, workers, shardSize: SHARD_SIZE, timeoutMs: 60_000 });
    const c = cluster;
    const d = data;
    log(`soak: cluster of ${workers} workers at ${c.url}, ${opts.seconds} s, reload every ${reloadEveryMs} ms${killWorker ? ', one SIGKILL midway' : ''}`);

    let killedAt = 0;
    // Excused: failed requests that started before the kill settled (or during it).
    const excused = (startedAt: number) => killedAt > 0 && startedAt < killedAt + KILL_GRACE_MS;
    const started = Date.now();
    const endAt = started + opts.seconds * 1000;

    // Requests in flight, so that the ones caught by the kill can be dropped when the run ends.
    const inFlight = new Set<{ startedAt: number; abort: AbortController }>();
    const send = async (url: string, o: HttpOptions = {}): Promise<HttpReply> => {
      const entry = { startedAt: Date.now(), abort: new AbortController() };
      inFlight.add(entry);
      try {
        // Every request on a fresh connection, so node:cluster spreads them over the workers.
        return await httpRequest(url, { ...o, timeoutMs: REQUEST_TIMEOUT_MS, signal: entry.abort.signal });
      } catch (err) {
        if (Date.now() - entry.startedAt >= STUCK_MS) {
          report.stuckAtKill += excused(entry.startedAt) ? 1 : 0;
          log(`soak: a request started ${entry.startedAt - (killedAt || started)} ms after the ${killedAt ? 'kill' : 'start'} got no answer for ${Date.now() - entry.startedAt} ms`);
        }
        throw err;
      } finally {
        inFlight.delete(entry);
      }
    };
    const get = async (url: string): Promise<HttpReply> => {
      const t = Date.now();
      let r: HttpReply;
      try {
        r = await send(url);
      } catch (err) {
        throw new SoakError(`GET ${url}: ${(err as Error).message}`, t);
      }
      if (r.status !== 200) throw new SoakError(`GET ${url}: HTTP ${r.status} ${r.body.toString().slice(0, 200)}`, t, r);
      return r;
    };

    // One PIR client per (lane, generation), set up from the server like a wallet would.
    const pirClients = new Map<string, Promise<PirClient>>();
    const pirClient = (lane: LaneName, g: string) => {
      const key = `${lane}/${g}`;
      let p = pirClients.get(key);
      if (!p) {
        p = (async () => {
          const crs = parseJson(await get(`${c.url}/crs/${lane}?generation=${g}`));
          const hint = (await get(`${c.url}/hint/${lane}?generation=${g}`)).body;
          return PirClient.create(crs, new Uint8Array(hint.buffer, hint.byteOffset, hint.byteLength));
        })();
        pirClients.set(key, p);
        p.catch(() => pirClients.delete(key)); // retry the setup next time
      }
      return p;
    };

    const failure = (err: unknown) => {
      report.failed++;
      const e = err instanceof SoakError ? err : new SoakError(String(err), Date.now());
      // Only a transport failure (no HTTP answer at all) can be the killed worker's;
      // an HTTP error status always came from a live worker.
      if (!e.reply && excused(e.startedAt)) {
        log(`soak: failure at the kill (started ${e.startedAt - killedAt} ms after it, failed ${Date.now() - killedAt} ms after it): ${e.message}`);
        return;
      }
      report.failedOnSurvivors++;
      sample(`failure (started ${e.startedAt - started} ms into the run${killedAt ? `, ${e.startedAt - killedAt} ms after the kill` : ''}): ${e.message}`);
    };

    /** One lookup pinned to generation g; a 410 means "refresh from the current generation". */
    const lookup = async (lane: LaneName, g: string): Promise<string | undefined> => {
      let client: PirClient;
      try {
        client = await pirClient(lane, g);
      } catch (err) {
        if (err instanceof SoakError && err.reply?.status === 410) {
          report.retried410++;
          return String(parseJson(err.reply).current_generation);
        }
        throw err;
      }
      const index = crypto.randomInt(LANES[lane].entries);
      const { query, state }: { query: Uint8Array; state: QueryState } = await client.query(index);
      report.sent++;
      const t = Date.now();
      let r: HttpReply;
      try {
        r = await send(`${c.url}/query/${lane}?generation=${g}`, {
          method: 'POST',
          body: query,
          headers: { 'Content-Type': 'application/octet-stream' },
        });
      } catch (err) {
        throw new SoakError(`POST /query/${lane}?generation=${g}: ${(err as Error).message}`, t);
      }
      if (r.status === 410) {
        report.retried410++;
        return String(parseJson(r).current_generation);
      }
      if (r.status !== 200) throw new SoakError(`POST /query/${lane}?generation=${g}: HTTP ${r.status} ${r.body.toString().slice(0, 200)}`, t, r);
      const answeredBy = String(r.headers['x-lanepir-generation']);
      const entry = Buffer.from(client.decode(new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.byteLength), state));
      const plain = await readEntry((await d.info(answeredBy)).lanes[lane]!, index);
      if (answeredBy !== g || !entry.equals(plain)) {
        report.mismatches++;
        sample(`mismatch: ${lane}[${index}] pinned ${g}, answered by ${answeredBy} (${r.headers['x-lanepir-worker']}): got ${entry.toString('hex')}, plaintext ${plain.toString('hex')}`);
      } else {
        report.answered++;
        report.answeredByLane[lane]++;
        report.answeredByGeneration[answeredBy] = (report.answeredByGeneration[answeredBy] ?? 0) + 1;
      }
      return undefined;
    };

    const queryLoop = async (lane: LaneName) => {
      while (Date.now() < endAt) {
        try {
          const g = String(parseJson(await get(`${c.url}/info`)).generation);
          const current = await lookup(lane, g);
          // The documented client behaviour on 410: retry once on the current generation.
          if (current !== undefined && (await lookup(lane, current)) !== undefined) {
            throw new SoakError(`410 twice for ${lane} (pinned ${g}, then ${current})`, Date.now());
          }
        } catch (err) {
          failure(err);
          await sleep(20); // do not spin on a refused connection
        }
      }
    };

    const reloadLoop = async () => {
      let target = 2;
      while (Date.now() < endAt) {
        const t = Date.now();
        try {
          const r = await send(`${c.adminUrl}/admin/reload`, {
            method: 'POST',
            body: JSON.stringify({ generation: target }),
            headers: { 'Content-Type': 'application/json' },
          });
          if (r.status !== 200) throw new Error(`HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
          report.reloads++;
          target = target === 2 ? 1 : 2;
        } catch (err) {
          if (excused(t)) report.reloadsFailedAtKill++;
          else {
            report.reloadFailures++;
            sample(`reload to ${target} (started ${t - started} ms into the run): ${(err as Error).message}`);
          }
        }
        await sleep(Math.max(0, t + reloadEveryMs - Date.now()));
      }
    };

    const killer = async () => {
      if (!killWorker) return;
      await sleep(Math.max(0, (endAt - started) / 2));
      const gens = parseJson(await get(`${c.adminUrl}/admin/generations`));
      const victim = (gens.workers as { pid: number }[])[0]!.pid;
      killedAt = Date.now();
      report.killedPid = victim;
      process.kill(victim, 'SIGKILL');
      log(`soak: killed worker pid ${victim} at ${killedAt - started} ms`);
      // Watch for the replacement (bounded by the run).
      while (Date.now() < endAt) {
        await sleep(50);
        try {
          const ws = parseJson(await get(`${c.adminUrl}/admin/generations`)).workers as { pid: number; ready: boolean }[];
          if (ws.length === workers && ws.every((w) => w.ready && w.pid !== victim)) {
            report.replacedAfterMs = Date.now() - killedAt;
            log(`soak: replacement ready ${report.replacedAfterMs} ms after the kill`);
            return;
          }
        } catch {
          // the admin request itself may land on the victim's socket: try again
        }
      }
    };

    // At the end, requests still waiting since the kill are dropped (they are excused anyway);
    // all others get their full timeout.
    const dropStuck = setTimeout(() => {
      for (const e of inFlight) if (excused(e.startedAt)) e.abort.abort();
    }, endAt - Date.now());
    const lanes: LaneName[] = Array.from({ length: clients }, (_, i) => (i % 2 === 0 ? 'hot' : 'cold'));
    await Promise.all([...lanes.map(queryLoop), reloadLoop(), killer()]).finally(() => clearTimeout(dropStuck));
    log(`soak: ${report.answered} answered, ${report.failed} failed (${report.failedOnSurvivors} on survivors), ${report.mismatches} mismatches, ${report.reloads} reloads (${report.reloadFailures} failed)`);
    return report;
  } finally {
    await cluster?.stop();
    data?.cleanup();
  }
}

export function soakPassed(r: SoakReport): boolean {
  return r.failedOnSurvivors === 0 && r.mismatches === 0 && r.reloadFailures === 0;
}

function parseArgs(argv: string[]): SoakOptions {
  const opts: SoakOptions = { seconds: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = () => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${a} needs a positive number`);
      return n;
    };
    if (a === '--seconds') opts.seconds = num();
    else if (a === '--workers') opts.workers = Math.floor(num());
    else if (a === '--reload-every-ms') opts.reloadEveryMs = num();
    else if (a === '--clients') opts.clients = Math.floor(num());
    else if (a === '--no-kill') opts.killWorker = false;
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let opts: SoakOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  runSoak({ ...opts, log: (s) => process.stderr.write(`${s}\n`) }).then(
    (r) => {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      const ok = soakPassed(r);
      process.stdout.write(
        `${ok ? 'PASS' : 'FAIL'}: ${r.answered} answered, ${r.failed} failed (${r.failedOnSurvivors} on survivors), ${r.mismatches} mismatches, ${r.reloads} reloads, ${r.reloadFailures} reload failures; ${fmt(r.answered / r.seconds, 1)} answered/s\n`,
      );
      process.exitCode = ok ? 0 : 1;
    },
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
