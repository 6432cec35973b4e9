// Block update files for follow mode: `<block>.jsonl`, one change a line,
// {"lane": "hot", "index": 5, "value": "0x..."}; an empty file is a block
// without changes. A file is checked whole before anything is built from it.
import { StoreError } from '../store/errors.js';
import { parseEntryObject } from '../store/entries.js';
import { type LaneName, isLaneName } from '../store/layout.js';

export const UPDATE_FILE = /^(0|[1-9][0-9]{0,15})\.jsonl$/;

export type BlockUpdates = Partial<Record<LaneName, Map<number, Uint8Array>>>;

/** Parses an update file's text; entry sizes per lane come from the parent generation. */
export function parseUpdates(text: string, file: string, entrySizes: Partial<Record<LaneName, number>>): BlockUpdates {
  const out: BlockUpdates = {};
  const lines = text.split('\n');
  // A file that does not end in a newline was cut off mid-line (or is still being written).
  if (text.length > 0 && !text.endsWith('\n')) {
    throw new StoreError('EINPUT', `${file}:${lines.length}: the last line is not terminated (truncated file?)`);
  }
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new StoreError('EINPUT', `${where}: not valid JSON`);
    }
    const lane = (obj as { lane?: unknown })?.lane;
    if (typeof lane !== 'string' || !isLaneName(lane)) throw new StoreError('EINPUT', `${where}: "lane" must be "hot" or "cold"`);
    const es = entrySizes[lane];
    if (es === undefined) throw new StoreError('EINPUT', `${where}: the served generation has no ${lane} lane`);
    const { index, value, rest } = parseEntryObject(obj, es, where);
    const extra = Object.keys(rest).filter((k) => k !== 'lane');
    if (extra.length > 0) throw new StoreError('EINPUT', `${where}: unknown key ${JSON.stringify(extra[0])}`);
    (out[lane] ??= new Map()).set(index, value);
  });
  return out;
}
