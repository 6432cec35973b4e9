// Where things live in a data directory (docs/FORMAT.md):
//   <data>/generations/<id>/manifest.json
//   <data>/generations/<id>/<lane>/{crs.json,hint.bin,shards/shard-NNNNNN.bin}
//   <data>/current -> generations/<id>
import path from 'node:path';

export const LANES = ['hot', 'cold'] as const;
export type LaneName = (typeof LANES)[number];

export const FORMAT_VERSION = 1;
export const DEFAULT_SHARD_SIZE = 128 * 1024;
/**
 * Generation ids: the block number in decimal, and for a block rebuilt after
 * a reorg, `<block>r<k>` (k = 1, 2, ...): ids are never reused, because
 * generations are immutable and clients cache per generation.
 */
export const GENERATION_ID = /^(0|[1-9][0-9]{0,15})(r[1-9][0-9]{0,3})?$/;

/** The block number part of a generation id. */
export function generationBlock(id: string): number {
  return Number(id.split('r')[0]);
}

/** Orders generation ids by block, then by reorg rebuild. */
export function compareGenerationIds(a: string, b: string): number {
  const [ab, ar] = a.split('r');
  const [bb, br] = b.split('r');
  return Number(ab) - Number(bb) || Number(ar ?? 0) - Number(br ?? 0);
}

export function isLaneName(s: string): s is LaneName {
  return (LANES as readonly string[]).includes(s);
}

export const generationsDir = (data: string) => path.join(data, 'generations');
export const currentLink = (data: string) => path.join(data, 'current');
export const generationDir = (data: string, id: string | number) => path.join(generationsDir(data), String(id));
export const manifestPath = (genDir: string) => path.join(genDir, 'manifest.json');
export const laneDir = (genDir: string, lane: LaneName) => path.join(genDir, lane);
export const crsPath = (genDir: string, lane: LaneName) => path.join(genDir, lane, 'crs.json');
export const hintPath = (genDir: string, lane: LaneName) => path.join(genDir, lane, 'hint.bin');
export const shardsDir = (genDir: string, lane: LaneName) => path.join(genDir, lane, 'shards');
export const shardName = (i: number) => `shard-${String(i).padStart(6, '0')}.bin`;
export const shardPath = (genDir: string, lane: LaneName, i: number) => path.join(shardsDir(genDir, lane), shardName(i));

/** Largest multiple of entrySize that fits in the requested shard size. */
export function effectiveShardSize(requested: number, entrySize: number): number {
  const size = Math.floor(requested / entrySize) * entrySize;
  if (size <= 0) throw new RangeError(`shard size ${requested} is smaller than one entry (${entrySize} bytes)`);
  return size;
}

export function shardCount(entries: number, entrySize: number, shardSize: number): number {
  return Math.ceil((entries * entrySize) / shardSize);
}

/**
 * Keyword lanes: the placement index, the key hash of every slot (32 bytes,
 * zeros when empty) in files aligned with the lane's shards. The builder reads
 * it to find keys and relocate residents; servers never read it.
 */
export const placementDir = (genDir: string, lane: LaneName) => path.join(genDir, lane, 'placement');
export const placementPath = (genDir: string, lane: LaneName, i: number) => path.join(placementDir(genDir, lane), shardName(i));
