// Operator subcommands: publish a generation, ask a running server to reload,
// and prune generations nobody holds. ops/roll-generation chains them.
import { AdminError, type AdminFlags, adminRequest, adminTarget, heldGenerations } from '../ops/admin.js';
import { publishGeneration } from '../store/builder.js';
import { GENERATION_ID } from '../store/layout.js';
import { listGenerations, planPrune, removeGenerations } from '../store/prune.js';
import { UsageError, intOption } from './errors.js';

export async function publishCommand(flags: { data: string; generation: string }): Promise<void> {
  if (!GENERATION_ID.test(flags.generation)) throw new UsageError(`--generation must be a generation id (a block number, or <block>r<k>), got ${JSON.stringify(flags.generation)}`);
  await publishGeneration(flags.data, flags.generation);
  process.stdout.write(`published generation ${flags.generation}: ${flags.data}/current -> generations/${flags.generation}\n`);
}

export async function reloadCommand(flags: AdminFlags & { generation?: string }): Promise<void> {
  const target = adminTarget(flags);
  if (flags.generation !== undefined && !GENERATION_ID.test(flags.generation)) {
    throw new UsageError(`--generation must be a generation id, got ${JSON.stringify(flags.generation)}`);
  }
  const body = flags.generation !== undefined ? JSON.stringify({ generation: flags.generation }) : '';
  const result = await adminRequest(target, '/admin/reload', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

export async function pruneCommand(flags: AdminFlags & { data: string; retain: string; dryRun?: boolean }): Promise<void> {
  const retain = intOption('--retain', flags.retain, 1)!;
  await listGenerations(flags.data); // a missing or wrong data directory is an error, not "nothing to prune"
  const held = await heldGenerations(adminTarget(flags)).catch((err: AdminError) => {
    if (err.code === 'EHELD_INCOMPLETE') throw new AdminError(`prune refused, nothing removed: ${err.message}`, err.code);
    throw err;
  });
  const plan = await planPrune(flags.data, held, retain);
  for (const id of plan.keep) process.stdout.write(`keep   ${id} (${plan.reasons[id]})\n`);
  for (const id of plan.remove) process.stdout.write(`${flags.dryRun ? 'would remove' : 'remove'} ${id}\n`);
  if (!flags.dryRun) await removeGenerations(flags.data, plan.remove);
}
