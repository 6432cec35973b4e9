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

/**
 * Checks lines one at a time: header placement, line shape, one line per
 * address — except that a diff may remove an account and set it anew (it was
 * destroyed and re-created in the block): a `"deleted": true` line, then one
 * more line for the same address.
 */
class LineChecker {
  private readonly seen = new AddressSet();
  /** Diffs are small: remember each address's first line (for messages) and whether it deleted the account. */
  private readonly firstLine = new Map<string, { line: number; deleted: boolean; again: boolean }>();
  private sawLine = false;

  constructor(
    private readonly source: string,
    private readonly kind: StateKind,
    private readonly onHeader?: (header: BlockHeaderLine) => void,
  ) {}

  /** The account on line `lineNo` (undefined for blank and header lines). */
  accept(text: string, lineNo: number): AccountLine | undefined {
    if (text.trim() === '') return undefined;
    const where = `${this.source}:${lineNo}`;
    const parsed = parseStateLine(text, this.kind, where, !this.sawLine);
    this.sawLine = true;
    if ('header' in parsed) {
      this.onHeader?.(parsed.header);
      return undefined;
    }
    const account = parsed.account;
    account.line = lineNo;
    const key = account.address.toLowerCase();
    if (!this.seen.add(account.address)) {
      const first = this.firstLine.get(key);
      if (first && first.deleted && !first.again && !account.deleted) {
        first.again = true; // wipe, then set
        return account;
      }
      throw new EthError(
        'EINPUT',
        `${where}: account ${account.address} is listed twice${first ? ` (first on line ${first.line})` : ''}` +
          (this.kind === 'diff' ? '; an account may appear twice only as a "deleted" line followed by one line setting it anew' : ''),
      );
    }
    if (this.kind === 'diff') this.firstLine.set(key, { line: lineNo, deleted: account.deleted, again: false });
    return account;
  }
}

/** Parses a whole state diff held in memory (follow mode reads each block's file once). */
export function parseStateText(text: string, kind: StateKind, source: string, opts: Pick<ReadStateOptions, 'onHeader' | 'requireFinalNewline'> = {}): AccountLine[] {
  const lines = text.split('\n');
  if (opts.requireFinalNewline && text.length > 0 && !text.endsWith('\n')) {
    throw new EthError('EINPUT', `${source}:${lines.length}: the last line is not terminated (truncated file?)`);
  }
  const checker = new LineChecker(source, kind, opts.onHeader);
  const out: AccountLine[] = [];
  lines.forEach((line, i) => {
    const a = checker.accept(line.endsWith('\r') ? line.slice(0, -1) : line, i + 1);
    if (a) out.push(a);
  });
  return out;
}

/** Reads `file` line by line; yields its accounts in file order. Refuses an address listed twice (but for a diff's delete-then-set). */
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
  const checker = new LineChecker(file, kind, opts.onHeader);
  let lineNo = 0;
  let lastProgress = 0;
  const label = kind === 'state' ? 'state' : 'state diff';
  try {
    for await (const text of readline.createInterface({ input, crlfDelay: Infinity })) {
      const account = checker.accept(text, ++lineNo);
      if (!account) continue;
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
