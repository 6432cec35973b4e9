// Full verification of a generation: structure (as loadGeneration checks it:
// regular files inside the data directory, sizes), the sha256 of every file
// the manifest lists (always read: no cache), and no unlisted files.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkChecksums } from './checksums.js';
import { StoreError } from './errors.js';
import { type Expectations, type GenerationInfo, loadGeneration } from './generation.js';

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const ent of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...(await listFiles(root, p)));
    else out.push(path.relative(root, p).split(path.sep).join('/'));
  }
  return out;
}

export async function verifyGeneration(dir: string, expect: Expectations = {}): Promise<GenerationInfo> {
  const info = await loadGeneration(dir, expect);
  const listed = info.manifest.files;
  for (const file of await listFiles(dir)) {
    if (file !== 'manifest.json' && !(file in listed)) throw new StoreError('EUNLISTED', `${file} is in the generation but not in its manifest`);
  }
  await checkChecksums(info, { threads: Math.max(1, os.availableParallelism()) });
  return info;
}
