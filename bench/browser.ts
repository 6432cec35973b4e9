// Browser benchmark (issue 11): the client bundle in the same headless
// Chromium the tests use, against a server on loopback serving an
// --eth-synthetic state, the client running in its Web Worker.
//
//   per lane: m, R, d, the hint's size and A's size (m * n * 4 bytes)
//   for A kept (expanded once per lane) and A streamed (regenerated for
//   every pass of query preparation: the browser default), each with and
//   without queries prepared ahead in idle time, each in a fresh worker:
//     first lookup (cold cache: hints downloaded, A expanded), ms and bytes
//     later lookups (hints in memory; the worker idle before each, as between
//     a wallet's lookups), ms: a cold-lane key (an account), a hot-lane key
//     (a token balance) and "wallet open" (one account and every token), split
//     by step (hint, query, network, decode); and one account back-to-back
//     (no idle time between lookups)
//     the worker's JS heap (V8 heap + ArrayBuffers): peak sampled every 25 ms
//     (garbage included), and retained after a forced GC
//   hiding off: the same lookups touch one lane only (per-lane cost)
//   per later block (the server reloads a block of 2,000 changed keys):
//     bytes downloaded (deltas) and the lookup's ms, and a returning page's
//     lookup with its hints from IndexedDB
//   the page's main thread: its longest task during all of the above
//
// Part of `node dist/bench/index.js` (as `browser`); alone:
//   node dist/bench/browser.js [--json] [--accounts N] [--lookups N] [--blocks N]
// The default, 400,000 accounts (~1.5M keys), gives the cold lane the full
// m = 16384 (A is 64 MiB there) at a build of under a minute.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CDPSession, Page } from 'puppeteer-core';
import { buildEthDiff, buildEthState } from '../src/eth/build.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { LWE_N } from '../src/pir/params.js';
import { type TestBrowser, launchChromium, recordedPage } from '../test/browser-helpers.js';
import { type Log, fmt, postReload, removeDir, round, startServerProcess, summarize, tempDataDir } from './util.js';

// Functions given to page.evaluate run in the page, where these exist.
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface BrowserBenchOptions {
  accounts?: number;
  /** Timed lookups per case (median reported). */
  lookups?: number;
  /** Later blocks measured (deltas). */
  blocks?: number;
  log?: Log;
}

export const DEFAULT_BROWSER_ACCOUNTS = 400_000;
const SHARD_SIZE = 16 * 2 ** 20;
const BLOCK = 1000;
const STEPS = ['hint', 'query', 'network', 'decode'] as const;

interface Round {
  queries: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  timings: Record<string, number>;
  hintSources: Record<string, string>;
}

interface Call {
  /** Wall time on the page, from the call to its answer. */
  pageMs: number;
  report: { ms: number; hintBytes: number; deltaBytes: number; round?: Round };
}

type Read = { kind: 'account'; address: string } | { kind: 'erc20'; token: string; holder: string };

/** Peak of the worker's V8 heap plus ArrayBuffer backing stores, sampled while running `body`. */
class HeapSampler {
  peak = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;
  constructor(private readonly cdp: CDPSession) {}

  async sample(): Promise<number> {
    const h = (await this.cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
    const bytes = h.usedSize + (h.backingStorageSize ?? 0);
    this.peak = Math.max(this.peak, bytes);
    return bytes;
  }

  /** What stays allocated once garbage is collected (what keeping A, the hints and the pools costs). */
  async retained(): Promise<number> {
    await this.cdp.send('HeapProfiler.collectGarbage');
    const h = (await this.cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
    return h.usedSize + (h.backingStorageSize ?? 0);
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.inFlight) return;
      this.inFlight = true;
      this.sample()
        .catch(() => undefined)
        .finally(() => (this.inFlight = false));
    }, 25);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A same-origin blank document on the server with a worker started on it; calls run through page.evaluate. */
async function workerPage(browser: TestBrowser, url: string, options: Record<string, unknown>) {
  const rp = await recordedPage(browser.browser);
  // /health is a same-origin document with no script of its own (the page at / would start its own worker).
  await rp.page.goto(`${url}/health`);
  const created = new Promise<{ client: CDPSession }>((resolve) => rp.page.once('workercreated', (w) => resolve(w as unknown as { client: CDPSession })));
  await rp.page.evaluate(
    async (serverUrl: string, opts: Record<string, unknown>) => {
      const m = await import(`${serverUrl}/assets/lanepir-client.js`);
      window.lanepir = await m.LanepirWorker.start({ url: serverUrl, ...opts });
    },
    url,
    options,
  );
  const worker = await created;
  const heap = new HeapSampler(worker.client);
  /** A lookup; `settled`: spaced out as a wallet's are (a block apart), the worker's background work done first. */
  const call = (reads: Read[], settled = true): Promise<Call> =>
    rp.page.evaluate(
      async (r: Read[], settle: boolean) => {
        if (settle) await window.lanepir.settle();
        const t0 = performance.now();
        const { report } = await window.lanepir.readMany(r);
        return { pageMs: performance.now() - t0, report };
      },
      reads,
      settled,
    );
  return { ...rp, heap, call };
}

type Split = Record<'page' | 'total' | (typeof STEPS)[number], number>;

function split(calls: Call[]): Split {
  const out = {} as Split;
  for (const step of STEPS) out[step] = round(summarize(calls.map((c) => c.report.round?.timings[step] ?? Number.NaN)).p50, 1);
  out.total = round(summarize(calls.map((c) => c.report.round?.timings.total ?? Number.NaN)).p50, 1);
  out.page = round(summarize(calls.map((c) => c.pageMs)).p50, 1);
  return out;
}

const fmtSplit = (s: Record<string, unknown> & Record<'page' | 'hint' | 'query' | 'network' | 'decode', number>) => `${fmt(s.page!, 0)} ms (hint ${fmt(s.hint!, 0)}, query ${fmt(s.query!, 0)}, network ${fmt(s.network!, 0)}, decode ${fmt(s.decode!, 0)})`;
const mib = (b: number) => `${fmt(b / 2 ** 20, 1)} MiB`;

async function longestMainTask(page: Page): Promise<number> {
  const tasks = (await page.evaluate(() => window.__lanepirLongTasks as { duration: number }[])) ?? [];
  return Math.max(0, ...tasks.map((t) => t.duration));
}

export async function runBrowserBench(opts: BrowserBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const log = opts.log ?? (() => {});
  const accounts = opts.accounts ?? DEFAULT_BROWSER_ACCOUNTS;
  const lookups = opts.lookups ?? 5;
  const blocks = opts.blocks ?? 3;
  const root = tempDataDir('lanepir-bench-browser-');
  const data = path.join(root, 'data');
  const syn = new EthSynthetic(accounts, 'lanepir-bench-browser');
  const cleanups: (() => Promise<void> | void)[] = [() => removeDir(root)];
  try {
    log(`building a synthetic Ethereum state of ${accounts} accounts (~${syn.approximateKeys} keys) ...`);
    const built = await buildEthState({ data, block: BLOCK, state: syn.state(), hotManifest: syn.hotManifest, chainId: 1, shardSize: SHARD_SIZE, publish: true });
    const lanes: Record<string, { m: number; R: number; d: number; hintMiB: number; aMiB: number }> = {};
    for (const lane of ['hot', 'cold'] as const) {
      const s = built.manifest.lanes[lane]!;
      lanes[lane] = { m: s.m, R: s.R, d: s.bucket_choices!, hintMiB: round((s.R * s.entry_size * LWE_N * 4) / 2 ** 20, 1), aMiB: round((s.m * LWE_N * 4) / 2 ** 20, 1) };
    }
    const server = await startServerProcess({ data_dir: data, host: '127.0.0.1', port: 0, admin_host: '127.0.0.1', admin_port: 0, log_level: 'error', shard_size_bytes: SHARD_SIZE });
    cleanups.unshift(() => server.stop());
    const url = server.publicUrl;
    log('starting Chromium ...');
    const browser = await launchChromium();
    cleanups.unshift(() => browser.close());

    const holder = syn.holderOf(0).address;
    const cases: Record<string, Read[]> = {
      cold: [{ kind: 'account', address: syn.account(1).address }],
      hot: [{ kind: 'erc20', token: syn.tokens[0]!.address, holder }],
      'wallet open': [{ kind: 'account', address: holder }, ...syn.tokens.map((t) => ({ kind: 'erc20' as const, token: t.address, holder }))],
    };

    const figures: Record<string, unknown> = { accounts, keys: syn.approximateKeys, lanes };
    const lines: string[] = [`browser (headless Chromium, client in a Web Worker): ${accounts} accounts (~${syn.approximateKeys} keys)`];
    for (const [l, s] of Object.entries(lanes)) lines.push(`  ${l} lane: m ${s.m} x R ${s.R}, d ${s.d}; hint ${s.hintMiB} MiB, A ${s.aMiB} MiB`);
    let longest = 0;

    // Warm-up (not measured): the browser's HTTP and code caches hold the bundle, so both modes start alike.
    {
      const w = await workerPage(browser, url, { cache: 'none' });
      await w.call(cases.cold!);
      await w.page.evaluate(() => window.lanepir.terminate());
      await w.page.close();
    }

    // A kept vs streamed, each in a fresh worker with no hint cache (every first lookup is cold).
    const modes: Record<string, unknown> = {};
    for (const [mode, options] of [
      ['kept', { cacheMatrix: true }],
      ['streamed', { cacheMatrix: false }],
      ['kept, not prepared ahead', { cacheMatrix: true, prepareAhead: false }],
      ['streamed, not prepared ahead', { cacheMatrix: false, prepareAhead: false }],
    ] as const) {
      log(`A ${mode}: first lookup and ${lookups} later lookups per case ...`);
      const w = await workerPage(browser, url, { ...options, cache: 'none' });
      const idleHeap = await w.heap.sample();
      w.heap.start();
      const first = await w.call(cases.cold!);
      const later: Record<string, Call[]> = {};
      for (const [name, reads] of Object.entries(cases)) {
        later[name] = [];
        for (let i = 0; i < lookups; i++) later[name]!.push(await w.call(reads));
      }
      // A burst: each lookup right after the previous one (a refill of prepared queries may still be running).
      later['cold, back-to-back'] = [];
      await w.call(cases.cold!);
      for (let i = 0; i < lookups; i++) later['cold, back-to-back']!.push(await w.call(cases.cold!, false));
      w.heap.stop();
      await w.heap.sample();
      const retained = await w.heap.retained();
      const pageHeap = (await w.page.metrics()).JSHeapUsedSize ?? Number.NaN;
      longest = Math.max(longest, await longestMainTask(w.page));
      const firstSplit = split([first]);
      const m = {
        first: { ...firstSplit, hintBytes: first.report.hintBytes, bytesSent: first.report.round!.bytesSent, bytesReceived: first.report.round!.bytesReceived },
        later: Object.fromEntries(Object.entries(later).map(([k, v]) => [k, { ...split(v), queries: v[0]!.report.round!.queries, bytesSent: v[0]!.report.round!.bytesSent, bytesReceived: v[0]!.report.round!.bytesReceived }])),
        workerPeakHeapMiB: round(w.heap.peak / 2 ** 20, 1),
        workerRetainedMiB: round(retained / 2 ** 20, 1),
        workerIdleHeapMiB: round(idleHeap / 2 ** 20, 1),
        pageHeapMiB: round(pageHeap / 2 ** 20, 1),
      };
      modes[mode] = m;
      lines.push(`  A ${mode}: worker heap peak ${fmt(m.workerPeakHeapMiB, 1)} MiB (sampled, garbage included), retained after GC ${fmt(m.workerRetainedMiB, 1)} MiB (idle worker ${fmt(m.workerIdleHeapMiB, 1)} MiB); the page's main thread ${fmt(m.pageHeapMiB, 1)} MiB`);
      lines.push(`    first lookup (cold cache): ${fmtSplit(firstSplit)}; downloaded ${mib(first.report.hintBytes)} of hints, sent ${first.report.round!.bytesSent} B, received ${first.report.round!.bytesReceived} B`);
      for (const [k, v] of Object.entries(m.later)) {
        lines.push(`    later, ${k} (${Object.entries(v.queries).map(([l, n]) => `${l} ${n}`).join(', ')} queries): ${fmtSplit(v)}; sent ${v.bytesSent} B, received ${v.bytesReceived} B`);
      }
      await w.page.evaluate(() => window.lanepir.terminate());
      await w.page.close();
    }
    figures.matrix = modes;
    type ModeFigures = { later: Record<string, { page: number }>; workerPeakHeapMiB: number; workerRetainedMiB: number };
    const kept = modes.kept as ModeFigures;
    const streamed = modes.streamed as ModeFigures;
    const ratio = streamed.later['wallet open']!.page / kept.later['wallet open']!.page;
    lines.push(
      `  A kept vs streamed: one account ${fmt(kept.later.cold!.page, 0)} vs ${fmt(streamed.later.cold!.page, 0)} ms (back-to-back ${fmt(kept.later['cold, back-to-back']!.page, 0)} vs ${fmt(streamed.later['cold, back-to-back']!.page, 0)} ms), wallet open ${fmt(kept.later['wallet open']!.page, 0)} vs ${fmt(streamed.later['wallet open']!.page, 0)} ms (streamed ${fmt(ratio, 2)}x the time); retained ${fmt(kept.workerRetainedMiB, 0)} vs ${fmt(streamed.workerRetainedMiB, 0)} MiB, peak ${fmt(kept.workerPeakHeapMiB, 0)} vs ${fmt(streamed.workerPeakHeapMiB, 0)} MiB`,
    );
    figures.streamedAccountTimeRatio = round(streamed.later.cold!.page / kept.later.cold!.page, 2);
    figures.streamedTimeRatio = round(ratio, 2);

    // Hiding off: a lookup touches only its key's lane (what each lane costs on its own).
    log('hiding off: per-lane lookups ...');
    {
      const w = await workerPage(browser, url, { cache: 'none', hideLanes: false });
      await w.call([...cases.cold!, ...cases.hot!]); // hints in memory
      const perLane: Record<string, unknown> = {};
      for (const [lane, reads] of [
        ['cold', cases.cold!],
        ['hot', cases.hot!],
      ] as const) {
        const calls: Call[] = [];
        for (let i = 0; i < lookups; i++) calls.push(await w.call(reads));
        const s = { ...split(calls), queries: calls[0]!.report.round!.queries };
        perLane[lane] = s;
        lines.push(`  hiding off, ${lane} lane only (${Object.entries(s.queries).map(([l, n]) => `${l} ${n}`).join(', ')} queries): ${fmtSplit(s)}`);
      }
      figures.hidingOff = perLane;
      longest = Math.max(longest, await longestMainTask(w.page));
      await w.page.evaluate(() => window.lanepir.terminate());
      await w.page.close();
    }

    // Later blocks (the defaults, as the page runs): deltas into a page holding the hints; then a returning page (IndexedDB).
    log(`${blocks} later blocks of 2,000 changed keys ...`);
    {
      const w = await workerPage(browser, url, {});
      const first = await w.call(cases.cold!);
      const perBlock: { block: number; deltaBytes: number; hintBytes: number; sources: Record<string, string>; ms: Record<string, number> }[] = [];
      for (let b = 1; b <= blocks; b++) {
        const block = BLOCK + b;
        await buildEthDiff({ data, from: String(block - 1), block, diff: syn.diff(block, { keys: 2000, inserts: 200, deletes: 50 }), publish: true });
        await postReload(server.adminUrl, String(block), false); // throws unless 200
        const c = await w.call(cases.cold!);
        perBlock.push({ block, deltaBytes: c.report.deltaBytes, hintBytes: c.report.hintBytes, sources: c.report.round!.hintSources, ms: split([c]) });
        lines.push(`  block +${b}: downloaded ${fmt(c.report.deltaBytes / 1024, 1)} KiB of deltas (${Object.values(c.report.round!.hintSources).join('/')}), ${c.report.hintBytes} B of hints; lookup ${fmtSplit(split([c]))}`);
      }
      longest = Math.max(longest, await longestMainTask(w.page));
      await w.page.evaluate(() => window.lanepir.terminate());
      await w.page.close();
      const back = await workerPage(browser, url, {});
      const c = await back.call(cases.cold!);
      lines.push(`  returning page (hints from IndexedDB, ${Object.values(c.report.round!.hintSources).join('/')}): ${fmtSplit(split([c]))}; downloaded ${c.report.hintBytes + c.report.deltaBytes} B`);
      figures.blocks = { firstLookupHintBytes: first.report.hintBytes, perBlock, returning: { ...split([c]), sources: c.report.round!.hintSources, downloaded: c.report.hintBytes + c.report.deltaBytes } };
      longest = Math.max(longest, await longestMainTask(back.page));
      await back.page.evaluate(() => window.lanepir.terminate());
      await back.page.close();
    }
    figures.longestMainThreadTaskMs = round(longest, 1);
    lines.push(`  the page's main thread: longest task ${fmt(longest, 0)} ms (wall time, on a shared machine)`);
    return { figures, lines };
  } finally {
    for (const c of cleanups) await c();
  }
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const num = (flag: string) => {
    const i = argv.indexOf(flag);
    return i < 0 ? undefined : Number(argv[i + 1]);
  };
  runBrowserBench({ accounts: num('--accounts'), lookups: num('--lookups'), blocks: num('--blocks'), log: (l) => process.stderr.write(`${l}\n`) }).then(
    ({ figures, lines }) => process.stdout.write(argv.includes('--json') ? `${JSON.stringify(figures)}\n` : `${lines.join('\n')}\n`),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
