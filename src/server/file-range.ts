// Streams a file that a snapshot holds open, by positional reads on its
// handle: a generation's files may be unlinked (pruned) while it is served,
// and the open handle keeps them readable. The stream never closes the
// handle (the snapshot owns it); it pins the snapshot until no read is in
// flight, so the handle is never closed under a read.
import { type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

const CHUNK = 256 * 1024;

export class FileRangeStream extends Readable {
  private pos = 0;
  private reading: Promise<void> | undefined;

  /** Reads [0, size) of `handle`; `release` is called once, when the stream has closed and no read is in flight. */
  private constructor(
    private readonly handle: FileHandle,
    private readonly size: number,
    private first: Buffer | undefined,
    release: () => void,
  ) {
    super({ highWaterMark: CHUNK });
    this.pos = first?.length ?? 0;
    this.once('close', release);
  }

  /**
   * Reads the first chunk before anything is sent, so that an unreadable file
   * is an error the caller can still answer with a clean status (it throws),
   * never a 200 with an empty or cut body.
   */
  static async open(handle: FileHandle, size: number, release: () => void): Promise<FileRangeStream> {
    try {
      const first = size > 0 ? await readChunk(handle, 0, Math.min(CHUNK, size)) : undefined;
      return new FileRangeStream(handle, size, first, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  override _read(): void {
    if (this.first) {
      const first = this.first;
      this.first = undefined;
      this.push(first);
      if (this.pos >= this.size) this.push(null);
      return;
    }
    if (this.pos >= this.size) {
      this.push(null);
      return;
    }
    const len = Math.min(CHUNK, this.size - this.pos);
    this.reading = readChunk(this.handle, this.pos, len).then(
      (buf) => {
        this.reading = undefined;
        if (this.destroyed) return;
        this.pos += buf.length;
        this.push(buf);
        if (this.pos >= this.size) this.push(null);
      },
      (err: Error) => {
        this.reading = undefined;
        this.destroy(err);
      },
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // 'close' (and with it the release) waits for a read still in flight.
    if (this.reading) this.reading.then(() => cb(err), () => cb(err));
    else cb(err);
  }
}

async function readChunk(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw Object.assign(new Error(`file ends at ${position + done} bytes, expected ${position + length}`), { code: 'ESHORT_READ' });
    done += bytesRead;
  }
  return buf;
}
