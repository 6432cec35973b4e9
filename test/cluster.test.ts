// Cluster mode: `lanepir serve --workers 2` as a real process tree.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { control } from '../src/native.js';
import { PirClient } from '../src/pir/client.js';
import { segmentName } from '../src/cluster/segment.js';
import { loadConfig } from '../src/config.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
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

/** Clients per (lane, generation) and private lookups over fresh connections. */
class Wallet {
  private clients = new Map<string, PirClient>();
  constructor(
    readonly c: Cluster,
    readonly data: string,
  ) {}

  async client(lane: LaneName, g: string) {
    const key = `${lane}/${g}`;
    if (!this.clients.has(key)) {
      const crs = json(await request(`${this.c.url}/crs/${lane}?generation=${g}`));
      const hint = (await request(`${this.c.url}/hint/${lane}?generation=${g}`)).body;
      this.clients.set(key, await PirClient.create(crs, hint));
    }
    return this.clients.get(key)!;
  }

  /** Looks up `index`; with no generation the server picks the current one, which the answer names. */
  async lookup(lane: LaneName, index: number, g: string) {
    const client = await this.client(lane, g);
    const { query, state } = await client.query(index);
    const r = await request(`${this.c.url}/query/${lane}?generation=${g}`, {
      method: 'POST',
      body: query,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    if (r.status !== 200) return { status: r.status, worker: r.headers['x-lanepir-worker'] as string, body: r.body.toString() };
    const entry = Buffer.from(client.decode(new Uint8Array(r.body), state));
    const answered = r.headers['x-lanepir-generation'] as string;
    const plain = await readEntry((await loadGeneration(generationDir(this.data, answered))).lanes[lane]!, index);
    return { status: 200, worker: r.headers['x-lanepir-worker'] as string, generation: answered, ok: entry.equals(plain) };
  }
}

/** Where a running cluster's control segment lives (named by data directory and port). */
const clusterSegment = (c: Cluster, data: string) => segmentName(loadConfig({ flags: { data_dir: data, port: Number(new URL(c.url).port) } }));
const segmentFile = (c: Cluster, data: string) => `/dev/shm${clusterSegment(c, data)}`;

const reload = async (c: Cluster, generation?: number) => {
  const r = await request(`${c.adminUrl}/admin/reload`, {
    method: 'POST',
    body: generation === undefined ? '' : JSON.stringify({ generation }),
    headers: { 'Content-Type': 'application/json' },
  });
  return { status: r.status, worker: r.headers['x-lanepir-worker'] as string, body: json(r) };
};

test('reloads through each worker switch every worker; in-flight queries decode against their own generation', async (t) => {
  const data = await dataWithGenerations([1, 2, 3]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop());
  const wallet = new Wallet(c, data);

  // Background load pinned to whatever generation /info names at the time.
  let stop = false;
  const failures: string[] = [];
  let answered = 0;
  const loop = async (lane: LaneName) => {
    while (!stop) {
      const g = json(await request(`${c.url}/info`)).generation as string;
      const r = await wallet.lookup(lane, crypto.randomInt(lane === 'hot' ? HOT.entries : COLD.entries), g);
      if (r.status !== 200 || !r.ok || r.generation !== g) failures.push(JSON.stringify(r));
      else answered++;
    }
  };
  const loops = [loop('hot'), loop('cold'), loop('hot')];

  const reloadWorkers = new Set<string>();
  let reloads = 0;
  try {
    // At least 12 reloads, and more while fewer than 11 lookups have overlapped them (a loaded machine answers slowly).
    for (let i = 0; i < 12 || (answered <= 10 && i < 60) || i % 3 !== 0; i++) {
      reloads = i + 1;
      const target = [2, 3, 1][i % 3]!;
      const r = await reload(c, target);
      t.is(r.status, 200, JSON.stringify(r.body));
      t.is(r.body.new_generation, String(target));
      reloadWorkers.add(r.worker);
      t.is(r.body.workers.length, 2);
      for (const w of r.body.workers) t.true(w.switched, JSON.stringify(w));
      // Right after the answer, every worker serves the new generation (node:cluster
      // hands each connection to a free worker: ask until both have answered).
      const seen = new Set<string>();
      for (let k = 0; k < 60 && seen.size < 2; k++) {
        const info = await request(`${c.url}/info`);
        seen.add(info.headers['x-lanepir-worker'] as string);
        t.is(json(info).generation, String(target));
      }
      t.is(seen.size, 2, 'both workers answered');
    }
    t.is(reloadWorkers.size, 2, `reloads landed on ${[...reloadWorkers]}`);
  } finally {
    stop = true; // never leave the load running when an assertion above throws
    await Promise.all(loops);
  }
  t.deepEqual(failures, []);
  t.true(answered > 10);

  // The control segment is readable from a separate process (this test process).
  const seg = control.controlOpen(clusterSegment(c, data));
  t.teardown(() => seg.close());
  t.is(seg.readPublished()!.generation, '1');
  t.is(seg.slots, 2);
  const slots = [seg.readSlot(0), seg.readSlot(1)];
  for (const s of slots) {
    t.true(s.pid > 0);
    t.is(s.serving, '1');
    t.true(s.held.some((h) => h.generation === '1'));
  }
  // ...and from the documented raw layout, without the addon.
  const raw = fs.readFileSync(segmentFile(c, data));
  t.is(raw.subarray(0, 7).toString(), 'LANEPIR');
  t.is(raw.readUInt32LE(8), 2, 'layout version');
  t.is(raw.readUInt32LE(12), 2, 'slots');
  t.is(raw.subarray(104, 136).toString().replace(/\0+$/, ''), '1', 'published generation id');
  t.is(Number(raw.readBigUInt64LE(80)), 1, 'published block');
  t.is(raw.readUInt32LE(20), 4096, 'slot bytes');
  t.is(Number(raw.readBigUInt64LE(4096 + 8)), slots[0]!.pid, 'slot 0 pid');
  t.is(raw.subarray(4096 + 40, 4096 + 72).toString().replace(/\0+$/, ''), '1', 'slot 0 serves generation 1');

  const gens = json(await request(`${c.adminUrl}/admin/generations`));
  t.is(gens.workers.length, 2);
  t.is(gens.published.generation, '1');

  // /metrics aggregates the workers.
  const metrics = (await request(`${c.adminUrl}/metrics`)).body.toString();
  t.regex(metrics, /lanepir_queries_total\{lane="hot",status="200"\} \d+/);
  t.regex(metrics, /lanepir_published_generation 1/);
  t.regex(metrics, new RegExp(`lanepir_reloads_total\\{result="ok"\\} ${reloads}\n`), 'every reload counted (12, more when the machine is slow)');
});

test('a worker killed with SIGKILL under load is replaced and serves the current generation', async (t) => {
  const data = await dataWithGenerations([1, 2]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop());
  t.is((await reload(c, 2)).status, 200);
  const wallet = new Wallet(c, data);
  const before = json(await request(`${c.adminUrl}/admin/generations`)).workers as { pid: number; worker: string }[];
  const victim = before[0]!;
  let killedAt = 0;
  const lateFailures: string[] = [];
  let early = 0;
  let answered = 0;
  let stop = false;
  // A live worker always answers: any HTTP error or wrong decode is a failure.
  // Only transport failures (reset, no answer) can be the victim's: node:cluster
  // may still hand it a connection until the primary has seen it exit.
  const GRACE_MS = 2000;
  const loop = async () => {
    while (!stop) {
      const started = Date.now();
      try {
        const r = await wallet.lookup('hot', crypto.randomInt(HOT.entries), '2');
        if (r.status === 200 && r.ok) answered++;
        else lateFailures.push(JSON.stringify(r));
      } catch (err) {
        if (killedAt && started < killedAt + GRACE_MS) early++;
        else lateFailures.push(String(err));
      }
    }
  };
  const loops = [loop(), loop(), loop()];
  let replaced: { pid: number; serving: string; ready: boolean }[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500));
    killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    // Wait for the replacement to be ready.
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const g = await request(`${c.adminUrl}/admin/generations`).catch(() => undefined); // may land on the victim
      if (!g) continue;
      replaced = json(g).workers;
      if (replaced.length === 2 && replaced.every((w) => w.ready && w.pid !== victim.pid && w.serving === '2')) break;
    }
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    stop = true; // never leave the load running when something above throws
    await Promise.all(loops);
  }
  t.is(replaced.length, 2);
  t.true(replaced.every((w) => w.pid !== victim.pid && w.serving === '2'), JSON.stringify(replaced));
  t.deepEqual(lateFailures, []);
  t.true(answered > 10);
  t.true(early <= 6, `${early} requests failed around the kill`);
  // The new worker answers from the current generation.
  const seen = new Set<string>();
  for (let k = 0; k < 60 && seen.size < 2; k++) {
    const r = await request(`${c.url}/info`);
    seen.add(r.headers['x-lanepir-worker'] as string);
    t.is(json(r).generation, '2');
  }
  t.is(seen.size, 2);
});

test('a worker that cannot prepare the new generation fails the reload and nobody switches', async (t) => {
  const data = await dataWithGenerations([1, 2]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data, { env: { LANEPIR_FAILPOINTS: 'prepare:slot=1' } });
  t.teardown(() => c.stop());
  const r = await reload(c, 2);
  t.is(r.status, 422);
  t.is(r.body.code, 'EPREPARE');
  t.regex(r.body.error, /worker-1-/);
  const failed = (r.body.workers as { slot: number; prepared: boolean; switched: boolean }[]).find((w) => w.slot === 1)!;
  t.false(failed.prepared);
  t.true((r.body.workers as { switched: boolean }[]).every((w) => !w.switched));
  for (let k = 0; k < 8; k++) t.is(json(await request(`${c.url}/info`)).generation, '1');
  const gens = json(await request(`${c.adminUrl}/admin/generations`));
  t.is(gens.published.generation, '1');
  t.true(gens.workers.every((w: { serving: string }) => w.serving === '1'));
});

test('SIGTERM drains in-flight requests and exits 0 with no segment left behind', async (t) => {
  const data = await dataWithGenerations([1]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop()); // a failed assertion must not leave it running
  const shm = segmentFile(c, data);
  t.true(fs.existsSync(shm));
  const wallet = new Wallet(c, data);
  const client = await wallet.client('cold', '1');
  // Queries whose bodies are still arriving when the signal comes: in flight.
  const indices = [11, 2222, 19999];
  const pending = await Promise.all(
    indices.map(async (index) => {
      const { query, state } = await client.query(index);
      const req = http.request(`${c.url}/query/cold?generation=1`, {
        method: 'POST',
        agent: false,
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': query.length },
      });
      const response = new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
      });
      req.write(query.subarray(0, 64));
      return { req, query, state, index, response };
    }),
  );
  await new Promise((r) => setTimeout(r, 300));
  c.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  // New connections are refused while the old ones drain.
  await t.throwsAsync(request(`${c.url}/health`));
  for (const p of pending) p.req.end(p.query.subarray(64));
  for (const p of pending) {
    const r = await p.response;
    t.is(r.status, 200);
    const plain = await readEntry((await loadGeneration(generationDir(data, '1'))).lanes.cold!, p.index);
    t.deepEqual(Buffer.from(client.decode(new Uint8Array(r.body), p.state)), plain);
  }
  const { code } = await c.exited;
  t.is(code, 0, c.output());
  t.false(fs.existsSync(shm), 'segment removed');
});

test('a second SIGTERM stops at once and still removes the segment', async (t) => {
  const data = await dataWithGenerations([1]);
  t.teardown(() => rmrf(data));
  const c = await startCluster(data);
  t.teardown(() => c.stop());
  const shm = segmentFile(c, data);
  t.true(fs.existsSync(shm));
  c.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 20)); // let the first one be handled (pending signals merge)
  c.proc.kill('SIGTERM');
  const { code } = await c.exited;
  t.true(code === 0 || code === 1, `exit code ${code}`);
  t.false(fs.existsSync(shm), 'segment removed');
});

test('the admin token reaches the workers over IPC, not through their environment', async (t) => {
  const data = await dataWithGenerations([1, 2]);
  t.teardown(() => rmrf(data));
  const token = 'token-kept-out-of-environ';
  const c = await startCluster(data, { args: ['--admin-token', token] });
  t.teardown(() => c.stop());
  const post = (headers: Record<string, string>) =>
    request(`${c.adminUrl}/admin/reload`, { method: 'POST', body: JSON.stringify({ generation: 2 }), headers: { 'Content-Type': 'application/json', ...headers } });
  t.is((await post({})).status, 401);
  t.is((await post({ Authorization: `Bearer ${token}` })).status, 200);
  const gens = json(await request(`${c.adminUrl}/admin/generations`, { headers: { Authorization: `Bearer ${token}` } }));
  for (const w of gens.workers) t.false(fs.readFileSync(`/proc/${w.pid}/environ`, 'latin1').includes(token), `worker ${w.pid}`);
});

test('a stale segment from a crashed server is replaced; a live one is refused', async (t) => {
  const name = `/lanepir-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const seg = control.controlCreate(name, 3);
  t.teardown(() => fs.rmSync(`/dev/shm${name}`, { force: true }));
  t.is(seg.primaryPid, process.pid);
  t.is(seg.readPublished(), null);
  seg.publish({ generation: '700r1', blockNumber: 700, dir: '/data/generations/700r1' });
  t.like(seg.readPublished(), { generation: '700r1', blockNumber: 700, dir: '/data/generations/700r1', count: 1 });
  seg.writeSlot(2, { pid: 1234, serving: '700r1', requests: 9, held: [{ generation: '700r1', inFlight: 3 }, { generation: '699', inFlight: 0 }] });
  t.like(seg.readSlot(2), { pid: 1234, serving: '700r1', requests: 9 });
  t.deepEqual(seg.readSlot(2).held, [{ generation: '700r1', inFlight: 3 }, { generation: '699', inFlight: 0 }]);
  t.throws(() => seg.publish({ generation: 'x'.repeat(32), blockNumber: 1, dir: '/d' }), { code: 'EPARAMS' });
  seg.clearSlot(2);
  t.like(seg.readSlot(2), { pid: 0, serving: null });
  t.throws(() => seg.readSlot(3), { code: 'EPARAMS' });
  // Rewrite the primary pid in place (never truncate a mapped file).
  const setPrimaryPid = (pid: bigint) => {
    const fd = fs.openSync(`/dev/shm${name}`, 'r+');
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(pid);
    fs.writeSync(fd, b, 0, 8, 24);
    fs.closeSync(fd);
  };
  setPrimaryPid(1n); // pid 1 is alive: a running server's segment
  t.throws(() => control.controlCreate(name, 3), { code: 'ESEGMENT_BUSY' });
  setPrimaryPid(2n ** 31n - 2n); // no such process: a crashed server's segment
  const fresh = control.controlCreate(name, 2);
  t.is(fresh.readPublished(), null);
  t.is(fresh.slots, 2);
  fresh.close();
  t.throws(() => fresh.readPublished(), { code: 'ESEGMENT' });
  seg.close();
});
