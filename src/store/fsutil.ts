// Durable file writes and checksums. A generation is written once, fsynced,
// and then only ever read: nothing here opens an existing file for writing.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';

/** Creates `file` (which must not exist), writes `data`, fsyncs; returns its sha256 hex. */
export async function writeNewFile(file: string, data: Uint8Array): Promise<string> {
  const fh = await fsp.open(file, 'wx');
  try {
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await fh.write(data, done, data.byteLength - done);
      done += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** fsync a directory so renames and new entries in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces `file` with `value` as JSON, atomically: a reader (or a restart
 * after a crash) sees the old content or the new, never a torn file.
 */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(value));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}
