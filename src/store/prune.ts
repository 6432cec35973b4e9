// Which generations may be deleted: never the one <data>/current points at,
// never one a server still holds, and never the newest `retain` ones.
import fsp from 'node:fs/promises';
import { GENERATION_ID, compareGenerationIds, generationDir, generationsDir } from './layout.js';
import { StoreError } from './errors.js';
import { resolveGeneration } from './generation.js';

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

export async function planPrune(data: string, held: Set<string>, retain: number): Promise<PrunePlan> {
  const all = await listGenerations(data);
  const current = await resolveGeneration(data).then((g) => g.id, () => undefined);
  const newest = new Set(all.slice(Math.max(0, all.length - retain)));
  const plan: PrunePlan = { keep: [], remove: [], reasons: {} };
  for (const id of all) {
    const reason = id === current ? 'current' : held.has(id) ? 'held by a server' : newest.has(id) ? `among the newest ${retain}` : undefined;
    if (reason) {
      plan.keep.push(id);
      plan.reasons[id] = reason;
    } else plan.remove.push(id);
  }
  return plan;
}

/** Deletes whole generation directories (their files are never modified, only unlinked). */
export async function removeGenerations(data: string, ids: string[]): Promise<void> {
  for (const id of ids) await fsp.rm(generationDir(data, id), { recursive: true, force: true });
}
