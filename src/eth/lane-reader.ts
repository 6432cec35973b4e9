// Plaintext reads of keys from a generation's keyword lane (the builder's
// side: a state diff that leaves fields out keeps the parent's values, and a
// manifest change moves a contract's storage with its values). A few keys
// are found by scanning their candidate columns for their tag, as a client
// does; many keys load the lane's placement index once (or use the one a
// follower keeps in memory) and read each key's slot directly. Node only.
import { KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, hexToBytes } from '../pir/crs.js';
import { type LaneHandle } from '../native.js';
import { type LaneInfo, openLane } from '../store/generation.js';
import { type PlacementCache, hashKeys, loadPlacement } from '../store/keyword-builder.js';
import { HASH_WORDS, type KeywordTable, wordsToHash } from '../store/keyword-placement.js';
import { candidateColumns } from '../pir/keyword.js';
import { EthError } from './errors.js';

function tagOf(words: Uint32Array, k: number): Uint8Array {
  const tag = new Uint8Array(KEYWORD_TAG_BYTES);
  const view = new DataView(tag.buffer);
  view.setUint32(0, words[k * HASH_WORDS]!, true);
  view.setUint32(4, words[k * HASH_WORDS + 1]!, true);
  return tag;
}

function sameTag(entry: Uint8Array, tag: Uint8Array): boolean {
  for (let i = 0; i < KEYWORD_TAG_BYTES; i++) if (entry[i] !== tag[i]) return false;
  return true;
}

/**
 * The 32-byte values of `keys` in the lane (undefined where a key is
 * absent). `cache`: the placement tables of the build that follows (a
 * follower keeps them between blocks): used when it holds this lane's, and
 * otherwise filled with it.
 */
export async function readLaneValues(
  info: LaneInfo,
  genDir: string,
  keys: Uint8Array[],
  cache?: { data: string; generation: string; tables: PlacementCache },
): Promise<(Uint8Array | undefined)[]> {
  if (keys.length === 0) return [];
  const crs = info.crs;
  if (crs.layout !== 'keyword') throw new EthError('ENOT_ETH', `the ${info.lane} lane is not a keyword lane`);
  const { m, R } = crs;
  const d = crs.bucket_choices!;
  const words = hashKeys(hexToBytes(crs.key_seed!), keys);
  let table: KeywordTable | undefined = cache?.tables.peek(cache.data, cache.generation, info.lane);
  if (!table && cache) {
    // The incremental build that follows needs the table too: load it once, leave it in the cache.
    table = await loadPlacement(info, genDir);
    cache.tables.put(cache.data, cache.generation, info.lane, table);
  }
  // Without a cache: scanning costs d * R entry reads per key, the placement index one read of m * R hashes.
  if (!table && keys.length * d * R * KEYWORD_ENTRY_SIZE > m * R * 32) table = await loadPlacement(info, genDir);
  const handle: LaneHandle = await openLane(info, 'mmap');
  try {
    return keys.map((_, k) => {
      const tag = tagOf(words, k);
      if (table) {
        const slot = table.slotOf(words, k * HASH_WORDS);
        if (slot < 0) return undefined;
        const entry = handle.readEntry(slot);
        if (!sameTag(entry, tag)) throw new EthError('ELANE', `${info.lane}: slot ${slot} does not hold the tag its placement index says`);
        return new Uint8Array(entry.subarray(KEYWORD_TAG_BYTES));
      }
      let found: Uint8Array | undefined;
      // Distinct candidate columns: a column asked twice is one column.
      const columns = new Set(candidateColumns(wordsToHash(words, k * HASH_WORDS), d, m));
      for (const c of columns) {
        for (let r = 0; r < R; r++) {
          const entry = handle.readEntry(r * m + c);
          if (!sameTag(entry, tag)) continue;
          if (found) throw new EthError('ELANE', `${info.lane}: two entries carry one key's tag`);
          found = new Uint8Array(entry.subarray(KEYWORD_TAG_BYTES));
        }
      }
      return found;
    });
  } finally {
    await handle.release();
  }
}

