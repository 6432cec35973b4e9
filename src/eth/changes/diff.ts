// One block's state changes, folded transaction by transaction into the
// final value of every changed account field and storage slot, and written
// as a state diff (docs/FORMAT.md, "State files"): one JSON line per account,
//   {"address": "0x…", "balance": "0x…", "nonce": "0x…", "code_size": N, "storage": {"0x…slot": "0x…value"}}
// or {"address": "0x…", "deleted": true}. Fields a line leaves out keep their
// old value; a zero storage value removes the slot. An account destroyed and
// re-created within the block is a "deleted" line followed by a line setting
// every field: its old storage must not survive.

/** 0x + 40 lower-case hex digits. */
export type AddressHex = `0x${string}`;
/** 0x + 64 lower-case hex digits. */
export type WordHex = `0x${string}`;

export interface AccountChange {
  /** Removed during the block (self-destruct, EIP-161 empty-account removal) and not set again after. */
  deleted: boolean;
  /** Removed and then set again in the same block (the old storage is gone). */
  recreated: boolean;
  balance?: bigint;
  nonce?: bigint;
  codeSize?: number;
  /** Slot -> value after the block (zero word: the slot is cleared). */
  storage: Map<WordHex, WordHex>;
}

export interface StateDiffLine {
  address: AddressHex;
  deleted?: true;
  balance?: string;
  nonce?: string;
  code_size?: number;
  storage?: Record<string, string>;
}

export const ZERO_WORD = `0x${'0'.repeat(64)}` as WordHex;

/** A 256-bit value (hex of any width, or bigint) as 0x + 64 hex digits. */
export function word(v: string | bigint): WordHex {
  const n = typeof v === 'bigint' ? v : BigInt(v.startsWith('0x') || v.startsWith('0X') ? v : `0x${v}`);
  if (n < 0n || n >> 256n !== 0n) throw new RangeError(`not a 256-bit word: ${String(v).slice(0, 80)}`);
  return `0x${n.toString(16).padStart(64, '0')}` as WordHex;
}

export function lowerAddress(a: string): AddressHex {
  if (!/^0x[0-9a-fA-F]{40}$/.test(a)) throw new RangeError(`not an address: ${a.slice(0, 80)}`);
  return a.toLowerCase() as AddressHex;
}

export class BlockDiff {
  private readonly accounts = new Map<AddressHex, AccountChange>();

  account(address: string): AccountChange {
    const a = lowerAddress(address);
    let c = this.accounts.get(a);
    if (!c) {
      c = { deleted: false, recreated: false, storage: new Map() };
      this.accounts.set(a, c);
    }
    return c;
  }

  has(address: string): boolean {
    return this.accounts.has(lowerAddress(address));
  }

  get addresses(): AddressHex[] {
    return [...this.accounts.keys()];
  }

  entries(): IterableIterator<[AddressHex, AccountChange]> {
    return this.accounts.entries();
  }

  private live(address: string): AccountChange {
    const c = this.account(address);
    if (c.deleted) {
      // Set again after a removal: a fresh account (fields not set default to zero).
      c.deleted = false;
      c.recreated = true;
    }
    return c;
  }

  setBalance(address: string, v: bigint): void {
    this.live(address).balance = v;
  }

  setNonce(address: string, v: bigint): void {
    this.live(address).nonce = v;
  }

  setCodeSize(address: string, v: number): void {
    this.live(address).codeSize = v;
  }

  setStorage(address: string, slot: string | bigint, value: string | bigint): void {
    this.live(address).storage.set(word(slot), word(value));
  }

  /** The account is removed with all its storage. */
  deleteAccount(address: string): void {
    const c = this.account(address);
    c.deleted = true;
    c.recreated = false;
    delete c.balance;
    delete c.nonce;
    delete c.codeSize;
    c.storage.clear();
  }

  /** Replaces an account's fields by values read from the node (the truth at the block's end). */
  setAccount(address: string, v: { balance: bigint; nonce: bigint; codeSize: number }): void {
    if (v.balance === 0n && v.nonce === 0n && v.codeSize === 0) {
      // EIP-161: an empty account does not exist. Keep storage read back for it (none, in practice).
      const c = this.account(address);
      const storage = new Map(c.storage);
      this.deleteAccount(address);
      if ([...storage.values()].some((x) => x !== ZERO_WORD)) {
        const l = this.live(address);
        for (const [s, x] of storage) l.storage.set(s, x);
        l.balance = 0n;
        l.nonce = 0n;
        l.codeSize = 0;
      }
      return;
    }
    const c = this.live(address);
    c.balance = v.balance;
    c.nonce = v.nonce;
    c.codeSize = v.codeSize;
  }

  /** Changed keys: one per account (changed or deleted) plus one per storage slot. */
  get changes(): number {
    let n = 0;
    for (const c of this.accounts.values()) n += 1 + c.storage.size;
    return n;
  }

  lines(): StateDiffLine[] {
    const out: StateDiffLine[] = [];
    for (const [address, c] of [...this.accounts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (c.deleted) {
        out.push({ address, deleted: true });
        continue;
      }
      // Destroyed and re-created: removed with all its storage, then set anew (docs/FORMAT.md, state diffs).
      if (c.recreated) out.push({ address, deleted: true });
      const line: StateDiffLine = { address };
      // A recreated account starts from zero: every field is written.
      const balance = c.balance ?? (c.recreated ? 0n : undefined);
      const nonce = c.nonce ?? (c.recreated ? 0n : undefined);
      const codeSize = c.codeSize ?? (c.recreated ? 0 : undefined);
      if (balance !== undefined) line.balance = `0x${balance.toString(16)}`;
      if (nonce !== undefined) line.nonce = `0x${nonce.toString(16)}`;
      if (codeSize !== undefined) line.code_size = codeSize;
      if (c.storage.size) line.storage = Object.fromEntries([...c.storage].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      if (Object.keys(line).length > 1 || c.recreated) out.push(line);
    }
    return out;
  }

  /** The diff as JSON Lines (each line newline-terminated). */
  toJsonl(header?: Record<string, unknown>): string {
    const lines = this.lines().map((l) => JSON.stringify(l));
    if (header) lines.unshift(JSON.stringify(header));
    return lines.map((l) => `${l}\n`).join('');
  }
}
