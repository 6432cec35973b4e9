// lanepir build: write a generation from synthetic data or entry files.
import fsp from 'node:fs/promises';
import { type LaneSpec, buildGeneration } from '../store/builder.js';
import { type EntrySource, SyntheticSource, openEntriesFile } from '../store/entries.js';
import { buildIncremental, readUpdatesFile } from '../store/incremental.js';
import { loadGeneration } from '../store/generation.js';
import { DEFAULT_SHARD_SIZE, GENERATION_ID, LANES, compareGenerationIds, generationBlock, type LaneName, generationsDir, generationDir } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { stderrProgress } from '../store/progress.js';
import { UsageError, intOption } from './errors.js';
import { type EthBuildFlags, ethBuildCommand, isEthBuild } from './eth-build.js';

export interface BuildFlags extends Partial<Omit<EthBuildFlags, 'data' | 'block'>> {
  data: string;
  block: string;
  hotSynthetic?: string;
  hotEntries?: string;
  coldSynthetic?: string;
  coldEntries?: string;
  entrySize?: string;
  m?: string;
  fromGeneration?: string;
  hotUpdates?: string;
  coldUpdates?: string;
  shardSize?: string;
  threads?: string;
  freshSeed?: boolean;
  publish?: boolean;
  quiet?: boolean;
}

/**
 * The newest generation below `block` that has `lane`: its seed and m are kept
 * (so clients can update their hints) when the entry size is unchanged.
 */
async function inheritedParams(data: string, block: number, lane: LaneName, entrySize: number): Promise<Partial<LaneSpec>> {
  const ids = (await fsp.readdir(generationsDir(data)).catch(() => [] as string[]))
    .filter((id) => GENERATION_ID.test(id) && generationBlock(id) < block)
    .sort((a, b) => compareGenerationIds(b, a));
  for (const id of ids) {
    const manifest = await readManifest(generationDir(data, id)).catch(() => undefined);
    const prev = manifest?.lanes[lane];
    if (!prev) continue;
    if (prev.entry_size !== entrySize) return { paramsVersion: prev.params_version + 1 };
    return { seed: Buffer.from(prev.seed, 'hex'), m: prev.m, paramsVersion: prev.params_version };
  }
  return {};
}

export async function buildCommand(flags: BuildFlags): Promise<void> {
  // Ethereum state (src/cli/eth-build.ts): keyword lanes from accounts and storage.
  const laneFlags = (['hotSynthetic', 'hotEntries', 'coldSynthetic', 'coldEntries', 'entrySize', 'm', 'hotUpdates', 'coldUpdates'] as const).filter((k) => flags[k] !== undefined);
  if (isEthBuild(flags)) {
    if (laneFlags.length > 0) throw new UsageError(`--state, --state-diff and --eth-synthetic build both lanes from Ethereum state; they cannot be combined with ${laneFlags.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}`);
    return ethBuildCommand(flags);
  }
  for (const [flag, v] of [['--hot-manifest', flags.hotManifest], ['--block-hash', flags.blockHash], ['--chain-id', flags.chainId], ['--synthetic-seed', flags.syntheticSeed], ['--synthetic-diff-keys', flags.syntheticDiffKeys]] as const) {
    if (v !== undefined) throw new UsageError(`${flag} applies to builds from Ethereum state (--state, --state-diff or --eth-synthetic)`);
  }
  if (flags.fromGeneration !== undefined) return incrementalCommand(flags);
  if (flags.hotUpdates !== undefined || flags.coldUpdates !== undefined) throw new UsageError('--hot-updates and --cold-updates need --from-generation');
  const block = intOption('--block', flags.block)!;
  const entrySize = intOption('--entry-size', flags.entrySize ?? '32', 1)!;
  const m = intOption('--m', flags.m, 1);
  const lanes: Partial<Record<LaneName, LaneSpec>> = {};
  for (const lane of LANES) {
    const synthetic = lane === 'hot' ? flags.hotSynthetic : flags.coldSynthetic;
    const file = lane === 'hot' ? flags.hotEntries : flags.coldEntries;
    if (synthetic !== undefined && file !== undefined) throw new UsageError(`--${lane}-synthetic and --${lane}-entries exclude each other`);
    let source: EntrySource | undefined;
    if (synthetic !== undefined) source = new SyntheticSource(lane, intOption(`--${lane}-synthetic`, synthetic, 1)!, entrySize, block);
    else if (file !== undefined) source = await openEntriesFile(file, entrySize);
    if (!source) continue;
    const inherited = flags.freshSeed ? {} : await inheritedParams(flags.data, block, lane, entrySize);
    const spec: LaneSpec = { source, ...inherited };
    if (m !== undefined && m !== spec.m) {
      spec.m = m;
      if (inherited.m !== undefined) spec.paramsVersion = (inherited.paramsVersion ?? 1) + 1;
    }
    lanes[lane] = spec;
  }
  if (Object.keys(lanes).length === 0) throw new UsageError('give at least one lane: --hot-synthetic N, --hot-entries FILE, --cold-synthetic N or --cold-entries FILE');
  const result = await buildGeneration({
    data: flags.data,
    block,
    lanes,
    shardSize: intOption('--shard-size', flags.shardSize ?? String(DEFAULT_SHARD_SIZE), 1)!,
    ...(flags.threads !== undefined ? { threads: intOption('--threads', flags.threads, 1)! } : {}),
    publish: flags.publish === true,
    ...(flags.quiet ? {} : { progress: stderrProgress() }),
  });
  const summary = Object.entries(result.manifest.lanes)
    .map(([lane, s]) => `${lane}: ${s.entries} x ${s.entry_size} B, m=${s.m}, R=${s.R}, ${s.shards} shards`)
    .join('; ');
  process.stdout.write(
    `built generation ${result.generation} at ${result.dir} in ${(result.durationMs / 1000).toFixed(2)} s (${summary})${flags.publish ? ', published' : ''}\n`,
  );
}

/**
 * lanepir build --from-generation M [--hot-updates FILE] [--cold-updates FILE]:
 * generation BLOCK from M plus changed entries (src/store/incremental.ts).
 * Lane shape (entry size, m, seed, shard size) comes from M. All update files
 * are read and checked before anything is written.
 */
async function incrementalCommand(flags: BuildFlags): Promise<void> {
  const block = intOption('--block', flags.block)!;
  const from = flags.fromGeneration!;
  if (!GENERATION_ID.test(from)) throw new UsageError(`--from-generation must be a generation id (block number), got ${JSON.stringify(from)}`);
  const clashing = (
    [
      ['--hot-synthetic', flags.hotSynthetic],
      ['--hot-entries', flags.hotEntries],
      ['--cold-synthetic', flags.coldSynthetic],
      ['--cold-entries', flags.coldEntries],
      ['--entry-size', flags.entrySize],
      ['--m', flags.m],
      ['--shard-size', flags.shardSize],
      ['--fresh-seed', flags.freshSeed],
    ] as const
  ).filter(([, v]) => v !== undefined && v !== false);
  if (clashing.length > 0) {
    throw new UsageError(`${clashing.map(([k]) => k).join(', ')} cannot be combined with --from-generation (an incremental build keeps the lanes of generation ${from}; give --hot-updates/--cold-updates)`);
  }
  const parent = await loadGeneration(generationDir(flags.data, from));
  const updates: Partial<Record<LaneName, Map<number, Buffer>>> = {};
  for (const lane of LANES) {
    const file = lane === 'hot' ? flags.hotUpdates : flags.coldUpdates;
    if (file === undefined) continue;
    const info = parent.lanes[lane];
    if (!info) throw new UsageError(`generation ${from} has no ${lane} lane; --${lane}-updates cannot apply`);
    updates[lane] = await readUpdatesFile(file, info.crs.entry_size);
  }
  const result = await buildIncremental({
    data: flags.data,
    block,
    from,
    updates,
    publish: flags.publish === true,
    ...(flags.quiet ? {} : { progress: stderrProgress() }),
  });
  const summary = Object.entries(result.stats)
    .map(([lane, s]) => `${lane}: ${s.changed} changed entries${s.grewBy ? `, +${s.grewBy} entries` : ''}, ${s.writtenShards} shards written, ${s.linkedShards} linked`)
    .join('; ');
  process.stdout.write(
    `built generation ${result.generation} from ${from} at ${result.dir} in ${(result.durationMs / 1000).toFixed(2)} s (${summary})${flags.publish ? ', published' : ''}\n`,
  );
}
