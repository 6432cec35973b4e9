// Checking a generation's file contents against its manifest's sha256 before
// it is first served. Hashing runs in the addon (off the event loop, OpenSSL's
// sha256, files in parallel) on exactly the inodes loadGeneration checked.
//
// Generations are immutable and an incremental one hard-links the shards it
// did not change, so a file is hashed once per inode: ChecksumCache remembers
// (dev, ino) -> sha256 together with the size, mtime and birth time it had.
// A hard link changes none of those (it changes ctime, which is why ctime is
// not part of the key); a rewrite changes mtime (and usually size); an inode
// number reused for a new file has a new birth time (and mtime). Any change
// means the entry no longer applies and the file is hashed again.
import crypto from 'node:crypto';
import { native } from '../native.js';
import { StoreError } from './errors.js';
import { type FileIdentity } from './files.js';
import { type GenerationInfo, manifestFilePath } from './generation.js';

export interface ValidationStats {
  /** Files the manifest lists, and their bytes. */
  files: number;
  bytes: number;
  /** Files hashed now (new inodes), and their bytes. */
  hashed_files: number;
  hashed_bytes: number;
  /** Files whose inode was hashed before (ChecksumCache) and not read again. */
  cached_files: number;
  cached_bytes: number;
  /** Wall time of the checksum step. */
  ms: number;
}

interface CacheEntry {
  size: number;
  mtimeNs: bigint;
  birthtimeNs: bigint;
  sha256: string;
  /** How many remembered generations list this inode. */
  refs: number;
}

const keyOf = (id: FileIdentity) => `${id.dev}:${id.ino}`;
const sameState = (e: CacheEntry, id: FileIdentity) => e.size === id.size && e.mtimeNs === id.mtimeNs && e.birthtimeNs === id.birthtimeNs;

/**
 * sha256 of inodes hashed before, bounded by generations: it keeps the files
 * of the last `generations` generations checked (by id), so its size is about
 * one generation's file count plus the files that changed since (~300 bytes
 * each); the inodes of generations that dropped out are forgotten.
 */
export class ChecksumCache {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly recorded = new Map<string, string[]>();

  constructor(readonly generations = 8) {}

  /** The sha256 of this inode in this state, if it was hashed before. */
  lookup(id: FileIdentity): string | undefined {
    const e = this.entries.get(keyOf(id));
    return e && sameState(e, id) ? e.sha256 : undefined;
  }

  /** Remembers the files of one generation check (re-recording a generation replaces it); forgets beyond the bound. */
  record(generation: string, files: { identity: FileIdentity; sha256: string }[]): void {
    this.forget(generation);
    const keys: string[] = [];
    for (const { identity, sha256 } of files) {
      const key = keyOf(identity);
      const e = this.entries.get(key);
      if (e) {
        // Same inode number, other state: the old entry is stale whoever lists it.
        if (!sameState(e, identity) || e.sha256 !== sha256) Object.assign(e, { size: identity.size, mtimeNs: identity.mtimeNs, birthtimeNs: identity.birthtimeNs, sha256 });
        e.refs++;
      } else {
        this.entries.set(key, { size: identity.size, mtimeNs: identity.mtimeNs, birthtimeNs: identity.birthtimeNs, sha256, refs: 1 });
      }
      keys.push(key);
    }
    this.recorded.set(generation, keys);
    while (this.recorded.size > this.generations) this.forget(this.recorded.keys().next().value!);
  }

  private forget(generation: string): void {
    const keys = this.recorded.get(generation);
    if (!keys) return;
    this.recorded.delete(generation);
    for (const key of keys) {
      const e = this.entries.get(key)!;
      if (--e.refs === 0) this.entries.delete(key);
    }
  }

  /** Inodes remembered. */
  get size(): number {
    return this.entries.size;
  }
}

export interface ChecksumOptions {
  cache?: ChecksumCache;
  /** Hashing threads (default 1). */
  threads?: number;
  /** Aborting cancels the hashing (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Checks every file the manifest lists against its sha256: files already
 * checked while loading (crs.json) and inodes the cache vouches for are not
 * read; the rest are hashed. Throws StoreError ECHECKSUM naming the first
 * file that differs (every file hashed is remembered either way).
 */
export async function checkChecksums(info: GenerationInfo, opts: ChecksumOptions = {}): Promise<ValidationStats> {
  const started = performance.now();
  const listed = info.manifest.files;
  const stats: ValidationStats = { files: 0, bytes: 0, hashed_files: 0, hashed_bytes: 0, cached_files: 0, cached_bytes: 0, ms: 0 };
  const known: { identity: FileIdentity; sha256: string }[] = [];
  const toHash: string[] = [];
  const mismatch = (name: string, actual: string) =>
    new StoreError('ECHECKSUM', `${name} has sha256 ${actual}, the manifest says ${listed[name]!.sha256}`);
  let firstBad: StoreError | undefined;
  for (const [name, entry] of Object.entries(listed)) {
    const identity = info.files[name];
    if (!identity) throw new StoreError('EMISSING', `${name} is listed in the manifest but was not checked`);
    stats.files++;
    stats.bytes += entry.size;
    if (info.contentChecked.has(name)) {
      stats.hashed_files++;
      stats.hashed_bytes += entry.size;
      known.push({ identity, sha256: entry.sha256 });
      continue;
    }
    const cached = opts.cache?.lookup(identity);
    if (cached === undefined) {
      toHash.push(name);
      continue;
    }
    stats.cached_files++;
    stats.cached_bytes += entry.size;
    known.push({ identity, sha256: cached });
    if (cached !== entry.sha256) firstBad ??= mismatch(name, cached);
  }
  if (!firstBad && toHash.length > 0) {
    const job = native.hashFiles(
      toHash.map((name) => manifestFilePath(info.dir, name)),
      { threads: opts.threads ?? 1, expect: toHash.map((name) => info.files[name]!) },
    );
    const onAbort = () => job.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let digests: Buffer;
    try {
      digests = await job.promise;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
    toHash.forEach((name, k) => {
      const actual = digests.toString('hex', 32 * k, 32 * k + 32);
      stats.hashed_files++;
      stats.hashed_bytes += listed[name]!.size;
      known.push({ identity: info.files[name]!, sha256: actual });
      if (actual !== listed[name]!.sha256) firstBad ??= mismatch(name, actual);
    });
  }
  opts.cache?.record(info.id, known);
  if (firstBad) throw firstBad;
  stats.ms = Math.round((performance.now() - started) * 1000) / 1000;
  return stats;
}

/**
 * A digest of what a generation is on disk: the manifest's bytes and, for
 * every listed file, which inode it is and its state. Two processes that
 * compute the same digest see the same files; a cluster worker compares its
 * own with the primary's (which hashed the files) instead of hashing again.
 */
export function filesDigest(info: GenerationInfo): string {
  const h = crypto.createHash('sha256');
  h.update(`lanepir-files-v1\n${info.id}\n${info.manifestSha256}\n`);
  let chunk = '';
  for (const name of Object.keys(info.manifest.files).sort()) {
    const id = info.files[name];
    if (!id) throw new StoreError('EMISSING', `${name} is listed in the manifest but was not checked`);
    chunk += `${name}\0${id.dev}\0${id.ino}\0${id.size}\0${id.mtimeNs}\0${id.birthtimeNs}\n`;
    if (chunk.length > 1 << 16) {
      h.update(chunk);
      chunk = '';
    }
  }
  h.update(chunk);
  return h.digest('hex');
}
