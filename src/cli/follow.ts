// lanepir follow: build and roll one generation per block from update files.
import { pino } from 'pino';
import { Follower } from '../follow/follower.js';
import { type AdminFlags, adminTarget } from '../ops/admin.js';
import { UsageError, intOption } from './errors.js';
import { type FollowRpcFlags, followRpc } from './follow-rpc.js';
import { ethBlockBuilder } from '../eth/follow.js';
import { isEthGeneration } from '../eth/generation-files.js';
import { resolveGeneration } from '../store/generation.js';
import { readManifest } from '../store/manifest.js';

export async function followCommand(
  flags: AdminFlags & { data: string; updatesDir?: string; debounceMs: string; pollMs: string; retain: string; logLevel: string } & Partial<FollowRpcFlags>,
): Promise<void> {
  const logger = pino({ level: flags.logLevel, base: { role: 'follow' } });
  if ((flags.updatesDir === undefined) === (flags.rpc === undefined)) throw new UsageError('give either --rpc URL (follow an Ethereum node) or --updates-dir DIR (follow block files)');
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
