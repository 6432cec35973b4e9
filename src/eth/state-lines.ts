// One line of a state file or state diff (docs/FORMAT.md, "State files"):
//   {"address": "0x…", "balance": "0x…", "nonce": "0x…", "code_size": 0, "storage": {"0x…slot": "0x…value"}}
// Quantities are hex strings, decimal strings or (exact) JSON numbers. In a
// full state balance and nonce are required and code_size defaults to 0; in
// a diff every field is optional (a missing one keeps its old value) and
// `"deleted": true` removes the account. A zero storage value means absent.
// An optional first line {"block_number": N, "block_hash": "0x…", "chain_id": 1,
// "state_root": "0x…"} describes the block. Errors name the line.
import { type Address } from 'viem';
import { EthError } from './errors.js';
import { parseAddress, parseWord, parseWordBigInt, preview } from './keys.js';
import { MAX_BALANCE, MAX_CODE_SIZE, MAX_NONCE } from './values.js';

export type StateKind = 'state' | 'diff';

export interface AccountLine {
  /** 1-based line number in its file. */
  line: number;
  address: Address;
  /** Diffs only: the account is removed (with all its storage). */
  deleted: boolean;
  balance?: bigint;
  nonce?: bigint;
  codeSize?: number;
  /** Slots (32 bytes) and values (32 bytes; all zero = remove the slot), in file order. */
  storage: { slot: Uint8Array; value: Uint8Array }[];
}

export interface BlockHeaderLine {
  block_number?: number;
  block_hash?: `0x${string}`;
  chain_id?: number;
  /** The state root of the block (a state file: the root its accounts hash to, e.g. geth dump's "root"). */
  state_root?: `0x${string}`;
}

const ACCOUNT_KEYS = new Set(['address', 'balance', 'nonce', 'code_size', 'storage', 'deleted']);
const HEADER_KEYS = new Set(['block_number', 'block_hash', 'chain_id', 'state_root']);
const BLOCK_HASH = /^0x[0-9a-fA-F]{64}$/;

/** Throws EthError EINPUT naming `where` (file:line). */
function bad(where: string, message: string): never {
  throw new EthError('EINPUT', `${where}: ${message}`);
}

function quantity(value: unknown, field: string, max: bigint, where: string): bigint {
  let v: bigint;
  try {
    v = parseWordBigInt(value, field);
  } catch (err) {
    bad(where, (err as Error).message);
  }
  if (v > max) bad(where, `${field} ${preview(value)} is above ${field === 'balance' ? '2^128' : field === 'nonce' ? '2^64' : '2^24'} - 1`);
  return v;
}

/** Parses a JSON line: an account, or (when `headerAllowed`) the block header line. */
export function parseStateLine(
  text: string,
  kind: StateKind,
  where: string,
  headerAllowed: boolean,
): { account: AccountLine } | { header: BlockHeaderLine } {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    bad(where, 'not valid JSON');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) bad(where, 'expected a JSON object');
  const o = obj as Record<string, unknown>;
  if (!('address' in o) && Object.keys(o).some((k) => HEADER_KEYS.has(k))) {
    if (!headerAllowed) bad(where, 'a block header line (block_number, block_hash, chain_id, state_root) may only be the first line');
    return { header: parseHeader(o, where) };
  }
  return { account: parseAccount(o, kind, where) };
}

function parseHeader(o: Record<string, unknown>, where: string): BlockHeaderLine {
  const header: BlockHeaderLine = {};
  for (const [k, v] of Object.entries(o)) {
    if (!HEADER_KEYS.has(k)) bad(where, `unknown key ${JSON.stringify(k)} in the block header line (block_number, block_hash, chain_id, state_root)`);
    if (k === 'block_hash' || k === 'state_root') {
      if (typeof v !== 'string' || !BLOCK_HASH.test(v)) bad(where, `${k} must be 0x followed by 64 hex digits, got ${preview(v)}`);
      header[k] = v.toLowerCase() as `0x${string}`;
    } else {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (k === 'chain_id' ? 1 : 0)) bad(where, `${k} must be a ${k === 'chain_id' ? 'positive' : 'non-negative'} integer, got ${preview(v)}`);
      header[k as 'block_number' | 'chain_id'] = v;
    }
  }
  return header;
}

function parseAccount(o: Record<string, unknown>, kind: StateKind, where: string): AccountLine {
  for (const k of Object.keys(o)) {
    if (!ACCOUNT_KEYS.has(k)) {
      bad(where, `unknown key ${JSON.stringify(k)} (an account line has address, balance, nonce, code_size, storage${kind === 'diff' ? ', deleted' : ''})`);
    }
  }
  let address: Address;
  try {
    address = parseAddress(o.address, '"address"');
  } catch (err) {
    bad(where, (err as Error).message);
  }
  const account: AccountLine = { line: 0, address, deleted: false, storage: [] };
  if (o.deleted !== undefined) {
    if (kind === 'state') bad(where, '"deleted" belongs in state diffs, not in a full state');
    if (typeof o.deleted !== 'boolean') bad(where, '"deleted" must be true or false');
    account.deleted = o.deleted;
  }
  if (account.deleted) {
    for (const k of ['balance', 'nonce', 'code_size'] as const) {
      if (o[k] !== undefined) bad(where, `a deleted account has no ${k}`);
    }
  }
  if (o.balance !== undefined) account.balance = quantity(o.balance, 'balance', MAX_BALANCE, where);
  else if (kind === 'state') bad(where, '"balance" is missing');
  if (o.nonce !== undefined) account.nonce = quantity(o.nonce, 'nonce', MAX_NONCE, where);
  else if (kind === 'state') bad(where, '"nonce" is missing');
  if (o.code_size !== undefined) account.codeSize = Number(quantity(o.code_size, 'code_size', BigInt(MAX_CODE_SIZE), where));
  else if (kind === 'state') account.codeSize = 0;
  if (o.storage !== undefined) {
    if (typeof o.storage !== 'object' || o.storage === null || Array.isArray(o.storage)) bad(where, '"storage" must be an object of slot -> value');
    const seen = new Set<string>();
    for (const [slotText, valueText] of Object.entries(o.storage as Record<string, unknown>)) {
      let slot: Uint8Array;
      let value: Uint8Array;
      try {
        slot = parseWord(slotText, `storage slot ${preview(slotText)}`);
        value = parseWord(valueText, `storage value of slot ${slotText}`);
      } catch (err) {
        bad(where, (err as Error).message);
      }
      // "0x1" and "0x01" are the same slot: refuse rather than pick one.
      const id = String.fromCharCode(...slot);
      if (seen.has(id)) bad(where, `storage slot ${slotText} is listed twice (in another spelling)`);
      seen.add(id);
      if (account.deleted && value.some((b) => b !== 0)) bad(where, `a deleted account cannot set storage slot ${slotText}`);
      account.storage.push({ slot, value });
    }
  }
  return account;
}
