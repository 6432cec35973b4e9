// How the CLI reports failures: one line on stderr naming the problem (and
// its code when it has one), and a non-zero exit.
export class UsageError extends Error {
  readonly code = 'EUSAGE';
}

export function reportAndExit(err: unknown): never {
  const e = err as { message?: string; code?: unknown };
  const code = typeof e?.code === 'string' ? ` [${e.code}]` : '';
  process.stderr.write(`lanepir: ${e?.message ?? String(err)}${code}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
}

/** Parses a non-negative integer option, or throws UsageError naming it. */
export function intOption(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < min) {
    throw new UsageError(`${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}
