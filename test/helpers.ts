// Shared test helpers: temporary data directories and plain-TypeScript
// reference implementations of the SimplePIR server side (small lanes only).
import { type ChildProcess, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Crs } from '../src/pir/crs.js';
import { LWE_N, PLAIN_MODULUS, Q_BITS, SIGMA, recordRows } from '../src/pir/params.js';
import { MatrixStream, wordsToLittleEndian } from '../src/pir/prg.js';

export function tempDir(prefix = 'lanepir-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmrf(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** ans[t] = sum_c X[t][c] * q[c] mod 2^32 over a lane given as raw bytes. */
export function referenceAnswer(data: Uint8Array, entrySize: number, m: number, query: Uint32Array): Uint32Array {
  const entries = data.length / entrySize;
  const R = recordRows(entries, m);
  const out = new Uint32Array(entrySize * R);
  for (let i = 0; i < entries; i++) {
    const r = Math.floor(i / m);
    const c = i % m;
    for (let b = 0; b < entrySize; b++) {
      const t = r * entrySize + b;
      out[t] = (out[t]! + Math.imul(data[i * entrySize + b]!, query[c]!)) >>> 0;
    }
  }
  return out;
}

/** H = (X - 128) * A mod 2^32, with A from the seed (TypeScript expansion). */
export async function referenceHint(data: Uint8Array, entrySize: number, m: number, seed: Uint8Array, n = LWE_N): Promise<Uint32Array> {
  const entries = data.length / entrySize;
  const R = recordRows(entries, m);
  const A = await (await MatrixStream.create(seed, n)).rows(0, m);
  const H = new Uint32Array(entrySize * R * n);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < m; c++) {
      const i = r * m + c;
      for (let b = 0; b < entrySize; b++) {
        const x = (i < entries ? data[i * entrySize + b]! : 0) - 128;
        const t = r * entrySize + b;
        for (let j = 0; j < n; j++) H[t * n + j] = (H[t * n + j]! + Math.imul(x, A[c * n + j]!)) >>> 0;
      }
    }
  }
  return H;
}

/** A crs + hint for a small lane held in memory, built by the TS reference. */
export async function referenceLane(data: Uint8Array, entrySize: number, m: number): Promise<{ crs: Crs; hint: Uint8Array }> {
  const seed = crypto.randomBytes(16);
  const hint = wordsToLittleEndian(await referenceHint(data, entrySize, m, seed));
  const entries = data.length / entrySize;
  const crs: Crs = {
    scheme: 'simplepir',
    n: LWE_N,
    q_bits: Q_BITS,
    p: PLAIN_MODULUS,
    sigma: SIGMA,
    m,
    R: recordRows(entries, m),
    entry_size: entrySize,
    entries,
    seed: seed.toString('hex'),
    prg: 'aes-128-ctr',
    hint_sha256: crypto.createHash('sha256').update(hint).digest('hex'),
  };
  return { crs, hint };
}

export function randomIndices(count: number, max: number): number[] {
  return Array.from({ length: count }, () => crypto.randomInt(max));
}

/** Children of run() still running: stopped if the test process exits first (a failed or timed-out test). */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGTERM');
});

/** Runs a program to completion (killed after timeoutMs); a non-zero exit is a result, not an exception. */
export function run(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      children.delete(child);
      // A child killed by a signal (the timeout) or that could not run is -1, never a plausible exit code.
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    children.add(child);
  });
}

/** The lanepir command line, as a user runs it. */
export const cli = (...args: string[]) => run(process.execPath, [path.resolve('bin/lanepir.js'), ...args]);
