// `npm run demo`: a live chain served privately. Starts a local Hardhat node,
// deploys the repository's ERC-20, sends a transaction every few seconds,
// follows the node (lanepir follow --rpc, in this process) into a 2-worker
// cluster (lanepir serve, a child process), and prints ready-to-paste private
// reads of addresses whose balances change. Ctrl-C stops everything: the
// follower, the cluster (which removes its shared-memory segment) and the node.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { type Hex, getAddress } from 'viem';
import { startDevChain } from '../eth/devchain/hardhat.js';
import { Traffic } from '../eth/devchain/traffic.js';
import { followRpc } from './follow-rpc.js';
import { reportAndExit } from './errors.js';
import { freePort } from '../free-port.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/lanepir.js');

async function waitReady(url: string, ms: number, proc: ChildProcess): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (proc.exitCode !== null) throw new Error('lanepir serve exited during start-up');
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`lanepir serve did not answer at ${url}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<void> {
  const data = path.resolve(process.env.LANEPIR_DEMO_DATA ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-demo-chain-')));
  const intervalMs = Number(process.env.LANEPIR_DEMO_INTERVAL_MS ?? 3000);
  const logger = pino({ level: process.env.LANEPIR_LOG_LEVEL ?? 'info', base: { role: 'follow' } });
  const cleanups: (() => Promise<void>)[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('\nstopping: follower, cluster, node…\n');
    for (const c of cleanups.reverse()) await c().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`));
    if (!process.env.LANEPIR_DEMO_DATA) fs.rmSync(data, { recursive: true, force: true });
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  try {
    process.stderr.write('starting a local Hardhat node…\n');
    const chain = await startDevChain();
    cleanups.push(() => chain.stop());
    const traffic = await new Traffic(chain.rpc).init();
    const [alice, ...others] = traffic.accounts as [Hex, ...Hex[]];
    const holders = others.slice(0, 6);
    const token = await traffic.deployToken(alice, 10n ** 24n);
    const manifestFile = path.join(data, 'demo-hot-manifest.json');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(manifestFile, JSON.stringify({ version: 1, contracts: [{ address: token, label: 'LANE', erc20: { balance_slot: 0, layout: 'solidity' } }] }) + '\n');

    const port = await freePort();
    const adminPort = await freePort();
    const server = spawn(process.execPath, [BIN, 'serve', '--data', data, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--workers', '2', '--log-level', 'warn'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      // Its own process group: Ctrl-C reaches the demo only, which stops the cluster with one SIGTERM.
      detached: true,
    });
    const serverExited = new Promise<void>((r) => server.once('exit', () => r()));
    const stopServer = () => {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM'); // the cluster removes its segment
    };
    // Its own process group does not get a terminal's signals: whatever way this process ends, the cluster is told to stop.
    process.once('exit', stopServer);
    cleanups.push(async () => {
      stopServer();
      await serverExited;
    });
    const url = `http://127.0.0.1:${port}`;
    await waitReady(url, 60_000, server);

    const { stop } = await followRpc(
      {
        data,
        rpc: chain.url,
        adminUrl: `http://127.0.0.1:${adminPort}`,
        hotManifest: manifestFile,
        changeSource: 'auto',
        pollMs: '500',
        debounceMs: '0',
        retain: '16',
        metricsHost: '127.0.0.1',
        rpcBatch: '100',
        rpcTimeoutMs: '10000',
      },
      logger,
      // The chain cannot be followed any more: stop everything, exit 1.
      () => void stopAll(1),
    );
    cleanups.push(stop);

    // A transaction every few seconds, changing the balances printed below: tokens from the deployer
    // (who holds the supply) to holders[1] and holders[2] in turn, and every third one ETH from holders[0] to holders[1].
    let round = 0;
    const timer = setInterval(() => {
      const r = round++;
      const send = r % 3 === 2 ? traffic.transferEth(holders[0]!, holders[1]!, 10n ** 15n * BigInt(r + 1)) : traffic.transferToken(token, alice, holders[1 + (r % 2)]!, 1000n + BigInt(r));
      send.catch((err: Error) => logger.warn({ err: err.message }, 'demo transaction failed'));
    }, intervalMs);
    cleanups.push(async () => clearInterval(timer));

    const cli = `node ${path.relative(process.cwd(), BIN) || BIN}`;
    // The lookup page is on unless the configuration turned it off.
    const page = await fetch(`${url}/`, { method: 'HEAD' }).then((r) => r.ok, () => false);
    process.stderr.write(
      [
        '',
        `lanepir follows a local chain (${chain.url}) into a 2-worker cluster serving ${data}`,
        `  public API  ${url}   (GET /info names the served block, its hash and state root)`,
        `  node RPC    ${chain.url}   (compare: eth_getBalance, eth_call balanceOf)`,
        `A transaction every ${intervalMs / 1000} s changes these balances. Private reads (paste in another terminal, from this directory):`,
        `  ${cli} account --url ${url} ${getAddress(holders[1]!)}     # ETH every third transaction`,
        `  ${cli} erc20 --url ${url} ${getAddress(token)} ${getAddress(holders[1]!)}     # LANE token`,
        `  ${cli} erc20 --url ${url} ${getAddress(token)} ${getAddress(holders[2]!)}`,
        ...(page ? [`  open ${url}/?address=${getAddress(holders[1]!)}     # the lookup page, in a browser`] : []),
        'Ctrl-C stops the node, the follower and the cluster.',
        '',
      ].join('\n'),
    );
  } catch (err) {
    process.stderr.write(`lanepir demo: ${(err as Error).message}\n`);
    await stopAll(1);
  }
}

main().catch(reportAndExit);
