// Ethereum benchmark (issue 9): an --eth-synthetic state of at least 10
// million keys built into keyword lanes, then private reads through the
// wallet client against a server on loopback.
//
//   build: time and keys/s; per lane: keys, m x R, d, load factor
//   per lookup (hot: an ERC-20 balance; cold: an account), hiding on and off:
//     client ms (query preparation + decoding), server ms (the requests on
//     loopback: the server's passes over the lanes), bytes sent and received,
//     and the server cost relative to ONE index-style query of the same lane
//     (a single POST of one query, measured in the same run)
//   "wallet open": one account and 13 token balances in one round
//   an incremental block of 2,000 changed keys (200 inserts): build ms, and
//     block-to-served ms (build + reload)
//
// Part of `node dist/bench/index.js` (as `eth`); alone:
//   node dist/bench/eth.js [--json] [--accounts N] [--lookups N] [--data DIR]
// N = 2,700,000 accounts gives about 10.3 million keys (default). --data DIR
// reuses a data directory built earlier with
//   lanepir build --data DIR --block 1000 --eth-synthetic N --synthetic-seed lanepir-bench --publish
// (the build is then not measured; the incremental block is built into DIR).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEthDiff, buildEthState } from '../src/eth/build.js';
import { StateClient, type StateRead } from '../src/eth/client.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { answerBytes } from '../src/pir/crs.js';
import { RemoteLane } from '../src/pir/remote.js';
import { loadGeneration } from '../src/store/generation.js';
import { loadPlacement } from '../src/store/keyword-builder.js';
import { generationDir } from '../src/store/layout.js';
import { readManifest } from '../src/store/manifest.js';
import { type Log, fmt, postReload, removeDir, round, startServerProcess, summarize, tempDataDir } from './util.js';

export interface EthBenchOptions {
  /** Accounts of the synthetic state (about 3.8 keys each). */
  accounts?: number;
  /** Timed rounds per case (median reported). */
  lookups?: number;
  /** Reuse this data directory (generation 1000 of the same synthetic state) instead of building one. */
  data?: string;
  log?: Log;
}

export const DEFAULT_ETH_ACCOUNTS = 2_700_000;

const median = (xs: number[]) => summarize(xs).p50;

export async function runEthBench(opts: EthBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const log = opts.log ?? (() => {});
  const accounts = opts.accounts ?? DEFAULT_ETH_ACCOUNTS;
  const lookups = opts.lookups ?? 5;
  const root = opts.data === undefined ? tempDataDir('lanepir-bench-eth-') : undefined;
  const data = opts.data ?? path.join(root!, 'data');
  const syn = new EthSynthetic(accounts, 'lanepir-bench');
  try {
    let t = performance.now();
    let buildMs = Number.NaN;
    let keys: Record<'hot' | 'cold', number>;
    let manifest;
    if (opts.data === undefined) {
      log(`building a synthetic Ethereum state of ${accounts} accounts (~${syn.approximateKeys} keys) ...`);
      const full = await buildEthState({ data, block: 1000, state: syn.state(), hotManifest: syn.hotManifest, chainId: 1, publish: true }); // default 128 KiB shards: an incremental block rewrites only the shards it touches
      buildMs = performance.now() - t;
      keys = full.stats.keys!;
      manifest = full.manifest;
      log(`  built in ${fmt(buildMs / 1000, 1)} s: ${keys.hot + keys.cold} keys, ${Math.round((keys.hot + keys.cold) / (buildMs / 1000))} keys/s`);
    } else {
      log(`reusing ${data} (the build is not measured) ...`);
      manifest = await readManifest(generationDir(data, '1000'));
      keys = { hot: 0, cold: 0 };
      for (const lane of ['hot', 'cold'] as const) keys[lane] = (await loadPlacement((await loadGeneration(generationDir(data, '1000'))).lanes[lane]!, generationDir(data, '1000'))).keys;
    }
    const totalKeys = keys.hot + keys.cold;
    const lanes: Record<string, { keys: number; m: number; R: number; d: number; load: number; laneMiB: number }> = {};
    for (const lane of ['hot', 'cold'] as const) {
      const s = manifest.lanes[lane]!;
      lanes[lane] = { keys: keys[lane], m: s.m, R: s.R, d: s.bucket_choices!, load: keys[lane] / (s.m * s.R), laneMiB: s.bytes / 2 ** 20 };
    }

    log('starting a server on loopback ...');
    const server = await startServerProcess({ data_dir: data, host: '127.0.0.1', port: 0, admin_host: '127.0.0.1', admin_port: 0, log_level: 'error' });
    try {
      const url = server.publicUrl;
      const holder = syn.holderOf(0);
      const token = syn.tokens[0]!;
      const account = syn.account(1).address;
      const cases: Record<string, StateRead[]> = {
        hot: [{ kind: 'erc20', token: token.address, holder: holder.address }],
        cold: [{ kind: 'account', address: account }],
        'wallet open': [{ kind: 'account', address: holder.address }, ...syn.tokens.map((tk) => ({ kind: 'erc20' as const, token: tk.address, holder: holder.address }))],
      };
      const clients = { on: new StateClient({ url }), off: new StateClient({ url, hideLanes: false }) };
      // Warm-up: hints downloaded, A expanded (not part of a lookup's cost).
      log('downloading hints ...');
      for (const c of Object.values(clients)) await c.readMany([...cases.hot!, ...cases.cold!]);

      // Reference: one index-style query (a single POST of one query) per lane, same run.
      const reference: Record<string, number> = {};
      for (const lane of ['hot', 'cold'] as const) {
        const remote = new RemoteLane(url, lane);
        const samples: number[] = [];
        for (let i = 0; i < lookups + 1; i++) {
          const { client, generation } = await remote.current();
          const { query } = await client.query(0);
          const t0 = performance.now();
          await remote.postQueries(generation, [query], answerBytes(client.crs));
          if (i > 0) samples.push(performance.now() - t0);
        }
        reference[lane] = median(samples);
        log(`  one ${lane} index query: ${fmt(reference[lane]!, 1)} ms`);
      }

      const perLookup: Record<string, unknown> = {};
      const lines: string[] = [];
      for (const [name, reads] of Object.entries(cases)) {
        for (const [hiding, client] of Object.entries(clients)) {
          const client_: number[] = [];
          const network: number[] = [];
          const total: number[] = [];
          let sent = 0;
          let received = 0;
          let queries: Record<string, number> = {};
          for (let i = 0; i < lookups; i++) {
            await client.readMany(reads);
            const s = client.lastRound!;
            client_.push(s.timings.query! + s.timings.decode!);
            network.push(s.timings.network!);
            total.push(s.timings.total!);
            sent = s.bytesSent;
            received = s.bytesReceived;
            queries = s.queries;
          }
          const lane = name === 'cold' ? 'cold' : 'hot';
          const serverMs = median(network);
          perLookup[`${name}/hiding ${hiding}`] = {
            keys: reads.length,
            queries,
            clientMs: round(median(client_)),
            serverMs: round(serverMs),
            totalMs: round(median(total)),
            bytesSent: sent,
            bytesReceived: received,
            ...(name !== 'wallet open' ? { serverVsOneIndexQuery: round(serverMs / reference[lane]!, 2) } : {}),
          };
          lines.push(
            `  ${`${name}, hiding ${hiding}`.padEnd(24)} ${Object.entries(queries).map(([l, n]) => `${l} ${n}`).join(' + ').padEnd(16)} client ${fmt(median(client_), 1).padStart(7)} ms  server ${fmt(serverMs, 1).padStart(7)} ms  total ${fmt(median(total), 1).padStart(7)} ms  up ${(sent / 1024).toFixed(0).padStart(6)} KiB  down ${(received / 1024).toFixed(0).padStart(6)} KiB${name !== 'wallet open' ? `  (${fmt(serverMs / reference[lane]!, 2)}x one ${lane} index query, ${fmt(reference[lane]!, 1)} ms)` : ''}`,
          );
          log(lines[lines.length - 1]!);
        }
      }

      // An incremental block: 2,000 changed keys of which 200 are new.
      log('building an incremental block of 2,000 changed keys ...');
      const diff = syn.diff(1001, { keys: 2000, inserts: 200 });
      t = performance.now();
      const inc = await buildEthDiff({ data, from: '1000', block: 1001, diff, publish: true });
      const incMs = performance.now() - t;
      await postReload(server.adminUrl, '1001', false);
      const servedMs = performance.now() - t;
      const kw = (lane: 'hot' | 'cold') => (inc.stats[lane] as { keyword?: { inserted: number; updated: number; deleted: number } } | undefined)?.keyword;
      const changed = (['hot', 'cold'] as const).reduce((n, l) => n + (kw(l) ? kw(l)!.inserted + kw(l)!.updated + kw(l)!.deleted : 0), 0);
      const inserted = (['hot', 'cold'] as const).reduce((n, l) => n + (kw(l)?.inserted ?? 0), 0);
      // The next read updates hints by delta and reads the new block.
      const after = await clients.on.readMany(cases['wallet open']!);
      if (after[0]!.block.number !== 1001n) throw new Error(`read block ${after[0]!.block.number} after the reload, expected 1001`);

      const figures = {
        accounts,
        keys: totalKeys,
        build: Number.isNaN(buildMs) ? null : { ms: round(buildMs), keysPerSecond: Math.round(totalKeys / (buildMs / 1000)) },
        lanes: Object.fromEntries(Object.entries(lanes).map(([l, v]) => [l, { ...v, load: round(v.load, 4), laneMiB: round(v.laneMiB, 1) }])),
        referenceOneIndexQueryMs: Object.fromEntries(Object.entries(reference).map(([l, v]) => [l, round(v)])),
        lookups: perLookup,
        incremental: { changedKeys: changed, inserted, buildMs: round(incMs), blockToServedMs: round(servedMs) },
      };
      const out = [
        `eth: synthetic state of ${accounts} accounts, ${totalKeys} keys (${keys.hot} hot, ${keys.cold} cold)`,
        Number.isNaN(buildMs) ? '  build: not measured (reused data)' : `  build ${fmt(buildMs / 1000, 1)} s, ${Math.round(totalKeys / (buildMs / 1000))} keys/s`,
        ...Object.entries(lanes).map(([l, v]) => `  ${l.padEnd(4)} lane: ${v.keys} keys in m=${v.m} x R=${v.R} (${fmt(v.laneMiB, 1)} MiB), d=${v.d}, load ${fmt(v.load, 3)}`),
        `  per lookup (median of ${lookups}; server = the round's requests on loopback):`,
        ...lines,
        `  incremental block: ${changed} changed keys (${inserted} inserts): build ${fmt(incMs, 0)} ms, block to served ${fmt(servedMs, 0)} ms`,
      ];
      return { figures, lines: out };
    } finally {
      await server.stop();
    }
  } finally {
    if (root) removeDir(root);
  }
}

function parseArgs(argv: string[]): EthBenchOptions & { json: boolean } {
  const opts: EthBenchOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') opts.json = true;
    else if (a === '--accounts') opts.accounts = Number(argv[++i]);
    else if (a === '--lookups') opts.lookups = Number(argv[++i]);
    else if (a === '--data') opts.data = argv[++i]!;
    else throw new Error(`unknown argument ${a}`);
  }
  if (opts.accounts !== undefined && !(Number.isSafeInteger(opts.accounts) && opts.accounts > 0)) throw new Error('--accounts needs a positive integer');
  if (opts.lookups !== undefined && !(Number.isSafeInteger(opts.lookups) && opts.lookups > 0)) throw new Error('--lookups needs a positive integer');
  return opts;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const opts = parseArgs(process.argv.slice(2));
  runEthBench({ ...opts, log: (line) => process.stderr.write(`${line}\n`) }).then(
    ({ figures, lines }) => process.stdout.write(opts.json ? JSON.stringify(figures) + '\n' : lines.join('\n') + '\n'),
    (err) => {
      const cause = (err as { cause?: unknown }).cause;
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}${cause ? `\ncause: ${String((cause as Error).stack ?? cause)}` : ''}\n`);
      process.exitCode = 1;
    },
  );
}
