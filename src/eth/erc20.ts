// ERC-20 balance slots. A token keeps balances in a mapping at `balance_slot`;
// the slot of `holder`'s balance depends on the compiler's layout:
//   solidity  keccak256(pad32(holder) ‖ pad32(balance_slot))
//   vyper     keccak256(pad32(balance_slot) ‖ pad32(holder))
// Browser-safe (keccak from @noble/hashes).
import { keccak_256 } from '@noble/hashes/sha3.js';
import { EthError } from './errors.js';
import { addressBytes, parseWord } from './keys.js';

export type Erc20Layout = 'solidity' | 'vyper';

/** keccak-256 (Ethereum's, not SHA3-256). */
export function keccak256(data: Uint8Array): Uint8Array {
  return keccak_256(data);
}

/** The storage slot (32 bytes) that holds `holder`'s balance of a token with the given mapping slot and layout. */
export function erc20BalanceSlot(holder: string | Uint8Array, balanceSlot: bigint | number | string | Uint8Array, layout: Erc20Layout): Uint8Array {
  const h = typeof holder === 'string' ? addressBytes(holder) : holder;
  if (h.length !== 20) throw new EthError('EADDRESS', `a holder address is 20 bytes, got ${h.length}`);
  const p = balanceSlot instanceof Uint8Array ? balanceSlot : parseWord(balanceSlot, 'balance_slot');
  if (p.length !== 32) throw new EthError('EWORD', `balance_slot is 32 bytes, got ${p.length}`);
  const buf = new Uint8Array(64);
  if (layout === 'solidity') {
    buf.set(h, 12);
    buf.set(p, 32);
  } else if (layout === 'vyper') {
    buf.set(p, 0);
    buf.set(h, 44);
  } else {
    throw new EthError('ELAYOUT', `unknown ERC-20 storage layout ${JSON.stringify(layout)} (solidity or vyper)`);
  }
  return keccak_256(buf);
}
