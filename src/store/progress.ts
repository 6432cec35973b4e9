// A minimal progress line on stderr for long builder steps: redrawn in place
// on a terminal, a line per quarter otherwise (logs stay readable).
export type ProgressFn = (label: string, done: number, total: number) => void;

export function stderrProgress(): ProgressFn {
  const tty = process.stderr.isTTY === true;
  let lastLabel = '';
  let lastQuarter = -1;
  return (label, done, total) => {
    const frac = total > 0 ? done / total : 1;
    if (tty) {
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}%`);
      if (done >= total) process.stderr.write('\n');
      return;
    }
    const quarter = Math.floor(frac * 4);
    if (label !== lastLabel || quarter !== lastQuarter) {
      lastLabel = label;
      lastQuarter = quarter;
      process.stderr.write(`${label}: ${(frac * 100).toFixed(0)}%\n`);
    }
  };
}
