// The cluster's kernel process: one executor answers every worker's queries
// through the shared query exchange. Answers equal the bare kernel's for each
// worker; a worker killed with queries queued holds nobody up; a killed
// executor is replaced and serving resumes; a query pinned to a generation
// that retires meanwhile is answered on it.
import test from 'ava';
import crypto from 'node:crypto';
import http from 'node:http';
import { PirClient } from '../src/pir/client.js';
import { exchange } from '../src/native.js';
import { segmentName } from '../src/cluster/segment.js';
import { loadConfig } from '../src/config.js';
import { loadGeneration, openLane, readEntry } from '../src/store/generation.js';
import { generationDir, type LaneName } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { COLD, HOT, buildBlock } from './server-helpers.js';
import { type Cluster, json, request, startCluster } from './cluster-helpers.js';

async function dataWithGenerations(blocks: number[]): Promise<string> {
  const data = tempDir();
  let seeds: Awaited<ReturnType<typeof buildBlock>> | undefined;
  for (const b of blocks) seeds = await buildBlock(data, b, seeds, b === blocks[0]);
  return data;
}

const exchangeName = (c: Cluster, data: string) => `${segmentName(loadConfig({ flags: { data_dir: data, port: Number(new URL(c.url).port) } }))}-x`;
const randomQuery = (m: number) => new Uint32Array(crypto.randomBytes(m * 4).buffer);
const words = (b: Buffer) => new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** POST a raw query; `agent` pins it to one connection (and so to one worker). */
function postQuery(url: string, q: Uint32Array, agent: http.Agent | false = false) {
  return new Promise<{ status: number; worker: string; generation: string; batch: number; body: Buffer }>((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'Content-Type': 'application/octet-stream', ...(agent ? {} : { Connection: 'close' }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          worker: res.headers['x-lanepir-worker'] as string,
          generation: res.headers['x-lanepir-generation'] as string,
          batch: Number(res.headers['x-lanepir-batch']),
          body: Buffer.concat(chunks),
        }),
      );
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('query timed out')));
    req.end(Buffer.from(q.buffer, q.byteOffset, q.byteLength));
  });
}

test('answers through the shared executor equal the bare kernel\'s, for every worker and both lanes', async (t) => {
  const data = await dataWithGenerations([1]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop());
  const info = await loadGeneration(generationDir(data, '1'));
  const gens = json(await request(`${c.adminUrl}/admin/generations`));
  t.true(gens.executor.pid > 0 && gens.executor.serving, JSON.stringify(gens.executor));
  t.false(gens.workers.some((w: { pid: number }) => w.pid === gens.executor.pid), 'the executor is a process of its own');
  for (const lane of ['hot', 'cold'] as LaneName[]) {
    const handle = await openLane(info.lanes[lane]!, 'mmap');
    try {
      const byWorker = new Map<string, number>();
      for (let k = 0; k < 40 && (byWorker.size < 2 || [...byWorker.values()].some((n) => n < 2)); k++) {
        // Several at once, so that passes batch queries of both workers.
        const qs = Array.from({ length: 4 }, () => randomQuery(info.lanes[lane]!.crs.m));
        const replies = await Promise.all(qs.map((q) => postQuery(`${c.url}/query/${lane}`, q)));
        const direct = await handle.answer(qs);
        replies.forEach((r, i) => {
          t.is(r.status, 200);
          t.is(r.generation, '1');
          t.deepEqual(words(r.body), direct[i], `${lane} via ${r.worker}`);
          byWorker.set(r.worker, (byWorker.get(r.worker) ?? 0) + 1);
        });
      }
      t.is(byWorker.size, 2, `answers came from ${[...byWorker.keys()]}`);
    } finally {
      await handle.release();
    }
  }
  // The workers map no lanes: the kernel process holds them (once).
  t.deepEqual(json(await request(`${c.adminUrl}/admin/generations`)).executor.generations, ['1']);
});

test('a worker SIGKILLed with queries queued does not hold up the others: its queries are dropped, the lane\'s budget freed', async (t) => {
  const data = await dataWithGenerations([1]);
  t.teardown(() => rmrf(data));
  // A long batch window keeps queued queries queued (an idle lane waits for company), and
  // a pending bound of 3: while the victim's 3 queries count, nobody else gets in.
  const c = await startCluster(data, { env: { LANEPIR_BATCH_WINDOW_MS: '1000', LANEPIR_MAX_PENDING_PER_LANE: '3' } });
  t.teardown(() => c.stop());
  const x = exchange.exchangeOpen(exchangeName(c, data));
  t.teardown(() => x.close());
  // Keep-alive connections, each bound to the worker that answered its first request.
  const agents: { agent: http.Agent; worker: string }[] = [];
  t.teardown(() => agents.forEach((a) => a.agent.destroy()));
  const byWorker = (w: string) => agents.filter((a) => a.worker === w);
  let victim: string | undefined, other: string | undefined;
  for (let i = 0; i < 60; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const r = await new Promise<string>((resolve, reject) =>
      http.get(`${c.url}/health`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers['x-lanepir-worker'] as string));
      }).on('error', reject),
    );
    agents.push({ agent, worker: r });
    victim ??= r;
    if (r !== victim) other ??= r;
    if (victim && other && byWorker(victim).length >= 3 && byWorker(other).length >= 1) break;
  }
  t.truthy(other);
  const victimPid = Number(victim!.split('-')[2]);
  const victimSlot = Number(victim!.split('-')[1]);
  const answeredBefore = x.stats().lanes[0]!.answered;
  // The victim's three queries wait for company in the exchange.
  const doomed = byWorker(victim!).slice(0, 3).map((a) => postQuery(`${c.url}/query/hot`, randomQuery(HOT.m), a.agent).catch((e: Error) => e));
  for (let i = 0; i < 100 && x.stats().regions[victimSlot]!.inKernel[0] !== 3; i++) await sleep(5);
  t.is(x.stats().regions[victimSlot]!.inKernel[0], 3, 'the victim has three queries queued');
  process.kill(victimPid, 'SIGKILL');
  // The primary resets the dead worker's region: its queries leave the queue and the budget.
  for (let i = 0; i < 200 && x.stats().regions[victimSlot]!.inKernel[0] !== 0; i++) await sleep(10);
  t.is(x.stats().regions[victimSlot]!.inKernel[0], 0);
  const started = Date.now();
  const q = randomQuery(HOT.m);
  const r = await postQuery(`${c.url}/query/hot`, q, byWorker(other!)[0]!.agent);
  const waited = Date.now() - started;
  t.is(r.status, 200, r.body.toString());
  t.is(r.worker, other!);
  t.is(r.batch, 1, 'answered alone: the dead worker\'s queries were not in its pass');
  const info = await loadGeneration(generationDir(data, '1'));
  const handle = await openLane(info.lanes.hot!, 'mmap');
  t.deepEqual(words(r.body), (await handle.answer([q]))[0]);
  await handle.release();
  t.true(waited < 8000, `answered after ${waited} ms`);
  t.is(x.stats().lanes[0]!.answered - answeredBefore, 1, 'the dead worker\'s queries were never answered');
  for (const d of await Promise.all(doomed)) t.true(d instanceof Error, 'the victim\'s own requests died with it');
});

test('the executor killed under load is replaced: queries in its pass fail with 503, queued ones are answered, serving resumes', async (t) => {
  const data = await dataWithGenerations([1]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop());
  const crs = json(await request(`${c.url}/crs/cold?generation=1`));
  const hint = (await request(`${c.url}/hint/cold?generation=1`)).body;
  const client = await PirClient.create(crs, hint);
  const info = await loadGeneration(generationDir(data, '1'));
  const first = json(await request(`${c.adminUrl}/admin/generations`)).executor.pid as number;
  let stop = false;
  let killedAt = 0;
  const ok: number[] = [];
  const restarts: number[] = [];
  const failures: string[] = [];
  const loop = async () => {
    while (!stop) {
      const index = crypto.randomInt(COLD.entries);
      const { query, state } = await client.query(index);
      let r;
      try {
        r = await request(`${c.url}/query/cold?generation=1`, { method: 'POST', body: query, headers: { 'Content-Type': 'application/octet-stream' } });
      } catch (err) {
        failures.push(String(err));
        continue;
      }
      if (r.status === 200) {
        const entry = Buffer.from(client.decode(new Uint8Array(r.body), state));
        if (entry.equals(await readEntry(info.lanes.cold!, index))) ok.push(Date.now());
        else failures.push(`wrong entry ${index}`);
      } else if (r.status === 503 && json(r).code === 'EKERNEL_RESTART') {
        restarts.push(Date.now());
      } else {
        failures.push(`${r.status} ${r.body.toString()}`);
      }
    }
  };
  const loops = [loop(), loop(), loop(), loop()];
  let second = 0;
  try {
    while (ok.length < 5) await sleep(20);
    killedAt = Date.now();
    process.kill(first, 'SIGKILL');
    for (let i = 0; i < 300 && !second; i++) {
      await sleep(100);
      const e = json(await request(`${c.adminUrl}/admin/generations`)).executor;
      if (e?.serving && e.pid !== first) second = e.pid;
    }
    // Serving resumed: more answers after the new executor came up.
    const resumedFrom = ok.length;
    for (let i = 0; i < 300 && ok.length < resumedFrom + 5; i++) await sleep(50);
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  t.true(second > 0 && second !== first, 'a new kernel process serves');
  t.deepEqual(failures, []);
  t.true(ok.filter((at) => at > killedAt).length >= 5, 'answers resumed after the kill');
  // Only queries that were in the dead executor's pass may fail: at most one pass per lane.
  t.true(restarts.length <= 16, `${restarts.length} queries failed with EKERNEL_RESTART`);
  const metrics = (await request(`${c.adminUrl}/metrics`)).body.toString();
  t.regex(metrics, /lanepir_executor_restarts_total 1/);
  t.deepEqual(json(await request(`${c.adminUrl}/admin/generations`)).executor.generations, ['1']);
});

test('a query pinned to a generation that retires meanwhile is answered on it; the executor lets go afterwards', async (t) => {
  const data = await dataWithGenerations([1, 2]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data, { env: { LANEPIR_RETAIN_GENERATIONS: '0' } });
  t.teardown(() => c.stop());
  const info1 = await loadGeneration(generationDir(data, '1'));
  const q = randomQuery(COLD.m);
  const body = Buffer.from(q.buffer);
  // The request pins generation 1 while its body is still arriving.
  const req = http.request(`${c.url}/query/cold?generation=1`, {
    method: 'POST',
    agent: false,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, Connection: 'close' },
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  req.write(body.subarray(0, 100));
  const pinned = () =>
    request(`${c.adminUrl}/admin/generations`).then((r) =>
      (json(r).workers as { generations: { generation: string; in_flight: number }[] }[]).some((w) => w.generations.some((g) => g.generation === '1' && g.in_flight > 0)),
    );
  for (let i = 0; i < 100 && !(await pinned()); i++) await sleep(20);
  t.true(await pinned(), 'a worker holds generation 1 for the request');
  const reload = await request(`${c.adminUrl}/admin/reload`, { method: 'POST', body: JSON.stringify({ generation: 2 }), headers: { 'Content-Type': 'application/json' } });
  t.is(reload.status, 200, reload.body.toString());
  t.true(json(reload).executor.prepared);
  // Several hold rounds pass: generation 1 stays mapped in the executor, because a worker still holds it.
  await sleep(1000);
  const held = json(await request(`${c.adminUrl}/admin/generations`)).executor.generations as string[];
  t.deepEqual([...held].sort(), ['1', '2']);
  req.end(body.subarray(100));
  const res = await answered;
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  t.is(res.statusCode, 200);
  t.is(res.headers['x-lanepir-generation'], '1', 'answered on the generation it was pinned to');
  const handle = await openLane(info1.lanes.cold!, 'mmap');
  t.deepEqual(words(Buffer.concat(chunks)), (await handle.answer([q]))[0]);
  await handle.release();
  // Nobody holds generation 1 any more: the executor releases it.
  let after: string[] = [];
  for (let i = 0; i < 100; i++) {
    after = json(await request(`${c.adminUrl}/admin/generations`)).executor.generations;
    if (after.length === 1) break;
    await sleep(50);
  }
  t.deepEqual(after, ['2']);
});
