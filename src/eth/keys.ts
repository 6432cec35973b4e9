// Ethereum keys as the keyword lanes see them (docs/FORMAT.md, "Ethereum keys"):
//   account  0x00 ‖ address            (21 bytes)
//   storage  0x01 ‖ address ‖ slot     (53 bytes, the slot as a 32-byte big-endian word)
// The lanes treat keys as opaque bytes; this module is the only place that
// knows their shape. Browser-safe.
import { type Address, getAddress, isAddress } from 'viem';
import { EthError } from './errors.js';

export const ACCOUNT_KEY_TAG = 0x00;
export const STORAGE_KEY_TAG = 0x01;
export const ACCOUNT_KEY_BYTES = 21;
export const STORAGE_KEY_BYTES = 53;
export const WORD_BYTES = 32;
const MAX_WORD = (1n << 256n) - 1n;

/**
 * An address from text: 0x + 40 hex digits. All-lowercase and all-uppercase
 * are accepted as they are; mixed case must be a valid EIP-55 checksum (a
 * typo in a checksummed address is caught, not read as another account).
 */
export function parseAddress(value: unknown, what = 'address'): Address {
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(value)) {
    throw new EthError('EADDRESS', `${what} must be 0x followed by 40 hex digits, got ${preview(value)}`);
  }
  const body = value.slice(2);
  const mixed = body !== body.toLowerCase() && body !== body.toUpperCase();
  if (mixed && !isAddress(value, { strict: true })) throw new EthError('EADDRESS', `${what} ${value} has an invalid EIP-55 checksum`);
  return getAddress(value.toLowerCase());
}

/** The 20 bytes of an address (any case; checks the form, not the checksum: use parseAddress for user input). */
export function addressBytes(address: string): Uint8Array {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new EthError('EADDRESS', `not an address: ${preview(address)}`);
  return hexBytes(address.slice(2));
}

/** The checksummed address of 20 bytes. */
export function addressFromBytes(bytes: Uint8Array): Address {
  if (bytes.length !== 20) throw new EthError('EADDRESS', `an address is 20 bytes, got ${bytes.length}`);
  return getAddress(`0x${toHex(bytes)}`);
}

/**
 * A 256-bit word (a storage slot or value) from a bigint, a safe integer, a
 * 0x hex string of at most 64 digits (a quantity or a 32-byte word) or a
 * decimal string. Returns its 32 big-endian bytes.
 */
export function parseWord(value: unknown, what = 'word'): Uint8Array {
  return wordFromBigInt(parseWordBigInt(value, what), what);
}

export function parseWordBigInt(value: unknown, what = 'word'): bigint {
  let v: bigint;
  if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new EthError('EWORD', `${what} ${value} is not an exact integer (give numbers above 2^53 as hex strings)`);
    v = BigInt(value);
  } else if (typeof value === 'string' && /^0x[0-9a-fA-F]{1,64}$/.test(value)) v = BigInt(value);
  else if (typeof value === 'string' && /^[0-9]{1,78}$/.test(value)) v = BigInt(value);
  else throw new EthError('EWORD', `${what} must be 0x followed by 1 to 64 hex digits, or a decimal integer; got ${preview(value)}`);
  if (v < 0n || v > MAX_WORD) throw new EthError('EWORD', `${what} ${value} is outside 0 .. 2^256 - 1`);
  return v;
}

export function wordFromBigInt(v: bigint, what = 'word'): Uint8Array {
  if (v < 0n || v > MAX_WORD) throw new EthError('EWORD', `${what} is outside 0 .. 2^256 - 1`);
  const out = new Uint8Array(WORD_BYTES);
  for (let i = WORD_BYTES - 1; i >= 0 && v > 0n; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function wordToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

/** 0x + 64 hex digits. */
export function wordToHex(bytes: Uint8Array): `0x${string}` {
  if (bytes.length !== WORD_BYTES) throw new EthError('EWORD', `a word is 32 bytes, got ${bytes.length}`);
  return `0x${toHex(bytes)}`;
}

export function isZeroWord(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** The key of an account: 0x00 ‖ address. */
export function accountKey(address: string | Uint8Array): Uint8Array {
  const a = typeof address === 'string' ? addressBytes(address) : address;
  if (a.length !== 20) throw new EthError('EADDRESS', `an address is 20 bytes, got ${a.length}`);
  const key = new Uint8Array(ACCOUNT_KEY_BYTES);
  key[0] = ACCOUNT_KEY_TAG;
  key.set(a, 1);
  return key;
}

/** The key of a storage slot: 0x01 ‖ address ‖ slot (32 bytes, big-endian). */
export function storageKey(address: string | Uint8Array, slot: Uint8Array | bigint | string | number): Uint8Array {
  const a = typeof address === 'string' ? addressBytes(address) : address;
  if (a.length !== 20) throw new EthError('EADDRESS', `an address is 20 bytes, got ${a.length}`);
  const s = slot instanceof Uint8Array ? slot : parseWord(slot, 'slot');
  if (s.length !== WORD_BYTES) throw new EthError('EWORD', `a slot is 32 bytes, got ${s.length}`);
  const key = new Uint8Array(STORAGE_KEY_BYTES);
  key[0] = STORAGE_KEY_TAG;
  key.set(a, 1);
  key.set(s, 21);
  return key;
}

export type DecodedKey = { kind: 'account'; address: Address } | { kind: 'storage'; address: Address; slot: `0x${string}` };

/** What a key names (the inverse of accountKey / storageKey). */
export function decodeKey(key: Uint8Array): DecodedKey {
  if (key.length === ACCOUNT_KEY_BYTES && key[0] === ACCOUNT_KEY_TAG) return { kind: 'account', address: addressFromBytes(key.subarray(1)) };
  if (key.length === STORAGE_KEY_BYTES && key[0] === STORAGE_KEY_TAG) {
    return { kind: 'storage', address: addressFromBytes(key.subarray(1, 21)), slot: wordToHex(key.subarray(21)) };
  }
  throw new EthError('EKEY', `not an Ethereum key (${key.length} bytes, tag ${key[0]})`);
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += HEX[b]!;
  return s;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function hexBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0) throw new EthError('EHEX', 'invalid hex string');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = nibble(hex.charCodeAt(2 * i));
    const lo = nibble(hex.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) throw new EthError('EHEX', 'invalid hex string');
    out[i] = (hi << 4) | lo;
  }
  return out;
}

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** A short rendering of a bad value for error messages. */
export function preview(value: unknown): string {
  const s = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
