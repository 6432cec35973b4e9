// `npm run demo` as a user runs it: the printed private reads work when
// pasted and equal the node at the block they name; Ctrl-C (SIGINT to the
// terminal's process group) stops the node, the follower and the cluster,
// and leaves no process, no /dev/shm segment and no data behind.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { segmentName } from '../src/cluster/segment.js';
import { loadConfig } from '../src/config.js';
import { BIN } from './cluster-helpers.js';
import { run } from './helpers.js';

const DEMO = path.resolve('dist/src/cli/demo.js');

/** Every process whose parent chain leads to `root` (from /proc). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // pid (comm) state ppid ...: comm may hold spaces and parentheses; ppid follows the last ')'.
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  for (const [pid] of parent) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return state.slice(state.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

test('npm run demo: the printed reads work and match the node; Ctrl-C leaves no process, segment or data', async (t) => {
  // Its own process group, as a terminal runs it: Ctrl-C is SIGINT to the whole group.
  const demo = spawn(process.execPath, [DEMO], { env: { ...process.env, LANEPIR_DEMO_INTERVAL_MS: '700', LANEPIR_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  demo.stdout!.on('data', (d) => (out += d));
  demo.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  let family: number[] = [];
  let segment: string | undefined;
  let data: string | undefined;
  t.teardown(async () => {
    // On a failure path: Ctrl-C first (the demo cleans up after itself), then kill whatever is left and its segment.
    if (demo.exitCode === null && demo.signalCode === null) {
      try {
        process.kill(-demo.pid!, 'SIGINT');
      } catch {
        // gone
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    for (const pid of [demo.pid!, ...family]) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // not a group leader, or gone
      }
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (segment) fs.rmSync(segment, { force: true });
    if (data) fs.rmSync(data, { recursive: true, force: true });
  });

  const deadline = Date.now() + 150_000;
  while (!/Ctrl-C stops/.test(out)) {
    if (demo.exitCode !== null || Date.now() > deadline) t.fail(`the demo did not start:\n${out}`);
    if (demo.exitCode !== null || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  family = descendants(demo.pid!);
  const publicUrl = /public API\s+(http:\/\/127\.0\.0\.1:(\d+))/.exec(out)!;
  const nodeUrl = /node RPC\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  data = /serving (\S+)/.exec(out)![1]!;
  segment = `/dev/shm${segmentName(loadConfig({ flags: { data_dir: data, port: Number(publicUrl[2]) } }))}`;
  t.true(family.length >= 4, `node, cluster primary and two workers run under the demo (${family.length})`);
  t.true(fs.existsSync(segment), 'the cluster has its control segment');
  const commands = [...out.matchAll(/^ {2}node bin\/lanepir\.js (.+?)(?:\s+#.*)?$/gm)].map((m) => m[1]!.trim().split(/\s+/));
  t.is(commands.length, 3, out);
  const node = async <T>(method: string, params: unknown[]): Promise<T> => {
    const res = await fetch(nodeUrl, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
    return ((await res.json()) as { result: T }).result;
  };
  const paste = async () => {
    const results = [];
    for (const args of commands) {
      const r = await run(process.execPath, [BIN, ...args]);
      t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      const block = Number(/^block\s+(\d+) \(0x[0-9a-f]{64}\)$/m.exec(r.stdout)![1]);
      const balance = BigInt(/^balance\s+(\d+)/m.exec(r.stdout)![1]!);
      const at = `0x${block.toString(16)}`;
      if (args[0] === 'account') {
        t.is(balance, BigInt(await node<string>('eth_getBalance', [args.at(-1), at])), `${args.join(' ')} at block ${block}`);
      } else {
        const [token, holder] = args.slice(-2) as [string, string];
        const data = `0x70a08231${holder.slice(2).toLowerCase().padStart(64, '0')}`; // balanceOf(holder)
        t.is(balance, BigInt(await node<string>('eth_call', [{ to: token, data }, at])), `${args.join(' ')} at block ${block}`);
      }
      results.push({ block, balance });
    }
    return results;
  };
  const first = await paste();
  // A few transactions later the same reads name a later block and show the new balances.
  const head = Number(await node<string>('eth_blockNumber', []));
  while (Number(await node<string>('eth_blockNumber', [])) < head + 4) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 1500));
  const later = await paste();
  t.true(later.every((r, i) => r.block > first[i]!.block), 'served blocks move on');
  t.true(later.every((r, i) => r.balance !== first[i]!.balance), `every printed balance changes: ${JSON.stringify([first, later], (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);

  process.kill(-demo.pid!, 'SIGINT');
  t.is(await exited, 0, out);
  await new Promise((r) => setTimeout(r, 500)); // orphans are reaped by init
  t.deepEqual(family.filter(alive), [], 'no process of the demo is left');
  t.false(fs.existsSync(segment), 'no control segment is left');
  t.false(fs.existsSync(data), 'the temporary data directory is removed');
});
