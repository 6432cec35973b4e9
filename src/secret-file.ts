// Reading a secret (the admin token) from a file, so that it never has to be
// on a command line (world-readable in /proc/<pid>/cmdline) or in a
// configuration file that is shared more widely than the secret should be.
import fs from 'node:fs';

const MAX_BYTES = 4096;

export class SecretFileError extends Error {
  readonly code = 'ESECRET_FILE';
}

/**
 * The secret held by `file`: one line, surrounding whitespace (a trailing
 * newline) removed. Refused: anything but a regular file (a FIFO would block
 * start-up), more than 4 KiB, an empty file, more than one word, and a file
 * that others may read or write or that its group may write (mode & 0o027) —
 * anyone who can read it can switch generations, anyone who can write it can
 * lock operators out. Group read is allowed (root:lanepir 0640, systemd
 * credentials).
 */
export function readSecretFile(file: string, what = 'admin token file'): string {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    throw new SecretFileError(`cannot open ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SecretFileError(`${what} ${file} is not a regular file`);
    const mode = st.mode & 0o777;
    if (mode & 0o027) {
      throw new SecretFileError(
        `${what} ${file} is accessible to others (mode ${mode.toString(8).padStart(4, '0')}); allow the owner only (chmod 600), or its group read-only (chmod 640)`,
      );
    }
    if (st.size > MAX_BYTES) throw new SecretFileError(`${what} ${file} is larger than ${MAX_BYTES} bytes; it must hold the secret alone`);
    const buf = Buffer.alloc(MAX_BYTES + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n > MAX_BYTES) throw new SecretFileError(`${what} ${file} is larger than ${MAX_BYTES} bytes; it must hold the secret alone`);
    const secret = buf.subarray(0, n).toString('utf8').trim();
    if (secret === '') throw new SecretFileError(`${what} ${file} is empty`);
    if (/\s/.test(secret)) throw new SecretFileError(`${what} ${file} must hold the secret alone on one line`);
    return secret;
  } finally {
    fs.closeSync(fd);
  }
}
