// Values as the lanes store them (32 bytes each). A storage slot holds its
// word; an account holds its EIP-7864 basic-data word:
//   version (1 byte, 0) ‖ reserved (4, zero) ‖ code_size (3, BE) ‖ nonce (8, BE) ‖ balance (16, BE)
// Decoding checks the version and the reserved bytes: a word that is not
// basic data is an error, never a misread balance. Browser-safe.
import { EthError } from './errors.js';
import { WORD_BYTES } from './keys.js';

export const BASIC_DATA_VERSION = 0;
export const MAX_NONCE = (1n << 64n) - 1n;
export const MAX_BALANCE = (1n << 128n) - 1n;
export const MAX_CODE_SIZE = (1 << 24) - 1;

export interface BasicData {
  balance: bigint;
  nonce: bigint;
  codeSize: number;
}

/** Throws EthError ERANGE when a field does not fit its bytes. */
export function checkBasicData(d: BasicData, where = 'account'): void {
  if (typeof d.balance !== 'bigint' || d.balance < 0n || d.balance > MAX_BALANCE) {
    throw new EthError('ERANGE', `${where}: balance ${d.balance} is outside 0 .. 2^128 - 1`);
  }
  if (typeof d.nonce !== 'bigint' || d.nonce < 0n || d.nonce > MAX_NONCE) {
    throw new EthError('ERANGE', `${where}: nonce ${d.nonce} is outside 0 .. 2^64 - 1`);
  }
  if (!Number.isSafeInteger(d.codeSize) || d.codeSize < 0 || d.codeSize > MAX_CODE_SIZE) {
    throw new EthError('ERANGE', `${where}: code_size ${d.codeSize} is outside 0 .. 2^24 - 1`);
  }
}

export function encodeBasicData(d: BasicData, where?: string): Uint8Array {
  checkBasicData(d, where);
  const out = new Uint8Array(WORD_BYTES);
  out[0] = BASIC_DATA_VERSION;
  // bytes 1..4 reserved (zero)
  out[5] = (d.codeSize >>> 16) & 0xff;
  out[6] = (d.codeSize >>> 8) & 0xff;
  out[7] = d.codeSize & 0xff;
  writeBE(out, 8, 8, d.nonce);
  writeBE(out, 16, 16, d.balance);
  return out;
}

export function decodeBasicData(word: Uint8Array): BasicData {
  if (word.length !== WORD_BYTES) throw new EthError('EVALUE', `basic data is 32 bytes, got ${word.length}`);
  if (word[0] !== BASIC_DATA_VERSION) throw new EthError('EVALUE', `basic data version ${word[0]} is not ${BASIC_DATA_VERSION}`);
  for (let i = 1; i < 5; i++) if (word[i] !== 0) throw new EthError('EVALUE', 'basic data has non-zero reserved bytes');
  return {
    codeSize: (word[5]! << 16) | (word[6]! << 8) | word[7]!,
    nonce: readBE(word, 8, 8),
    balance: readBE(word, 16, 16),
  };
}

function writeBE(out: Uint8Array, offset: number, length: number, v: bigint): void {
  for (let i = offset + length - 1; i >= offset; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function readBE(bytes: Uint8Array, offset: number, length: number): bigint {
  let v = 0n;
  for (let i = offset; i < offset + length; i++) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}
