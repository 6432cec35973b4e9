// Keyword-lane benchmark: placement load by simulation (d = 1, 2, 3 at
// several column heights), the cost of 1,000 keys ground into one column,
// a full build (keys/s), an incremental block of 2,000 changed keys with 200
// inserts, and lookups through a server: client ms (query + decode), server
// kernel ms, bytes each way, hot and cold, with lane hiding on and off — each
// next to one index query on an index lane holding the same values, measured
// in the same run.
// Part of `node dist/bench/index.js` (as `keyword`); alone:
//   node dist/bench/keyword.js [--keys N] [--hot-keys N]
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { PirClient } from '../src/pir/client.js';
import { type KeywordRoundResult, KeywordReader } from '../src/pir/keyword-remote.js';
import { littleEndianWords } from '../src/pir/prg.js';
import { startServer } from '../src/server/server.js';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { openLane, loadGeneration } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type KeywordRecord, PlacementCache, loadPlacement } from '../src/store/keyword-builder.js';
import { type KeywordChange, planKeywordChanges } from '../src/store/keyword-incremental.js';
import { HASH_WORDS, KeywordTable, planKeywordLane } from '../src/store/keyword-placement.js';
import { generationDir, type LaneName } from '../src/store/layout.js';
import { type Log, fmt, fmtMs, fmtRatio, removeDir, round, summarize, tempDataDir, timeKernelPasses } from './util.js';

export interface KeywordBenchOptions {
  /** Keys in the cold lane (default 1,000,000). */
  keys?: number;
  /** Keys in the hot lane (default 200,000). */
  hotKeys?: number;
  log?: Log;
}

/** Deterministic records: key i of a lane is 21 bytes (an account-like key) or 53 (a slot-like key). */
function* records(lane: string, count: number, from = 0): Generator<KeywordRecord> {
  const seed = crypto.createHash('sha256').update(`lanepir/bench/keyword/${lane}`).digest();
  for (let i = from; i < from + count; i++) {
    const h = crypto.createHash('sha256').update(seed).update(String(i)).digest();
    const key = i % 4 === 0 ? h.subarray(0, 21) : Buffer.concat([h, h.subarray(0, 21)]);
    yield { key, value: crypto.createHash('sha256').update(h).digest() };
  }
}

/** Random slot hashes (table words) for simulations. */
function randomWords(count: number): Uint32Array {
  const w = new Uint32Array(count * HASH_WORDS);
  for (let o = 0; o < w.length; o += 16384) crypto.randomFillSync(w.subarray(o, Math.min(w.length, o + 16384)));
  for (let i = 0; i < count; i++) if (w[i * HASH_WORDS] === 0 && w[i * HASH_WORDS + 1] === 0) w[i * HASH_WORDS] = 1;
  return w;
}

/** Fills an empty table with random keys until an insertion finds no slot: the load reached. */
function simulateLoad(m: number, R: number, d: number): { load: number; maxColumn: number; relocations: number; moves: number; usPerInsert: number } {
  const table = KeywordTable.create(m, d, R);
  const words = randomWords(m * R);
  const t0 = performance.now();
  let i = 0;
  for (; i < m * R; i++) if (!table.insert(words, i * HASH_WORDS)) break;
  const us = ((performance.now() - t0) * 1000) / Math.max(1, i);
  return { load: table.keys / table.slots, maxColumn: table.maxColumn, relocations: table.stats.relocations, moves: table.stats.moves, usPerInsert: us };
}

/** Keys whose every candidate is `column` (table words built directly: what grinding produces). */
function groundWords(count: number, m: number, column: number): Uint32Array {
  const w = randomWords(count);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < 3; j++) {
      w[i * HASH_WORDS + 2 + 2 * j] = column + m * crypto.randomInt(1, Math.floor(2 ** 32 / m) - 1);
      w[i * HASH_WORDS + 3 + 2 * j] = 0;
    }
  }
  return w;
}

function grindingCost(m: number, keys: number, d: number, ground: number): Record<string, number> {
  const plan = planKeywordLane(keys, { m, d });
  const table = KeywordTable.create(plan.m, plan.d, plan.R);
  const words = randomWords(keys);
  for (let i = 0; i < keys; i++) while (!table.insert(words, i * HASH_WORDS)) table.grow(1);
  const before = table.R;
  const g = groundWords(ground, plan.m, 7);
  const t0 = performance.now();
  let moved = 0;
  for (let i = 0; i < ground; i++) {
    let placed = table.insert(g, i * HASH_WORDS);
    while (!placed) {
      table.grow(1);
      placed = table.insert(g, i * HASH_WORDS);
    }
    moved += placed.moves.length;
  }
  const ms = performance.now() - t0;
  return {
    m: plan.m,
    d,
    keys,
    rowsBefore: before,
    rowsAfter: table.R,
    laneBytesBefore: before * plan.m * 40,
    laneBytesAfter: table.R * plan.m * 40,
    growth: table.R / before,
    residentsMoved: moved,
    placeMs: round(ms, 1),
    attackerHashesPerKey: plan.m ** d,
  };
}

function roundBytes(r: KeywordRoundResult) {
  return { sent: r.bytesSent, received: r.bytesReceived };
}

export async function runKeywordBench(opts: KeywordBenchOptions = {}): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const coldKeys = opts.keys ?? 1_000_000;
  const hotKeys = opts.hotKeys ?? 200_000;
  const log = opts.log ?? (() => {});
  const lines: string[] = [];
  const figures: Record<string, unknown> = {};

  // 1. Placement load by simulation: fill until the first key finds no slot.
  log('  placement simulations ...');
  const sims: Record<string, unknown>[] = [];
  for (const [m, R] of [
    [16384, 64],
    [4096, 256],
    [1024, 1024],
  ] as const) {
    for (const d of [1, 2, 3]) {
      const s = simulateLoad(m, R, d);
      sims.push({ m, R, d, ...s, load: round(s.load, 4), usPerInsert: round(s.usPerInsert, 2) });
    }
  }
  figures.placementSimulation = sims;
  lines.push('keyword — placement: load reached when the first key finds no slot (random keys, d-choice + relocation)');
  for (const s of sims as { m: number; R: number; d: number; load: number; maxColumn: number; relocations: number; usPerInsert: number }[]) {
    lines.push(`  m ${String(s.m).padStart(5)} x R ${String(s.R).padStart(4)}, d ${s.d}: load ${fmt(s.load * 100, 1)}%  (${s.relocations} relocations, ${fmt(s.usPerInsert, 2)} us/insert)`);
  }

  // 2. Grinding: 1,000 keys whose candidates all hit one column, on lanes planned like ours.
  log('  grinding simulations ...');
  const grind = [
    grindingCost(64, 2000, 3, 1000),
    grindingCost(16384, 1_000_000, 2, 1000),
    grindingCost(16384, 1_000_000, 3, 1000),
    grindingCost(1024, 891_000, 2, 1000), // columns of 1024 rows, as large lanes get
  ];
  figures.grinding = grind;
  lines.push('  grinding: 1,000 keys with every candidate in one column (all placed):');
  for (const g of grind) {
    lines.push(
      `    m ${g.m}, d ${g.d}, ${g.keys} keys: R ${g.rowsBefore} -> ${g.rowsAfter} (lane x${fmt(g.growth!, 2)}, +${fmt((g.laneBytesAfter! - g.laneBytesBefore!) / 2 ** 20, 1)} MiB; server work per pass grows alike), ` +
        `${g.residentsMoved} residents moved, ${fmtMs(g.placeMs!, 0)}; attacker: ~${g.attackerHashesPerKey!.toExponential(1)} hashes per key`,
    );
  }

  const root = tempDataDir('lanepir-bench-keyword-');
  try {
    const data = path.join(root, 'data');
    // 3. Full build, both lanes, plus an index lane of the same values as the reference.
    log(`  full build: hot ${hotKeys} keys, cold ${coldKeys} keys ...`);
    const cache = new PlacementCache();
    const t0 = performance.now();
    const built = await buildGeneration({
      data,
      block: 1,
      publish: true,
      placementCache: cache,
      lanes: { hot: { layout: 'keyword', records: () => records('hot', hotKeys) }, cold: { layout: 'keyword', records: () => records('cold', coldKeys) } },
    });
    const buildMs = performance.now() - t0;
    const gen1 = await loadGeneration(built.dir);
    const laneFig = (l: LaneName) => {
      const c = gen1.lanes[l]!.crs;
      const keys = l === 'hot' ? hotKeys : coldKeys;
      return { keys, m: c.m, R: c.R, d: c.bucket_choices!, load: round(keys / c.entries, 4), laneMiB: round((c.entries * 40) / 2 ** 20, 1), hintMiB: round((40 * c.R * c.n * 4) / 2 ** 20, 1), queryBytes: c.m * 4, answerBytes: 40 * c.R * 4 };
    };
    figures.lanes = { hot: laneFig('hot'), cold: laneFig('cold') };
    figures.build = { keys: hotKeys + coldKeys, ms: round(buildMs, 0), keysPerSecond: Math.round(((hotKeys + coldKeys) / buildMs) * 1000) };
    lines.push(`  full build of ${hotKeys + coldKeys} keys (both lanes, shards + hint + placement index): ${fmt(buildMs / 1000, 1)} s = ${Math.round(((hotKeys + coldKeys) / buildMs) * 1000)} keys/s`);
    for (const l of ['hot', 'cold'] as const) {
      const f = (figures.lanes as Record<string, ReturnType<typeof laneFig>>)[l];
      lines.push(`  ${l}: ${f.keys} keys, d ${f.d}, m ${f.m}, R ${f.R}, load ${fmt(f.load * 100, 1)}%, lane ${f.laneMiB} MiB, hint ${f.hintMiB} MiB, query ${f.queryBytes} B, answer ${f.answerBytes} B`);
    }
    const refData = path.join(root, 'index');
    await buildGeneration({ data: refData, block: 1, lanes: { cold: { source: new SyntheticSource('cold', coldKeys, 32, 1), m: 16384 } } });
    const indexLane = (await loadGeneration(generationDir(refData, 1))).lanes.cold!;

    // 4. Incremental block: 2,000 changed keys on the cold lane: 200 inserts, 1,700 value changes, 100 deletes.
    // Changed keys spread over the lane like a real block's (records placed in input order sit in
    // neighbouring rows, so a run of record numbers would touch only a few shards).
    const block = (b: number): KeywordChange[] => {
      const out: KeywordChange[] = [];
      for (const r of records('cold-new', 200, b * 200)) out.push(r);
      for (let i = 0; i < 1800; i++) {
        const n = crypto.createHash('sha256').update(`block ${b} change ${i}`).digest().readUInt32LE(0) % coldKeys;
        const r = records('cold', 1, n).next().value!;
        out.push({ key: r.key, value: i < 1700 ? crypto.randomBytes(32) : null });
      }
      return out;
    };
    const inc = async (b: number, withCache: boolean) => {
      const t = performance.now();
      const r = await buildIncremental({ data, block: b, from: String(b - 1), updates: {}, keywordChanges: { cold: block(b) }, ...(withCache ? { placementCache: cache } : {}), publish: true });
      return { ms: performance.now() - t, stats: r.stats.cold! };
    };
    log('  incremental blocks ...');
    const cached = await inc(2, true);
    const cached2 = await inc(3, true);
    const fromDisk = await inc(4, false);
    // The placement part alone: read the index back, and turn a block's key changes into entry changes.
    const gen3 = await loadGeneration(generationDir(data, 3));
    let t1 = performance.now();
    const table = await loadPlacement(gen3.lanes.cold!, gen3.dir);
    const loadPlacementMs = performance.now() - t1;
    t1 = performance.now();
    await planKeywordChanges(gen3.lanes.cold!, table, block(99));
    const planMs = performance.now() - t1;
    figures.incremental = {
      loadPlacementMs: round(loadPlacementMs, 0),
      planChangesMs: round(planMs, 0),
      changes: 2000,
      inserts: 200,
      cachedMs: [round(cached.ms, 0), round(cached2.ms, 0)],
      placementFromDiskMs: round(fromDisk.ms, 0),
      stats: cached2.stats,
    };
    lines.push(
      `  incremental block, 2,000 changed keys (200 inserts, 1,700 changes, 100 deletes) on the ${coldKeys}-key lane: ${fmtMs(Math.min(cached.ms, cached2.ms), 0)} with the placement in memory (follow mode), ` +
        `${fmtMs(fromDisk.ms, 0)} reading it from disk; ${cached2.stats.writtenShards} shards written, ${cached2.stats.linkedShards} linked`,
    );
    lines.push(`    of which placement: reading the placement index ${fmtMs(loadPlacementMs, 0)}, key changes -> entry changes ${fmtMs(planMs, 0)}; the rest is shards, hint, diff and fsyncs`);

    // 5. Server kernel: one keyword lookup = d queries in one pass, against one index query (K=1) on the index lane of the same values.
    log('  kernel passes ...');
    const gen = await loadGeneration(generationDir(data, 4));
    const kernel: Record<string, number> = {};
    for (const l of ['hot', 'cold'] as const) {
      const h = await openLane(gen.lanes[l]!, 'mmap');
      try {
        await h.warm();
        kernel[`${l}K1`] = summarize(await timeKernelPasses(h, 1, 5)).p50;
        kernel[`${l}Kd`] = summarize(await timeKernelPasses(h, gen.lanes[l]!.crs.bucket_choices!, 5)).p50;
        kernel[`${l}K16`] = summarize(await timeKernelPasses(h, 16, 3)).p50;
      } finally {
        await h.release();
      }
    }
    const ih = await openLane(indexLane, 'mmap');
    try {
      await ih.warm();
      kernel.indexK1 = summarize(await timeKernelPasses(ih, 1, 5)).p50;
    } finally {
      await ih.release();
    }
    figures.kernelMs = Object.fromEntries(Object.entries(kernel).map(([k, v]) => [k, round(v, 2)]));
    const dCold = gen.lanes.cold!.crs.bucket_choices!;
    const dHot = gen.lanes.hot!.crs.bucket_choices!;
    lines.push(`  server, one lookup: cold ${dCold} queries in one pass ${fmtMs(kernel.coldKd!)} vs one index query on ${coldKeys} x 32 B ${fmtMs(kernel.indexK1!)} = ${fmtRatio(kernel.coldKd! / kernel.indexK1!)}`);
    lines.push(`                      (per query in a full batch of 16: ${fmtMs(kernel.coldK16! / 16)}; a lookup's d queries there cost ${fmtRatio((dCold * kernel.coldK16!) / 16 / kernel.indexK1!)} one index query)`);
    lines.push(`                      hot ${dHot} queries in one pass ${fmtMs(kernel.hotKd!)}; with hiding a lookup costs hot + cold = ${fmtMs(kernel.hotKd! + kernel.coldKd!)} = ${fmtRatio((kernel.hotKd! + kernel.coldKd!) / kernel.indexK1!)} one index query`);

    // 6. Lookups through a server (in this process), hiding on and off.
    log('  lookups through a server ...');
    const config = loadConfig({ flags: { data_dir: data, host: '127.0.0.1', port: 0, admin_host: '127.0.0.1', admin_port: 0, log_level: 'silent' } });
    const server = await startServer(config);
    try {
      const reader = new KeywordReader({ url: server.publicUrl });
      const present = [...records('cold', 50, 5000)].map((r) => r.key);
      const hotPresent = [...records('hot', 50, 5000)].map((r) => r.key);
      await reader.lookupRound({ hot: [hotPresent[0]!], cold: [present[0]!] }); // hints
      const measure = async (name: string, keys: Record<string, Uint8Array[]>, hide: boolean, runs = 5) => {
        const rs: KeywordRoundResult[] = [];
        const wall: number[] = [];
        const online: number[] = [];
        const k = Object.values(keys).reduce((n, l) => n + l.length, 0);
        for (let i = 0; i < runs; i++) {
          const t = performance.now();
          rs.push(await reader.lookupRound(keys, { hide }));
          wall.push(performance.now() - t);
          // The same round with its query secrets prepared ahead (PirClient.prepare in idle time): the online cost.
          for (const l of ['hot', 'cold'] as const) {
            if (!hide && !(keys[l]?.length)) continue;
            const { client } = await reader.lane(l).current();
            await client.prepare((hide ? k : keys[l]!.length) * client.crs.bucket_choices!);
          }
          const t2 = performance.now();
          await reader.lookupRound(keys, { hide });
          online.push(performance.now() - t2);
        }
        const med = (f: (r: KeywordRoundResult) => number) => summarize(rs.map(f)).p50;
        return {
          name,
          hide,
          totalMs: round(summarize(wall).p50, 1),
          onlineMs: round(summarize(online).p50, 1),
          clientMs: round(med((r) => r.timings.query + r.timings.decode), 1),
          queryMs: round(med((r) => r.timings.query), 1),
          decodeMs: round(med((r) => r.timings.decode), 1),
          networkAndServerMs: round(med((r) => r.timings.network), 1),
          bytes: roundBytes(rs[0]!),
          queries: rs[0]!.queries,
        };
      };
      const rounds = [
        await measure('hot key', { hot: [hotPresent[1]!] }, true),
        await measure('hot key', { hot: [hotPresent[1]!] }, false),
        await measure('cold key', { cold: [present[1]!] }, true),
        await measure('cold key', { cold: [present[1]!] }, false),
        await measure('wallet open (1 account + 13 token balances)', { cold: [present[2]!], hot: hotPresent.slice(10, 23) }, true, 2),
        await measure('wallet open (1 account + 13 token balances)', { cold: [present[2]!], hot: hotPresent.slice(10, 23) }, false, 2),
      ];
      // Reference: one index query (query + decode) on the index lane of the same values.
      const ic = await PirClient.create(indexLane.crs, new Uint8Array(await fsp.readFile(indexLane.hintPath)));
      await ic.prepare(1);
      const ih2 = await openLane(indexLane, 'mmap');
      const idx: number[] = [];
      try {
        for (let i = 0; i < 5; i++) {
          const t = performance.now();
          const { query, state } = await ic.query(crypto.randomInt(indexLane.crs.entries));
          const tq = performance.now() - t;
          const [ans] = await ih2.answer([littleEndianWords(query)]);
          const t2 = performance.now();
          ic.decode(new Uint8Array(ans!.buffer, ans!.byteOffset, ans!.byteLength), state);
          idx.push(tq + performance.now() - t2);
        }
      } finally {
        await ih2.release();
      }
      const indexClientMs = summarize(idx).p50;
      const indexBytes = { sent: indexLane.crs.m * 4, received: indexLane.crs.entry_size * indexLane.crs.R * 4 };
      figures.lookups = rounds;
      figures.reference = { indexQuery: { clientMs: round(indexClientMs, 1), bytes: indexBytes, kernelMs: round(kernel.indexK1!, 2), values: coldKeys } };
      lines.push(`  lookups through the server (p50; client = query + decode; reference: one index query ${fmtMs(indexClientMs, 1)} client, ${indexBytes.sent} B up / ${indexBytes.received} B down):`);
      for (const r of rounds) {
        lines.push(
          `    ${r.name.padEnd(45)} hiding ${r.hide ? 'on ' : 'off'}: ${fmtMs(r.totalMs, 1).padStart(9)} total (${fmtMs(r.onlineMs, 1)} with secrets prepared ahead), client ${fmtMs(r.clientMs, 1)} (${fmtRatio(r.clientMs / indexClientMs)}; decode ${fmtMs(r.decodeMs, 1)}), ` +
            `network+server ${fmtMs(r.networkAndServerMs, 1)}, ${r.bytes.sent} B up (${fmtRatio(r.bytes.sent / indexBytes.sent)}) / ${r.bytes.received} B down, queries ${JSON.stringify(r.queries)}`,
        );
      }
    } finally {
      await server.close();
    }
  } finally {
    removeDir(root);
  }
  return { figures, lines };
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const num = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? Number(argv[i + 1]) : undefined;
  };
  runKeywordBench({ keys: num('--keys'), hotKeys: num('--hot-keys'), log: (l) => process.stderr.write(`${l}\n`) }).then(
    ({ figures, lines }) => {
      if (argv.includes('--json')) process.stdout.write(JSON.stringify(figures) + '\n');
      else for (const l of lines) process.stdout.write(`${l}\n`);
    },
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
