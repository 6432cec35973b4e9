// Hint deltas for GET /delta/:lane?from=M: the diffs recorded by incremental
// builds (<lane>/diff.bin of each generation, and the hard links to its
// ancestors' diffs in <lane>/diffs/), followed from `to` back to `from`
// through the parent each diff names, merged into one delta.
import fsp from 'node:fs/promises';
import { type LaneDelta, DeltaError, decodeDelta, encodeDelta, mergeDeltas } from '../pir/delta.js';
import { LWE_N } from '../pir/params.js';
import { StoreError } from '../store/errors.js';
import { diffHistoryPath, diffPath } from '../store/incremental.js';
import { GENERATION_ID, type LaneName, compareGenerationIds, generationDir } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';

/** `from` is not an ancestor of `to` whose diffs are still on disk (HTTP 410: download the hint instead). */
export class DeltaGoneError extends StoreError {
  constructor(message: string) {
    super('EDELTA_GONE', message);
    this.name = 'DeltaGoneError';
  }
}

/** Longest chain followed (a guard against a corrupt parent loop; ids also strictly decrease). */
const MAX_CHAIN = 100_000;

/**
 * The encoded delta of `lane` from generation `from` to generation `to`.
 * Throws DeltaGoneError (EDELTA_GONE) when `from` is not an ancestor of `to`
 * or a diff along the way is missing or does not fit; StoreError ENOGEN when
 * `to` itself does not exist or has no such lane.
 */
export async function deltaChain(dataDir: string, lane: LaneName, from: string, to: string): Promise<Uint8Array> {
  for (const id of [from, to]) if (!GENERATION_ID.test(id)) throw new StoreError('EGENERATION', `invalid generation id ${JSON.stringify(id)}`);
  // The message goes to clients: ids only, never paths (the cause stays on the error).
  const target = await readManifest(generationDir(dataDir, to)).catch((err: Error) => {
    throw Object.assign(new StoreError('ENOGEN', `generation ${to} is not on disk`), { cause: err });
  });
  const summary = target.lanes[lane];
  if (!summary) throw new StoreError('ENOGEN', `generation ${to} has no ${lane} lane`);
  if (compareGenerationIds(from, to) > 0) throw new DeltaGoneError(`generation ${from} is newer than ${to}`);

  // Each step's diff: in `to`'s own directory (its diff and the hard-linked
  // diffs of its ancestors, which survive pruning), else in the generation
  // it belongs to. A diff names its parent as `from`.
  const toDir = generationDir(dataDir, to);
  const steps: LaneDelta[] = [];
  let id = to;
  if (from !== to && target.parent === undefined) throw new DeltaGoneError(`generation ${from} is not an ancestor of ${to} (${to} was built in full)`);
  while (id !== from) {
    const candidates = id === to ? [diffPath(toDir, lane)] : [diffHistoryPath(toDir, lane, id), diffPath(generationDir(dataDir, id), lane)];
    let bytes: Uint8Array | undefined;
    for (const file of candidates) {
      bytes = await fsp.readFile(file).catch(() => undefined);
      if (bytes) break;
    }
    if (!bytes) throw new DeltaGoneError(`the ${lane} diff of generation ${id} (between ${from} and ${to}) is gone`);
    let step: LaneDelta;
    try {
      step = decodeDelta(bytes);
    } catch (err) {
      throw new DeltaGoneError(`the ${lane} diff of generation ${id} is unusable: ${(err as Error).message}`);
    }
    // The diff names its parent (the manifests in between may be pruned); `to`'s must match its manifest.
    if (step.to !== id || (id === to && step.from !== target.parent)) {
      throw new DeltaGoneError(`the ${lane} diff of generation ${id} records ${step.from} -> ${step.to}`);
    }
    const parent = step.from;
    if (compareGenerationIds(parent, id) >= 0) throw new DeltaGoneError(`generation ${id} names ${parent} as its parent, which is not older`);
    if (compareGenerationIds(parent, from) < 0 || steps.length >= MAX_CHAIN) {
      throw new DeltaGoneError(`generation ${from} is not an ancestor of ${to} (the chain passes from ${id} to ${parent})`);
    }
    steps.push(step);
    id = parent;
  }
  if (steps.length === 0) {
    // from === to: an empty delta, so a client that is current gets a no-op.
    return encodeDelta(emptyDelta(summary, to));
  }
  steps.reverse();
  let merged: LaneDelta;
  try {
    merged = mergeDeltas(steps);
  } catch (err) {
    if (err instanceof DeltaError) throw new DeltaGoneError(`the diffs from ${from} to ${to} do not chain: ${err.message}`);
    throw err;
  }
  if (merged.toHintSha256 !== summary.hint_sha256) throw new DeltaGoneError(`the diffs end at another hint than generation ${to} has`);
  return encodeDelta(merged);
}

function emptyDelta(summary: { entries: number; entry_size: number; m: number; seed: string; hint_sha256: string }, id: string): LaneDelta {
  return {
    entrySize: summary.entry_size,
    m: summary.m,
    n: LWE_N,
    seed: Buffer.from(summary.seed, 'hex'),
    from: id,
    to: id,
    fromEntries: summary.entries,
    toEntries: summary.entries,
    fromHintSha256: summary.hint_sha256,
    toHintSha256: summary.hint_sha256,
    indices: [],
    oldValues: new Uint8Array(0),
    newValues: new Uint8Array(0),
  };
}
