// lanepir inspect / verify / selftest: operator views of a generation.
import { StoreError } from '../store/errors.js';
import { exists } from '../store/fsutil.js';
import { GENERATION_ID, type LaneName, generationsDir, isLaneName } from '../store/layout.js';
import { loadGeneration, readEntry, resolveGeneration } from '../store/generation.js';
import { verifyGeneration } from '../store/verify.js';
import { selftestLane } from '../selftest.js';
import { UsageError, intOption } from './errors.js';

function laneArg(value: string): LaneName {
  if (!isLaneName(value)) throw new UsageError(`--lane must be hot or cold, got ${JSON.stringify(value)}`);
  return value;
}

/** The generation's directory (DIR/current by default), or an error that says it does not exist. */
export async function generationArg(data: string, generation: string | undefined): Promise<string> {
  if (generation !== undefined && !GENERATION_ID.test(generation)) {
    throw new UsageError(`--generation must be a generation id (a block number, or <block>r<k>), got ${JSON.stringify(generation)}`);
  }
  const { id, dir } = await resolveGeneration(data, generation);
  if (!(await exists(dir))) throw new StoreError('ENOGEN', `generation ${id} does not exist under ${generationsDir(data)}`);
  return dir;
}

async function laneInfo(data: string, generation: string | undefined, lane: LaneName) {
  const info = await loadGeneration(await generationArg(data, generation));
  const l = info.lanes[lane];
  if (!l) throw new UsageError(`generation ${info.id} has no ${lane} lane`);
  return { info, lane: l };
}

export async function inspectCommand(flags: { data: string; generation?: string; lane: string; index: string }): Promise<void> {
  const index = intOption('--index', flags.index)!;
  const { lane } = await laneInfo(flags.data, flags.generation, laneArg(flags.lane));
  const entry = await readEntry(lane, index);
  process.stdout.write(`0x${entry.toString('hex')}\n`);
}

export async function verifyCommand(flags: { data: string; generation?: string }): Promise<void> {
  const info = await verifyGeneration(await generationArg(flags.data, flags.generation));
  const lanes = Object.values(info.lanes).map((l) => `${l.lane} (${l.crs.entries} entries, ${l.shardPaths.length} shards)`);
  process.stdout.write(`generation ${info.id} (block ${info.blockNumber}) is sound: ${lanes.join(', ')}; ${Object.keys(info.manifest.files).length} files checked\n`);
}

export async function selftestCommand(flags: {
  data: string;
  generation?: string;
  lane: string;
  count: string;
  inMemory?: boolean;
  threads?: string;
}): Promise<void> {
  const count = intOption('--count', flags.count, 1)!;
  const threads = intOption('--threads', flags.threads, 1);
  const { info, lane } = await laneInfo(flags.data, flags.generation, laneArg(flags.lane));
  const result = await selftestLane(lane, {
    count,
    mode: flags.inMemory ? 'memory' : 'mmap',
    ...(threads !== undefined ? { threads } : {}),
  });
  const ok = result.mismatches.length === 0;
  process.stdout.write(
    `selftest ${ok ? 'ok' : 'FAILED'}: generation ${info.id} ${result.lane} lane, ${result.matched}/${result.count} private round trips matched in ${result.ms.toFixed(0)} ms\n`,
  );
  for (const mm of result.mismatches.slice(0, 5)) {
    process.stderr.write(`  index ${mm.index}: expected 0x${mm.expected}, decoded 0x${mm.got}\n`);
  }
  if (!ok) process.exitCode = 1;
}
