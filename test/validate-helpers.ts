// Damaging generations the ways an operator's mistake, a bad disk or an
// attacker would (for the validation tests; only generations nobody serves).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { crsPath, generationDir, manifestPath } from '../src/store/layout.js';

/** Replaces `file` with a FIFO nobody writes to (opening it for reading blocks forever). */
export function fifoAt(file: string): void {
  fs.rmSync(file);
  execFileSync('mkfifo', [file]);
}

/** Lets a reader stuck opening a FIFO go (old code hangs a thread there; a test must not leave it). */
export function unblockFifo(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
  } catch {
    // no reader waiting (ENXIO) or already gone
  }
}

/** Flips one bit of byte `offset` of `file` (a generation nobody has mapped). */
export function flipByte(file: string, offset = 7): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0]! ^= 0x01;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Gives a lane another seed, consistently in crs.json and the manifest's lane
 * summary (the structure checks pass; only the file checksums can tell).
 */
export function changeSeed(data: string, generation: string, lane: 'hot' | 'cold', seed = 'ab'.repeat(16)): void {
  const dir = generationDir(data, generation);
  const crsFile = crsPath(dir, lane);
  const crs = JSON.parse(fs.readFileSync(crsFile, 'utf8'));
  crs.seed = seed;
  fs.rmSync(crsFile);
  fs.writeFileSync(crsFile, `${JSON.stringify(crs, null, 2)}\n`);
  const manifest = JSON.parse(fs.readFileSync(manifestPath(dir), 'utf8'));
  manifest.lanes[lane].seed = seed;
  fs.rmSync(manifestPath(dir));
  fs.writeFileSync(manifestPath(dir), JSON.stringify(manifest, null, 2));
}

/** Replaces `file` with a symlink to a file of the same size in `elsewhere` (created with other bytes). */
export function symlinkTo(file: string, elsewhere: string): string {
  const size = fs.statSync(file).size;
  fs.mkdirSync(elsewhere, { recursive: true });
  const target = path.join(elsewhere, `${path.basename(file)}.foreign`);
  fs.writeFileSync(target, Buffer.alloc(size, 0x5a));
  fs.rmSync(file);
  fs.symlinkSync(target, file);
  return target;
}

/** Replaces `file` with a symlink to a copy of itself at `copy` (same bytes). */
export function symlinkToCopy(file: string, copy: string): void {
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  fs.copyFileSync(file, copy);
  fs.rmSync(file);
  fs.symlinkSync(path.relative(path.dirname(file), copy), file);
}

/** Replaces `file` with a sparse regular file of `bytes` bytes (nothing written, so creating it is instant). */
export function hugeFile(file: string, bytes: number): void {
  fs.rmSync(file);
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, bytes);
}

/** Milliseconds `p` took, with its value. */
export async function timed<T>(p: Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await p;
  return { ms: performance.now() - t0, value };
}
