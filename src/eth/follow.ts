// Follow mode for Ethereum state: each `<block>.jsonl` file is a state diff
// (the shape of --state-diff; an optional first line gives the block hash),
// built on its parent generation with the placement tables kept in memory
// between blocks. The hot manifest is carried from the parent.
import { PlacementCache } from '../store/keyword-builder.js';
import { buildEthDiff } from './build.js';
import { EthError } from './errors.js';
import { parseStateText } from './state-file.js';
import { type BlockHeaderLine } from './state-lines.js';

export function ethBlockBuilder(): (args: { data: string; block: number; id: string; parent: string; text: string; file: string }) => Promise<{ changes: number }> {
  const placementCache = new PlacementCache();
  return async ({ data, block, id, parent, text, file }) => {
    let header: BlockHeaderLine | undefined;
    const lines = parseStateText(text, 'diff', file, { requireFinalNewline: true, onHeader: (h) => (header = h) });
    if (header?.block_number !== undefined && header.block_number !== block) {
      throw new EthError('EINPUT', `${file}: the file is for block ${header.block_number}, its name says ${block}`);
    }
    const r = await buildEthDiff({
      data,
      block,
      id,
      from: parent,
      diff: lines,
      placementCache,
      ...(header?.block_hash ? { blockHash: header.block_hash } : {}),
      ...(header?.chain_id !== undefined ? { chainId: header.chain_id } : {}),
    });
    let changes = 0;
    for (const s of Object.values(r.stats)) {
      const k = (s as { keyword?: { inserted: number; updated: number; deleted: number } }).keyword;
      if (k) changes += k.inserted + k.updated + k.deleted;
    }
    return { changes };
  };
}
