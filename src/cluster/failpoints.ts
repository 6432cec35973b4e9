// Failpoints for tests of paths that cannot be provoked from outside a
// process: LANEPIR_FAILPOINTS="reload-stall:ms=2000" holds every cluster
// reload for 2 s before it starts (so a test can queue or abandon reloads
// behind it). Unset in production: each check is one environment lookup.

/** Waits `ms` if failpoint `name:ms=<ms>` is set; resolves early (and the caller checks) when `signal` aborts. */
export async function failpointDelay(name: string, signal?: AbortSignal): Promise<void> {
  for (const spec of (process.env.LANEPIR_FAILPOINTS ?? '').split(',')) {
    const [fp, arg] = spec.trim().split(':');
    const ms = /^ms=(\d+)$/.exec(arg ?? '')?.[1];
    if (fp !== name || ms === undefined) continue;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Number(ms));
      signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
    signal?.throwIfAborted();
  }
}
