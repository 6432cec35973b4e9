// Where lanes live in memory (config lane_memory), and how large the query
// exchange's areas are. See docs/ARCHITECTURE.md, "Lane memory".
import fs from 'node:fs';
import { type Config } from '../config.js';
import { type LaneMemory } from '../native.js';
import { answerBytes, queryBytes } from '../pir/crs.js';
import { type GenerationInfo } from '../store/generation.js';

let thp: string | undefined;

/** The kernel's transparent-huge-page policy for anonymous memory ('always', 'madvise', 'never', or 'unknown'). */
export function anonymousHugePages(): string {
  if (thp === undefined) {
    try {
      const text = fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
      thp = /\[(\w+)\]/.exec(text)?.[1] ?? 'unknown';
    } catch {
      thp = 'unknown';
    }
  }
  return thp;
}

/** The lane memory mode a configuration asks for on this machine. */
export function laneMemoryMode(config: Pick<Config, 'lane_memory' | 'use_mmap'>): LaneMemory {
  if (config.lane_memory !== 'auto') return config.lane_memory;
  if (!config.use_mmap) return 'memory';
  const policy = anonymousHugePages();
  return policy === 'always' || policy === 'madvise' ? 'cache' : 'mmap';
}

const MiB = 2 ** 20;

/**
 * Descriptors and data bytes per region of the query exchange: room for
 * max_pending_per_lane queries on every lane plus as many answers still being
 * sent, at the shapes of `info` (the generation served at start-up), with
 * headroom for larger later generations. exchange_mib overrides the size.
 */
export function exchangeSizing(
  config: Pick<Config, 'max_pending_per_lane' | 'exchange_mib'>,
  info: GenerationInfo | undefined,
  opts: { minMiB: number; maxMiB: number },
): { descriptors: number; dataBytes: number } {
  const descriptors = Math.min(4096, Math.max(64, 4 * config.max_pending_per_lane));
  if (config.exchange_mib > 0) return { descriptors, dataBytes: config.exchange_mib * MiB };
  let perQuery = 0;
  for (const l of Object.values(info?.lanes ?? {})) perQuery += queryBytes(l.crs) + answerBytes(l.crs) + 128;
  const want = 3 * config.max_pending_per_lane * perQuery;
  const mib = Math.min(opts.maxMiB, Math.max(opts.minMiB, Math.ceil(want / MiB)));
  return { descriptors, dataBytes: mib * MiB };
}
