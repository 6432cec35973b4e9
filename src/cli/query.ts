// lanepir query: one private lookup over HTTP, with crs/hint cached on disk.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CachedHint, type HintCache, RemoteLane } from '../pir/remote.js';
import { isLaneName } from '../store/layout.js';
import { UsageError, intOption } from './errors.js';

/** The newest hint per lane on disk: <lane>.hint and <lane>.json (crs and generation), each replaced atomically. */
export function fileCache(dir: string): HintCache {
  const base = (lane: string) => path.join(dir, lane.replace(/[^\w.-]/g, '_'));
  const writeAtomic = async (file: string, data: Uint8Array | string) => {
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  };
  return {
    async load(lane) {
      try {
        const meta = JSON.parse(await fs.readFile(`${base(lane)}.json`, 'utf8')) as Omit<CachedHint, 'hint'>;
        const hint = new Uint8Array(await fs.readFile(`${base(lane)}.hint`));
        return { ...meta, hint };
      } catch {
        return undefined; // nothing cached, or a torn pair: the client verifies the hint's sha256 anyway
      }
    },
    async save(lane, value) {
      await fs.mkdir(dir, { recursive: true });
      await writeAtomic(`${base(lane)}.hint`, value.hint);
      await writeAtomic(`${base(lane)}.json`, JSON.stringify({ generation: value.generation, crs: value.crs }));
    },
  };
}

export function defaultCacheDir(): string {
  return process.env.LANEPIR_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'lanepir');
}

const HINT_SOURCE = { memory: 'in memory', cache: 'cached', delta: 'updated by delta', download: 'downloaded' } as const;

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
    `${flags.lane}[${index}] from generation ${r.generation} (block ${r.blockNumber}): sent ${r.bytesSent} B, received ${r.bytesReceived} B; hint: ${HINT_SOURCE[r.hintSource]}; ${steps}\n`,
  );
}
