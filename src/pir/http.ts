// The client's one way to the server (browser-safe: fetch only). Every
// request has a time limit that bounds it whole, retries included; a refusal
// that says when to come back (429 or 503 with Retry-After: the per-client
// cap, a route's cap, a lane's backlog, the delta merge slots, a server not
// ready yet) is waited out and the same request sent again, a few times at
// most. Such a refusal comes before the server processed anything, so
// sending the same bytes again (a query included) tells it nothing new.
import { PirClientError, fetchError } from './errors.js';

/** How the client waits out a server's "busy, come back later" (429/503 with Retry-After). */
export interface RetryPolicy {
  /** Tries per request, the first included (default 4; 1 never retries). */
  attempts?: number;
  /** The longest wait before a retry (default 10 000 ms); a server asking for longer is given up on at once. */
  maxWaitMs?: number;
  /** The shortest wait, doubled per retry (default 250 ms); Retry-After raises it. */
  backoffMs?: number;
}

export const DEFAULT_RETRY: Required<RetryPolicy> = { attempts: 4, maxWaitMs: 10_000, backoffMs: 250 };
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface HttpOptions {
  fetch: typeof fetch;
  /** The limit on the whole request: every try and every wait, and reading the answer's body. */
  timeoutMs: number;
  retry?: RetryPolicy | undefined;
}

/** A retry policy with its defaults, checked (a RangeError names a bad value). */
export function retryPolicy(p: RetryPolicy | undefined): Required<RetryPolicy> {
  const out = { ...DEFAULT_RETRY, ...Object.fromEntries(Object.entries(p ?? {}).filter(([, v]) => v !== undefined)) };
  if (!Number.isSafeInteger(out.attempts) || out.attempts < 1) throw new RangeError(`retry.attempts must be a positive integer, got ${out.attempts}`);
  for (const k of ['maxWaitMs', 'backoffMs'] as const) {
    if (!Number.isFinite(out[k]) || out[k] < 0) throw new RangeError(`retry.${k} must be a non-negative number, got ${out[k]}`);
  }
  return out;
}

/** Statuses a server uses to say "not now": refused before any work was done. */
const BUSY_STATUSES = new Set([429, 503]);

/**
 * Milliseconds a Retry-After header asks for (delta-seconds or an HTTP date),
 * undefined when there is none or it cannot be read.
 */
export function retryAfterMs(value: string | null, nowMs = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v) * 1000;
  if (!/[a-z]/i.test(v)) return undefined; // not a date either
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * Sends `init` to `url` and returns the response. A 429 or 503 with a
 * readable Retry-After is retried after waiting at least that long (and at
 * least the doubling backoff, plus up to half again as jitter, so that
 * refused clients do not come back in step) while tries remain, the wait is
 * at most `maxWaitMs` and fits in the time left. When it cannot be retried
 * any more the server's error is thrown with its code (ETOO_MANY_REQUESTS,
 * EROUTE_BUSY, EOVERLOADED, EDELTA_BUSY, ENOT_READY, …) and how often it was
 * refused. Other statuses, and a 429/503 without Retry-After, are returned
 * for the caller to judge. Network failures throw (ENETWORK, ETIMEDOUT).
 */
export async function request(opts: HttpOptions, url: URL, init: RequestInit = {}): Promise<{ res: Response; what: string }> {
  const what = `${init.method ?? 'GET'} ${url}`;
  const policy = retryPolicy(opts.retry);
  const started = now();
  const deadline = started + opts.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      // What is left of the time limit bounds this try, and the reading of its body.
      // Called unbound: a browser's fetch refuses any `this` but the window (or none).
      const fetchFn = opts.fetch;
      res = await fetchFn(url, { ...init, signal: AbortSignal.timeout(Math.max(1, Math.ceil(deadline - now()))) });
    } catch (err) {
      throw fetchError(what, err, opts.timeoutMs);
    }
    if (!BUSY_STATUSES.has(res.status)) return { res, what };
    const asked = retryAfterMs(res.headers.get('Retry-After'));
    if (asked === undefined) return { res, what };
    const refused = (why: string) => httpError(res, what, `; ${why}`);
    if (attempt >= policy.attempts) {
      throw await refused(`refused ${attempt} time${attempt === 1 ? '' : 's'} in ${Math.round(now() - started)} ms, giving up`);
    }
    if (asked > policy.maxWaitMs) throw await refused(`the server asks to wait ${asked} ms, more than the ${policy.maxWaitMs} ms this client waits`);
    const base = Math.min(policy.maxWaitMs, Math.max(asked, policy.backoffMs * 2 ** (attempt - 1)));
    const wait = Math.min(policy.maxWaitMs, base * (1 + Math.random() / 2));
    if (now() + wait >= deadline) throw await refused(`waiting ${Math.round(wait)} ms more would pass the request's ${opts.timeoutMs} ms limit`);
    await res.body?.cancel().catch(() => undefined);
    await sleep(wait);
  }
}

/** A 2xx JSON answer of at most `limit` bytes, parsed (else the server's error, or EBAD_RESPONSE). */
export async function requestJson(opts: HttpOptions, url: URL, limit = MAX_JSON_BYTES): Promise<unknown> {
  const { res, what } = await request(opts, url);
  if (!res.ok) throw await httpError(res, what);
  const bytes = await readBody(res, what, limit, opts.timeoutMs);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new PirClientError(`${what}: the answer is not JSON`, 'EBAD_RESPONSE');
  }
}

/** Bodies of JSON answers (/info, /crs, errors) are small; anything larger is refused unread. */
export const MAX_JSON_BYTES = 1 << 20;

/** The body, at most `limit` bytes (ETOO_LARGE beyond, checked before reading when declared). */
export async function readBody(res: Response, what: string, limit: number, timeoutMs: number): Promise<Uint8Array> {
  const tooLarge = (size: string) => new PirClientError(`${what}: the answer has ${size} bytes, more than the ${limit} expected`, 'ETOO_LARGE');
  const declared = res.headers.get('Content-Length');
  if (declared !== null && Number(declared) > limit) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge(declared);
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge(`over ${limit}`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof PirClientError) throw err;
    throw fetchError(`${what} (reading the answer)`, err, timeoutMs);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/**
 * The server's error ({error, code} JSON), its text bounded and stripped of
 * control characters (it ends up on terminals); EHTTP_<status> when it gives
 * no code. `note` is appended to the message.
 */
export async function httpError(res: Response, what: string, note = ''): Promise<PirClientError> {
  let body: { error?: unknown; code?: unknown } = {};
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(await readBody(res, what, 64 * 1024, 0)));
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) body = parsed;
  } catch {
    // not JSON, or too long: the status says enough
  }
  const text = typeof body.error === 'string' ? printable(body.error) : '';
  const code = typeof body.code === 'string' && /^E[A-Z0-9_]{1,40}$/.test(body.code) ? body.code : `EHTTP_${res.status}`;
  return new PirClientError(`${what}: HTTP ${res.status}${text ? `: ${text}` : ''}${note}`, code);
}

export function printable(s: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/g, ' ');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function now(): number {
  return performance.now();
}
