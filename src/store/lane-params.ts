// Which seed and m a lane of a full build gets (docs/FORMAT.md, "Choosing m"
// and "Parameters across generations"). A lane keeps its parameters from the
// newest earlier generation that has it with the same entry size, so that
// params_version stays and unchanged data gives the same hint, but only while
// that m still suits the lane: an m inherited from a lane of a very different
// size makes queries or the hint many times larger than needed, so it is then
// chosen anew (and params_version bumped). Every decision that involves an
// earlier generation comes with a sentence saying what and why.
import fsp from 'node:fs/promises';
import { LWE_N, defaultColumns, recordRows } from '../pir/params.js';
import { GENERATION_ID, type LaneName, compareGenerationIds, generationBlock, generationDir, generationsDir } from './layout.js';
import { type LaneSummary, readManifest } from './manifest.js';

export interface LaneParamsRequest {
  data: string;
  /** Block of the generation being built: only generations below it are looked at. */
  block: number;
  lane: LaneName;
  entries: number;
  entrySize: number;
  /** --m, when given. */
  m?: number;
  /** --fresh-seed: a new seed (and the default m unless --m). */
  freshSeed?: boolean;
}

export interface LaneParamsChoice {
  m: number;
  /** The inherited seed; undefined: a fresh one. */
  seed?: Uint8Array;
  paramsVersion: number;
  /** Where the parameters came from, for the operator (undefined for a lane no earlier generation has). */
  note?: string;
}

/** How far an inherited m may be from the default before it is chosen anew: queries or hint at most ~2x the default's. */
const M_TOLERANCE = 2;

/** An inherited m is kept when it is within a factor 2 of the default m for the lane's entry count. */
export function inheritableM(m: number, entries: number): boolean {
  const d = defaultColumns(entries);
  return m * M_TOLERANCE >= d && m <= d * M_TOLERANCE;
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} KiB`;
  return `${n} B`;
}

/** The newest generation below `block` whose manifest lists `lane`. */
async function previousLane(data: string, block: number, lane: LaneName): Promise<{ id: string; summary: LaneSummary } | undefined> {
  const ids = (await fsp.readdir(generationsDir(data)).catch(() => [] as string[]))
    .filter((id) => GENERATION_ID.test(id) && generationBlock(id) < block)
    .sort((a, b) => compareGenerationIds(b, a));
  for (const id of ids) {
    const summary = (await readManifest(generationDir(data, id)).catch(() => undefined))?.lanes[lane];
    if (summary) return { id, summary };
  }
  return undefined;
}

export async function chooseLaneParams(r: LaneParamsRequest): Promise<LaneParamsChoice> {
  const def = defaultColumns(r.entries);
  const prev = await previousLane(r.data, r.block, r.lane);
  if (!prev) return { m: r.m ?? def, paramsVersion: 1 };
  const { id, summary } = prev;
  const pv = summary.params_version;
  const bumped = `params_version ${pv + 1}: clients download the hint again`;
  if (summary.entry_size !== r.entrySize) {
    const m = r.m ?? def;
    return { m, paramsVersion: pv + 1, note: `${r.lane}: entry size ${r.entrySize} differs from generation ${id}'s ${summary.entry_size}: new seed and m = ${m}, ${bumped}` };
  }
  if (r.freshSeed) {
    const m = r.m ?? def;
    return { m, paramsVersion: pv + 1, note: `${r.lane}: --fresh-seed: new seed and m = ${m} instead of generation ${id}'s, ${bumped}` };
  }
  const seed = Buffer.from(summary.seed, 'hex');
  if (r.m !== undefined) {
    if (r.m === summary.m) return { m: r.m, seed, paramsVersion: pv, note: `${r.lane}: keeping the seed of generation ${id} (m = ${r.m} as there; params_version ${pv})` };
    return { m: r.m, seed, paramsVersion: pv + 1, note: `${r.lane}: m = ${r.m} (--m) replaces m = ${summary.m} of generation ${id}, ${bumped}` };
  }
  if (inheritableM(summary.m, r.entries)) {
    return {
      m: summary.m,
      seed,
      paramsVersion: pv,
      note: `${r.lane}: keeping m = ${summary.m} and the seed of generation ${id} (a lane keeps its parameters across generations; params_version ${pv}); --m N or --fresh-seed to choose anew`,
    };
  }
  // The earlier m does not suit this lane: say what it would have cost.
  const hint = (m: number) => r.entrySize * recordRows(r.entries, m) * LWE_N * 4;
  const cost =
    summary.m > def
      ? `each query ${formatBytes(4 * summary.m)} instead of ${formatBytes(4 * def)}`
      : `the hint ${formatBytes(hint(summary.m))} instead of ${formatBytes(hint(def))}`;
  return {
    m: def,
    seed,
    paramsVersion: pv + 1,
    note: `${r.lane}: not keeping m = ${summary.m} of generation ${id}: for ${r.entries} entries it would make ${cost}; m = ${def} (the default), ${bumped}`,
  };
}
