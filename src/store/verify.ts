// Full verification of a generation: structure (as loadGeneration checks it)
// plus the sha256 of every file the manifest lists, and no unlisted files.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { StoreError } from './errors.js';
import { sha256File } from './fsutil.js';
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
  for (const [file, { size, sha256 }] of Object.entries(listed)) {
    const p = path.join(dir, ...file.split('/'));
    const st = await fsp.stat(p).catch(() => undefined);
    if (!st) throw new StoreError('EMISSING', `${file} is listed in the manifest but missing`);
    if (st.size !== size) throw new StoreError('ESIZE', `${file} has ${st.size} bytes, the manifest says ${size}`);
    const actual = await sha256File(p);
    if (actual !== sha256) throw new StoreError('ECHECKSUM', `${file} has sha256 ${actual}, the manifest says ${sha256}`);
  }
  return info;
}
