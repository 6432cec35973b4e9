// In-process private round trips: client query -> native answer -> client
// decode, compared with the plaintext read straight from the shard files.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { PirClient } from './pir/client.js';
import { littleEndianWords, wordsToLittleEndian } from './pir/prg.js';
import { type LaneInfo, openLane, readEntry } from './store/generation.js';

export interface SelftestOptions {
  count: number;
  mode?: 'mmap' | 'memory';
  /** Queries answered per kernel pass (1..16). */
  batch?: number;
  threads?: number;
  /** Fixed indices instead of random ones. */
  indices?: number[];
}

export interface SelftestResult {
  lane: string;
  count: number;
  matched: number;
  mismatches: { index: number; expected: string; got: string }[];
  ms: number;
}

export async function selftestLane(info: LaneInfo, opts: SelftestOptions): Promise<SelftestResult> {
  const started = performance.now();
  const batch = Math.max(1, Math.min(16, opts.batch ?? 8));
  const client = await PirClient.create(info.crs, await fsp.readFile(info.hintPath));
  const indices = opts.indices ?? Array.from({ length: opts.count }, () => crypto.randomInt(info.crs.entries));
  const handle = await openLane(info, opts.mode ?? 'mmap');
  const result: SelftestResult = { lane: info.lane, count: indices.length, matched: 0, mismatches: [], ms: 0 };
  try {
    for (let i = 0; i < indices.length; i += batch) {
      const group = indices.slice(i, i + batch);
      await client.prepare(group.length);
      const queries = await Promise.all(group.map((index) => client.query(index)));
      const answers = await handle.answer(
        queries.map((q) => littleEndianWords(q.query)),
        opts.threads ? { threads: opts.threads } : {},
      );
      for (let k = 0; k < group.length; k++) {
        const got = Buffer.from(client.decode(wordsToLittleEndian(answers[k]!), queries[k]!.state));
        const expected = await readEntry(info, group[k]!);
        if (got.equals(expected)) result.matched++;
        else result.mismatches.push({ index: group[k]!, expected: expected.toString('hex'), got: got.toString('hex') });
      }
    }
  } finally {
    await handle.release();
  }
  result.ms = performance.now() - started;
  return result;
}
