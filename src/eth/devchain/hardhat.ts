// A local development chain for tests, benchmarks and `npm run demo`:
// Hardhat 2's node (EDR, shipped inside the npm package; a devDependency),
// bound to 127.0.0.1 on a port the OS picks, in a child process that is
// stopped on every path (stop(), and a process exit handler as a last resort).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describeFetchFailure } from '../../pir/errors.js';

export interface DevChainOptions {
  chainId?: number;
  /** Mine a block per transaction (default true). */
  automine?: boolean;
  /** Also mine a block every `intervalMs` (default off). */
  intervalMs?: number;
  /** The EVM rules (Hardhat's names: 'shanghai', 'cancun', 'prague'…). Default: Hardhat's. */
  hardfork?: string;
  /** Milliseconds to wait for the node to listen. Default 60 s. */
  startTimeoutMs?: number;
}

export interface DevChain {
  url: string;
  wsUrl: string;
  pid: number;
  /** A JSON-RPC call straight to the node (no batching, no retries). */
  rpc<T = unknown>(method: string, params?: unknown[]): Promise<T>;
  stop(): Promise<void>;
}

/** Running nodes and their temporary directories (removed by stop(), or at exit as a last resort). */
const running = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [child, dir] of running) {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

export function hardhatCli(): string {
  const require = createRequire(import.meta.url);
  try {
    return require.resolve('hardhat/internal/cli/cli.js');
  } catch {
    throw new Error('the development chain needs the hardhat package (a devDependency): run npm ci in the repository');
  }
}

export async function startDevChain(opts: DevChainOptions = {}): Promise<DevChain> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-devchain-'));
  const config = path.join(dir, 'hardhat.config.cjs');
  const mining = { auto: opts.automine ?? true, interval: opts.intervalMs ?? 0 };
  fs.writeFileSync(config, `module.exports = ${JSON.stringify({ networks: { hardhat: { chainId: opts.chainId ?? 31337, mining, ...(opts.hardfork ? { hardfork: opts.hardfork } : {}) } } })};\n`);
  const cli = hardhatCli();
  // Hardhat refuses to run from outside the project that installed it: run it from there (its files go next to the config).
  const projectRoot = path.resolve(path.dirname(cli), '../../../..');
  const child = spawn(process.execPath, [cli, 'node', '--hostname', '127.0.0.1', '--port', '0', '--config', config], {
    cwd: projectRoot,
    env: { ...process.env, HARDHAT_DISABLE_TELEMETRY_PROMPT: 'true', DO_NOT_TRACK: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.set(child, dir);
  installExitHook();
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const cleanup = () => {
    running.delete(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    cleanup();
  };
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the hardhat node did not start within ${opts.startTimeoutMs ?? 60_000} ms: ${output.slice(-500)}`)), opts.startTimeoutMs ?? 60_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const m = /JSON-RPC server at (http:\/\/127\.0\.0\.1:\d+)\/?/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the hardhat node exited (${signal ?? code}) before listening: ${output.slice(-500)}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  // Keep draining its output (every request is logged) so the pipe never fills.
  child.stdout!.removeAllListeners('data');
  child.stderr!.removeAllListeners('data');
  child.stdout!.resume();
  child.stderr!.resume();
  let id = 0;
  const rpc = async <T>(method: string, params: unknown[] = []): Promise<T> => {
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
      });
    } catch (err) {
      throw new Error(`${method} at ${url}: ${describeFetchFailure(err)}`);
    }
    const body = (await res.json()) as { result?: T; error?: { code: number; message: string } };
    if (body.error) throw new Error(`${method}: ${body.error.code}: ${body.error.message}`);
    return body.result as T;
  };
  return { url, wsUrl: url.replace(/^http/, 'ws'), pid: child.pid!, rpc, stop };
}
