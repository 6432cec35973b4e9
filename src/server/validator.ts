// What a generation must satisfy before it is first served: sound structure
// (manifest, parameters, regular files inside the data directory, sizes), the
// configuration's expectations, every lane being served still present, and
// every file's sha256 as the manifest lists it. Each step is time-limited and
// abandonable; the checksum cache makes a per-block generation (hard-linked
// shards) cost only the files that are new.
import os from 'node:os';
import { type Config } from '../config.js';
import { ChecksumCache, type ValidationStats, checkChecksums, filesDigest } from '../store/checksums.js';
import { FileChecker } from '../store/files.js';
import { type GenerationInfo, loadGeneration } from '../store/generation.js';
import { type LaneName, effectiveShardSize } from '../store/layout.js';
import { runStep } from './bounded.js';
import { ReloadError, rethrow } from './reload-error.js';

/** Generations whose files the checksum cache remembers (see ChecksumCache). */
export const CACHE_GENERATIONS = 8;

export interface Validated {
  info: GenerationInfo;
  /** filesDigest(info): what a cluster worker compares instead of hashing. */
  digest: string;
  /** What the checksum step did; null when the digest of another process's validation was confirmed instead. */
  validation: ValidationStats | null;
}

/** Default hashing threads: half the cores, so queries keep most of the machine while a generation is checked. */
export const defaultValidateThreads = () => Math.max(1, Math.floor(os.availableParallelism() / 2));

export class Validator {
  readonly cache = new ChecksumCache(CACHE_GENERATIONS);

  constructor(private readonly config: Config) {}

  /** Structure and configuration checks, bounded by reload_step_timeout_ms. */
  private structure(dir: string, served: readonly LaneName[], signal?: AbortSignal): Promise<GenerationInfo> {
    const { config } = this;
    return runStep(`reading generation ${dir}`, config.reload_step_timeout_ms, signal, async () => {
      const checker = await FileChecker.forDataDir(config.data_dir);
      const info = await loadGeneration(dir, { hotEntries: config.hot_entries, coldEntries: config.cold_entries, entrySize: config.entry_size }, { checker });
      for (const lane of served) {
        if (!info.lanes[lane]) throw new ReloadError('ELANE_MISSING', `generation ${info.id} has no ${lane} lane, which is being served`);
      }
      if (config.shard_size_bytes > 0) {
        for (const l of Object.values(info.lanes)) {
          const want = effectiveShardSize(config.shard_size_bytes, l.crs.entry_size);
          if (l.summary.shard_size_bytes !== want) {
            throw new ReloadError('ESHARD_SIZE', `${l.lane}: shards of ${l.summary.shard_size_bytes} bytes, the configuration expects ${want}`);
          }
        }
      }
      return info;
    }).catch(rethrow);
  }

  /** Full validation: structure, then the sha256 of every file not hashed before under the same inode. */
  async validate(dir: string, served: readonly LaneName[], signal?: AbortSignal): Promise<Validated> {
    const info = await this.structure(dir, served, signal);
    const threads = this.config.validate_threads || defaultValidateThreads();
    const validation = await runStep(`checksumming generation ${info.id}`, this.config.validate_timeout_ms, signal, (s) =>
      checkChecksums(info, { cache: this.cache, threads, signal: s }),
    ).catch(rethrow);
    return { info, digest: filesDigest(info), validation };
  }

  /**
   * Structure, and the same files (inodes, sizes, mtimes, manifest bytes) as
   * the validation that produced `digest` saw: no hashing. Cluster workers
   * use it with the primary's digest; anything else fails closed.
   */
  async confirm(dir: string, served: readonly LaneName[], digest: string, signal?: AbortSignal): Promise<Validated> {
    const info = await this.structure(dir, served, signal);
    if (filesDigest(info) !== digest) {
      throw new ReloadError('EFILE_CHANGED', `generation ${info.id} is not on disk what the primary validated (files replaced or modified since)`);
    }
    return { info, digest, validation: null };
  }
}
