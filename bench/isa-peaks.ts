// The instruction peaks of isa-peaks.cc, for the kernel bench: compiled with
// the C++ compiler node-gyp uses (g++, or $CXX) into a temporary directory and
// run once. Null, with the reason, where it cannot be built or run (no
// compiler, not x86-64): the bench then reports the hint figures without them.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Instructions (steps) per second on one thread; null where the CPU lacks the form. */
export interface IsaPeaks {
  /** vpmaddwd + vpaddd on ymm (a pair per step): 16 products of 16-bit pairs. */
  madd_add_ymm: number | null;
  /** vpmaddwd + vpaddd on zmm: 32 products. */
  madd_add_zmm: number | null;
  /** vpdpwssd on ymm (AVX-VNNI): 16 products. */
  dpwssd_ymm: number | null;
  /** vpdpwssd on zmm (AVX-512 VNNI): 32 products. */
  dpwssd_zmm: number | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/bench/isa-peaks.js -> bench/isa-peaks.cc
const SOURCE = path.resolve(here, '..', '..', 'bench', 'isa-peaks.cc');

function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => (err ? reject(new Error(`${path.basename(file)}: ${err.message}${stderr ? `\n${stderr}` : ''}`)) : resolve(stdout))),
  );
}

export async function measureIsaPeaks(tmpDir: string): Promise<{ peaks: IsaPeaks } | { peaks: null; reason: string }> {
  if (process.arch !== 'x64') return { peaks: null, reason: `not x86-64 (${process.arch})` };
  const exe = path.join(tmpDir, 'isa-peaks');
  try {
    await run(process.env.CXX || 'g++', ['-O2', '-o', exe, SOURCE], 120_000);
    return { peaks: JSON.parse(await run(exe, [], 60_000)) as IsaPeaks };
  } catch (err) {
    return { peaks: null, reason: (err as Error).message.split('\n')[0]! };
  }
}
