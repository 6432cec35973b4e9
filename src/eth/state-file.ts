// Streaming reader of state files and state diffs (JSON Lines, one account a
// line; see state-lines.ts). Node only (the builder's side). Every line is
// checked before the builder uses it; the first bad line stops the read with
// an error naming file:line, and the caller publishes nothing.
import fs from 'node:fs';
import readline from 'node:readline';
import { type ProgressFn } from '../store/progress.js';
import { EthError } from './errors.js';
import { type AccountLine, type BlockHeaderLine, type StateKind, parseStateLine } from './state-lines.js';

export interface ReadStateOptions {
  /** Called with the block header line, when the file starts with one. */
  onHeader?: (header: BlockHeaderLine) => void;
  progress?: ProgressFn;
  /** Refuse a last line without a newline (a file still being written). Default false. */
  requireFinalNewline?: boolean;
}

/** A set of addresses that scales past the 2^24 entries one JS Set can hold. */
export class AddressSet {
  private readonly shards = Array.from({ length: 256 }, () => new Set<string>());

  /** Adds the address; false when it was already there. */
  add(address: string): boolean {
    const lower = address.toLowerCase();
    const shard = this.shards[parseInt(lower.slice(2, 4), 16)]!;
    if (shard.has(lower)) return false;
    shard.add(lower);
    return true;
  }

  get size(): number {
    return this.shards.reduce((n, s) => n + s.size, 0);
  }
}

/** Reads `file` line by line; yields its accounts in file order. Refuses an address listed twice. */
export async function* readStateFile(file: string, kind: StateKind, opts: ReadStateOptions = {}): AsyncGenerator<AccountLine> {
  let size: number;
  try {
    const st = await fs.promises.stat(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new EthError('EINPUT', `cannot read ${file}: ${(err as Error).message}`);
  }
  const input = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  input.on('error', () => {}); // surfaced by the iterator below
  const seen = new AddressSet();
  const firstLine = new Map<string, number>();
  let lineNo = 0;
  let sawLine = false;
  let lastProgress = 0;
  const label = kind === 'state' ? 'state' : 'state diff';
  try {
    for await (const text of readline.createInterface({ input, crlfDelay: Infinity })) {
      lineNo++;
      if (text.trim() === '') continue;
      const where = `${file}:${lineNo}`;
      const parsed = parseStateLine(text, kind, where, !sawLine);
      sawLine = true;
      if ('header' in parsed) {
        opts.onHeader?.(parsed.header);
        continue;
      }
      const account = parsed.account;
      account.line = lineNo;
      if (!seen.add(account.address)) {
        // Only now look for the first occurrence's line (rare): a second pass is not needed, we kept none.
        throw new EthError('EINPUT', `${where}: account ${account.address} is listed twice${firstLine.has(account.address) ? ` (first on line ${firstLine.get(account.address)})` : ''}`);
      }
      if (kind === 'diff') firstLine.set(account.address, lineNo); // diffs are small; full states skip this
      if (opts.progress && input.bytesRead - lastProgress >= 1 << 22) {
        lastProgress = input.bytesRead;
        opts.progress(`${label}: read`, input.bytesRead, size);
      }
      yield account;
    }
  } catch (err) {
    input.destroy();
    if (err instanceof EthError) throw err;
    throw new EthError('EINPUT', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (opts.requireFinalNewline && size > 0) {
    const fh = await fs.promises.open(file, 'r');
    try {
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) throw new EthError('EINPUT', `${file}:${lineNo}: the last line is not terminated (truncated file?)`);
    } finally {
      await fh.close();
    }
  }
  opts.progress?.(`${label}: read`, size, size);
}
