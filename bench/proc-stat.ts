// CPU time from Linux's /proc, for the benchmarks' CPU accounting: one
// process (/proc/<pid>/stat) or one thread (/proc/<pid>/task/<tid>/stat).
import fs from 'node:fs';

/**
 * The parent pid and the CPU time (utime + stime, ms; clock ticks of 10 ms)
 * in a /proc stat file; null where it cannot be read (gone, or not Linux).
 */
export function readProcStat(file: string): { ppid: number; cpuMs: number } | null {
  try {
    const s = fs.readFileSync(file, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuMs: (Number(f[11]) + Number(f[12])) * 10 };
  } catch {
    return null;
  }
}
