// Request logging: one bounded JSON line per finished request (pino-http).
// What a line carries is chosen here, never the raw request: headers hold the
// admin token and whatever a client chooses to send (a 15 KB header must not
// become a 15 KB log line), so a line names the request id, method, path,
// status, remote address and a few headers cut to a fixed length.
//
// Levels: successful requests at debug (an access line per query is noise at
// thousands of queries/s, and a record of which address asked when is
// metadata a privacy server should not keep by default); refusals (4xx, and
// deliberate 5xx such as 503 ENOT_READY) at warn with their code; unexpected
// errors at error (the error middleware logs their stack once, with the
// request's summary); requests the client abandoned at info; probes
// (/health, /ready) at debug whatever they answer, so a load balancer polling
// an unready server does not fill the log.
import crypto from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { type Logger } from 'pino';
import { pinoHttp } from 'pino-http';

const URL_MAX = 256;
const HEADER_MAX = 128;
/** The only request headers that reach a log line (each cut to HEADER_MAX). */
const LOGGED_HEADERS = ['user-agent', 'content-type', 'content-length', 'origin'] as const;
const PROBES = new Set(['/health', '/ready']);

/** Codes of refusals the app answered on purpose (HttpError), by response. */
const refusals = new WeakMap<ServerResponse, string>();

/** Records that this response is a deliberate refusal with `code` (logged at warn, without a stack). */
export function noteRefusal(res: ServerResponse, code: string): void {
  refusals.set(res, code);
}

export function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${s.length - max} more)`;
}

/** What a log line says about a request: never the raw headers. */
export function requestSummary(req: IncomingMessage): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const name of LOGGED_HEADERS) {
    const v = req.headers[name];
    if (typeof v === 'string') headers[name] = clip(v, HEADER_MAX);
  }
  return {
    id: (req as { id?: unknown }).id,
    method: clip(req.method ?? '', 16),
    url: clip(req.url ?? '', URL_MAX),
    remote: req.socket?.remoteAddress,
    headers,
  };
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

const REQUEST_ID = /^[\w.-]{1,128}$/;

/** pino-http, configured as described above; echoes the request id in X-Request-Id. */
export function httpLogger(logger: Logger) {
  return pinoHttp({
    logger,
    wrapSerializers: false,
    serializers: {
      req: requestSummary,
      res: (res: ServerResponse) => ({ statusCode: res.statusCode }),
    },
    genReqId: (req, res) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    customLogLevel: (req, res, err) => {
      if (PROBES.has(pathOf(req))) return 'debug';
      if (!err && !res.writableEnded) return 'info'; // the client went away before the answer (its status means nothing yet)
      if (res.statusCode >= 500 && !refusals.has(res)) return 'error';
      if (err || res.statusCode >= 400) return 'warn';
      return 'debug';
    },
    customSuccessObject: (_req, res, val) => {
      const code = refusals.get(res);
      return code ? { ...val, code } : val;
    },
    // pino-http makes up an Error (with a stack) for every 5xx; the error
    // middleware has already logged a real one once, so a line keeps only the
    // code of a refusal, or the message of a connection error.
    customErrorObject: (_req, res, err, val) => {
      const code = refusals.get(res);
      const { err: _made, ...rest } = val as Record<string, unknown>;
      if (code) return { ...rest, code };
      return /^failed with status code \d+$/.test(err.message) ? rest : { ...rest, err };
    },
    customSuccessMessage: (req, res) =>
      req.readableAborted || !res.writableEnded ? 'request aborted' : res.statusCode >= 400 ? 'request refused' : 'request completed',
    customErrorMessage: (_req, res) => (refusals.has(res) ? 'request refused' : 'request failed'),
  });
}
