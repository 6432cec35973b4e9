// Scratch files of (key, value) records for the keyword-lane builder: a
// state is read once, its records wait here per lane, and the builder can
// read them again (it re-reads when it must re-seed a lane). Records:
// key length (1 byte) ‖ key ‖ value (32). Node only.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { EthError } from './errors.js';

export class RecordSpill {
  private buf = Buffer.alloc(1 << 20);
  private used = 0;
  private records = 0;
  private constructor(
    readonly file: string,
    private readonly fh: fsp.FileHandle,
  ) {}

  static async create(file: string): Promise<RecordSpill> {
    return new RecordSpill(file, await fsp.open(file, 'wx'));
  }

  get count(): number {
    return this.records;
  }

  async push(key: Uint8Array, value: Uint8Array): Promise<void> {
    if (key.length < 1 || key.length > 255) throw new EthError('EKEY', `a spilled key is 1..255 bytes, got ${key.length}`);
    const size = 1 + key.length + 32;
    if (this.used + size > this.buf.length) await this.flush();
    this.buf[this.used] = key.length;
    this.buf.set(key, this.used + 1);
    this.buf.set(value, this.used + 1 + key.length);
    this.used += size;
    this.records++;
  }

  private async flush(): Promise<void> {
    let done = 0;
    while (done < this.used) done += (await this.fh.write(this.buf, done, this.used - done)).bytesWritten;
    this.used = 0;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh.close();
  }

  /** The records, in the order pushed (readable any number of times after close()). */
  async *read(): AsyncGenerator<{ key: Uint8Array; value: Uint8Array }> {
    let carry = Buffer.alloc(0);
    let seen = 0;
    for await (const chunk of fs.createReadStream(this.file, { highWaterMark: 1 << 20 })) {
      const buf = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
      let off = 0;
      while (off < buf.length && off + 1 + buf[off]! + 32 <= buf.length) {
        const len = buf[off]!;
        // Copies: the builder may keep records past this chunk.
        yield { key: new Uint8Array(buf.subarray(off + 1, off + 1 + len)), value: new Uint8Array(buf.subarray(off + 1 + len, off + 1 + len + 32)) };
        off += 1 + len + 32;
        seen++;
      }
      carry = Buffer.from(buf.subarray(off));
    }
    if (carry.length || seen !== this.records) throw new EthError('ESPILL', `${this.file} ended early (${seen} of ${this.records} records)`);
  }
}
