// manifest.json: what a generation holds, and a checksum of every file in it.
import fs from 'node:fs/promises';
import { z } from 'zod';
import { FORMAT_VERSION, GENERATION_ID, LANES, manifestPath } from './layout.js';
import { StoreError } from './errors.js';

const laneSummary = z.object({
  entries: z.number().int().positive(),
  entry_size: z.number().int().positive(),
  m: z.number().int().positive(),
  R: z.number().int().positive(),
  shard_size_bytes: z.number().int().positive(),
  shards: z.number().int().positive(),
  bytes: z.number().int().positive(),
  seed: z.string().regex(/^[0-9a-f]{32}$/),
  hint_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  params_version: z.number().int().nonnegative(),
  /** Keyword lanes only (absent: an index lane). */
  layout: z.literal('keyword').optional(),
  key_seed: z.string().regex(/^[0-9a-f]{32}$/).optional(),
  bucket_choices: z.number().int().min(1).max(3).optional(),
});

const fileEntry = z.object({ size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const manifestSchema = z.object({
  format: z.literal('lanepir-generation'),
  format_version: z.literal(FORMAT_VERSION),
  generation: z.string(),
  block_number: z.number().int().nonnegative(),
  /** The block's hash and the chain's id when the builder was told them (null otherwise; absent in older generations). */
  block_hash: z.string().regex(/^0x[0-9a-f]{64}$/).nullable().optional(),
  chain_id: z.number().int().positive().nullable().optional(),
  /** Set by incremental builds: the generation this one was built from (its diffs are <lane>/diff.bin). */
  parent: z.string().regex(GENERATION_ID).optional(),
  created_at: z.string(),
  lanes: z.object({ hot: laneSummary.optional(), cold: laneSummary.optional() }).strict(),
  files: z.record(z.string(), fileEntry),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type LaneSummary = z.infer<typeof laneSummary>;

/** Reads and validates a generation's manifest. */
export async function readManifest(genDir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await fs.readFile(manifestPath(genDir), 'utf8');
  } catch (err) {
    throw new StoreError('EMANIFEST', `cannot read ${manifestPath(genDir)}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StoreError('EMANIFEST', `${manifestPath(genDir)} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new StoreError('EMANIFEST', `${manifestPath(genDir)}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  if (!LANES.some((l) => parsed.data.lanes[l])) throw new StoreError('EMANIFEST', `${manifestPath(genDir)} lists no lane`);
  return parsed.data;
}
