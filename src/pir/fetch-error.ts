// Why a fetch() failed, in one line someone can act on. Node's fetch throws
// `TypeError: fetch failed` and hides the reason in `cause` (a system error
// with code, address and port; an AggregateError when several addresses were
// tried); browsers give no reason at all. Browser-safe: only standard Error
// fields and the optional ones Node adds are read.

interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  address?: unknown;
  port?: unknown;
  hostname?: unknown;
  cause?: unknown;
  errors?: unknown;
}

const isObject = (v: unknown): v is ErrorLike => typeof v === 'object' && v !== null;

/** The innermost cause (bounded: causes can be cyclic). */
function innermost(err: ErrorLike): ErrorLike {
  let e = err;
  for (let depth = 0; depth < 8 && isObject(e.cause); depth++) e = e.cause;
  return e;
}

/** `ECONNREFUSED 127.0.0.1:3199`, `ENOTFOUND node.invalid`, or the message. */
function describeOne(e: ErrorLike): string {
  const code = typeof e.code === 'string' ? e.code : undefined;
  let where: string | undefined;
  if (typeof e.address === 'string') where = e.address.includes(':') ? `[${e.address}]` : e.address;
  else if (typeof e.hostname === 'string') where = e.hostname;
  if (where !== undefined && (typeof e.port === 'number' || typeof e.port === 'string')) where += `:${e.port}`;
  if (code && where) return `${code} ${where}`;
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : undefined;
  return message ?? code ?? (typeof e.name === 'string' ? e.name : 'unknown error');
}

function isTimeout(e: ErrorLike): boolean {
  return e.name === 'TimeoutError' || e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT';
}

/**
 * One line saying why a request failed, e.g. `ECONNREFUSED 127.0.0.1:3199`,
 * `ENOTFOUND pir.example`, `timed out after 120 s`. The generic wrapper
 * message ("fetch failed") is dropped; any other wrapper message is kept in
 * front of its cause.
 */
export function describeFetchError(err: unknown, opts: { timeoutMs?: number } = {}): string {
  if (!isObject(err)) return String(err);
  const inner = innermost(err);
  if (isTimeout(err) || isTimeout(inner)) {
    return opts.timeoutMs !== undefined ? `timed out after ${opts.timeoutMs / 1000} s` : 'timed out';
  }
  if (err.name === 'AbortError') return 'aborted';
  let cause: string;
  if (Array.isArray(inner.errors) && inner.errors.length > 0) {
    cause = [...new Set(inner.errors.filter(isObject).map(describeOne))].join(', ');
  } else {
    cause = describeOne(inner);
  }
  if (inner === err) return cause;
  const outer = typeof err.message === 'string' ? err.message : '';
  return outer === '' || outer === 'fetch failed' || cause.includes(outer) ? cause : `${outer} (${cause})`;
}

/** The system error code behind a failed fetch (`ECONNREFUSED`, ...), `ETIMEDOUT` for a timeout, or undefined. */
export function fetchErrorCode(err: unknown): string | undefined {
  if (!isObject(err)) return undefined;
  const inner = innermost(err);
  if (isTimeout(err) || isTimeout(inner)) return 'ETIMEDOUT';
  if (typeof inner.code === 'string') return inner.code;
  if (Array.isArray(inner.errors)) {
    const first = inner.errors.find((e) => isObject(e) && typeof e.code === 'string') as ErrorLike | undefined;
    if (first) return first.code as string;
  }
  return undefined;
}
