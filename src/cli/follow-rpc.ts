// lanepir follow --rpc URL: follow an Ethereum node, one generation per block.
import { type Logger } from 'pino';
import { ChainFollower } from '../eth/chain-follower.js';
import { CHANGE_SOURCES, type ChangeSourceName, detectChangeSource } from '../eth/changes/sources.js';
import { EthRpc, redactUrl } from '../eth/rpc/client.js';
import { FollowMetrics, serveFollowMetrics } from '../follow/metrics.js';
import { Roller, type RollerEvents } from '../follow/roller.js';
import { generationBlock } from '../store/layout.js';
import { type AdminFlags, adminTarget } from '../ops/admin.js';
import { UsageError, intOption } from './errors.js';
import { loadHotManifest } from './eth-build.js';

export interface FollowRpcFlags extends AdminFlags {
  data: string;
  rpc: string;
  confirmations?: string;
  hotManifest?: string;
  fromBlock?: string;
  state?: string;
  changeSource: string;
  pollMs: string;
  debounceMs: string;
  retain: string;
  metricsHost: string;
  metricsPort?: string;
  rpcBatch: string;
  rpcTimeoutMs: string;
  rpcMaxResponseMb?: string;
}

/**
 * Fewest generations of the tip's chain kept with --rpc: the tip and its
 * parent, so that a one-block reorg can walk back (a reorg can go
 * `retain - 1` blocks below the tip; abandoned branches are pruned first).
 */
export const MIN_RPC_RETAIN = 2;

/**
 * Starts following; resolves once the first generation is built and
 * published. A fatal error (the chain cannot be followed) stops the follower
 * and calls `onFatal` — by default: exit 1.
 */
export async function followRpc(
  flags: FollowRpcFlags,
  logger: Logger,
  onFatal: (error: Error) => void = () => process.exit(1),
): Promise<{ stop: () => Promise<void>; follower: ChainFollower }> {
  if ((flags.fromBlock === undefined) !== (flags.state === undefined)) throw new UsageError('--from-block and --state go together (a state file and the block it is at)');
  if (!(CHANGE_SOURCES as readonly string[]).includes(flags.changeSource) && flags.changeSource !== 'auto') {
    throw new UsageError(`--change-source must be auto, ${CHANGE_SOURCES.join(', ')}; got ${JSON.stringify(flags.changeSource)}`);
  }
  const admin = adminTarget(flags); // --admin-token-file read and checked as by every admin command
  const metrics = new FollowMetrics();
  const rpc = new EthRpc({
    url: flags.rpc,
    batchSize: intOption('--rpc-batch', flags.rpcBatch, 1)!,
    timeoutMs: intOption('--rpc-timeout-ms', flags.rpcTimeoutMs, 100)!,
    maxResponseBytes: intOption('--rpc-max-response-mb', flags.rpcMaxResponseMb ?? '256', 1)! * 2 ** 20,
  });
  logger.info({ rpc: redactUrl(flags.rpc) }, 'connecting to the node');
  const source = await detectChangeSource(rpc, logger, flags.changeSource as ChangeSourceName | 'auto');
  const roller = new Roller({ data: flags.data, admin, logger, retain: intOption('--retain', flags.retain, MIN_RPC_RETAIN)!, debounceMs: intOption('--debounce-ms', flags.debounceMs)! });
  const follower = new ChainFollower({
    data: flags.data,
    rpc,
    source,
    roller,
    logger,
    metrics,
    confirmations: intOption('--confirmations', flags.confirmations ?? '0')!,
    pollMs: intOption('--poll-ms', flags.pollMs, 10)!,
    ...(flags.hotManifest !== undefined ? { hotManifest: await loadHotManifest(flags.hotManifest) } : {}),
    ...(flags.fromBlock !== undefined ? { fromBlock: intOption('--from-block', flags.fromBlock)!, stateFile: flags.state! } : {}),
  });
  // Served block, lag and reload durations from the roller.
  roller.on('reloaded', (e: RollerEvents['reloaded']) => {
    metrics.servedBlock.set(e.block);
    metrics.reloadSeconds.observe(e.ms / 1000);
    if (follower.nodeHead >= 0) metrics.lagBlocks.set(Math.max(0, follower.nodeHead - e.block));
    if (e.blockToServedMs !== undefined) metrics.blockToServedSeconds.observe(e.blockToServedMs / 1000);
    logger.info({ generation: e.generation, block: e.block, reload_ms: Math.round(e.ms), lag_blocks: Math.max(0, follower.nodeHead - e.block), block_to_served_ms: e.blockToServedMs }, 'serving');
  });
  roller.on('failed', () => metrics.reloadFailures.inc());
  follower.on('built', () => {
    const served = roller.served;
    if (served !== undefined) metrics.lagBlocks.set(Math.max(0, follower.nodeHead - generationBlock(served)));
  });
  let metricsServer: Awaited<ReturnType<typeof serveFollowMetrics>> | undefined;
  if (flags.metricsPort !== undefined) {
    metricsServer = await serveFollowMetrics(metrics, flags.metricsHost, intOption('--metrics-port', flags.metricsPort)!);
    logger.info({ url: `${metricsServer.url}/metrics` }, 'follow metrics');
  }
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await follower.stop();
      await roller.stop();
      await rpc.close();
      await metricsServer?.close();
    })());
  follower.once('fatal', ({ error }: { error: Error }) => {
    process.stderr.write(`lanepir: ${error.message} [${(error as { code?: string }).code ?? 'EFATAL'}]\n`);
    void stop().finally(() => onFatal(error));
  });
  try {
    await follower.start();
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { stop, follower };
}
