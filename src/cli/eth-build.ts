// lanepir build from Ethereum state: --state FILE or --eth-synthetic ACCOUNTS
// (full), --from-generation M with --state-diff FILE or --eth-synthetic
// (incremental). See src/eth/build.ts.
import fsp from 'node:fs/promises';
import { type EthBlockInfo, type LaneCarry, buildEthDiff, buildEthState } from '../eth/build.js';
import { HotManifest } from '../eth/hot-manifest.js';
import { DEFAULT_SYNTHETIC_SEED, EthSynthetic } from '../eth/synthetic.js';
import { GENERATION_ID, compareGenerationIds, generationBlock, generationDir, generationsDir } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { stderrProgress } from '../store/progress.js';
import { UsageError, intOption } from './errors.js';

export interface EthBuildFlags {
  data: string;
  block: string;
  state?: string;
  stateDiff?: string;
  ethSynthetic?: string;
  syntheticSeed?: string;
  syntheticDiffKeys?: string;
  hotManifest?: string;
  blockHash?: string;
  chainId?: string;
  fromGeneration?: string;
  shardSize?: string;
  threads?: string;
  freshSeed?: boolean;
  publish?: boolean;
  quiet?: boolean;
}

/** True when the flags ask for an Ethereum build. */
export function isEthBuild(flags: Partial<EthBuildFlags>): boolean {
  return flags.state !== undefined || flags.stateDiff !== undefined || flags.ethSynthetic !== undefined;
}

export async function loadHotManifest(file: string): Promise<HotManifest> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--hot-manifest: cannot read ${file}: ${(err as Error).message}`);
  }
  return HotManifest.parse(text, file);
}

function blockInfo(flags: EthBuildFlags): EthBlockInfo {
  if (flags.blockHash !== undefined && !/^0x[0-9a-fA-F]{64}$/.test(flags.blockHash)) {
    throw new UsageError(`--block-hash must be 0x followed by 64 hex digits, got ${JSON.stringify(flags.blockHash)}`);
  }
  return {
    ...(flags.blockHash !== undefined ? { blockHash: flags.blockHash.toLowerCase() } : {}),
    ...(flags.chainId !== undefined ? { chainId: intOption('--chain-id', flags.chainId, 1)! } : {}),
  };
}

/**
 * A full rebuild places every key afresh (new key_seed, so cached hints
 * cannot be updated by delta): the lanes' params_version goes up by one from
 * the newest earlier generation, so clients know to download.
 */
async function nextParamsVersions(data: string, block: number): Promise<LaneCarry> {
  const ids = (await fsp.readdir(generationsDir(data)).catch(() => [] as string[]))
    .filter((id) => GENERATION_ID.test(id) && generationBlock(id) < block)
    .sort((a, b) => compareGenerationIds(b, a));
  const carry: LaneCarry = {};
  for (const lane of ['hot', 'cold'] as const) {
    for (const id of ids) {
      const prev = (await readManifest(generationDir(data, id)).catch(() => undefined))?.lanes[lane];
      if (prev) {
        carry[lane] = { paramsVersion: prev.params_version + 1 };
        break;
      }
    }
  }
  return carry;
}

export async function ethBuildCommand(flags: EthBuildFlags): Promise<void> {
  const block = intOption('--block', flags.block)!;
  const sources = [flags.state, flags.stateDiff, flags.ethSynthetic].filter((v) => v !== undefined).length;
  if (sources > 1) throw new UsageError('--state, --state-diff and --eth-synthetic exclude each other');
  const info = blockInfo(flags);
  const hotManifest = flags.hotManifest !== undefined ? await loadHotManifest(flags.hotManifest) : undefined;
  const progress = flags.quiet ? undefined : stderrProgress();
  const synthetic = flags.ethSynthetic !== undefined ? new EthSynthetic(intOption('--eth-synthetic', flags.ethSynthetic, 1)!, flags.syntheticSeed ?? DEFAULT_SYNTHETIC_SEED) : undefined;

  if (flags.fromGeneration !== undefined) {
    const from = flags.fromGeneration;
    if (!GENERATION_ID.test(from)) throw new UsageError(`--from-generation must be a generation id (block number), got ${JSON.stringify(from)}`);
    if (flags.state !== undefined) throw new UsageError('--state builds a full generation; with --from-generation give --state-diff FILE');
    if (flags.shardSize !== undefined || flags.freshSeed) throw new UsageError('--shard-size and --fresh-seed cannot be combined with --from-generation (the lanes keep their shape)');
    const diffKeys = intOption('--synthetic-diff-keys', flags.syntheticDiffKeys ?? '2000', 1)!;
    const result = await buildEthDiff({
      data: flags.data,
      block,
      from,
      diff: synthetic ? synthetic.diff(block, { keys: diffKeys }) : flags.stateDiff!,
      ...(hotManifest ? { hotManifest } : {}),
      ...info,
      publish: flags.publish === true,
      ...(progress ? { progress } : {}),
    });
    const lanes = Object.entries(result.stats)
      .filter(([lane]) => lane === 'hot' || lane === 'cold')
      .map(([lane, s]) => {
        const k = (s as { keyword?: { inserted: number; updated: number; deleted: number; keys: number; load: number } }).keyword;
        return k ? `${lane}: +${k.inserted} ~${k.updated} -${k.deleted} keys (${k.keys} keys, load ${k.load.toFixed(3)})` : `${lane}: carried`;
      })
      .join('; ');
    const moved = result.stats.eth.moved ? `; ${result.stats.eth.moved} storage keys moved between lanes` : '';
    process.stdout.write(`built generation ${result.generation} from ${from} in ${(result.durationMs / 1000).toFixed(2)} s (${lanes}${moved})${flags.publish ? ', published' : ''}\n`);
    return;
  }

  if (flags.stateDiff !== undefined) throw new UsageError('--state-diff needs --from-generation (the generation the diff applies to)');
  if (flags.syntheticDiffKeys !== undefined) throw new UsageError('--synthetic-diff-keys needs --from-generation');
  const carry = flags.freshSeed ? {} : await nextParamsVersions(flags.data, block);
  const result = await buildEthState({
    data: flags.data,
    block,
    state: synthetic ? synthetic.state() : flags.state!,
    ...((hotManifest ?? synthetic?.hotManifest) ? { hotManifest: (hotManifest ?? synthetic?.hotManifest)! } : {}),
    ...info,
    lanes: carry,
    ...(flags.shardSize !== undefined ? { shardSize: intOption('--shard-size', flags.shardSize, 1)! } : {}),
    ...(flags.threads !== undefined ? { threads: intOption('--threads', flags.threads, 1)! } : {}),
    publish: flags.publish === true,
    ...(progress ? { progress } : {}),
  });
  const lanes = Object.entries(result.manifest.lanes)
    .map(([lane, s]) => `${lane}: ${result.stats.keys?.[lane as 'hot' | 'cold'] ?? '?'} keys in m=${s.m} x R=${s.R}, d=${s.bucket_choices ?? '?'}`)
    .join('; ');
  process.stdout.write(
    `built generation ${result.generation} at ${result.dir} in ${(result.durationMs / 1000).toFixed(2)} s (${result.stats.accounts} accounts; ${lanes})${flags.publish ? ', published' : ''}\n`,
  );
}
