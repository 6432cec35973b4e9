// The cluster's lifecycle on failure paths: every worker dying at once, a
// crash loop the primary gives up on, and listeners that cannot be opened.
// A server that cannot serve exits non-zero, says why, and removes its segment.
import test from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { segmentName } from '../src/cluster/segment.js';
import { loadConfig } from '../src/config.js';
import { PirClient } from '../src/pir/client.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { generationDir, type LaneName } from '../src/store/layout.js';
import { rmrf, run, tempDir } from './helpers.js';
import { COLD, HOT, SHARD_SIZE, buildBlock } from './server-helpers.js';
import { type Cluster, freePort, json, request, startCluster } from './cluster-helpers.js';

async function oneGeneration(t: { teardown(fn: () => void): void }): Promise<string> {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  return data;
}

/** A private lookup over a fresh connection, decoded and compared with the plaintext. */
async function lookupDecodes(c: Cluster, data: string, lane: LaneName, index: number): Promise<boolean> {
  const generation = json(await request(`${c.url}/info`)).generation as string;
  const hint = (await request(`${c.url}/hint/${lane}?generation=${generation}`)).body;
  const client = await PirClient.create(json(await request(`${c.url}/crs/${lane}?generation=${generation}`)), hint);
  const { query, state } = await client.query(index);
  const r = await request(`${c.url}/query/${lane}?generation=${generation}`, { method: 'POST', body: query, headers: { 'Content-Type': 'application/octet-stream' } });
  if (r.status !== 200) return false;
  const plain = await readEntry((await loadGeneration(generationDir(data, generation))).lanes[lane]!, index);
  return Buffer.from(client.decode(new Uint8Array(r.body), state)).equals(plain);
}

const workersOf = async (c: Cluster) => json(await request(`${c.adminUrl}/admin/generations`)).workers as { pid: number; ready: boolean; serving: string | null }[];

/** Holds 127.0.0.1:port until released (binding as soon as it is free, when `wait`). */
async function occupy(port: number, waitMs = 0): Promise<net.Server> {
  for (const deadline = Date.now() + waitMs; ; ) {
    const s = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, '127.0.0.1', () => resolve());
      });
      return s;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

for (const workers of [1, 2]) {
  test(`every worker SIGKILLed at once (--workers ${workers}): re-forked, and the server keeps serving`, async (t) => {
    const data = await oneGeneration(t);
    const c = await startCluster(data, { workers });
    t.teardown(() => c.stop());
    const before = await workersOf(c);
    t.is(before.length, workers);
    for (const w of before) process.kill(w.pid, 'SIGKILL');

    // Replacements come up (backoff 100 ms) and serve the published generation.
    let after: Awaited<ReturnType<typeof workersOf>> = [];
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 200));
      t.is(c.proc.exitCode, null, `the primary exited:\n${c.output()}`);
      if (c.proc.exitCode !== null) return;
      after = await workersOf(c).catch(() => []);
      if (after.length === workers && after.every((w) => w.ready && w.serving === '1' && !before.some((b) => b.pid === w.pid))) break;
    }
    t.is(after.length, workers, JSON.stringify(after));
    t.true(after.every((w) => w.ready && w.serving === '1' && !before.some((b) => b.pid === w.pid)), JSON.stringify(after));
    for (const lane of ['hot', 'cold'] as const) {
      for (let k = 0; k < 3; k++) t.true(await lookupDecodes(c, data, lane, crypto.randomInt(lane === 'hot' ? HOT.entries : COLD.entries)));
    }
    t.true(fs.existsSync(c.segmentFile));
    await c.stop();
    t.is((await c.exited).code, 0, c.output());
    t.false(fs.existsSync(c.segmentFile), 'segment removed');
  });
}

test('a crash loop gives up: workers that cannot start make the primary exit non-zero and remove its segment', async (t) => {
  const data = await oneGeneration(t);
  const c = await startCluster(data, { workers: 1 });
  t.teardown(() => c.stop());
  const port = Number(new URL(c.url).port);
  // The only worker dies; the port is taken before its replacement can listen,
  // so every later start fails. (Should the replacement win the race, kill it too.)
  let squatter: net.Server | undefined;
  for (let attempt = 0; attempt < 5 && !squatter; attempt++) {
    for (const w of await workersOf(c).catch(() => [])) process.kill(w.pid, 'SIGKILL');
    squatter = await occupy(port, 3_000).catch(() => undefined);
  }
  if (!squatter) return t.fail('could not take the port from the cluster');
  t.teardown(() => squatter!.close());
  const exit = await Promise.race([c.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
  t.not(exit, 'timeout', `the primary kept re-forking:\n${c.output()}`);
  if (exit === 'timeout') return;
  t.is(exit.code, 1, c.output());
  t.regex(c.output(), /lanepir: giving up: no worker is serving and the last 5 starts of every worker failed \(last: cannot listen on 127\.0\.0\.1:\d+ \(public listener\): address already in use\) \[ECRASH_LOOP\]/);
  t.false(fs.existsSync(c.segmentFile), 'segment removed');
  // No worker is left behind either.
  t.regex(c.output(), /re-forking/);
});

/** Runs `lanepir serve` to its exit (it must not start). */
async function serveMustFail(data: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = await run(process.execPath, [path.resolve('bin/lanepir.js'), 'serve', '--data', data, '--host', '127.0.0.1', '--log-level', 'warn', ...args], {
    env: { ...process.env, LANEPIR_SHARD_SIZE_BYTES: String(SHARD_SIZE), ...env },
    timeoutMs: 60_000,
  });
  return r;
}

const segmentOf = (data: string, port: number) => `/dev/shm${segmentName(loadConfig({ flags: { data_dir: data, port } }))}`;

for (const which of ['public', 'admin'] as const) {
  for (const workers of [1, 2]) {
    test(`serve with the ${which} port in use (--workers ${workers}): one line naming the address and the cause, exit 1, no segment`, async (t) => {
      const data = await oneGeneration(t);
      const [port, adminPort] = [await freePort(), await freePort()];
      const busy = await occupy(which === 'public' ? port : adminPort);
      t.teardown(() => busy.close());
      const started = Date.now();
      const r = await serveMustFail(data, ['--port', String(port), '--admin-port', String(adminPort), '--workers', String(workers)]);
      t.is(r.code, 1, r.stdout + r.stderr);
      const taken = which === 'public' ? port : adminPort;
      t.is(r.stderr, `lanepir: cannot listen on 127.0.0.1:${taken} (${which} listener): address already in use [EADDRINUSE]\n`);
      t.false(fs.existsSync(segmentOf(data, port)), 'segment removed');
      t.true(Date.now() - started < 45_000, 'not retried for long');
    });
  }
}

test('port == admin_port is refused by config validation with a message naming the field', async (t) => {
  const data = await oneGeneration(t);
  const port = await freePort();
  const r = await serveMustFail(data, ['--port', String(port), '--admin-port', String(port), '--workers', '1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /invalid configuration:\n {2}admin_port: admin_port must differ from port/);
  t.false(fs.existsSync(segmentOf(data, port)));
  t.throws(() => loadConfig({ flags: { port: 4000, admin_port: 4000 } }), { message: /admin_port must differ from port/ });
  // Port 0 (any free port) for both, and distinct specific hosts, are fine.
  t.notThrows(() => loadConfig({ flags: { port: 0, admin_port: 0 } }));
  t.notThrows(() => loadConfig({ flags: { host: '10.0.0.1', admin_host: '127.0.0.1', port: 4000, admin_port: 4000 } }));
  t.throws(() => loadConfig({ flags: { host: '0.0.0.0', admin_host: '127.0.0.1', port: 4000, admin_port: 4000 } }));
});

test('npm start (src/cli/start.ts) on a busy port exits non-zero with the bind error', async (t) => {
  const data = await oneGeneration(t);
  const [port, adminPort] = [await freePort(), await freePort()];
  const busy = await occupy(port);
  t.teardown(() => busy.close());
  const r = await run(process.execPath, [path.resolve('dist/src/cli/start.js')], {
    env: {
      ...process.env,
      LANEPIR_DATA: data,
      LANEPIR_HOST: '127.0.0.1',
      LANEPIR_PORT: String(port),
      LANEPIR_ADMIN_PORT: String(adminPort),
      LANEPIR_WORKERS: '1',
      LANEPIR_LOG_LEVEL: 'warn',
      LANEPIR_SHARD_SIZE_BYTES: String(SHARD_SIZE),
    },
    timeoutMs: 60_000,
  });
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`lanepir: cannot listen on 127\\.0\\.0\\.1:${port} \\(public listener\\): address already in use \\[EADDRINUSE\\]`));
  t.false(fs.existsSync(segmentOf(data, port)));
});

test('SIGTERM during start-up stops the workers and removes the segment', async (t) => {
  const data = await oneGeneration(t);
  const [port, adminPort] = [await freePort(), await freePort()];
  const proc = spawn(process.execPath, [path.resolve('bin/lanepir.js'), 'serve', '--data', data, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--workers', '2', '--log-level', 'warn'], {
    env: { ...process.env, LANEPIR_SHARD_SIZE_BYTES: String(SHARD_SIZE) },
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  // As soon as the segment exists, the primary is up and its workers are starting.
  const shm = segmentOf(data, port);
  for (const deadline = Date.now() + 20_000; !fs.existsSync(shm) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
  t.true(fs.existsSync(shm));
  proc.kill('SIGTERM');
  t.is(await exited, 0);
  t.false(fs.existsSync(shm), 'segment removed');
});

/** Pids of processes whose command line mentions `needle` (this test's temporary data directory). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

test('startCluster kills and reaps what it spawned when the cluster does not start in time', async (t) => {
  const data = await oneGeneration(t);
  // No cluster is ready within 50 ms: the helper must give up and leave nothing running.
  await t.throwsAsync(startCluster(data, { workers: 2, startTimeoutMs: 50 }), { message: /did not start/ });
  t.deepEqual(processesMentioning(data), []);
  t.false(
    fs.readdirSync('/dev/shm').some((f) => {
      try {
        return f.startsWith('lanepir-') && fs.readFileSync(`/dev/shm/${f}`).includes(data);
      } catch {
        return false;
      }
    }),
    'no segment naming this data directory',
  );
});
