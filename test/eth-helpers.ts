// A plaintext model of Ethereum state, applied line by line exactly as the
// docs define state files and diffs, to check what the lanes and the wallet
// client return.
import { type HotManifest } from '../src/eth/hot-manifest.js';
import { accountKey, addressBytes, isZeroWord, storageKey, toHex } from '../src/eth/keys.js';
import { type AccountLine } from '../src/eth/state-lines.js';
import { decodeBasicData, encodeBasicData } from '../src/eth/values.js';

export class EthModel {
  /** key hex -> value (32 bytes). */
  readonly values = new Map<string, Uint8Array>();
  /** address hex (lowercase, no 0x) -> slot hexes. */
  readonly slots = new Map<string, Set<string>>();

  constructor(public manifest: HotManifest) {}

  clone(): EthModel {
    const m = new EthModel(this.manifest);
    for (const [k, v] of this.values) m.values.set(k, v);
    for (const [a, s] of this.slots) m.slots.set(a, new Set(s));
    return m;
  }

  apply(lines: Iterable<AccountLine>, kind: 'state' | 'diff'): void {
    const wiped = new Set<string>();
    for (const l of lines) {
      const address = addressBytes(l.address);
      const a = toHex(address);
      const ak = toHex(accountKey(address));
      if (l.deleted) {
        this.values.delete(ak);
        for (const s of this.slots.get(a) ?? []) this.values.delete(toHex(storageKey(address, Buffer.from(s, 'hex'))));
        this.slots.delete(a);
        wiped.add(a);
      } else if (wiped.has(a)) {
        // deleted, then set anew: every field from zero
        this.values.set(ak, encodeBasicData({ balance: l.balance ?? 0n, nonce: l.nonce ?? 0n, codeSize: l.codeSize ?? 0 }));
      } else if (kind === 'state' || l.balance !== undefined || l.nonce !== undefined || l.codeSize !== undefined) {
        const prev = this.values.get(ak);
        const old = prev ? decodeBasicData(prev) : { balance: 0n, nonce: 0n, codeSize: 0 };
        this.values.set(ak, encodeBasicData({ balance: l.balance ?? old.balance, nonce: l.nonce ?? old.nonce, codeSize: l.codeSize ?? old.codeSize }));
      }
      for (const { slot, value } of l.storage) {
        const k = toHex(storageKey(address, slot));
        let set = this.slots.get(a);
        if (isZeroWord(value)) {
          this.values.delete(k);
          set?.delete(toHex(slot));
          if (set?.size === 0) this.slots.delete(a);
        } else {
          this.values.set(k, value);
          if (!set) this.slots.set(a, (set = new Set()));
          set.add(toHex(slot));
        }
      }
    }
  }

  laneOf(keyHex: string): 'hot' | 'cold' {
    return this.manifest.laneOf(Buffer.from(keyHex, 'hex'));
  }
}
