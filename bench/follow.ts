// Follow-mode benchmark: block-to-served latency end to end. A published
// generation (hot lane 2^20 x 32 B, cold lane 2^22 x 32 B by default), a
// `lanepir serve --workers 2` cluster on it, and a Follower in this process
// pointed at the cluster's admin API. Block files `<block>.jsonl` (about 100
// random changes each) are dropped one at a time (written under a temporary
// name, then renamed); each measures the time from the rename to the
// follower's 'reloaded' event for that block, split into the incremental
// build (the follower's 'built' event) and the rest (debounce, detection,
// publish, cluster reload). Then a burst of blocks dropped at once: the time
// until the newest is served and how many reloads it took.
//
// References measured in the same run, on the same data directory and the
// same cluster (after the follower is stopped): the incremental build alone
// (buildIncremental from the head, same kind of changes), POST /admin/reload
// to such a new generation, and the bare cluster reload between two
// generations every worker already holds (a swap).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pino } from 'pino';
import { Follower, type FollowerEvents } from '../src/follow/follower.js';
import { parseUpdates } from '../src/follow/updates.js';
import { resolveGeneration } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type LaneName, generationBlock } from '../src/store/layout.js';
import {
  type BenchData,
  type ClusterProcess,
  HOT_SHAPE,
  type LaneShape,
  type Log,
  buildBenchData,
  describeLanes,
  fmt,
  fmtMs,
  fmtRatio,
  httpRequest,
  parseJson,
  passFail,
  postReload,
  removeDir,
  round,
  roundSummary,
  sleep,
  startClusterProcess,
  summarize,
  tempDataDir,
  withDeadline,
} from './util.js';

export interface FollowBenchOptions {
  /** Blocks dropped one at a time and measured (default 20). */
  blocks?: number;
  /** Changes per block file, split at random between the lanes (default 100). */
  changesPerBlock?: number;
  /** Blocks dropped at once for the burst (default 10). */
  burst?: number;
  /** Entries of the cold lane (default 2^22, 128 MiB at 32 B). */
  coldEntries?: number;
  workers?: number;
  /** The follower's debounce (default 200 ms, the `lanepir follow` default). */
  debounceMs?: number;
  /** Standalone incremental builds (and reloads to them) for the reference (default 10). */
  referenceBuilds?: number;
  /** Swap reloads for the reference (default 20). */
  reloads?: number;
  log: Log;
}

/** Pause after each block is served before the next is dropped: the follower finishes its prune and goes idle (a real chain has 12 s between blocks). */
const SETTLE_MS = 500;
const BLOCK_DEADLINE_MS = 60_000;
const BURST_DEADLINE_MS = 180_000;

type Reloaded = FollowerEvents['reloaded'];
type Built = FollowerEvents['built'];

/** JSON Lines text of `count` random changes over the lanes' entry ranges. */
function blockText(count: number, lanes: Partial<Record<LaneName, LaneShape>>): string {
  const names = Object.keys(lanes) as LaneName[];
  let text = '';
  for (let i = 0; i < count; i++) {
    const lane = names[crypto.randomInt(names.length)]!;
    const shape = lanes[lane]!;
    text += `${JSON.stringify({ lane, index: crypto.randomInt(shape.entries), value: `0x${crypto.randomBytes(shape.entrySize).toString('hex')}` })}\n`;
  }
  return text;
}

const num = (x: unknown) => (typeof x === 'number' ? x : NaN);

export async function runFollowBench(opts: FollowBenchOptions): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const blocks = opts.blocks ?? 20;
  const perBlock = opts.changesPerBlock ?? 100;
  const burst = opts.burst ?? 10;
  const workers = opts.workers ?? 2;
  const debounceMs = opts.debounceMs ?? 200;
  const refBuilds = opts.referenceBuilds ?? 10;
  const swaps = opts.reloads ?? 20;
  const lanes: Partial<Record<LaneName, LaneShape>> = {
    hot: HOT_SHAPE,
    cold: { entries: opts.coldEntries ?? 4_194_304, entrySize: HOT_SHAPE.entrySize, m: HOT_SHAPE.m },
  };

  opts.log(`  building generation 1 (${describeLanes(lanes)}) ...`);
  const data: BenchData = await buildBenchData({ lanes, blocks: [1], log: opts.log, prefix: 'lanepir-bench-follow-' });
  const updatesDir = tempDataDir('lanepir-bench-follow-updates-');
  let cluster: ClusterProcess | undefined;
  let follower: Follower | undefined;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    cluster = await startClusterProcess({ data: data.data, workers, shardSize: data.shardSize });
    const adminUrl = cluster.adminUrl;
    const c = cluster;
    const withOutput = (err: unknown) => new Error(`${(err as Error).message}\ncluster output (tail):\n${c.output().slice(-4000)}`);

    // ---- the follower, in this process ----
    follower = new Follower({ data: data.data, updatesDir, admin: { url: adminUrl, token: undefined }, logger: pino({ level: 'silent' }), debounceMs, pollMs: 1000, retain: 32 });
    const built = new Map<number, Built>();
    const reloaded: (Reloaded & { at: number })[] = [];
    const refused: FollowerEvents['refused'][] = [];
    let waiter: { block: number; resolve: (r: Reloaded & { at: number }) => void; reject: (e: Error) => void } | undefined;
    follower.on('built', (e: Built) => built.set(e.block, e));
    follower.on('reloaded', (e: Reloaded) => {
      const r = { ...e, at: performance.now() };
      reloaded.push(r);
      if (waiter && e.block >= waiter.block) {
        waiter.resolve(r);
        waiter = undefined;
      }
    });
    follower.on('refused', (e: FollowerEvents['refused']) => {
      refused.push(e);
      waiter?.reject(new Error(`follower refused ${e.file}: ${e.error}`));
      waiter = undefined;
    });
    const served = (block: number) =>
      new Promise<Reloaded & { at: number }>((resolve, reject) => {
        waiter = { block, resolve, reject };
      });
    await follower.start();
    await sleep(SETTLE_MS); // the start-up scan (nothing to do) is over
    const head0 = (await resolveGeneration(data.data)).id;
    let next = generationBlock(head0) + 1;

    /** Writes `<block>.jsonl` under a temporary name (not an update file name); returns the rename. */
    const stage = (block: number) => {
      const final = path.join(updatesDir, `${block}.jsonl`);
      const tmp = `${final}.tmp`;
      fs.writeFileSync(tmp, blockText(perBlock, lanes));
      return () => fs.renameSync(tmp, final);
    };

    // ---- one block at a time ----
    const totalMs: number[] = [];
    const buildMs: number[] = [];
    const restMs: number[] = [];
    const primaryReloadMs: number[] = [];
    const publishToSwitchMs: number[] = [];
    const followerOwnMs: number[] = [];
    for (let i = 0; i < blocks; i++) {
      const block = next++;
      const drop = stage(block);
      const done = served(block);
      const t0 = performance.now();
      drop();
      const r = await withDeadline(done, BLOCK_DEADLINE_MS, `block ${block} served`).catch((err) => {
        throw withOutput(err);
      });
      if (r.block !== block) throw new Error(`expected block ${block} to be served, got ${r.block}`);
      const b = built.get(block);
      if (!b) throw new Error(`block ${block} served without a 'built' event`);
      const total = r.at - t0;
      totalMs.push(total);
      buildMs.push(b.ms);
      restMs.push(total - b.ms);
      const body = r.reload as Record<string, unknown>;
      primaryReloadMs.push(num(body?.reload_duration_ms));
      if (typeof body?.publish_to_switch_ms === 'number') publishToSwitchMs.push(body.publish_to_switch_ms);
      followerOwnMs.push(r.blockToServedMs);
      await sleep(SETTLE_MS);
    }
    const tot = summarize(totalMs);
    const bld = summarize(buildMs);
    const rest = summarize(restMs);
    opts.log(`  ${blocks} blocks one at a time: block-to-served p50 ${fmtMs(tot.p50, 1)} p99 ${fmtMs(tot.p99, 1)} (build p50 ${fmtMs(bld.p50, 1)})`);

    // ---- a burst ----
    const first = next;
    const drops = Array.from({ length: burst }, () => stage(next++));
    const newest = next - 1;
    const reloadsBefore = reloaded.length;
    const builtBefore = built.size;
    const done = served(newest);
    const t0 = performance.now();
    for (const drop of drops) drop();
    const dropMs = performance.now() - t0;
    const r = await withDeadline(done, BURST_DEADLINE_MS, `burst up to block ${newest} served`).catch((err) => {
      throw withOutput(err);
    });
    const burstMs = r.at - t0;
    // Anything still scheduled (there should be nothing: the newest is served).
    await sleep(debounceMs + SETTLE_MS);
    const burstReloads = reloaded.slice(reloadsBefore);
    const burstFigures = {
      blocks: burst,
      firstBlock: first,
      newestBlock: newest,
      dropMs: round(dropMs),
      newestServedMs: round(burstMs, 1),
      reloads: burstReloads.length,
      reloadedBlocks: burstReloads.map((x) => x.block),
      builds: built.size - builtBefore,
      buildMsSum: round([...built.values()].filter((x) => x.block >= first).reduce((a, x) => a + x.ms, 0), 1),
      followerOwnMs: r.blockToServedMs,
    };
    opts.log(`  burst of ${burst}: newest served after ${fmtMs(burstMs, 0)}, ${burstReloads.length} reload(s)`);
    if (refused.length) throw new Error(`the follower refused update files: ${JSON.stringify(refused)}`);

    // Every worker serves the newest.
    const g = parseJson(await httpRequest(`${adminUrl}/admin/generations`, { timeoutMs: 10_000 }));
    const serving = (g.workers as { serving?: string | null }[]).map((w) => w.serving);
    if (serving.length !== workers || serving.some((s) => s == null || generationBlock(s) !== newest)) {
      throw new Error(`after the burst the workers serve ${JSON.stringify(serving)}, not block ${newest}`);
    }
    await follower.stop();
    follower = undefined;

    // ---- references: the same steps without the follower ----
    const head = (await resolveGeneration(data.data)).id;
    const headInfo = await data.info(head);
    const entrySizes = Object.fromEntries(Object.values(headInfo.lanes).map((l) => [l.lane, l.crs.entry_size])) as Partial<Record<LaneName, number>>;
    const aloneMs: number[] = [];
    const refIds: string[] = [];
    for (let i = 0; i < refBuilds; i++) {
      const block = next++;
      const updates = await parseUpdates(blockText(perBlock, lanes), `${block}.jsonl`, entrySizes);
      const res = await buildIncremental({ data: data.data, block, from: head, updates });
      aloneMs.push(res.durationMs);
      refIds.push(res.manifest.generation);
    }
    const alone = summarize(aloneMs);
    opts.log(`  incremental build alone: p50 ${fmtMs(alone.p50, 1)}`);
    const newHttp: number[] = [];
    const newServer: number[] = [];
    for (const id of refIds) {
      const rr = await postReload(adminUrl, id, agent);
      if (rr.body.new_generation !== id) throw new Error(`reload to ${id} answered ${JSON.stringify(rr.body)}`);
      newHttp.push(rr.ms);
      newServer.push(num(rr.body.reload_duration_ms));
    }
    const newGen = summarize(newHttp);
    // The last two are held by every worker (retain_generations >= 1): a swap.
    const pair = refIds.slice(-2);
    const swapHttp: number[] = [];
    const swapServer: number[] = [];
    const swapP2s: number[] = [];
    for (let i = 0; i < swaps; i++) {
      const target = pair[i % 2]!;
      const rr = await postReload(adminUrl, target, agent);
      if (rr.body.new_generation !== target || rr.body.unchanged) throw new Error(`swap reload to ${target} answered ${JSON.stringify(rr.body)}`);
      swapHttp.push(rr.ms);
      swapServer.push(num(rr.body.reload_duration_ms));
      if (typeof rr.body.publish_to_switch_ms === 'number') swapP2s.push(rr.body.publish_to_switch_ms);
    }
    const swap = summarize(swapHttp);
    opts.log(`  reload to a new generation p50 ${fmtMs(newGen.p50, 1)}; swap p50 ${fmtMs(swap.p50)}`);

    const floorP50 = debounceMs + alone.p50 + newGen.p50;
    const targets = {
      burstReloads: { value: burstReloads.length, target: `<= 2 reloads for ${burst} blocks dropped at once`, pass: burstReloads.length >= 1 && burstReloads.length <= 2 },
    };
    const figures = {
      workers,
      lanes,
      laneBytes: data.bytes,
      changesPerBlock: perBlock,
      debounceMs,
      settleMs: SETTLE_MS,
      perBlock: {
        blocks,
        blockToServedMs: roundSummary(tot, 1),
        buildMs: roundSummary(bld, 1),
        restMs: roundSummary(rest, 1),
        primaryReloadMs: roundSummary(summarize(primaryReloadMs), 1),
        publishToSwitchMs: roundSummary(summarize(publishToSwitchMs), 3),
        followerOwnBlockToServedMs: roundSummary(summarize(followerOwnMs), 1),
      },
      burst: burstFigures,
      reference: {
        incrementalBuildAloneMs: roundSummary(alone, 1),
        reloadToNewGeneration: { httpMs: roundSummary(newGen, 1), serverMs: roundSummary(summarize(newServer), 1) },
        swap: { httpMs: roundSummary(swap), serverMs: roundSummary(summarize(swapServer)), publishToSwitchMs: roundSummary(summarize(swapP2s), 4) },
        debouncePlusBuildPlusNewReloadP50Ms: round(floorP50, 1),
      },
      ratios: {
        buildInFollowVsAloneP50: round(bld.p50 / alone.p50, 2),
        restVsSwapP50: round(rest.p50 / swap.p50, 1),
        blockToServedVsDebouncePlusBuildPlusReloadP50: round(tot.p50 / floorP50, 2),
      },
      targets,
    };
    const pr = figures.perBlock;
    const lines = [
      `follow — Follower in process + lanepir serve --workers ${workers}; ${describeLanes(lanes)}; ${perBlock} random changes per block; debounce ${debounceMs} ms`,
      `  ${blocks} blocks dropped one at a time (rename -> 'reloaded'; ${SETTLE_MS} ms pause after each is served):`,
      `    block-to-served   p50 ${fmtMs(tot.p50, 1)}  p99 ${fmtMs(tot.p99, 1)}  (max ${fmtMs(tot.max, 1)})`,
      `      build ('built')                          p50 ${fmtMs(bld.p50, 1)}  p99 ${fmtMs(bld.p99, 1)}`,
      `      rest (debounce, detect, publish, reload)  p50 ${fmtMs(rest.p50, 1)}  p99 ${fmtMs(rest.p99, 1)}; of it the primary's reload_duration_ms p50 ${fmtMs(pr.primaryReloadMs.p50, 1)} p99 ${fmtMs(pr.primaryReloadMs.p99, 1)}, publish->switch p50 ${fmtMs(pr.publishToSwitchMs.p50, 3)}`,
      `      the follower's own block_to_served_ms (from the scan that saw the file, after the debounce) p50 ${fmtMs(pr.followerOwnBlockToServedMs.p50, 1)} p99 ${fmtMs(pr.followerOwnBlockToServedMs.p99, 1)}`,
      `  references (same run, same data and cluster, follower stopped):`,
      `    incremental build alone (${perBlock} changes, from the head; ${refBuilds} runs)  p50 ${fmtMs(alone.p50, 1)}  p99 ${fmtMs(alone.p99, 1)}   -> build in follow / alone ${fmtRatio(figures.ratios.buildInFollowVsAloneP50)} (p50)`,
      `    POST /admin/reload to such a new generation (every worker maps + warms)  p50 ${fmtMs(newGen.p50, 1)}  p99 ${fmtMs(newGen.p99, 1)}`,
      `    bare cluster reload, swap between two held generations (${swaps})  POST->answer p50 ${fmtMs(swap.p50)}  p99 ${fmtMs(swap.p99)}   -> rest / swap ${fmtRatio(figures.ratios.restVsSwapP50)} (p50)`,
      `    debounce + build alone + new-generation reload = ${fmtMs(floorP50, 1)} (p50s)   -> block-to-served / that ${fmtRatio(figures.ratios.blockToServedVsDebouncePlusBuildPlusReloadP50)}`,
      `  burst: ${burst} blocks (${first}..${newest}) dropped at once (${fmtMs(dropMs, 1)} to rename): newest served after ${fmtMs(burstMs, 1)}; ${burstReloads.length} reload(s) (blocks ${burstFigures.reloadedBlocks.join(', ')}), ${burstFigures.builds} builds (${fmtMs(burstFigures.buildMsSum, 0)} building)`,
      `  ${passFail(targets.burstReloads.pass)} burst of ${burst} served with ${burstReloads.length} reload(s) <= 2`,
    ];
    return { figures, lines };
  } finally {
    agent.destroy();
    if (follower) await follower.stop().catch(() => {});
    if (cluster) await cluster.stop();
    data.cleanup();
    removeDir(updatesDir);
  }
}
