// Stalled downloads never pin generations (issue 8): connections that stop
// reading /hint (a tiny receive window, then no reads at all) are destroyed
// after send_idle_timeout_ms, and a response still unsent after
// send_timeout_ms is cut even while it trickles; either way the generation
// the request pinned is released across reloads.
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { native } from '../src/native.js';
import { hintBytes } from '../src/pir/crs.js';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { buildIncremental } from '../src/store/incremental.js';
import { type RunningServer } from '../src/server/server.js';
import { rmrf, tempDir } from './helpers.js';
import { reload, serve } from './server-helpers.js';

// A hint far larger than what socket buffers absorb (loopback send buffers grow to a few MB).
const ENTRIES = 24576;
const M = 256;

// A client with a 4 KiB receive buffer (set before connecting, so the window stays tiny) that
// sends GET requests and then reads nothing ('stall') or 1 KiB every 20 ms ('trickle'), and
// reports when the server closes the connection.
const CLIENT = String.raw`
import socket, sys, time
host, port, path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    socks.append(s)
print("ready", flush=True)
if mode == "trickle":
    total, t0 = 0, time.time()
    while True:
        try:
            data = socks[0].recv(1024)
        except OSError:
            data = b""
        if not data:
            break
        total += len(data)
        time.sleep(0.02)
    print("closed %d %.2f" % (total, time.time() - t0), flush=True)
sys.stdin.read()
`;

interface Client {
  proc: ChildProcess;
  /** Resolves with each line the client prints. */
  line(match: RegExp, timeoutMs: number): Promise<string>;
}

function startClient(t: import('ava').ExecutionContext, url: string, path: string, n: number, mode: 'stall' | 'trickle'): Client {
  const { hostname, port } = new URL(url);
  const proc = spawn('python3', ['-c', CLIENT, hostname, port, path, String(n), mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  const waiters: (() => void)[] = [];
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString('utf8');
    for (const w of waiters.splice(0)) w();
  });
  return {
    proc,
    line: (match, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`client printed no ${match} within ${timeoutMs} ms (output: ${JSON.stringify(out)})`)), timeoutMs);
        const check = () => {
          const found = out.split('\n').find((l) => match.test(l));
          if (found !== undefined) {
            clearTimeout(timer);
            resolve(found);
          } else waiters.push(check);
        };
        check();
      }),
  };
}

const heldIds = (server: RunningServer) => server.store.held().map((s) => s.id).sort();

async function inFlight(server: RunningServer, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (((await server.metrics.inFlight.get()).values[0]?.value ?? 0) === n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never reached ${n} requests in flight`);
}

/** Polls until `check` holds; returns the milliseconds it took, or throws after `ms`. */
async function within(ms: number, what: string, check: () => boolean): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`${what} not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

/** Generation 1 in full and 2..count incrementally (a few changes each): each has its own 12 MiB hint. */
async function buildGenerations(data: string, count: number): Promise<number> {
  await buildGeneration({ data, block: 1, publish: true, lanes: { hot: { source: new SyntheticSource('hot', ENTRIES, 32, 1), m: M } } });
  for (let g = 2; g <= count; g++) {
    await buildIncremental({ data, block: g, from: String(g - 1), updates: { hot: new Map([[crypto.randomInt(ENTRIES), crypto.randomBytes(32)]]) } });
  }
  return hintBytes({ entry_size: 32, R: ENTRIES / M, n: 1024 });
}

test.serial('connections that stop reading /hint are destroyed after send_idle_timeout_ms and release their generations across reloads', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildGenerations(data, 3);
  const idleMs = 2500;
  const server = await serve(data, { retain_generations: 0, shard_size_bytes: 0, send_idle_timeout_ms: idleMs, send_timeout_ms: 0 });
  t.teardown(() => server.close());
  const lanesPerGeneration = native.mappingStats().lanes;

  // Three stalled downloads of generation 1's hint, three of generation 2's, then generation 3 is current.
  const first = startClient(t, server.publicUrl, '/hint/hot', 3, 'stall');
  await first.line(/^ready/, 10_000);
  await inFlight(server, 3);
  t.is((await reload(server, 2)).status, 200);
  const second = startClient(t, server.publicUrl, '/hint/hot', 3, 'stall');
  await second.line(/^ready/, 10_000);
  await inFlight(server, 6);
  t.is((await reload(server, 3)).status, 200);
  // Retired, but pinned by the stalled downloads.
  t.deepEqual(heldIds(server), ['1', '2', '3']);
  t.is(native.mappingStats().lanes, 3 * lanesPerGeneration);

  // Within the idle timeout (Node notices a stall within twice that) every stalled connection is gone
  // and only generation 3 is mapped.
  const took = await within(2 * idleMs + 4000, 'release of the stalled generations', () => heldIds(server).join() === '3');
  t.log(`released ${took.toFixed(0)} ms after the last reload (send_idle_timeout_ms ${idleMs})`);
  // Lanes are unmapped off the JS thread, just after their snapshot closes.
  await within(2000, 'unmapping of the released generations', () => native.mappingStats().lanes === lanesPerGeneration);
  t.is((await server.metrics.inFlight.get()).values[0]?.value, 0);
  // The server kept serving meanwhile.
  t.is((await fetch(`${server.publicUrl}/ready`)).status, 200);
});

test.serial('a response still unsent after send_timeout_ms is cut even while it trickles, and its pin released', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const hint = await buildGenerations(data, 2);
  const limitMs = 2000;
  const server = await serve(data, { retain_generations: 0, shard_size_bytes: 0, send_idle_timeout_ms: 0, send_timeout_ms: limitMs });
  t.teardown(() => server.close());

  const client = startClient(t, server.publicUrl, '/hint/hot', 1, 'trickle');
  await client.line(/^ready/, 10_000);
  await inFlight(server, 1);
  t.is((await reload(server, 2)).status, 200);
  t.deepEqual(heldIds(server), ['1', '2']);
  // ~50 KB/s against a 12 MiB hint: minutes to finish, cut after the limit.
  const closed = await client.line(/^closed/, limitMs + 8000);
  const [, bytes, seconds] = closed.split(' ');
  t.true(Number(bytes) < hint, `${bytes} of ${hint} bytes received`);
  t.true(Number(seconds) * 1000 >= limitMs - 500, `cut after ${seconds} s`);
  await within(2000, 'release of generation 1', () => heldIds(server).join() === '2');
});
