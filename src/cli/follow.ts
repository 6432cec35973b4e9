// lanepir follow: build and roll one generation per block from update files.
import { type Command } from 'commander';
import { pino } from 'pino';
import { Follower } from '../follow/follower.js';
import { type AdminFlags, adminTarget } from '../ops/admin.js';
import { UsageError, intOption } from './errors.js';
import { type FollowRpcFlags, MIN_RPC_RETAIN, followRpc } from './follow-rpc.js';
import { ethBlockBuilder } from '../eth/follow.js';
import { isEthGeneration } from '../eth/generation-files.js';
import { resolveGeneration } from '../store/generation.js';
import { readManifest } from '../store/manifest.js';

/** Options that mean something only when following a node (--rpc): refused with --updates-dir rather than ignored. */
export const RPC_ONLY_OPTIONS = [
  'confirmations',
  'hotManifest',
  'fromBlock',
  'state',
  'changeSource',
  'rpcBatch',
  'rpcTimeoutMs',
  'rpcMaxResponseMb',
  'metricsPort',
  'metricsHost',
] as const;

const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export async function followCommand(
  flags: AdminFlags & { data: string; updatesDir?: string; debounceMs: string; pollMs: string; retain: string; logLevel: string } & Partial<FollowRpcFlags>,
  cmd: Command,
): Promise<void> {
  if ((flags.updatesDir === undefined) === (flags.rpc === undefined)) throw new UsageError('give either --rpc URL (follow an Ethereum node) or --updates-dir DIR (follow block files)');
  if (flags.rpc === undefined) {
    // Defaults are not "given": only what the command line set counts (getOptionValueSource 'cli').
    const given = RPC_ONLY_OPTIONS.filter((k) => cmd.getOptionValueSource(k) === 'cli');
    if (given.length) {
      throw new UsageError(`${given.map(flagName).join(', ')} ${given.length > 1 ? 'apply' : 'applies'} only to --rpc (following an Ethereum node), not to --updates-dir`);
    }
  } else if (intOption('--retain', flags.retain, 1)! < MIN_RPC_RETAIN) {
    throw new UsageError(
      `--retain must be at least ${MIN_RPC_RETAIN} with --rpc: the tip and its parent at the least, so that a one-block reorg can walk back (a reorg can go --retain - 1 blocks below the tip)`,
    );
  }
  const logger = pino({ level: flags.logLevel, base: { role: 'follow' } });
  if (flags.rpc !== undefined) {
    const { stop } = await followRpc(flags as FollowRpcFlags, logger);
    let stopping = false;
    const onSignal = () => {
      if (stopping) process.exit(1);
      stopping = true;
      void stop().then(() => process.exit(0), () => process.exit(1));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    return;
  }
  // An Ethereum data directory (its generations carry a hot manifest) takes state diffs per block.
  const head = await resolveGeneration(flags.data);
  const eth = isEthGeneration(await readManifest(head.dir));
  const follower = new Follower({
    ...(eth ? { buildBlock: ethBlockBuilder() } : {}),
    data: flags.data,
    updatesDir: flags.updatesDir!,
    admin: adminTarget(flags),
    logger,
    debounceMs: intOption('--debounce-ms', flags.debounceMs)!,
    pollMs: intOption('--poll-ms', flags.pollMs, 10)!,
    retain: intOption('--retain', flags.retain, 1)!,
  });
  await follower.start();
  const stop = () => void follower.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
