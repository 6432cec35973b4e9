// manifest.json: what a generation holds, and a checksum of every file in it.
import crypto from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { FORMAT_VERSION, GENERATION_ID, LANES, manifestPath } from './layout.js';
import { StoreError } from './errors.js';
import { FileChecker, type FileIdentity } from './files.js';

/**
 * Largest manifest read (about 110 bytes per listed file: room for two
 * million files, far beyond what vm.max_map_count lets a server map).
 */
export const MAX_MANIFEST_BYTES = 256 * 2 ** 20;

/**
 * A file's place in a generation (`<lane>/...`, or a generation-wide file such
 * as `hot-manifest.json` and `eth/...`): relative, no `.`/`..` or empty segments.
 */
const fileName = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'file names are relative paths inside the generation')
  .refine((s) => !s.split('/').some((seg) => seg === '.' || seg === '..'), 'file names may not contain . or .. segments');

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
  /** Followed chains (lanepir follow --rpc): the block's parent hash and state root, for reorg checks and clients. */
  parent_hash: z.string().regex(/^0x[0-9a-f]{64}$/).nullable().optional(),
  state_root: z.string().regex(/^0x[0-9a-f]{64}$/).nullable().optional(),
  /** Set by incremental builds: the generation this one was built from (its diffs are <lane>/diff.bin). */
  parent: z.string().regex(GENERATION_ID).optional(),
  created_at: z.string(),
  lanes: z.object({ hot: laneSummary.optional(), cold: laneSummary.optional() }).strict(),
  files: z.record(fileName, fileEntry),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type LaneSummary = z.infer<typeof laneSummary>;

/** Reads and validates a generation's manifest (a regular file of at most MAX_MANIFEST_BYTES). */
export async function readManifest(genDir: string, checker?: FileChecker): Promise<Manifest> {
  return (await readManifestFile(genDir, checker)).manifest;
}

/**
 * The manifest with the sha256 of its exact bytes and the identity of the
 * file they came from. `checker` defaults to one for the data directory the
 * generation is in (<data>/generations/<id>).
 */
export async function readManifestFile(genDir: string, checker?: FileChecker): Promise<{ manifest: Manifest; sha256: string; identity: FileIdentity }> {
  const file = manifestPath(genDir);
  let read: Awaited<ReturnType<FileChecker['readSmall']>>;
  try {
    checker ??= await FileChecker.forDataDir(path.resolve(genDir, '..', '..'));
    read = await checker.readSmall(file, MAX_MANIFEST_BYTES, 'manifest');
  } catch (err) {
    const code = (err as StoreError).code;
    // Kept as EMANIFEST unless the file itself is the wrong kind of thing (those codes say more).
    if (err instanceof StoreError && ['ENOT_REGULAR', 'EOUTSIDE_DATA', 'ETOO_LARGE'].includes(code)) throw err;
    throw new StoreError('EMANIFEST', `cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(read.bytes.toString('utf8'));
  } catch (err) {
    throw new StoreError('EMANIFEST', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new StoreError('EMANIFEST', `${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  if (!LANES.some((l) => parsed.data.lanes[l])) throw new StoreError('EMANIFEST', `${file} lists no lane`);
  return { manifest: parsed.data, sha256: crypto.createHash('sha256').update(read.bytes).digest('hex'), identity: read.identity };
}
