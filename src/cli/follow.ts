// lanepir follow: build and roll one generation per block from update files.
import { pino } from 'pino';
import { Follower } from '../follow/follower.js';
import { type AdminFlags, adminTarget } from '../ops/admin.js';
import { intOption } from './errors.js';
import { ethBlockBuilder } from '../eth/follow.js';
import { isEthGeneration } from '../eth/generation-files.js';
import { resolveGeneration } from '../store/generation.js';
import { readManifest } from '../store/manifest.js';

export async function followCommand(
  flags: AdminFlags & { data: string; updatesDir: string; debounceMs: string; pollMs: string; retain: string; logLevel: string },
): Promise<void> {
  const logger = pino({ level: flags.logLevel, base: { role: 'follow' } });
  // An Ethereum data directory (its generations carry a hot manifest) takes state diffs per block.
  const head = await resolveGeneration(flags.data);
  const eth = isEthGeneration(await readManifest(head.dir));
  const follower = new Follower({
    ...(eth ? { buildBlock: ethBlockBuilder() } : {}),
    data: flags.data,
    updatesDir: flags.updatesDir,
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
