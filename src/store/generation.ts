// Reading a generation: resolving which one, and checking that its structure
// is sound (manifest, parameters, shard count and sizes) before anything maps
// it. Every file the manifest lists is checked to be a regular file inside the
// data directory with the listed size, and its identity is recorded; the
// contents of the large files are checked by checksums.ts (hashed once per
// inode), crs.json's here (it is small, and the bytes parsed are the bytes
// checked).
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Crs, parseCrs, hintBytes } from '../pir/crs.js';
import { native, type LaneHandle, type LaneMemory } from '../native.js';
import { StoreError } from './errors.js';
import { FileChecker, type FileIdentity } from './files.js';
import {
  GENERATION_ID,
  LANES,
  type LaneName,
  crsPath,
  currentLink,
  generationDir,
  generationsDir,
  hintPath,
  shardName,
  shardPath,
  shardsDir,
} from './layout.js';
import { type LaneSummary, type Manifest, readManifestFile } from './manifest.js';

/** Largest crs.json read (a real one is a few hundred bytes). */
export const MAX_CRS_BYTES = 64 * 1024;

export interface LaneInfo {
  lane: LaneName;
  crs: Crs;
  summary: LaneSummary;
  shardPaths: string[];
  /** The shard files' identities when they were checked (openLane insists on them). */
  shardIds: FileIdentity[];
  /** The manifest's sha256 of each shard ('' where it lists none): the shard cache reuses a buffer only for the same checksum. */
  shardSha256: string[];
  hintPath: string;
}

export interface GenerationInfo {
  id: string;
  dir: string;
  blockNumber: number;
  manifest: Manifest;
  /** sha256 of manifest.json's bytes. */
  manifestSha256: string;
  /** Identity of every file the manifest lists, by its manifest name. */
  files: Record<string, FileIdentity>;
  /** Manifest names whose contents were already checked against the manifest while loading (crs.json). */
  contentChecked: Set<string>;
  lanes: Partial<Record<LaneName, LaneInfo>>;
}

/** Where a manifest file name (`<lane>/...`) lives in a generation directory. */
export const manifestFilePath = (dir: string, name: string) => path.join(dir, ...name.split('/'));

/** What the operator's configuration expects of every generation (0 = not checked). */
export interface Expectations {
  hotEntries?: number;
  coldEntries?: number;
  entrySize?: number;
}

/** The generation to use: `id` if given, else the one <data>/current points at. */
export async function resolveGeneration(data: string, id?: string): Promise<{ id: string; dir: string }> {
  if (id !== undefined) {
    if (!GENERATION_ID.test(id)) throw new StoreError('EGENERATION', `invalid generation id ${JSON.stringify(id)} (expected a block number, or <block>r<k> for a block rebuilt after a reorg)`);
    return { id, dir: generationDir(data, id) };
  }
  let target: string;
  try {
    target = await fsp.readlink(currentLink(data));
  } catch {
    throw new StoreError('ENOCURRENT', `${currentLink(data)} does not exist: no generation is published (lanepir build --publish)`);
  }
  const resolved = path.resolve(data, target);
  const genId = path.basename(resolved);
  if (path.dirname(resolved) !== path.resolve(generationsDir(data)) || !GENERATION_ID.test(genId)) {
    throw new StoreError('ENOCURRENT', `${currentLink(data)} points at ${target}, not at a generation under ${generationsDir(data)}`);
  }
  return { id: genId, dir: resolved };
}

function fail(code: string, message: string): never {
  throw new StoreError(code, message);
}

/**
 * Reads a generation's manifest and lane parameters and checks that every
 * file is a regular file inside the data directory (`opts.checker`, by
 * default the one the generation is in) with the size the manifest and the
 * parameters imply. Throws StoreError with the first defect.
 */
export async function loadGeneration(dir: string, expect: Expectations = {}, opts: { checker?: FileChecker } = {}): Promise<GenerationInfo> {
  const checker = opts.checker ?? (await FileChecker.forDataDir(path.resolve(dir, '..', '..')));
  const { manifest, sha256: manifestSha256 } = await readManifestFile(dir, checker);
  const id = path.basename(dir);
  if (manifest.generation !== id) fail('EMANIFEST', `manifest names generation ${manifest.generation} but the directory is ${id}`);
  const files: Record<string, FileIdentity> = {};
  const contentChecked = new Set<string>();
  const lanes: GenerationInfo['lanes'] = {};
  for (const lane of LANES) {
    const summary = manifest.lanes[lane];
    if (!summary) continue;
    lanes[lane] = await loadLane(dir, lane, summary, manifest, expect, checker, files, contentChecked);
  }
  // Every other listed file (diffs): a regular file inside the data directory, of the listed size.
  const rest = Object.keys(manifest.files).filter((name) => !(name in files));
  await inBatches(rest, async (name) => {
    const file = manifestFilePath(dir, name);
    const identity = await checker.regular(file);
    if (identity.size !== manifest.files[name]!.size) fail('ESIZE', `${name} has ${identity.size} bytes, the manifest says ${manifest.files[name]!.size}`);
    files[name] = identity;
  });
  return { id, dir, blockNumber: manifest.block_number, manifest, manifestSha256, files, contentChecked, lanes };
}

/**
 * Runs fn over items a batch at a time: one stat after another costs a
 * thread-pool round trip each, which adds up to a large share of a reload
 * on big lanes.
 */
async function inBatches<T>(items: readonly T[], fn: (item: T, index: number) => Promise<void>, batch = 256): Promise<void> {
  for (let b = 0; b < items.length; b += batch) {
    await Promise.all(items.slice(b, b + batch).map((item, k) => fn(item, b + k)));
  }
}

async function loadLane(
  dir: string,
  lane: LaneName,
  summary: LaneSummary,
  manifest: Manifest,
  expect: Expectations,
  checker: FileChecker,
  files: Record<string, FileIdentity>,
  contentChecked: Set<string>,
): Promise<LaneInfo> {
  /** The manifest entry of a file the server uses: it must be listed. */
  const listed = (name: string) => manifest.files[name] ?? fail('EUNLISTED', `${lane}: ${name} is not listed in the manifest`);
  const crsName = `${lane}/crs.json`;
  let crs: Crs;
  try {
    const { bytes, identity } = await checker.readSmall(crsPath(dir, lane), MAX_CRS_BYTES, 'crs.json');
    const entry = listed(crsName);
    // The bytes parsed are the bytes checked: crs.json cannot change between the two.
    const sha = crypto.createHash('sha256').update(bytes).digest('hex');
    if (bytes.length !== entry.size || sha !== entry.sha256) {
      fail('ECHECKSUM', `${crsName} has ${bytes.length} bytes and sha256 ${sha}, the manifest says ${entry.size} bytes and ${entry.sha256}`);
    }
    files[crsName] = identity;
    contentChecked.add(crsName);
    crs = parseCrs(JSON.parse(bytes.toString('utf8')));
  } catch (err) {
    if (err instanceof StoreError && err.code !== 'EMISSING') throw err;
    fail('ECRS', `${lane}: ${crsPath(dir, lane)}: ${(err as Error).message}`);
  }
  for (const key of ['entries', 'entry_size', 'm', 'R', 'seed', 'hint_sha256', 'layout', 'key_seed', 'bucket_choices'] as const) {
    // "index" is the default layout: the manifest leaves it out.
    if ((key === 'layout' && crs.layout === 'index' ? undefined : crs[key]) !== summary[key]) fail('ECRS', `${lane}: crs.json ${key} = ${crs[key]} but the manifest says ${summary[key]}`);
  }
  const expectedEntries = lane === 'hot' ? expect.hotEntries : expect.coldEntries;
  if (expectedEntries && crs.entries !== expectedEntries) {
    fail('EENTRIES', `${lane}: the lane has ${crs.entries} entries, the configuration expects ${expectedEntries}`);
  }
  if (expect.entrySize && crs.entry_size !== expect.entrySize) {
    fail('EENTRY_SIZE', `${lane}: entry size is ${crs.entry_size}, the configuration expects ${expect.entrySize}`);
  }
  const { shard_size_bytes: shardSize, shards, bytes } = summary;
  if (bytes !== crs.entries * crs.entry_size) fail('EMANIFEST', `${lane}: manifest bytes ${bytes} != entries * entry_size`);
  if (shardSize % crs.entry_size !== 0) fail('EMANIFEST', `${lane}: shard size ${shardSize} is not a multiple of the entry size`);
  if (shards !== Math.ceil(bytes / shardSize)) fail('EMANIFEST', `${lane}: ${shards} shards cannot hold ${bytes} bytes of ${shardSize}`);

  let names: string[];
  try {
    names = (await fsp.readdir(shardsDir(dir, lane))).filter((n) => n.endsWith('.bin')).sort();
  } catch {
    fail('ESHARDS', `${lane}: no shards directory at ${shardsDir(dir, lane)}`);
  }
  if (names.length !== shards) fail('ESHARDS', `${lane}: found ${names.length} shard files, expected ${shards}`);
  const shardPaths: string[] = [];
  for (let i = 0; i < shards; i++) {
    if (names[i] !== shardName(i)) fail('ESHARDS', `${lane}: missing ${shardName(i)}`);
    shardPaths.push(shardPath(dir, lane, i));
  }
  const shardIds: FileIdentity[] = new Array(shards);
  await inBatches(shardPaths, async (file, i) => {
    const name = `${lane}/shards/${shardName(i)}`;
    const entry = listed(name);
    const identity = await checker.regular(file, 'shard');
    const want = i < shards - 1 ? shardSize : bytes - shardSize * (shards - 1);
    if (identity.size !== want) fail('ESHARD_SIZE', `${lane}: ${shardName(i)} has ${identity.size} bytes, expected ${want}`);
    if (entry.size !== want) fail('EMANIFEST', `${lane}: the manifest lists ${shardName(i)} with ${entry.size} bytes, expected ${want}`);
    shardIds[i] = identity;
    files[name] = identity;
  });
  const hintFile = hintPath(dir, lane);
  const hintName = `${lane}/hint.bin`;
  let hintId: FileIdentity;
  try {
    hintId = await checker.regular(hintFile, 'hint.bin');
  } catch (err) {
    if (err instanceof StoreError && err.code === 'EMISSING') fail('EHINT', `${lane}: hint.bin is missing`);
    throw err;
  }
  if (hintId.size !== hintBytes(crs)) fail('EHINT', `${lane}: hint.bin has ${hintId.size} bytes, expected ${hintBytes(crs)}`);
  if (listed(hintName).sha256 !== crs.hint_sha256) fail('EHINT', `${lane}: manifest and crs.json disagree on the hint checksum`);
  files[hintName] = hintId;
  const shardSha256 = shardPaths.map((_, i) => manifest.files[`${lane}/shards/${shardName(i)}`]?.sha256 ?? '');
  return { lane, crs, summary, shardPaths, shardIds, shardSha256, hintPath: hintFile };
}

/** Opens a lane's data for the kernels (mapped, read into memory, or through the shard cache). */
export function openLane(info: LaneInfo, mode: LaneMemory): Promise<LaneHandle> {
  return native.openLane({
    ...(mode === 'cache' && info.shardSha256 ? { contentIds: info.shardSha256 } : {}),
    shards: info.shardPaths,
    entrySize: info.crs.entry_size,
    entries: info.crs.entries,
    shardSize: info.summary.shard_size_bytes,
    m: info.crs.m,
    mode,
    expect: info.shardIds,
  });
}

/** Reads one entry straight from its shard file (plaintext; operators and tests). */
export async function readEntry(info: LaneInfo, index: number): Promise<Buffer> {
  if (!Number.isSafeInteger(index) || index < 0 || index >= info.crs.entries) {
    throw new StoreError('EINDEX', `index ${index} is outside the ${info.lane} lane (0..${info.crs.entries - 1})`);
  }
  const es = info.crs.entry_size;
  const shardSize = info.summary.shard_size_bytes;
  const offset = index * es;
  const shard = Math.floor(offset / shardSize);
  const fh = await fsp.open(info.shardPaths[shard]!, 'r');
  try {
    const out = Buffer.alloc(es);
    const { bytesRead } = await fh.read(out, 0, es, offset - shard * shardSize);
    if (bytesRead !== es) fail('ESHARD_SIZE', `${info.lane}: ${shardName(shard)} is shorter than its manifest says`);
    return out;
  } finally {
    await fh.close();
  }
}
