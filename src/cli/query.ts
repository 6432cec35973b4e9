// lanepir query: one private lookup over HTTP, with crs/hint cached on disk.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type HintCache, RemoteLane } from '../pir/remote.js';
import { isLaneName } from '../store/layout.js';
import { UsageError, intOption } from './errors.js';

/** Hints on disk, one file per lane and hint checksum (written atomically). */
export function fileCache(dir: string): HintCache {
  const file = (key: string) => path.join(dir, `${key.replace(/[^\w.-]/g, '_')}.hint`);
  return {
    async get(key) {
      return fs.readFile(file(key)).then((b) => new Uint8Array(b), () => undefined);
    },
    async set(key, value) {
      await fs.mkdir(dir, { recursive: true });
      const tmp = `${file(key)}.${process.pid}.tmp`;
      await fs.writeFile(tmp, value);
      await fs.rename(tmp, file(key));
    },
  };
}

export function defaultCacheDir(): string {
  return process.env.LANEPIR_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'lanepir');
}

export async function queryCommand(flags: { url: string; lane: string; index: string; cacheDir?: string }): Promise<void> {
  if (!isLaneName(flags.lane)) throw new UsageError(`--lane must be hot or cold, got ${JSON.stringify(flags.lane)}`);
  let url: URL;
  try {
    url = new URL(flags.url);
  } catch {
    throw new UsageError(`--url is not a URL: ${flags.url}`);
  }
  const index = intOption('--index', flags.index)!;
  const cacheDir = path.join(flags.cacheDir ?? defaultCacheDir(), url.host.replace(/[^\w.-]/g, '_'));
  const remote = new RemoteLane(url.toString(), flags.lane, fileCache(cacheDir));
  const r = await remote.lookup(index);
  process.stdout.write(`0x${Buffer.from(r.entry).toString('hex')}\n`);
  const steps = Object.entries(r.timings)
    .map(([k, v]) => `${k} ${v.toFixed(1)} ms`)
    .join(', ');
  process.stderr.write(
    `${flags.lane}[${index}] from generation ${r.generation} (block ${r.blockNumber}): sent ${r.bytesSent} B, received ${r.bytesReceived} B; hint ${r.hintCached ? 'cached' : 'downloaded'}; ${steps}\n`,
  );
}
