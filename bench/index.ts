// All benchmarks in order: kernel, client, server, reload, validate,
// cluster, incremental, follow, delta, keyword, eth, browser, chain. Prints a
// readable report (progress on stderr), or with --json one JSON object with
// every figure on stdout. Each figure comes with its reference measured in
// the same run; a target is reported PASS only when measured.
//
//   npm run bench -- --help    (the flags: USAGE below)
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../src/native.js';
import { runChainBench } from './chain.js';
import { runClientBench } from './client.js';
import { runClusterBench } from './cluster.js';
import { runDeltaBench } from './delta.js';
import { runFollowBench } from './follow.js';
import { DEFAULT_ETH_ACCOUNTS, runEthBench } from './eth.js';
import { DEFAULT_BROWSER_ACCOUNTS, runBrowserBench } from './browser.js';
import { runIncrementalBench } from './incremental.js';
import { runKeywordBench } from './keyword.js';
import { runKernelBench } from './kernel.js';
import { runReloadBench } from './reload.js';
import { runServerBench } from './server.js';
import { runValidateBench } from './validate.js';
import { type BenchData, HOT_SHAPE, type Log, buildBenchData, fmt } from './util.js';

export const BENCHMARKS = ['kernel', 'client', 'server', 'reload', 'validate', 'cluster', 'incremental', 'follow', 'delta', 'keyword', 'eth', 'browser', 'chain'] as const;
export type BenchName = (typeof BENCHMARKS)[number];

const USAGE = `usage: npm run bench -- [--json] [--only ${BENCHMARKS.join(',')}]
  [--size-mib N]     kernel lane (default 256) and, when given, the large reload lane too
  [--reload-mib N]   large (cold) lane for reload, validate and cluster (default 1024)
  [--seconds N]      seconds per load run (default 5)
  [--reloads N]      measured reloads per case (default 20)
  [--blocks N]       blocks dropped one at a time in follow (default 20)
  [--eth-accounts N] accounts of the eth bench's synthetic state (default 2,700,000: ~10.3M keys)
  [--keyword-keys N] [--keyword-hot-keys N]   keyword lanes (default 1,000,000 cold, 200,000 hot)
  [--browser-accounts N] accounts of the browser bench's state (default 400,000: ~1.5M keys)
  [--chain-blocks N] [--chain-accounts N]     chain: measured blocks per size (default 20), synthetic padding accounts (default 100,000)
Without --only every benchmark runs, which takes long; a readable report goes to stdout, progress to stderr.
`;

export interface BenchArgs {
  json: boolean;
  only: BenchName[];
  kernelMiB: number;
  reloadMiB: number;
  seconds: number;
  reloads: number;
  blocks: number;
  ethAccounts: number;
  /** Keyword bench: keys in the cold and hot keyword lanes. */
  keywordKeys: number;
  keywordHotKeys: number;
  /** Browser bench: accounts of its synthetic state. */
  browserAccounts: number;
  /** Chain bench: measured blocks per size, synthetic padding accounts. */
  chainBlocks: number;
  chainAccounts: number;
}

export function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { json: false, only: [...BENCHMARKS], kernelMiB: 256, reloadMiB: 1024, seconds: 5, reloads: 20, blocks: 20, keywordKeys: 1_000_000, keywordHotKeys: 200_000, ethAccounts: DEFAULT_ETH_ACCOUNTS, browserAccounts: DEFAULT_BROWSER_ACCOUNTS, chainBlocks: 20, chainAccounts: 100_000 };
  let reloadGiven = false;
  const num = (flag: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${flag} needs a number >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') args.json = true;
    else if (a === '--only') {
      const names = (argv[++i] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      const bad = names.filter((n) => !(BENCHMARKS as readonly string[]).includes(n));
      if (bad.length || names.length === 0) throw new Error(`--only takes a list of ${BENCHMARKS.join(',')}; got ${argv[i]}`);
      // Keep the canonical order whatever order they were given in.
      args.only = BENCHMARKS.filter((b) => names.includes(b));
    } else if (a === '--size-mib') {
      args.kernelMiB = num(a, argv[++i], 1);
      if (!reloadGiven) args.reloadMiB = args.kernelMiB;
    } else if (a === '--reload-mib') {
      args.reloadMiB = num(a, argv[++i], 1);
      reloadGiven = true;
    } else if (a === '--seconds') args.seconds = num(a, argv[++i], 1);
    else if (a === '--reloads') args.reloads = Math.floor(num(a, argv[++i], 2));
    else if (a === '--blocks') args.blocks = Math.floor(num(a, argv[++i], 1));
    else if (a === '--eth-accounts') args.ethAccounts = Math.floor(num(a, argv[++i], 1));
    else if (a === '--browser-accounts') args.browserAccounts = Math.floor(num(a, argv[++i], 1));
    else if (a === '--keyword-keys') args.keywordKeys = Math.floor(num(a, argv[++i], 1000));
    else if (a === '--keyword-hot-keys') args.keywordHotKeys = Math.floor(num(a, argv[++i], 1000));
    else if (a === '--chain-blocks') args.chainBlocks = Math.floor(num(a, argv[++i], 1));
    else if (a === '--chain-accounts') args.chainAccounts = Math.floor(num(a, argv[++i], 1));
    else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

/** Data sets built on first use and shared by the benchmarks that need them. */
class Datasets {
  private hotData: Promise<BenchData> | undefined;
  private reloadData: Promise<BenchData> | undefined;
  constructor(
    private readonly reloadMiB: number,
    private readonly log: Log,
  ) {}

  /** One generation with the 32 MiB hot lane (client, server). */
  hot(): Promise<BenchData> {
    return (this.hotData ??= (() => {
      this.log('building the 32 MiB hot-lane generation ...');
      return buildBenchData({ lanes: { hot: HOT_SHAPE }, blocks: [1], log: this.log });
    })());
  }

  /** Two generations (same seeds, different blocks) with the hot lane and a large cold lane (reload, cluster). */
  reload(): Promise<BenchData> {
    return (this.reloadData ??= (() => {
      const entries = Math.floor((this.reloadMiB * 2 ** 20) / HOT_SHAPE.entrySize);
      this.log(`building two generations with a ${this.reloadMiB} MiB cold lane (takes a while for 1 GiB) ...`);
      return buildBenchData({ lanes: { hot: HOT_SHAPE, cold: { entries, entrySize: HOT_SHAPE.entrySize, m: 16384 } }, blocks: [1, 2], log: this.log });
    })());
  }

  async cleanup(): Promise<void> {
    for (const p of [this.hotData, this.reloadData]) {
      if (!p) continue;
      try {
        (await p).cleanup();
      } catch {
        // the build failed and removed its own directory
      }
    }
  }
}

function machine() {
  const cpu = native.cpuFeatures();
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    threads: os.availableParallelism(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernelPath: cpu.best,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

/** Every { pass } under `targets` of a figures object, as "bench.name". */
function collectTargets(name: string, figures: unknown): { name: string; pass: boolean; value: unknown; target: unknown }[] {
  const t = (figures as { targets?: Record<string, { pass: boolean; value: unknown; target: unknown }> })?.targets;
  return t ? Object.entries(t).map(([k, v]) => ({ name: `${name}.${k}`, pass: v.pass, value: v.value, target: v.target })) : [];
}

export async function runAll(args: BenchArgs): Promise<{ report: Record<string, unknown>; ok: boolean }> {
  const log: Log = (line) => process.stderr.write(`${line}\n`);
  const out = (line: string) => {
    if (!args.json) process.stdout.write(`${line}\n`);
  };
  const data = new Datasets(args.reloadMiB, log);
  const report: Record<string, unknown> = {
    machine: machine(),
    args: { only: args.only, kernelMiB: args.kernelMiB, reloadMiB: args.reloadMiB, seconds: args.seconds, reloads: args.reloads, blocks: args.blocks },
  };
  const m = report.machine as ReturnType<typeof machine>;
  out(`lanepir benchmarks — ${m.cpuModel}, ${m.threads} threads, ${m.memGiB} GiB, kernel path ${m.kernelPath}, node ${m.node}`);
  out('(every figure is measured in this run; ratios are against the reference printed next to it)\n');
  let ok = true;
  const targets: ReturnType<typeof collectTargets> = [];
  const started = performance.now();
  // Ctrl-C still removes the temporary data.
  const onSignal = () => void data.cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  try {
    for (const name of args.only) {
      log(`== ${name}`);
      const t0 = performance.now();
      try {
        let figures: Record<string, unknown>;
        if (name === 'kernel') {
          // The kernel bench prints its own text report; in --json mode it stays quiet.
          figures = await runKernelBench({ sizeMiB: args.kernelMiB, json: args.json, print: !args.json });
        } else {
          const runners: Record<Exclude<BenchName, 'kernel'>, () => Promise<{ figures: Record<string, unknown>; lines: string[] }>> = {
            client: async () => runClientBench({ data: await data.hot(), log }),
            server: async () => runServerBench({ data: await data.hot(), seconds: args.seconds, log }),
            reload: async () => runReloadBench({ data: await data.reload(), reloads: args.reloads, log }),
            validate: async () => runValidateBench({ data: await data.reload(), log }),
            cluster: async () => runClusterBench({ data: await data.reload(), reloads: args.reloads, seconds: args.seconds, log }),
            incremental: () => runIncrementalBench({ log }),
            follow: () => runFollowBench({ blocks: args.blocks, reloads: args.reloads, log }),
            delta: () => runDeltaBench({ log }),
            keyword: () => runKeywordBench({ keys: args.keywordKeys, hotKeys: args.keywordHotKeys, log }),
            eth: () => runEthBench({ accounts: args.ethAccounts, log }),
            browser: () => runBrowserBench({ accounts: args.browserAccounts, log }),
            chain: () => runChainBench({ blocks: args.chainBlocks, accounts: args.chainAccounts, log }),
          };
          const result = await runners[name]();
          figures = result.figures;
          for (const line of result.lines) out(line);
        }
        out('');
        report[name] = figures;
        targets.push(...collectTargets(name, figures));
      } catch (err) {
        ok = false;
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        report[name] = { error: message };
        out(`${name}: FAILED — ${message}\n`);
      }
      log(`   (${name} took ${fmt((performance.now() - t0) / 1000, 1)} s)`);
    }
  } finally {
    process.off('SIGINT', onSignal);
    await data.cleanup();
  }
  report.targets = targets;
  report.totalSeconds = Math.round((performance.now() - started) / 100) / 10;
  if (targets.length) {
    out('targets (measured above):');
    for (const t of targets) out(`  ${t.pass ? 'PASS' : 'FAIL'} ${t.name}: ${typeof t.value === 'number' && !Number.isInteger(t.value) ? fmt(t.value, 3) : String(t.value)} (${t.target})`);
  }
  out(`total ${fmt(report.totalSeconds as number, 1)} s`);
  if (args.json) process.stdout.write(JSON.stringify(report) + '\n');
  return { report, ok };
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let args: BenchArgs;
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  runAll(args).then(
    ({ ok }) => {
      // Failed targets are findings, not errors; a benchmark that could not run is.
      process.exitCode = ok ? 0 : 1;
    },
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
