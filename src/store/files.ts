// How the server touches a generation's files: regular files only (a FIFO,
// device or socket is refused before anything opens it, and opens never
// block), symlinks only when they resolve inside the data directory, and
// small files (manifest, crs) read with a size bound. Each checked file comes
// back with its identity (which inode, its size and mtime), so later steps
// (hashing, mapping) can insist on that very file.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type FileIdentity as NativeFileIdentity } from '../native.js';
import { StoreError } from './errors.js';

export interface FileIdentity extends NativeFileIdentity {
  /** 0n where the filesystem does not record it. */
  birthtimeNs: bigint;
}

function identityOf(st: fs.BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: Number(st.size), mtimeNs: st.mtimeNs, birthtimeNs: st.birthtimeNs };
}

function kindOf(st: fs.BigIntStats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}

const inside = (p: string, root: string) => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/**
 * Checks files against one data directory. Directories' real paths are
 * resolved once per checker, so checking every shard of a lane costs one
 * lstat each.
 */
export class FileChecker {
  private readonly dirs = new Map<string, Promise<string>>();

  private constructor(readonly root: string) {}

  /** A checker for the data directory `dataDir` (itself resolved, so a symlinked data directory is fine). */
  static async forDataDir(dataDir: string): Promise<FileChecker> {
    let root: string;
    try {
      root = await fsp.realpath(dataDir);
    } catch (err) {
      throw new StoreError('EDATA_DIR', `cannot resolve the data directory ${dataDir}: ${(err as Error).message}`);
    }
    return new FileChecker(root);
  }

  private async realDir(dir: string): Promise<string> {
    let p = this.dirs.get(dir);
    if (!p) {
      p = fsp.realpath(dir);
      this.dirs.set(dir, p);
      p.catch(() => this.dirs.delete(dir));
    }
    return p;
  }

  private refuseOutside(file: string, real: string): never {
    throw new StoreError('EOUTSIDE_DATA', `${file} resolves to ${real}, outside the data directory ${this.root}`);
  }

  /** The identity of `file`, which must be a regular file whose real path is inside the data directory. */
  async regular(file: string, what = 'file'): Promise<FileIdentity> {
    let st: fs.BigIntStats;
    try {
      st = await fsp.lstat(file, { bigint: true });
    } catch (err) {
      throw new StoreError('EMISSING', `${what} ${file} is missing: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (st.isSymbolicLink()) {
      let real: string;
      try {
        real = await fsp.realpath(file);
        st = await fsp.lstat(real, { bigint: true });
      } catch (err) {
        throw new StoreError('EMISSING', `${what} ${file} is a dangling symlink: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (!inside(real, this.root)) this.refuseOutside(file, real);
    } else {
      const dir = await this.realDir(path.dirname(file)).catch((err: Error) => {
        throw new StoreError('EMISSING', `cannot resolve ${path.dirname(file)}: ${err.message}`);
      });
      if (!inside(dir, this.root)) this.refuseOutside(file, path.join(dir, path.basename(file)));
    }
    if (!st.isFile()) throw new StoreError('ENOT_REGULAR', `${what} ${file} is ${kindOf(st)}, not a regular file`);
    return identityOf(st);
  }

  /**
   * Reads a small file whole: checked as regular() says before it is opened
   * (nothing outside the data directory, no FIFO or device, is ever opened),
   * opened without blocking, checked again on the descriptor (same inode,
   * still inside), refused above `maxBytes` bytes, and never read past that.
   */
  async readSmall(file: string, maxBytes: number, what = 'file'): Promise<{ bytes: Buffer; identity: FileIdentity }> {
    const checked = await this.regular(file, what);
    if (checked.size > maxBytes) throw new StoreError('ETOO_LARGE', `${what} ${file} has ${checked.size} bytes, more than the ${maxBytes} allowed`);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new StoreError('EMISSING', `${what} ${file} is missing`);
      throw new StoreError('EFILE_OPEN', `cannot open ${what} ${file}: ${code ?? (err as Error).message}`);
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new StoreError('ENOT_REGULAR', `${what} ${file} is ${kindOf(st)}, not a regular file`);
      if (st.dev !== checked.dev || st.ino !== checked.ino) throw new StoreError('EFILE_CHANGED', `${what} ${file} was replaced while it was opened`);
      const real = await this.openedPath(fh, file);
      if (!inside(real, this.root)) this.refuseOutside(file, real);
      if (st.size > BigInt(maxBytes)) throw new StoreError('ETOO_LARGE', `${what} ${file} has ${st.size} bytes, more than the ${maxBytes} allowed`);
      // Read at most maxBytes + 1: a file that grew past the bound is refused, not read whole.
      const buf = Buffer.alloc(Math.min(Number(st.size), maxBytes) + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got === buf.length) break;
      }
      if (got > maxBytes) throw new StoreError('ETOO_LARGE', `${what} ${file} has more than the ${maxBytes} bytes allowed`);
      if (got !== Number(st.size)) throw new StoreError('EFILE_CHANGED', `${what} ${file} changed while it was read`);
      return { bytes: buf.subarray(0, got), identity: identityOf(st) };
    } finally {
      await fh.close();
    }
  }

  /** Where the opened descriptor really is (Linux: /proc/self/fd, race-free), else the path resolved. */
  private async openedPath(fh: fsp.FileHandle, file: string): Promise<string> {
    try {
      return await fsp.readlink(`/proc/self/fd/${fh.fd}`);
    } catch {
      return fsp.realpath(file);
    }
  }
}
