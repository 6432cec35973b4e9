// Cluster benchmark (issue 4): `lanepir serve --workers 2` over the large
// mmap generations — reload latency from the POST to its answer and the
// primary's publish-to-last-switch time — and queries/s of the 2-worker
// cluster against one process (startServer) on the same lanes, in the same run.
import fs from 'node:fs';
import http from 'node:http';
import { type LaneName, generationDir } from '../src/store/layout.js';
import { type BenchData, type LoadResult, type Log, cloneGeneration, fmt, fmtMs, fmtRatio, passFail, postLoad, postReload, round, roundSummary, startClusterProcess, startServerProcess, summarize } from './util.js';
import { loadLine, verifyLookup } from './server.js';

export const TARGET_RELOAD_P99_MS = 10;
export const TARGET_PUBLISH_TO_SWITCH_MS = 1;

export interface ClusterBenchOptions {
  data: BenchData;
  workers?: number;
  reloads?: number;
  /** Seconds of load per lane and server (default 5). */
  seconds?: number;
  log: Log;
}

const LOAD_CONNECTIONS = 16;

/** Queries/s on both lanes of a running server (cluster or single), each checked once for a correct decode. */
async function throughput(url: string, data: BenchData, g: string, seconds: number, log: Log, label: string) {
  const out: Partial<Record<LaneName, LoadResult & { correct: boolean }>> = {};
  for (const lane of ['hot', 'cold'] as const) {
    const check = await verifyLookup(url, lane, data, g);
    if (!check.ok) throw new Error(`cluster bench (${label}): decoded ${lane} entry ${check.index} does not match the plaintext`);
    const target = `${url}/query/${lane}?generation=${g}`;
    if (lane === 'hot') await postLoad({ url: target, body: check.query, connections: LOAD_CONNECTIONS, seconds: 1 }); // warm-up
    const r = await postLoad({ url: target, body: check.query, connections: LOAD_CONNECTIONS, seconds });
    log(`  ${label} ${lane}: ${fmt(r.qps, 1)} q/s, p50 ${fmtMs(r.latencyMs.p50)}`);
    out[lane] = { ...r, qps: round(r.qps, 1), correct: check.ok };
  }
  return out as Record<LaneName, LoadResult & { correct: boolean }>;
}

export async function runClusterBench(opts: ClusterBenchOptions): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const workers = opts.workers ?? 2;
  const count = opts.reloads ?? 20;
  const seconds = opts.seconds ?? 5;
  const gens = opts.data.generations.slice(0, 2);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const cluster = await startClusterProcess({ data: opts.data.data, workers, shardSize: opts.data.shardSize });
  let reloadFigures;
  let clusterQps;
  try {
    // The first reload to each generation maps and warms it in every worker; later ones are swaps.
    const first = await postReload(cluster.adminUrl, gens[1]!, agent);
    let notSwitched = 0;
    await postReload(cluster.adminUrl, gens[0]!, agent);
    opts.log(`  first cluster reload (map + warm in ${workers} workers): ${fmtMs(first.ms)}`);
    const httpMs: number[] = [];
    const serverMs: number[] = [];
    const p2s: number[] = [];
    for (let i = 0; i < count; i++) {
      const target = gens[(i + 1) % 2]!;
      const r = await postReload(cluster.adminUrl, target, agent);
      const ws = r.body.workers as { switched: boolean }[];
      if (r.body.new_generation !== target || ws.length !== workers) throw new Error(`cluster reload to ${target}: ${JSON.stringify(r.body)}`);
      notSwitched += ws.filter((w) => !w.switched).length;
      httpMs.push(r.ms);
      serverMs.push(r.body.reload_duration_ms as number);
      if (typeof r.body.publish_to_switch_ms === 'number') p2s.push(r.body.publish_to_switch_ms);
    }
    const h = summarize(httpMs);
    const s = summarize(serverMs);
    const p = summarize(p2s);
    opts.log(`  cluster swap p50 ${fmtMs(h.p50)}, publish->switch p50 ${fmtMs(p.p50, 3)}`);
    clusterQps = await throughput(cluster.url, opts.data, gens[0]!, seconds, opts.log, `cluster(${workers})`);

    // Reloads to generation ids no worker has served yet (hard-linked clones):
    // each is prepared (mapped + warmed) by every worker, then published.
    const freshHttp: number[] = [];
    const freshServer: number[] = [];
    const freshP2s: number[] = [];
    const freshCount = Math.min(count, 10);
    for (let i = 0; i < freshCount; i++) {
      const id = String(1000 + i);
      if (!fs.existsSync(generationDir(opts.data.data, id))) cloneGeneration(opts.data.data, gens[i % 2]!, id);
      const r = await postReload(cluster.adminUrl, id, agent);
      const ws = r.body.workers as { switched: boolean }[];
      if (r.body.new_generation !== id || ws.length !== workers) throw new Error(`cluster reload to ${id}: ${JSON.stringify(r.body)}`);
      notSwitched += ws.filter((w) => !w.switched).length;
      freshHttp.push(r.ms);
      freshServer.push(r.body.reload_duration_ms as number);
      if (typeof r.body.publish_to_switch_ms === 'number') freshP2s.push(r.body.publish_to_switch_ms);
    }
    const fh = summarize(freshHttp);
    const fp = summarize(freshP2s);
    opts.log(`  cluster reload to new ids p50 ${fmtMs(fh.p50)}, publish->switch p50 ${fmtMs(fp.p50, 3)}`);
    reloadFigures = {
      firstMapMs: round(first.ms),
      swap: { httpMs: roundSummary(h), serverMs: roundSummary(s), publishToSwitchMs: roundSummary(p, 4) },
      newGeneration: { httpMs: roundSummary(fh), serverMs: roundSummary(summarize(freshServer)), publishToSwitchMs: roundSummary(fp, 4) },
      workersNotSwitched: notSwitched,
    };
  } finally {
    agent.destroy();
    await cluster.stop();
  }

  // The same cluster with one kernel thread per worker (2 workers x all threads oversubscribe the cores).
  const oneThread = await startClusterProcess({ data: opts.data.data, workers, shardSize: opts.data.shardSize, env: { LANEPIR_KERNEL_THREADS: '1' } });
  let oneThreadQps;
  try {
    oneThreadQps = await throughput(oneThread.url, opts.data, gens[0]!, seconds, opts.log, `cluster(${workers}, kernel_threads 1)`);
  } finally {
    await oneThread.stop();
  }

  const single = await startServerProcess({
    data_dir: opts.data.data,
    host: '127.0.0.1',
    admin_host: '127.0.0.1',
    port: 0,
    admin_port: 0,
    log_level: 'silent',
    shard_size_bytes: opts.data.shardSize,
  });
  let singleQps;
  try {
    singleQps = await throughput(single.publicUrl, opts.data, gens[0]!, seconds, opts.log, 'single');
  } finally {
    await single.stop();
  }

  const r = reloadFigures;
  // The targets are about the swap: reloads between generations every worker holds (mapped and
  // warm). Reloads to new ids are reported too: their switch competes with the unmapping of the
  // generation that retires.
  const targets = {
    reloadP99EndToEnd: { value: r.swap.httpMs.p99, target: `< ${TARGET_RELOAD_P99_MS} ms`, pass: r.swap.httpMs.p99 < TARGET_RELOAD_P99_MS },
    publishToSwitchP99: { value: r.swap.publishToSwitchMs.p99, target: `< ${TARGET_PUBLISH_TO_SWITCH_MS} ms`, pass: r.swap.publishToSwitchMs.p99 < TARGET_PUBLISH_TO_SWITCH_MS },
  };
  const ratios = {
    hotQpsClusterVsSingle: round(clusterQps.hot.qps / singleQps.hot.qps),
    coldQpsClusterVsSingle: round(clusterQps.cold.qps / singleQps.cold.qps),
    hotQpsClusterOneThreadVsSingle: round(oneThreadQps.hot.qps / singleQps.hot.qps),
    coldQpsClusterOneThreadVsSingle: round(oneThreadQps.cold.qps / singleQps.cold.qps),
  };
  const figures = {
    workers,
    laneGiB: round(opts.data.bytes / 2 ** 30, 3),
    reload: reloadFigures,
    targets,
    throughput: { connections: LOAD_CONNECTIONS, secondsEach: seconds, cluster: clusterQps, clusterKernelThreads1: oneThreadQps, single: singleQps },
    ratios,
  };
  const lines = [
    `cluster — lanepir serve --workers ${workers}, mmap, ${fmt(opts.data.bytes / 2 ** 30, 2)} GiB of lanes per generation`,
    `  reload, ${count} alternating ${gens.join(' <-> ')} (both held by every worker):`,
    `    POST->answer  p50 ${fmtMs(r.swap.httpMs.p50)}  p99 ${fmtMs(r.swap.httpMs.p99)}   (primary's reload_duration_ms p50 ${fmtMs(r.swap.serverMs.p50)} p99 ${fmtMs(r.swap.serverMs.p99)})`,
    `    publish -> last worker switched  p50 ${fmtMs(r.swap.publishToSwitchMs.p50, 3)}  p99 ${fmtMs(r.swap.publishToSwitchMs.p99, 3)}`,
    `  reload to ${r.newGeneration.httpMs.n} new generation ids (hard-linked clones; every worker maps + warms, then the publish):`,
    `    POST->answer  p50 ${fmtMs(r.newGeneration.httpMs.p50)}  p99 ${fmtMs(r.newGeneration.httpMs.p99)}`,
    `    publish -> last worker switched  p50 ${fmtMs(r.newGeneration.publishToSwitchMs.p50, 3)}  p99 ${fmtMs(r.newGeneration.publishToSwitchMs.p99, 3)}`,
    `  first reload to generation ${gens[1]} (map + warm in every worker): ${fmtMs(r.firstMapMs)}${r.workersNotSwitched ? `; ${r.workersNotSwitched} worker switch confirmations missing` : ''}`,
    `  ${passFail(targets.reloadP99EndToEnd.pass)} reload p99 end to end (swap) ${fmtMs(r.swap.httpMs.p99)} < ${TARGET_RELOAD_P99_MS} ms; ${passFail(targets.publishToSwitchP99.pass)} publish->switch p99 (swap) ${fmtMs(r.swap.publishToSwitchMs.p99, 3)} < ${TARGET_PUBLISH_TO_SWITCH_MS} ms`,
    `  throughput, ${LOAD_CONNECTIONS} connections, ${seconds} s each (decoded answers checked on both lanes and servers):`,
    loadLine(`    hot  cluster(${workers}):`.padEnd(30), clusterQps.hot),
    loadLine(`    hot  cluster(${workers}) 1 thread:`.padEnd(30), oneThreadQps.hot),
    loadLine('    hot  single process:'.padEnd(30), singleQps.hot),
    loadLine(`    cold cluster(${workers}):`.padEnd(30), clusterQps.cold),
    loadLine(`    cold cluster(${workers}) 1 thread:`.padEnd(30), oneThreadQps.cold),
    loadLine('    cold single process:'.padEnd(30), singleQps.cold),
    `  ratios: cluster / single q/s — hot ${fmtRatio(ratios.hotQpsClusterVsSingle)}, cold ${fmtRatio(ratios.coldQpsClusterVsSingle)}; with kernel_threads 1 per worker — hot ${fmtRatio(ratios.hotQpsClusterOneThreadVsSingle)}, cold ${fmtRatio(ratios.coldQpsClusterOneThreadVsSingle)}`,
  ];
  return { figures, lines };
}
