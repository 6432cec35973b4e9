// A realistic synthetic Ethereum state for demos, tests and benchmarks
// (`--eth-synthetic ACCOUNTS`): externally owned accounts with balances and
// nonces; 13 ERC-20 token contracts whose holders' balances sit in their
// mapping slots (solidity or vyper layout), listed in a generated hot
// manifest; and other contracts with storage (cold). About 3.8 keys per
// account: ACCOUNTS = 2.7M gives 10M keys.
//
// Everything derives from a seed: the base state is the same for every
// block, and diff(b) is the state diff of block b (balances and nonces that
// change, new accounts, token transfers that create and empty balances,
// storage that is written and cleared, the odd account deleted). A diff is
// meant to be applied on top of the previous block; it refers to keys of the
// base state, so it never depends on what earlier diffs did. Node only.
import crypto from 'node:crypto';
import { type Address } from 'viem';
import { native } from '../native.js';
import { erc20BalanceSlot, type Erc20Layout } from './erc20.js';
import { EthError } from './errors.js';
import { HotManifest } from './hot-manifest.js';
import { toHex, wordFromBigInt } from './keys.js';
import { type AccountLine } from './state-lines.js';

export const DEFAULT_SYNTHETIC_SEED = 'lanepir-eth-synthetic';

/** Token contracts: label, share of accounts holding it, balance mapping slot, layout. */
export const SYNTHETIC_TOKENS: readonly { label: string; share: number; slot: number; layout: Erc20Layout }[] = [
  { label: 'sUSDC', share: 0.2, slot: 9, layout: 'solidity' },
  { label: 'sUSDT', share: 0.15, slot: 2, layout: 'solidity' },
  { label: 'sWETH', share: 0.1, slot: 3, layout: 'solidity' },
  { label: 'sDAI', share: 0.08, slot: 2, layout: 'solidity' },
  { label: 'sLINK', share: 0.06, slot: 1, layout: 'solidity' },
  { label: 'sUNI', share: 0.05, slot: 4, layout: 'solidity' },
  { label: 'sCRV', share: 0.04, slot: 3, layout: 'vyper' },
  { label: 'sWBTC', share: 0.03, slot: 0, layout: 'solidity' },
  { label: 'sSHIB', share: 0.03, slot: 0, layout: 'solidity' },
  { label: 'sAAVE', share: 0.02, slot: 0, layout: 'solidity' },
  { label: 'sYFI', share: 0.02, slot: 2, layout: 'vyper' },
  { label: 'sLDO', share: 0.01, slot: 0, layout: 'solidity' },
  { label: 'sPEPE', share: 0.01, slot: 0, layout: 'solidity' },
];

/** Other contracts: one per OTHER_CONTRACT_EVERY accounts, about SLOTS_PER_ACCOUNT storage slots per account in all. */
const OTHER_CONTRACT_EVERY = 50;
const SLOTS_PER_ACCOUNT = 2;
/** Fixed low slots of a token contract (name, symbol, decimals, total supply, owner). */
const TOKEN_FIXED_SLOTS = 5;
/** Random bytes per account in the base stream: address 20, balance 12, nonce 2, holdings 2 per token. */
const ACCOUNT_BYTES = 64;

export interface SyntheticDiffSize {
  /** Keys the block changes, inserts and deletes included (default 2000). */
  keys?: number;
  /** Of those, keys that did not exist (default keys / 10). */
  inserts?: number;
  /** Of those, keys removed (default keys / 40). */
  deletes?: number;
}

function streamKey(seed: string, label: string): Buffer {
  return crypto.createHash('sha256').update(`${seed}/${label}`).digest().subarray(0, 16);
}

/** Deterministic random bytes [offset, offset + length) of the stream `label`. */
function bytesAt(seed: string, label: string, offset: number, length: number): Buffer {
  const block = Math.floor(offset / 16);
  const skip = offset - block * 16;
  const iv = Buffer.alloc(16);
  iv.writeUIntBE(block, 10, 6);
  return crypto.createCipheriv('aes-128-ctr', streamKey(seed, label), iv).update(Buffer.alloc(skip + length)).subarray(skip);
}

/** An address from 20 bytes, lowercase (a valid address; checksumming millions of them would dominate the generator's time). */
function lowerAddress(bytes: Uint8Array): Address {
  return `0x${toHex(bytes)}` as Address;
}

/** A small deterministic PRNG for choices within one diff. */
class Rng {
  private buf: Buffer;
  private pos = 0;
  private chunk = 0;
  constructor(
    private readonly seed: string,
    private readonly label: string,
  ) {
    this.buf = bytesAt(seed, label, 0, 1 << 16);
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      this.chunk++;
      this.buf = bytesAt(this.seed, this.label, this.chunk << 16, 1 << 16);
      this.pos = 0;
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Uniform in [0, n) (n < 2^48). */
  below(n: number): number {
    return Number(this.bytes(8).readBigUInt64LE(0) % BigInt(n));
  }
}

/** A holder's balance from 12 random bytes: spread over many magnitudes, never zero. */
function balanceFrom(r: Uint8Array): bigint {
  return (BigInt(`0x${toHex(r)}`) >> BigInt(r[0]! % 64)) + 1n;
}

/** Slot s of a contract from 48 random bytes: slots 0..3, then hashed (mapping-like) slots; values of 1..16 bytes. */
function slotFrom(r: Uint8Array, s: number): { slot: Uint8Array; value: Uint8Array } {
  const slot = s < 4 ? wordFromBigInt(BigInt(s)) : new Uint8Array(r.subarray(0, 32));
  const value = new Uint8Array(32);
  const width = 1 + (r[32]! % 16);
  value.set(r.subarray(32, 32 + width), 32 - width);
  if (value.every((b) => b === 0)) value[31] = 1;
  return { slot, value };
}

export interface SyntheticToken {
  label: string;
  address: Address;
  balanceSlot: number;
  layout: Erc20Layout;
  share: number;
}

export class EthSynthetic {
  readonly tokens: SyntheticToken[];
  readonly otherContracts: number;
  readonly hotManifest: HotManifest;

  constructor(
    readonly accounts: number,
    readonly seed = DEFAULT_SYNTHETIC_SEED,
  ) {
    if (!Number.isSafeInteger(accounts) || accounts < 1) throw new EthError('EPARAMS', `--eth-synthetic needs a positive account count, got ${accounts}`);
    this.tokens = SYNTHETIC_TOKENS.map((t, k) => ({
      label: t.label,
      address: lowerAddress(bytesAt(seed, 'token-address', k * 20, 20)),
      balanceSlot: t.slot,
      layout: t.layout,
      share: t.share,
    }));
    this.otherContracts = Math.max(1, Math.floor(accounts / OTHER_CONTRACT_EVERY));
    this.hotManifest = HotManifest.fromJson({
      version: 1,
      contracts: this.tokens.map((t) => ({ address: t.address, label: t.label, erc20: { balance_slot: t.balanceSlot, layout: t.layout } })),
    });
  }

  /** Keys of the base state, about (for sizing). */
  get approximateKeys(): number {
    const holders = SYNTHETIC_TOKENS.reduce((s, t) => s + t.share, 0) * this.accounts;
    return Math.round(this.accounts + this.tokens.length * (1 + TOKEN_FIXED_SLOTS) + this.otherContracts + holders + this.otherSlotsTotal());
  }

  private otherSlotsTotal(): number {
    return this.accounts * SLOTS_PER_ACCOUNT;
  }

  /** Externally owned account i (0 <= i < accounts) of the base state. */
  account(i: number): { address: Address; balance: bigint; nonce: bigint; holds: boolean[] } {
    return this.decodeAccount(bytesAt(this.seed, 'accounts', i * ACCOUNT_BYTES, ACCOUNT_BYTES));
  }

  private decodeAccount(r: Buffer): { address: Address; balance: bigint; nonce: bigint; holds: boolean[] } {
    // Balances spread over many orders of magnitude (a tenth of accounts are empty).
    const mag = r[20]! % 30;
    const balance = r[21]! < 26 ? 0n : (BigInt(`0x${r.subarray(22, 30).toString('hex')}`) >> BigInt(64 - 2 * mag - 4)) + 1n;
    const nonceRaw = r.readUInt16LE(30);
    const nonce = BigInt(nonceRaw < 16384 ? 0 : nonceRaw % 3000);
    const holds = this.tokens.map((t, k) => r.readUInt16LE(32 + 2 * k) < t.share * 65536);
    return { address: lowerAddress(r.subarray(0, 20)), balance, nonce, holds };
  }

  /** Holder i's balance of token k in the base state (non-zero). */
  holderBalance(i: number, k: number): bigint {
    return balanceFrom(bytesAt(this.seed, `balance/${k}`, i * 12, 12));
  }

  /** The first base account that holds token k at or after index `from` (for demos: a real holder). */
  holderOf(k: number, from = 0): { index: number; address: Address } {
    for (let i = from; i < this.accounts; i++) {
      const a = this.account(i);
      if (a.holds[k]) return { index: i, address: a.address };
    }
    throw new EthError('EPARAMS', `no account holds ${this.tokens[k]!.label}`);
  }

  /** Other contract j: its address and number of storage slots. */
  otherContract(j: number): { address: Address; slots: number } {
    const r = bytesAt(this.seed, 'contracts', j * 24, 24);
    const mean = this.otherSlotsTotal() / this.otherContracts;
    // Heavy-tailed slot counts: most contracts are small, a few are large.
    const u = (r.readUInt32LE(20) + 1) / 2 ** 32;
    const slots = Math.max(1, Math.min(Math.round(mean * 4), Math.round((-Math.log(u) * mean) / 1)));
    return { address: lowerAddress(r.subarray(0, 20)), slots };
  }

  /** Slot s of other contract j: a few low slots, then mapping-like hashed slots. */
  otherSlot(j: number, s: number): { slot: Uint8Array; value: Uint8Array } {
    return slotFrom(bytesAt(this.seed, `contract/${j}`, s * 48, 48), s);
  }

  /** Slots 0 .. count-1 of other contract j, in one pass over its stream. */
  private otherSlots(j: number, count: number): { slot: Uint8Array; value: Uint8Array }[] {
    const bytes = bytesAt(this.seed, `contract/${j}`, 0, count * 48);
    return Array.from({ length: count }, (_, s) => slotFrom(bytes.subarray(s * 48, (s + 1) * 48), s));
  }

  /**
   * The base state, one account a line (the shape of a state file). Token and
   * other contracts come after the externally owned accounts.
   */
  *state(): Generator<AccountLine> {
    const CHUNK = 4096;
    const holders: { slot: Uint8Array; value: Uint8Array }[][] = this.tokens.map(() => []);
    for (let c0 = 0; c0 < this.accounts; c0 += CHUNK) {
      const n = Math.min(CHUNK, this.accounts - c0);
      const bytes = bytesAt(this.seed, 'accounts', c0 * ACCOUNT_BYTES, n * ACCOUNT_BYTES);
      const balances = this.tokens.map((_, t) => bytesAt(this.seed, `balance/${t}`, c0 * 12, n * 12));
      // The chunk's balance slots, hashed in one native call (the generator's main cost otherwise).
      const pairs: { t: number; k: number }[] = [];
      const lines: AccountLine[] = [];
      for (let k = 0; k < n; k++) {
        const a = this.decodeAccount(bytes.subarray(k * ACCOUNT_BYTES, (k + 1) * ACCOUNT_BYTES));
        a.holds.forEach((h, t) => h && pairs.push({ t, k }));
        lines.push({ line: c0 + k + 1, address: a.address, deleted: false, balance: a.balance, nonce: a.nonce, codeSize: 0, storage: [] });
      }
      const input = new Uint8Array(pairs.length * 64);
      const offsets = new Uint32Array(pairs.length + 1);
      pairs.forEach(({ t, k }, p) => {
        const tok = this.tokens[t]!;
        const holder = bytes.subarray(k * ACCOUNT_BYTES, k * ACCOUNT_BYTES + 20);
        const slot = wordFromBigInt(BigInt(tok.balanceSlot));
        if (tok.layout === 'solidity') {
          input.set(holder, p * 64 + 12);
          input.set(slot, p * 64 + 32);
        } else {
          input.set(slot, p * 64);
          input.set(holder, p * 64 + 44);
        }
        offsets[p + 1] = (p + 1) * 64;
      });
      const hashes = native.keccakBatch(new Uint8Array(0), input, offsets);
      pairs.forEach(({ t, k }, p) => {
        holders[t]!.push({ slot: hashes.slice(p * 32, p * 32 + 32), value: wordFromBigInt(balanceFrom(balances[t]!.subarray(k * 12, k * 12 + 12))) });
      });
      yield* lines;
    }
    let line = this.accounts;
    for (let t = 0; t < this.tokens.length; t++) {
      const fixed = Array.from({ length: TOKEN_FIXED_SLOTS }, (_, s) => ({
        slot: wordFromBigInt(BigInt(100 + s)),
        value: wordFromBigInt(BigInt(`0x${bytesAt(this.seed, `token-fixed/${t}`, s * 16, 16).toString('hex')}`) | 1n),
      }));
      yield { line: ++line, address: this.tokens[t]!.address, deleted: false, balance: 0n, nonce: 1n, codeSize: 9000 + 512 * t, storage: [...fixed, ...holders[t]!] };
      holders[t] = [];
    }
    for (let j = 0; j < this.otherContracts; j++) {
      const c = this.otherContract(j);
      const storage = this.otherSlots(j, c.slots);
      yield { line: ++line, address: c.address, deleted: false, balance: BigInt(j % 7) * 10n ** 17n, nonce: 1n, codeSize: 1 + (j % 24_000), storage };
    }
  }

  balanceSlot(t: number, holder: string): Uint8Array {
    const tok = this.tokens[t]!;
    return erc20BalanceSlot(holder, tok.balanceSlot, tok.layout);
  }

  /** Address of the k-th account created in block b. */
  newAccountAddress(block: number, k: number): Address {
    return lowerAddress(bytesAt(this.seed, `new-account/${block}`, k * 20, 20));
  }

  /**
   * The state diff of block `block`: about `keys` changed keys of which
   * `inserts` are new and `deletes` are removed. Lines are one per address.
   */
  diff(block: number, size: SyntheticDiffSize = {}): AccountLine[] {
    const keys = size.keys ?? 2000;
    const inserts = size.inserts ?? Math.floor(keys / 10);
    const deletes = size.deletes ?? Math.floor(keys / 40);
    if (inserts + deletes > keys) throw new EthError('EPARAMS', 'a synthetic diff cannot insert and delete more keys than it changes');
    const rng = new Rng(this.seed, `diff/${block}`);
    const lines = new Map<string, AccountLine>();
    const line = (address: Address) => {
      let l = lines.get(address);
      if (!l) lines.set(address, (l = { line: lines.size + 1, address, deleted: false, storage: [] }));
      return l;
    };
    const setSlot = (address: Address, slot: Uint8Array, value: Uint8Array) => {
      const l = line(address);
      const i = l.storage.findIndex((s) => Buffer.compare(s.slot, slot) === 0);
      if (i >= 0) l.storage[i] = { slot, value };
      else l.storage.push({ slot, value });
    };
    const randomValue = () => wordFromBigInt(BigInt(`0x${rng.bytes(12).toString('hex')}`) + 1n);
    /** A random base holder of token t (undefined when a small state has none). */
    const randomHolder = (t: number): Address | undefined => {
      for (let attempt = 0; attempt < 256; attempt++) {
        const a = this.account(rng.below(this.accounts));
        if (a.holds[t]) return a.address;
      }
      return undefined;
    };
    const countKeys = () => {
      let n = 0;
      for (const l of lines.values()) n += l.storage.length + (l.deleted || l.balance !== undefined || l.nonce !== undefined ? 1 : 0);
      return n;
    };
    const randomToken = () => {
      // Popular tokens move more often.
      const u = rng.below(1000) / 1000;
      let acc = 0;
      const total = this.tokens.reduce((s, t) => s + t.share, 0);
      for (let t = 0; t < this.tokens.length; t++) if (u < (acc += this.tokens[t]!.share / total)) return t;
      return this.tokens.length - 1;
    };

    // Inserts: new accounts that receive a token (2 keys each), and new storage slots of other contracts.
    const newAccounts = Math.floor(inserts / 4);
    for (let k = 0; k < newAccounts; k++) {
      const address = this.newAccountAddress(block, k);
      Object.assign(line(address), { balance: BigInt(1 + rng.below(1e9)) * 10n ** 9n, nonce: 0n, codeSize: 0 });
      const t = randomToken();
      setSlot(this.tokens[t]!.address, this.balanceSlot(t, address), randomValue());
    }
    for (let k = 0; k < inserts - 2 * newAccounts; k++) {
      const j = rng.below(this.otherContracts);
      setSlot(this.otherContract(j).address, new Uint8Array(rng.bytes(32)), randomValue());
    }

    // Deletes: emptied token balances and cleared contract slots; every 10th block an account is deleted.
    let removed = 0;
    if (block % 10 === 0 && deletes > 0) {
      line(this.account(rng.below(this.accounts)).address).deleted = true;
      removed++;
    }
    for (; removed < deletes; removed++) {
      if (removed % 2 === 0) {
        const t = randomToken();
        const holder = randomHolder(t);
        if (holder) setSlot(this.tokens[t]!.address, this.balanceSlot(t, holder), new Uint8Array(32));
      } else {
        const j = rng.below(this.otherContracts);
        const c = this.otherContract(j);
        setSlot(c.address, this.otherSlot(j, rng.below(c.slots)).slot, new Uint8Array(32));
      }
    }

    // Changes: senders' balances and nonces (some lines give only the balance), token transfers, contract storage.
    for (let guard = 0; countKeys() < keys && guard < 100 * keys; guard++) {
      const what = rng.below(10);
      if (what < 4) {
        const i = rng.below(this.accounts);
        const a = this.account(i);
        const l = line(a.address);
        if (l.deleted) continue;
        l.balance = BigInt(`0x${rng.bytes(10).toString('hex')}`);
        if (what < 3) l.nonce = a.nonce + BigInt(block % 1000) + 1n;
      } else if (what < 8) {
        const t = randomToken();
        const holder = randomHolder(t);
        if (holder) setSlot(this.tokens[t]!.address, this.balanceSlot(t, holder), randomValue());
      } else {
        const j = rng.below(this.otherContracts);
        const c = this.otherContract(j);
        setSlot(c.address, this.otherSlot(j, rng.below(c.slots)).slot, randomValue());
      }
    }
    return [...lines.values()];
  }
}
