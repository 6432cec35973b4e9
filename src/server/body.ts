// Reading a request body into memory the caller already has (a query area
// of the shared exchange), chunk by chunk as it arrives: no intermediate
// buffers, no concatenation.
import { type IncomingMessage } from 'node:http';

/** A body that does not fit: `status` 413, like raw-body's errors. */
class BodyError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/**
 * Reads `req`'s body into `into` and resolves with the number of bytes read.
 * Rejects with status 413 as soon as the body would not fit, and with status
 * 400 when the connection closes early or the body does not match the
 * declared Content-Length.
 */
export function readBodyInto(req: IncomingMessage, into: Uint8Array, declared: number | null): Promise<number> {
  return new Promise((resolve, reject) => {
    if (declared !== null && (!Number.isSafeInteger(declared) || declared < 0)) {
      reject(new BodyError('invalid Content-Length', 400));
      return;
    }
    if (declared !== null && declared > into.byteLength) {
      reject(new BodyError(`request body is larger than ${into.byteLength} bytes`, 413));
      return;
    }
    let off = 0;
    let settled = false;
    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) {
        req.pause(); // the rest is not read into memory
        reject(err);
      } else {
        resolve(off);
      }
    };
    const onData = (chunk: Buffer) => {
      if (off + chunk.length > into.byteLength) return finish(new BodyError(`request body is larger than ${into.byteLength} bytes`, 413));
      into.set(chunk, off);
      off += chunk.length;
    };
    const onEnd = () => {
      if (declared !== null && off !== declared) return finish(new BodyError(`request body has ${off} bytes, Content-Length says ${declared}`, 400));
      finish(undefined);
    };
    const onError = (err: Error) => finish(Object.assign(err, { status: 400 }));
    const onClose = () => finish(new BodyError('the request was aborted', 400));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}
