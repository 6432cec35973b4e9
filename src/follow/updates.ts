// Block update files for follow mode: `<block>.jsonl`, one change a line,
// {"lane": "hot", "index": 5, "value": "0x..."}; an empty file is a block
// without changes. The schema and reader are those of every entry and update
// file (src/store/entry-files.ts); here "lane" is required and the last line
// must be terminated (a file cut short, or still being written, is refused).
// A file is checked whole before anything is built from it.
import { readChanges } from '../store/entry-files.js';
import { type LaneName } from '../store/layout.js';

export const UPDATE_FILE = /^(0|[1-9][0-9]{0,15})\.jsonl$/;

export type BlockUpdates = Partial<Record<LaneName, Map<number, Uint8Array>>>;

/** Parses an update file's bytes (already read: follow mode hashes them); entry sizes per lane come from the parent generation. */
export async function parseUpdates(bytes: Uint8Array | string, file: string, entrySizes: Partial<Record<LaneName, number>>): Promise<BlockUpdates> {
  const out: BlockUpdates = {};
  const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  for await (const c of readChanges(file, { bytes: data, entrySizes, requireFinalNewline: true })) {
    (out[c.lane] ??= new Map()).set(c.index, c.value);
  }
  return out;
}
