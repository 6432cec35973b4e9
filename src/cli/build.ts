// lanepir build: write a generation from synthetic data or entry files, or
// incrementally from an earlier generation and update files.
import { checkColumns } from '../pir/params.js';
import { type LaneSpec, buildGeneration } from '../store/builder.js';
import { type EntrySource, SyntheticSource, openEntriesFile } from '../store/entries.js';
import { type DetectedFormat, type FileFormat, isFileFormat, readUpdatesFile } from '../store/entry-files.js';
import { StoreError } from '../store/errors.js';
import { exists } from '../store/fsutil.js';
import { loadGeneration } from '../store/generation.js';
import { buildIncremental } from '../store/incremental.js';
import { chooseLaneParams } from '../store/lane-params.js';
import { DEFAULT_SHARD_SIZE, GENERATION_ID, LANES, type LaneName, generationDir, generationsDir } from '../store/layout.js';
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
  format?: string;
  publish?: boolean;
  quiet?: boolean;
}

/** Generations are immutable: say so before reading any input, not after. */
async function refuseExisting(data: string, block: number): Promise<void> {
  const dir = generationDir(data, block);
  if (await exists(dir)) throw new StoreError('EEXIST', `generation ${block} already exists at ${dir}; generations are immutable (build a new block)`);
}

/** Informational lines on stderr (also with --quiet, which silences progress only). */
function note(message: string): void {
  process.stderr.write(`lanepir: ${message}\n`);
}

/** --m, checked against the scheme's limits (docs/FORMAT.md, "Choosing m"). */
function columnsOption(value: string | undefined): number | undefined {
  const m = intOption('--m', value, 1);
  if (m === undefined) return undefined;
  try {
    checkColumns(m);
  } catch (err) {
    throw new UsageError(`--m: ${(err as Error).message}`);
  }
  return m;
}

/** --format, checked. */
function formatOption(flags: BuildFlags): FileFormat | undefined {
  if (flags.format === undefined) return undefined;
  if (!isFileFormat(flags.format)) throw new UsageError(`--format must be jsonl or binary, got ${JSON.stringify(flags.format)}`);
  const files = [flags.hotEntries, flags.coldEntries, flags.hotUpdates, flags.coldUpdates].filter((f) => f !== undefined);
  if (files.length === 0) throw new UsageError('--format applies to entry and update files (--hot-entries, --cold-entries, --hot-updates, --cold-updates); none was given');
  return flags.format;
}

/** Says which format a file is read in when only its content told (its name did not). */
function formatNote(file: string): (d: DetectedFormat) => void {
  return (d) => {
    if (d.by === 'content') note(`reading ${file} as ${d.format === 'jsonl' ? 'JSON Lines' : 'binary'} (detected from its content; name it .jsonl or .bin, or give --format, to say so)`);
  };
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
  const m = columnsOption(flags.m);
  const format = formatOption(flags);
  const shardSize = intOption('--shard-size', flags.shardSize ?? String(DEFAULT_SHARD_SIZE), 1)!;
  if (shardSize < entrySize) throw new UsageError(`--shard-size ${shardSize} is smaller than one entry (--entry-size ${entrySize})`);
  const threads = intOption('--threads', flags.threads, 1);
  await refuseExisting(flags.data, block);
  const lanes: Partial<Record<LaneName, LaneSpec>> = {};
  for (const lane of LANES) {
    const synthetic = lane === 'hot' ? flags.hotSynthetic : flags.coldSynthetic;
    const file = lane === 'hot' ? flags.hotEntries : flags.coldEntries;
    if (synthetic !== undefined && file !== undefined) throw new UsageError(`--${lane}-synthetic and --${lane}-entries exclude each other`);
    let source: EntrySource | undefined;
    if (synthetic !== undefined) source = new SyntheticSource(lane, intOption(`--${lane}-synthetic`, synthetic, 1)!, entrySize, block);
    else if (file !== undefined) source = await openEntriesFile(file, entrySize, { lane, ...(format ? { format } : {}), onFormat: formatNote(file) });
    if (!source) continue;
    const params = await chooseLaneParams({
      data: flags.data,
      block,
      lane,
      entries: source.entries,
      entrySize,
      ...(m !== undefined ? { m } : {}),
      freshSeed: flags.freshSeed === true,
    });
    if (params.note) note(params.note);
    lanes[lane] = { source, m: params.m, paramsVersion: params.paramsVersion, ...(params.seed ? { seed: params.seed } : {}) };
  }
  if (Object.keys(lanes).length === 0) throw new UsageError('give at least one lane: --hot-synthetic N, --hot-entries FILE, --cold-synthetic N or --cold-entries FILE');
  const result = await buildGeneration({
    data: flags.data,
    block,
    lanes,
    shardSize,
    ...(threads !== undefined ? { threads } : {}),
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
  const format = formatOption(flags);
  await refuseExisting(flags.data, block);
  if (!(await exists(generationDir(flags.data, from)))) throw new StoreError('ENOGEN', `generation ${from} (--from-generation) does not exist under ${generationsDir(flags.data)}`);
  const parent = await loadGeneration(generationDir(flags.data, from));
  const updates: Partial<Record<LaneName, Map<number, Buffer>>> = {};
  for (const lane of LANES) {
    const file = lane === 'hot' ? flags.hotUpdates : flags.coldUpdates;
    if (file === undefined) continue;
    const info = parent.lanes[lane];
    if (!info) throw new UsageError(`generation ${from} has no ${lane} lane; --${lane}-updates cannot apply`);
    updates[lane] = await readUpdatesFile(file, lane, info.crs.entry_size, { ...(format ? { format } : {}), onFormat: formatNote(file) });
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
