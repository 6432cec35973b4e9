// Which generations may be deleted: never the one <data>/current points at,
// never one a server still holds, and never the newest `retain` ones — or,
// for a followed chain, `retain` counted along current's ancestor chain
// first (so that a reorg can always walk back that far) and only then the
// newest others: generations of abandoned branches go first. What is being
// built on current (newer, descending from it) is always kept.
import fsp from 'node:fs/promises';
import { GENERATION_ID, compareGenerationIds, generationBlock, generationDir, generationsDir } from './layout.js';
import { StoreError } from './errors.js';
import { resolveGeneration } from './generation.js';
import { readManifest } from './manifest.js';

export interface PrunePlan {
  keep: string[];
  remove: string[];
  /** Why each kept generation is kept. */
  reasons: Record<string, string>;
}

/** Generation ids under <data>/generations, oldest first; ENODATA when `data` is not a data directory. */
export async function listGenerations(data: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fsp.readdir(generationsDir(data));
  } catch (err) {
    const st = await fsp.stat(data).catch(() => undefined);
    if (!st) throw new StoreError('ENODATA', `data directory ${data} does not exist`);
    if (!st.isDirectory()) throw new StoreError('ENODATA', `data directory ${data} is not a directory`);
    throw new StoreError('ENODATA', `${data} is not a lanepir data directory (cannot read ${generationsDir(data)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return names.filter((n) => GENERATION_ID.test(n)).sort(compareGenerationIds);
}

export interface PruneOptions {
  /**
   * Count `retain` along current's chain of parents (follow mode): current
   * and its nearest ancestors first, then, while the count allows, the
   * newest others (abandoned branches); the generations newer than current
   * that descend from it (built, not yet published) are kept besides.
   */
  chain?: boolean;
}

export async function planPrune(data: string, held: Set<string>, retain: number, opts: PruneOptions = {}): Promise<PrunePlan> {
  const all = await listGenerations(data);
  const current = await resolveGeneration(data).then((g) => g.id, () => undefined);
  const keepChain = opts.chain && current !== undefined ? await chainToKeep(data, all, current, retain) : undefined;
  const newest = keepChain ?? new Set(all.slice(Math.max(0, all.length - retain)));
  const why = keepChain ? `on the chain of current (newest ${retain})` : `among the newest ${retain}`;
  const plan: PrunePlan = { keep: [], remove: [], reasons: {} };
  for (const id of all) {
    const reason = id === current ? 'current' : held.has(id) ? 'held by a server' : newest.has(id) ? why : undefined;
    if (reason) {
      plan.keep.push(id);
      plan.reasons[id] = reason;
    } else plan.remove.push(id);
  }
  return plan;
}

/** Current and its nearest ancestors, then the newest others, `retain` in all; and the generations above current whose parents lead to it. */
async function chainToKeep(data: string, all: string[], current: string, retain: number): Promise<Set<string>> {
  const parentOf = async (id: string) => (await readManifest(generationDir(data, id)).catch(() => undefined))?.parent;
  const keep = new Set<string>();
  let id: string | undefined = current;
  while (id && keep.size < retain) {
    keep.add(id);
    id = await parentOf(id);
  }
  for (let i = all.length - 1; i >= 0 && keep.size < retain; i--) keep.add(all[i]!);
  const top = generationBlock(current);
  const above = all.filter((g) => generationBlock(g) > top).sort(compareGenerationIds);
  const descends = new Map<string, boolean>([[current, true]]);
  for (const g of above) {
    // Parents are older blocks: walking in block order, each parent is settled before its children.
    const parent = await parentOf(g);
    const yes = parent !== undefined && (descends.get(parent) ?? false);
    descends.set(g, yes);
    if (yes) keep.add(g);
  }
  return keep;
}

/** Deletes whole generation directories (their files are never modified, only unlinked). */
export async function removeGenerations(data: string, ids: string[]): Promise<void> {
  for (const id of ids) await fsp.rm(generationDir(data, id), { recursive: true, force: true });
}
