// The chain of generations ending at a head: each incremental generation
// names its parent in its manifest. Follow mode uses it to find the right
// ancestor when a block is rebuilt after a reorg.
import fsp from 'node:fs/promises';
import { GENERATION_ID, generationDir, generationsDir } from '../store/layout.js';
import { type Manifest, readManifest } from '../store/manifest.js';

/** Block number -> generation id along the chain ending at `head` (at most `depth` generations back). */
export async function chainOf(data: string, head: string, depth = 256): Promise<Map<number, string>> {
  const chain = new Map<number, string>();
  let id: string | undefined = head;
  for (let i = 0; id && i < depth; i++) {
    const manifest: Manifest | undefined = await readManifest(generationDir(data, id)).catch(() => undefined);
    if (!manifest) break;
    chain.set(manifest.block_number, id);
    id = manifest.parent;
  }
  return chain;
}

/** The id for a new generation of `block`: the block number, or `<block>r<k>` when that is taken (a reorg). */
export async function freeGenerationId(data: string, block: number): Promise<string> {
  const taken = new Set((await fsp.readdir(generationsDir(data)).catch(() => [] as string[])).filter((n) => GENERATION_ID.test(n)));
  if (!taken.has(String(block))) return String(block);
  for (let k = 1; ; k++) if (!taken.has(`${block}r${k}`)) return `${block}r${k}`;
}
