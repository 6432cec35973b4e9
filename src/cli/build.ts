// lanepir build: write a generation from synthetic data or entry files.
import fsp from 'node:fs/promises';
import { type LaneSpec, buildGeneration } from '../store/builder.js';
import { type EntrySource, SyntheticSource, openEntriesFile } from '../store/entries.js';
import { GENERATION_ID, LANES, type LaneName, generationsDir, generationDir } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { stderrProgress } from '../store/progress.js';
import { UsageError, intOption } from './errors.js';

export interface BuildFlags {
  data: string;
  block: string;
  hotSynthetic?: string;
  hotEntries?: string;
  coldSynthetic?: string;
  coldEntries?: string;
  entrySize: string;
  m?: string;
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
    .filter((id) => GENERATION_ID.test(id) && Number(id) < block)
    .sort((a, b) => Number(b) - Number(a));
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
  const block = intOption('--block', flags.block)!;
  const entrySize = intOption('--entry-size', flags.entrySize, 1)!;
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
    ...(flags.shardSize !== undefined ? { shardSize: intOption('--shard-size', flags.shardSize, 1)! } : {}),
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
