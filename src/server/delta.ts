// Hint deltas for GET /delta/:lane?from=M: the diffs recorded by incremental
// builds (<lane>/diff.bin of each generation, and the hard links to its
// ancestors' diffs in <lane>/diffs/), followed from `to` back to `from`
// through the parent each diff names, merged into one delta.
//
// Which generations a delta can start from is decided from the diffs'
// headers alone (a few hundred bytes each): the chain index. Only then are
// the diffs read whole and merged (mergeEncodedDeltas), so a `from` that is
// not an ancestor costs a lookup, not a merge.
import fsp from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { type DeltaHeader, type LaneDelta, decodeDeltaHeader, encodeDelta } from '../pir/delta.js';
import { LWE_N } from '../pir/params.js';
import { StoreError } from '../store/errors.js';
import { diffHistoryPath, diffPath } from '../store/incremental.js';
import { GENERATION_ID, type LaneName, compareGenerationIds, generationDir } from '../store/layout.js';
import { type LaneSummary, readManifest } from '../store/manifest.js';
import { DeltaTooLargeError, mergeEncodedDeltas } from './delta-merge.js';

/** `from` is not an ancestor of `to` whose diffs are still on disk, or the delta is too large (HTTP 410: download the hint instead). */
export class DeltaGoneError extends StoreError {
  constructor(message: string, code: 'EDELTA_GONE' | 'EDELTA_TOO_LARGE' = 'EDELTA_GONE') {
    super(code, message);
    this.name = 'DeltaGoneError';
  }
}

/** Longest chain followed (a guard against a corrupt parent loop; ids also strictly decrease). */
const MAX_CHAIN = 100_000;
/** Enough for any diff's header and zero row (n = 1024 words). */
const HEADER_READ_BYTES = 8192;

/** One recorded step of the chain: the diff of generation `id` from its parent. */
export interface ChainStep {
  id: string;
  parent: string;
  file: string;
  bytes: number;
}

/** The steps from `to` back as far as diffs (and the byte budget) reach, newest first. */
export interface ChainIndex {
  to: string;
  lane: LaneName;
  steps: ChainStep[];
  /** Ancestor id -> number of steps from it to `to`. */
  ancestors: Map<string, number>;
  /** Why the chain ends where it does (for error messages). */
  end: string;
}

export interface ChainTarget {
  dataDir: string;
  /** The target generation's id and directory. */
  to: string;
  toDir: string;
  lane: LaneName;
  /** The target's manifest: its parent and its lane's parameters. */
  parent: string | undefined;
  summary: LaneSummary;
}

/**
 * Opens a regular file (O_NONBLOCK: a FIFO in its place cannot hang the
 * read); undefined when there is none. Other failures (EMFILE...) throw:
 * they say nothing about the chain.
 */
async function openRegular(file: string): Promise<{ fh: fsp.FileHandle; size: number } | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (st.isFile()) return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
  await fh.close();
  return undefined;
}

/** A diff's header and size; undefined when the file is not there; an Error when it is not a usable diff. */
async function readHeader(file: string): Promise<{ header: DeltaHeader; bytes: number } | undefined | Error> {
  const opened = await openRegular(file);
  if (!opened) return undefined;
  try {
    const buf = new Uint8Array(Math.min(opened.size, HEADER_READ_BYTES));
    const { bytesRead } = await opened.fh.read(buf, 0, buf.length, 0);
    try {
      return { header: decodeDeltaHeader(buf.subarray(0, bytesRead)), bytes: opened.size };
    } catch (err) {
      return err as Error;
    }
  } finally {
    await opened.fh.close();
  }
}

/**
 * Follows the chain of diffs from `t.to` backwards, reading only their
 * headers, until a diff is missing or does not fit, the steps so far total
 * more than `budget` bytes, or there are `maxSteps` of them. Every step is checked against the target
 * (lane parameters) and its successor (ids, hint and entry count).
 */
export async function readChainIndex(t: ChainTarget, budget = Number.MAX_SAFE_INTEGER, maxSteps = MAX_CHAIN): Promise<ChainIndex> {
  const steps: ChainStep[] = [];
  const ancestors = new Map<string, number>();
  const s = t.summary;
  let end = '';
  if (t.parent === undefined) end = `${t.to} was built in full`;
  let id = t.to;
  let total = 0;
  let expect = { hint: s.hint_sha256, entries: s.entries };
  while (end === '') {
    if (steps.length >= maxSteps) {
      end = `deltas span at most ${maxSteps} generations`;
      break;
    }
    const candidates = id === t.to ? [diffPath(t.toDir, t.lane)] : [diffHistoryPath(t.toDir, t.lane, id), diffPath(generationDir(t.dataDir, id), t.lane)];
    let found: { header: DeltaHeader; bytes: number; file: string } | undefined;
    for (const file of candidates) {
      const r = await readHeader(file);
      if (r instanceof Error) {
        end = `the ${t.lane} diff of generation ${id} is unusable: ${r.message}`;
        break;
      }
      if (r) {
        found = { ...r, file };
        break;
      }
    }
    if (end !== '') break;
    if (!found) {
      end = `the ${t.lane} diff of generation ${id} is gone`;
      break;
    }
    const h = found.header;
    // The diff names its parent (the manifests in between may be pruned); `to`'s must match its manifest.
    if (h.to !== id || (id === t.to && h.from !== t.parent)) {
      end = `the ${t.lane} diff of generation ${id} records ${h.from} -> ${h.to}`;
      break;
    }
    if (h.entrySize !== s.entry_size || h.m !== s.m || h.n !== LWE_N || Buffer.from(h.seed).toString('hex') !== s.seed) {
      end = `the ${t.lane} diff of generation ${id} has other lane parameters`;
      break;
    }
    if (h.toHintSha256 !== expect.hint || h.toEntries !== expect.entries) {
      end = `the ${t.lane} diff of generation ${id} ends at another hint than its successor starts from`;
      break;
    }
    if (compareGenerationIds(h.from, id) >= 0) {
      end = `generation ${id} names ${h.from} as its parent, which is not older`;
      break;
    }
    if (total + found.bytes > budget) {
      end = `the diffs before generation ${h.from} are more than ${budget} bytes`;
      break;
    }
    total += found.bytes;
    steps.push({ id, parent: h.from, file: found.file, bytes: found.bytes });
    ancestors.set(h.from, steps.length);
    expect = { hint: h.fromHintSha256, entries: h.fromEntries };
    id = h.from;
  }
  return { to: t.to, lane: t.lane, steps, ancestors, end };
}

/** Why `from` is not in the index, for the 410 message. */
export function notAnAncestor(index: ChainIndex, from: string): DeltaGoneError {
  const oldest = index.steps.length ? index.steps[index.steps.length - 1]!.parent : index.to;
  return new DeltaGoneError(
    `generation ${from} is not an ancestor of ${index.to} that a delta reaches (deltas reach back ${index.steps.length} generations, to ${oldest}: ${index.end})`,
  );
}

/** The empty delta of a generation to itself: a no-op for a client that is current. */
export function emptyDelta(summary: Pick<LaneSummary, 'entries' | 'entry_size' | 'm' | 'seed' | 'hint_sha256'>, id: string): Uint8Array {
  const d: LaneDelta = {
    entrySize: summary.entry_size,
    m: summary.m,
    n: LWE_N,
    seed: Buffer.from(summary.seed, 'hex'),
    from: id,
    to: id,
    fromEntries: summary.entries,
    toEntries: summary.entries,
    fromHintSha256: summary.hint_sha256,
    toHintSha256: summary.hint_sha256,
    indices: [],
    oldValues: new Uint8Array(0),
    newValues: new Uint8Array(0),
  };
  return encodeDelta(d);
}

/**
 * The encoded delta of `lane` from generation `from` to generation `to`,
 * computed in this thread without limits (the server uses DeltaService).
 * Throws DeltaGoneError (EDELTA_GONE) when `from` is not an ancestor of `to`
 * or a diff along the way is missing or does not fit; StoreError ENOGEN when
 * `to` itself does not exist or has no such lane.
 */
export async function deltaChain(dataDir: string, lane: LaneName, from: string, to: string): Promise<Uint8Array> {
  for (const id of [from, to]) if (!GENERATION_ID.test(id)) throw new StoreError('EGENERATION', `invalid generation id ${JSON.stringify(id)}`);
  const toDir = generationDir(dataDir, to);
  // The message goes to clients: ids only, never paths (the cause stays on the error).
  const target = await readManifest(toDir).catch((err: Error) => {
    throw Object.assign(new StoreError('ENOGEN', `generation ${to} is not on disk`), { cause: err });
  });
  const summary = target.lanes[lane];
  if (!summary) throw new StoreError('ENOGEN', `generation ${to} has no ${lane} lane`);
  if (compareGenerationIds(from, to) > 0) throw new DeltaGoneError(`generation ${from} is newer than ${to}`);
  if (from === to) return emptyDelta(summary, to);
  const index = await readChainIndex({ dataDir, to, toDir, lane, parent: target.parent, summary });
  const k = index.ancestors.get(from);
  if (k === undefined) throw notAnAncestor(index, from);
  return mergeChain(index.steps.slice(0, k), Number.MAX_SAFE_INTEGER);
}

/** Reads the steps (newest first, as indexed) and merges them; DeltaGoneError for a step that is gone or does not fit. */
export async function mergeChain(steps: ChainStep[], maxBytes: number): Promise<Uint8Array> {
  const bytes: Uint8Array[] = [];
  for (const step of [...steps].reverse()) bytes.push(await readStep(step));
  try {
    return mergeEncodedDeltas(bytes, maxBytes);
  } catch (err) {
    throw asDeltaGone(err, steps);
  }
}

/** A step's whole diff, as indexed (a regular file of the same size). */
export async function readStep(step: ChainStep): Promise<Uint8Array> {
  const opened = await openRegular(step.file);
  if (!opened || opened.size !== step.bytes) {
    await opened?.fh.close();
    throw new DeltaGoneError(`the diff of generation ${step.id} is gone or was changed`);
  }
  try {
    const buf = new Uint8Array(step.bytes);
    const { bytesRead } = await opened.fh.read(buf, 0, buf.length, 0);
    if (bytesRead !== step.bytes) throw new DeltaGoneError(`the diff of generation ${step.id} is shorter than indexed`);
    return buf;
  } finally {
    await opened.fh.close();
  }
}

/** Merge failures as 410s: the client downloads the hint instead. */
export function asDeltaGone(err: unknown, steps: ChainStep[]): unknown {
  const span = steps.length ? `${steps[steps.length - 1]!.parent} -> ${steps[0]!.id}` : '';
  if (err instanceof DeltaTooLargeError) return new DeltaGoneError(`the delta ${span} is larger than the hint (${err.limit} bytes)`, 'EDELTA_TOO_LARGE');
  if ((err as { name?: string })?.name === 'DeltaError') return new DeltaGoneError(`the diffs ${span} do not chain: ${(err as Error).message}`);
  return err;
}
