// Helpers for keyword-lane tests: plaintext lookups straight from a
// generation's shards, private lookups through the native kernel (no server),
// and ground keys whose candidate columns all hit one column.
import crypto from 'node:crypto';
import { type LaneHandle } from '../src/native.js';
import { PirClient } from '../src/pir/client.js';
import { KEYWORD_VALUE_BYTES, hexToBytes } from '../src/pir/crs.js';
import { type KeywordResult, decodeKeyword, keywordQueries, locateKey } from '../src/pir/keyword.js';
import { littleEndianWords, wordsToLittleEndian } from '../src/pir/prg.js';
import { hashKeys } from '../src/store/keyword-builder.js';
import { HASH_WORDS, KeywordTable } from '../src/store/keyword-placement.js';
import { type LaneInfo, openLane } from '../src/store/generation.js';
import fs from 'node:fs/promises';
import { type ExecutionContext } from 'ava';
import { type ConfigInput } from '../src/config.js';
import { buildGeneration } from '../src/store/builder.js';
import { rmrf, tempDir } from './helpers.js';
import { serve } from './server-helpers.js';

export const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A lane's plaintext, read once from its shards. */
export async function laneBytes(info: LaneInfo): Promise<Buffer> {
  return Buffer.concat(await Promise.all(info.shardPaths.map((f) => fs.readFile(f))));
}

/** Every slot of the key's candidate columns read in plaintext: the values of the entries carrying its tag. */
export async function plainLookup(info: LaneInfo, key: Uint8Array, bytes?: Buffer): Promise<Uint8Array[]> {
  const lane = bytes ?? (await laneBytes(info));
  const loc = locateKey(info.crs, key);
  const tag = Buffer.from(loc.tag);
  const found: Uint8Array[] = [];
  for (const c of new Set(loc.columns)) {
    for (let r = 0; r < info.crs.R; r++) {
      const o = (r * info.crs.m + c) * 40;
      if (lane.subarray(o, o + 8).equals(tag)) found.push(lane.subarray(o + 8, o + 40));
    }
  }
  return found;
}

/** A PIR client for a lane of a generation on disk, and its mapped lane for answering. */
export async function laneClient(info: LaneInfo): Promise<{ client: PirClient; handle: LaneHandle }> {
  const hint = await fs.readFile(info.hintPath);
  return { client: await PirClient.create(info.crs, hint), handle: await openLane(info, 'mmap') };
}

/** One private keyword lookup, answered by the native kernel. */
export async function privateLookup(client: PirClient, handle: LaneHandle, key: Uint8Array): Promise<KeywordResult> {
  const q = await keywordQueries(client, key);
  const answers = await handle.answer(q.queries.map((b) => littleEndianWords(b)));
  return decodeKeyword(client, q, answers.map((a) => wordsToLittleEndian(a)));
}

export function randomRecords(count: number, keyBytes = 21): { key: Buffer; value: Buffer }[] {
  return Array.from({ length: count }, () => ({ key: crypto.randomBytes(keyBytes), value: crypto.randomBytes(KEYWORD_VALUE_BYTES) }));
}

/**
 * `count` keys whose d candidate columns are all `column` under (keySeed, m):
 * an attacker's grinding, cheap for a small m.
 */
export function grindKeys(keySeedHex: string, m: number, d: number, column: number, count: number): Buffer[] {
  const keySeed = hexToBytes(keySeedHex);
  const probe = KeywordTable.create(m, d, 1);
  const out: Buffer[] = [];
  while (out.length < count) {
    const keys = Array.from({ length: 65536 }, () => crypto.randomBytes(21));
    const words = hashKeys(keySeed, keys);
    for (let i = 0; i < keys.length && out.length < count; i++) {
      const c = probe.candidates(words, i * HASH_WORDS);
      if (c.length === 1 && c[0] === column) out.push(keys[i]!);
    }
  }
  return out;
}

/**
 * A served data set of two keyword lanes (hot: `hotKeys` random records,
 * m = 32; cold: `coldKeys`, m = 64) at block 1, removed after the test; with
 * the server's /info.
 */
export async function keywordServer(t: ExecutionContext, opts: { hotKeys?: number; coldKeys?: number; config?: Partial<ConfigInput> } = {}) {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const hot = randomRecords(opts.hotKeys ?? 600);
  const cold = randomRecords(opts.coldKeys ?? 1500);
  await buildGeneration({
    data,
    block: 1,
    shardSize: 16384,
    publish: true,
    lanes: { hot: { layout: 'keyword', records: () => hot, m: 32 }, cold: { layout: 'keyword', records: () => cold, m: 64 } },
  });
  const server = await serve(data, opts.config ?? {});
  t.teardown(() => server.close());
  const info = (await (await fetch(`${server.publicUrl}/info`)).json()) as { batch_max: number; lanes: Record<string, { bucket_choices: number }> };
  return { data, server, hot, cold, info };
}
