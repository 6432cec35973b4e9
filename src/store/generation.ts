// Reading a generation: resolving which one, and checking that its structure
// is sound (manifest, parameters, shard count and sizes) before anything maps
// it. Checksums are the verifier's job (verify.ts): too slow for every reload.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Crs, parseCrs, hintBytes } from '../pir/crs.js';
import { native, type LaneHandle, type LaneMemory } from '../native.js';
import { StoreError } from './errors.js';
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
import { type LaneSummary, type Manifest, readManifest } from './manifest.js';

export interface LaneInfo {
  lane: LaneName;
  crs: Crs;
  summary: LaneSummary;
  shardPaths: string[];
  /** The manifest's sha256 of each shard ('' where it lists none): the shard cache reuses a buffer only for the same checksum. */
  shardSha256: string[];
  hintPath: string;
}

export interface GenerationInfo {
  id: string;
  dir: string;
  blockNumber: number;
  manifest: Manifest;
  lanes: Partial<Record<LaneName, LaneInfo>>;
}

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
 * file has the size they imply. Throws StoreError with the first defect.
 */
export async function loadGeneration(dir: string, expect: Expectations = {}): Promise<GenerationInfo> {
  const manifest = await readManifest(dir);
  const id = path.basename(dir);
  if (manifest.generation !== id) fail('EMANIFEST', `manifest names generation ${manifest.generation} but the directory is ${id}`);
  const lanes: GenerationInfo['lanes'] = {};
  for (const lane of LANES) {
    const summary = manifest.lanes[lane];
    if (!summary) continue;
    lanes[lane] = await loadLane(dir, lane, summary, manifest, expect);
  }
  return { id, dir, blockNumber: manifest.block_number, manifest, lanes };
}

async function loadLane(dir: string, lane: LaneName, summary: LaneSummary, manifest: Manifest, expect: Expectations): Promise<LaneInfo> {
  let crs: Crs;
  try {
    crs = parseCrs(JSON.parse(await fsp.readFile(crsPath(dir, lane), 'utf8')));
  } catch (err) {
    fail('ECRS', `${lane}: ${crsPath(dir, lane)}: ${(err as Error).message}`);
  }
  for (const key of ['entries', 'entry_size', 'm', 'R', 'seed', 'hint_sha256'] as const) {
    if (crs[key] !== summary[key]) fail('ECRS', `${lane}: crs.json ${key} = ${crs[key]} but the manifest says ${summary[key]}`);
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
  // Sizes checked a batch at a time: one stat after another costs a thread-pool
  // round trip each, which adds up to a large share of a reload on big lanes.
  const STAT_BATCH = 256;
  for (let b = 0; b < shards; b += STAT_BATCH) {
    const sizes = await Promise.all(shardPaths.slice(b, b + STAT_BATCH).map((f) => fsp.stat(f).then((st) => st.size)));
    sizes.forEach((size, k) => {
      const i = b + k;
      const want = i < shards - 1 ? shardSize : bytes - shardSize * (shards - 1);
      if (size !== want) fail('ESHARD_SIZE', `${lane}: ${shardName(i)} has ${size} bytes, expected ${want}`);
    });
  }
  const hintFile = hintPath(dir, lane);
  const hintSize = await fsp.stat(hintFile).then((s) => s.size, () => -1);
  if (hintSize < 0) fail('EHINT', `${lane}: hint.bin is missing`);
  if (hintSize !== hintBytes(crs)) fail('EHINT', `${lane}: hint.bin has ${hintSize} bytes, expected ${hintBytes(crs)}`);
  if (manifest.files[`${lane}/hint.bin`]?.sha256 !== crs.hint_sha256) fail('EHINT', `${lane}: manifest and crs.json disagree on the hint checksum`);
  const shardSha256 = shardPaths.map((_, i) => manifest.files[`${lane}/shards/${shardName(i)}`]?.sha256 ?? '');
  return { lane, crs, summary, shardPaths, shardSha256, hintPath: hintFile };
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
