// GET /delta under abuse (issue 8): a delta larger than the hint is refused
// and the wallet downloads the hint; merges beyond the cap answer 503 while
// the server keeps serving; 200 concurrent requests from a generation that
// is not an ancestor keep the worker's memory bounded and /health fast.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { RemoteLane } from '../src/pir/remote.js';
import { decodeDelta } from '../src/pir/delta.js';
import { hintBytes } from '../src/pir/crs.js';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { loadGeneration } from '../src/store/generation.js';
import { buildIncremental } from '../src/store/incremental.js';
import { generationDir } from '../src/store/layout.js';
import { httpRequest, startServerProcess } from '../bench/util.js';
import { rmrf, tempDir } from './helpers.js';
import { reload, serve } from './server-helpers.js';

const ES = 32;

/** Generation 1 in full (one hot lane), then 2..1+steps incrementally with `changes` random changes each. */
async function buildChain(data: string, opts: { entries: number; m: number; steps: number; changes: number; publish?: number }): Promise<void> {
  await buildGeneration({ data, block: 1, publish: opts.publish === 1, lanes: { hot: { source: new SyntheticSource('hot', opts.entries, ES, 1), m: opts.m } } });
  for (let g = 2; g <= opts.steps + 1; g++) {
    const updates = new Map<number, Buffer>();
    for (let k = 0; k < opts.changes; k++) updates.set(crypto.randomInt(opts.entries), crypto.randomBytes(ES));
    await buildIncremental({ data, block: g, from: String(g - 1), updates: { hot: updates }, publish: opts.publish === g });
  }
}

async function getDelta(url: string, from: number, to?: number) {
  const res = await fetch(`${url}/delta/hot?from=${from}${to === undefined ? '' : `&to=${to}`}`);
  const body = new Uint8Array(await res.arrayBuffer());
  const json = res.headers.get('content-type')?.startsWith('application/json') ? (JSON.parse(Buffer.from(body).toString('utf8')) as Record<string, unknown>) : undefined;
  return { status: res.status, body, json, retryAfter: res.headers.get('retry-after') };
}

test('a delta larger than the hint is refused with 410 and the wallet downloads the hint instead', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  // m = 16384 with 16384 entries: one record row, a 128 KiB hint; each step changes 1,000 entries (~69 KB).
  await buildChain(data, { entries: 16384, m: 16384, steps: 6, changes: 1000, publish: 1 });
  const hint = hintBytes((await loadGeneration(generationDir(data, 7))).lanes.hot!.crs);
  t.is(hint, 131072);
  const server = await serve(data, { max_requests_per_client: 0, shard_size_bytes: 0 });
  t.teardown(() => server.close());

  // A wallet that holds generation 1's hint.
  const wallet = new RemoteLane(server.publicUrl, 'hot');
  await wallet.lookup(5);
  t.is(wallet.stats.downloads, 1);

  t.is((await reload(server, 7)).status, 200);
  // One step is well below the hint: served.
  const near = await getDelta(server.publicUrl, 6);
  t.is(near.status, 200);
  t.true(near.body.byteLength <= hint);
  t.is(decodeDelta(near.body).from, '6');
  // Six steps merge to more than the hint: 410, and no byte of it is sent.
  const far = await getDelta(server.publicUrl, 1);
  t.is(far.status, 410);
  t.is(far.json?.code, 'EDELTA_TOO_LARGE');
  t.is(far.json?.current_generation, '7');
  t.regex(String(far.json?.error), /larger than the hint/);
  // Asked again: the refusal is remembered, same answer.
  t.is((await getDelta(server.publicUrl, 1)).json?.code, 'EDELTA_TOO_LARGE');

  // The wallet falls back to the hint, and decodes correctly.
  const r = await wallet.lookup(5);
  t.is(r.hintSource, 'download');
  t.is(r.generation, '7');
  t.is(wallet.stats.downloads, 2);
  t.is(wallet.stats.deltas, 0);
  const info = await loadGeneration(generationDir(data, 7));
  const shard = fs.readFileSync(info.lanes.hot!.shardPaths[0]!);
  t.deepEqual(Buffer.from(r.entry), shard.subarray(5 * ES, 6 * ES));
});

test('delta merges beyond the cap answer 503 with Retry-After; the server keeps serving, answers are cached', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildChain(data, { entries: 81920, m: 16384, steps: 8, changes: 400, publish: 9 });
  const server = await serve(data, { delta_max_concurrent: 1, delta_max_queued: 0, max_requests_per_client: 0, shard_size_bytes: 0 });
  t.teardown(() => server.close());
  // The chain index is read once (a `from` that is no ancestor: 410 from the index alone).
  const gone = await getDelta(server.publicUrl, 0);
  t.is(gone.status, 410);
  t.is(gone.json?.code, 'EDELTA_GONE');

  // Six distinct merges at once: one runs, the others are refused at once.
  const froms = [8, 7, 6, 5, 4, 3];
  const first = await Promise.all(froms.map((f) => getDelta(server.publicUrl, f)));
  const busy = first.filter((r) => r.status === 503);
  t.true(busy.length >= 1, JSON.stringify(first.map((r) => r.status)));
  for (const r of busy) {
    t.is(r.json?.code, 'EDELTA_BUSY');
    t.is(r.retryAfter, '1');
  }
  t.true(first.some((r) => r.status === 200));
  t.is((await fetch(`${server.publicUrl}/health`)).status, 200);
  // One at a time, every one is answered, and then again from the cache (no new merge).
  const answers = new Map<number, Uint8Array>();
  for (const f of froms) {
    const r = await getDelta(server.publicUrl, f);
    t.is(r.status, 200, `from ${f}`);
    t.is(decodeDelta(r.body).from, String(f));
    answers.set(f, r.body);
  }
  const merges = server.deltas.counts.merges;
  for (const f of froms) t.deepEqual((await getDelta(server.publicUrl, f)).body, answers.get(f));
  t.is(server.deltas.counts.merges, merges);
  t.true(server.deltas.cachedBytes > 0 && server.deltas.cachedBytes <= server.config.delta_cache_bytes);
});

/** Resident set and its peak since the last reset, KiB (Linux). */
function memKiB(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: get('VmRSS'), peak: get('VmHWM') };
}

/** CPU time of a process (all its threads), ms. */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // USER_HZ = 100
}

/** `rounds` bursts of 200 concurrent GETs of `path`, with /health probed meanwhile: statuses, the slowest probe, the server's CPU time. */
async function bursts(url: string, pid: number, path: string, rounds: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
  const probe = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let loading = true;
  let slowestHealth = 0;
  const prober = (async () => {
    while (loading) {
      const t0 = performance.now();
      const r = await httpRequest(`${url}/health`, { agent: probe, timeoutMs: 30_000 }).catch(() => ({ status: 0 }));
      slowestHealth = Math.max(slowestHealth, r.status === 200 ? performance.now() - t0 : Infinity);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const statuses = new Map<number, number>();
  const codes = new Set<string>();
  const cpu0 = cpuMs(pid);
  try {
    for (let round = 0; round < rounds; round++) {
      const replies = await Promise.all(Array.from({ length: 200 }, () => httpRequest(`${url}${path}`, { agent, timeoutMs: 120_000 })));
      for (const r of replies) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status !== 200) codes.add(String(JSON.parse(r.body.toString('utf8')).code));
      }
    }
  } finally {
    loading = false;
    await prober;
    agent.destroy();
    probe.destroy();
  }
  return { statuses: [...statuses], codes: [...codes], slowestHealth, cpuMsPerRequest: (cpuMs(pid) - cpu0) / (200 * rounds) };
}

test('200 concurrent /delta?from=0 (no ancestor) keep the worker under a memory bound and /health under 1 s', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  // 24 steps of ~117 KB: the old code read and decoded all of them for every such request.
  await buildChain(data, { entries: 81920, m: 16384, steps: 24, changes: 1700, publish: 25 });
  // The load comes from one address: per-client and per-route caps off, so every request reaches /delta.
  const server = await startServerProcess({
    data_dir: data,
    host: '127.0.0.1',
    port: 0,
    admin_host: '127.0.0.1',
    admin_port: 0,
    log_level: 'error',
    max_requests_per_client: 0,
    max_concurrent_deltas: 0,
  });
  t.teardown(() => server.stop());
  const { publicUrl: url, pid } = server;
  t.is((await httpRequest(`${url}/ready`)).status, 200);

  // The reference, on this machine now: the same bursts of a route that does nothing.
  const reference = await bursts(url, pid, '/ready', 3);
  const idle = memKiB(pid).rss;
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); // reset the peak
  const load = await bursts(url, pid, '/delta/hot?from=0', 3);
  const { peak } = memKiB(pid);

  t.deepEqual(load.statuses, [[410, 600]]);
  t.deepEqual(load.codes, ['EDELTA_GONE']);
  const grewMiB = (peak - idle) / 1024;
  t.log(
    `RSS ${(idle / 1024).toFixed(0)} MiB idle, peak ${(peak / 1024).toFixed(0)} MiB under load; ${load.cpuMsPerRequest.toFixed(2)} ms CPU per request ` +
      `(${reference.cpuMsPerRequest.toFixed(2)} for /ready); slowest /health ${load.slowestHealth.toFixed(0)} ms (${reference.slowestHealth.toFixed(0)} ms under bursts of /ready)`,
  );
  t.true(grewMiB < 128, `peak RSS grew by ${grewMiB.toFixed(0)} MiB`);
  // A request that is no ancestor costs about what a trivial one does (the old code read and decoded every diff: ~40 ms).
  t.true(load.cpuMsPerRequest < 5, `${load.cpuMsPerRequest.toFixed(2)} ms CPU per request`);
  // Under 1 s; on a machine so busy that bursts of a route that does nothing already take
  // longer to get through, within 4x of that.
  const bound = Math.max(1000, 4 * reference.slowestHealth);
  t.true(load.slowestHealth < bound, `slowest /health took ${load.slowestHealth.toFixed(0)} ms (bound ${bound.toFixed(0)} ms)`);
});
