// The client's errors: one class with a code, and what went wrong with a
// fetch spelled out (the platform says only "fetch failed" and keeps the
// reason, e.g. ECONNREFUSED 127.0.0.1:3199, in `cause`). Browser-safe.

export class PirClientError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PirClientError';
  }
}

/**
 * The error for a fetch (or the reading of its body) that threw: `what` names
 * the request, e.g. "GET http://127.0.0.1:3199/info". Timeouts are ETIMEDOUT,
 * a caller's abort EABORTED, anything else ENETWORK with the cause named
 * (code and address when the platform gives them). The original is `cause`.
 */
export function fetchError(what: string, err: unknown, timeoutMs?: number): PirClientError {
  const e = err as { name?: unknown } | undefined;
  const reason = describeFetchFailure(err, timeoutMs);
  if (e?.name === 'TimeoutError') return new PirClientError(`${what}: ${reason}`, 'ETIMEDOUT', { cause: err });
  if (e?.name === 'AbortError') return new PirClientError(`${what}: ${reason}`, 'EABORTED', { cause: err });
  return new PirClientError(`${what} failed: ${reason}`, 'ENETWORK', { cause: err });
}

/**
 * Why a fetch threw, in one line someone can act on: `ECONNREFUSED
 * 127.0.0.1:3199`, `ENOTFOUND pir.example`, `no answer within 30000 ms`. The
 * platform's generic "fetch failed" is dropped; any other message is kept in
 * front of its cause.
 */
export function describeFetchFailure(err: unknown, timeoutMs?: number): string {
  const e = err as { name?: unknown; message?: unknown; cause?: unknown } | undefined;
  if (e?.name === 'TimeoutError') return `no answer${timeoutMs ? ` within ${timeoutMs} ms` : ' in time'}`;
  if (e?.name === 'AbortError') return 'aborted';
  const outer = typeof e?.message === 'string' ? e.message : '';
  const cause = describeCause(e?.cause);
  if (!cause) return outer || String(err);
  return outer === '' || outer === 'fetch failed' || cause.includes(outer) ? cause : `${outer} (${cause})`;
}

/** "ECONNREFUSED 127.0.0.1:3199", "ENOTFOUND example.invalid", or the cause's message; '' when there is none. */
export function describeCause(cause: unknown, depth = 0): string {
  if (typeof cause !== 'object' || cause === null || depth > 4) return '';
  const c = cause as { code?: unknown; address?: unknown; port?: unknown; hostname?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  // Several addresses tried (AggregateError): name each distinct failure.
  if (Array.isArray(c.errors) && c.errors.length > 0) {
    const each = [...new Set(c.errors.map((x) => describeCause(x, depth + 1)).filter(Boolean))];
    if (each.length > 0) return each.join(', ');
  }
  const code = typeof c.code === 'string' ? c.code : '';
  let where = '';
  if (typeof c.address === 'string') {
    const host = c.address.includes(':') ? `[${c.address}]` : c.address;
    where = typeof c.port === 'number' ? `${host}:${c.port}` : host;
  } else if (typeof c.hostname === 'string') {
    where = c.hostname;
  }
  const message = typeof c.message === 'string' ? c.message : '';
  if (code && where) return `${code} ${where}`;
  // undici's own errors (UND_ERR_*) carry their meaning in the message.
  if (code) return message && !message.includes(code) ? `${code}: ${message}` : message || code;
  return describeCause(c.cause, depth + 1) || message;
}
