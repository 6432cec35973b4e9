// From state lines to lane operations. A full state becomes the key/value
// pairs of each lane (accounts cold; storage hot or cold by the manifest)
// plus the slot index; a state diff becomes each lane's changes (a value, or
// null to remove the key), including the keys a manifest change moves
// between lanes and the storage of deleted accounts.
import { EthError } from './errors.js';
import { type EthLane, type HotManifest } from './hot-manifest.js';
import { accountKey, addressBytes, isZeroWord, storageKey, toHex } from './keys.js';
import { type SlotChange, type SlotIndex } from './slot-index.js';
import { type AccountLine } from './state-lines.js';
import { type BasicData, decodeBasicData, encodeBasicData } from './values.js';

/** Where a lane's records go (a scratch file for the builder, or a test's model). */
export type LaneSinks = Record<EthLane, { push(key: Uint8Array, value: Uint8Array): Promise<void> | void }>;

export interface FullStateResult {
  accounts: number;
  /** Keys per lane. */
  keys: Record<EthLane, number>;
}

/**
 * Sends a full state's keys to the lanes' sinks (accounts cold; storage hot
 * or cold by the manifest; zero storage values are absent); `onSlots`
 * receives each account's present storage slots (for the slot index).
 */
export async function ingestState(
  accounts: AsyncIterable<AccountLine> | Iterable<AccountLine>,
  manifest: HotManifest,
  sinks: LaneSinks,
  onSlots: (address: Uint8Array, slots: Uint8Array[]) => Promise<void> | void,
): Promise<FullStateResult> {
  const keys = { hot: 0, cold: 0 };
  let count = 0;
  for await (const a of accounts) {
    const address = addressBytes(a.address);
    if (a.balance === undefined || a.nonce === undefined) throw new EthError('EINPUT', `line ${a.line} (${a.address}): a full state gives balance and nonce`);
    const where = `line ${a.line} (${a.address})`;
    await sinks.cold.push(accountKey(address), encodeBasicData({ balance: a.balance, nonce: a.nonce, codeSize: a.codeSize ?? 0 }, where));
    keys.cold++;
    count++;
    const lane: EthLane = manifest.isHotContract(address) ? 'hot' : 'cold';
    const present: Uint8Array[] = [];
    for (const { slot, value } of a.storage) {
      if (isZeroWord(value)) continue;
      await sinks[lane].push(storageKey(address, slot), value);
      present.push(slot);
    }
    keys[lane] += present.length;
    if (present.length) await onSlots(address, present);
  }
  return { accounts: count, keys };
}

/** Per lane: key (hex) -> new value, or null to remove it. */
export type LaneChanges = Record<EthLane, Map<string, Uint8Array | null>>;

export interface DiffContext {
  /** The manifest of the parent generation, and the one the new generation carries. */
  oldManifest: HotManifest;
  newManifest: HotManifest;
  /** The parent's slot index. */
  slots: SlotIndex;
  /** Plaintext values of keys in the parent's lane (undefined: absent). */
  read: (lane: EthLane, keys: Uint8Array[]) => Promise<(Uint8Array | undefined)[]>;
}

export interface DiffResult {
  changes: LaneChanges;
  slotChanges: SlotChange[];
  /** Storage keys moved between lanes by a manifest change. */
  moved: number;
}

/**
 * Turns a state diff into lane changes. Missing basic-data fields keep the
 * parent's values (0 for a new account); a deleted account loses its storage
 * too, and a line after its "deleted" line sets it anew (fields and storage
 * from zero); a contract added to (removed from) the hot manifest has its storage
 * moved from cold to hot (hot to cold), with values from the parent unless
 * the diff sets them.
 */
export async function ingestDiff(lines: Iterable<AccountLine>, ctx: DiffContext): Promise<DiffResult> {
  const changes: LaneChanges = { hot: new Map(), cold: new Map() };
  /** Storage key hex -> { key, value (null = absent) }: the new storage the diff asks for. */
  const storage = new Map<string, { address: Uint8Array; slot: Uint8Array; value: Uint8Array | null }>();
  const partial: { key: Uint8Array; line: AccountLine }[] = [];
  /** Storage keys carried over unchanged by a move: the slot index already lists them. */
  const carried = new Set<string>();
  const setStorage = (address: Uint8Array, slot: Uint8Array, value: Uint8Array | null) => {
    storage.set(toHex(storageKey(address, slot)), { address, slot, value });
  };

  /** Accounts a "deleted" line removed: a later line for one of them sets it anew from zero (destroyed and re-created in the block). */
  const wiped = new Set<string>();
  for (const line of lines) {
    const address = addressBytes(line.address);
    const key = accountKey(address);
    if (line.deleted) {
      changes.cold.set(toHex(key), null);
      for (const slot of await ctx.slots.slotsOf(address)) setStorage(address, slot, null);
      wiped.add(toHex(key));
    } else if (wiped.has(toHex(key))) {
      // Re-created: nothing of the parent's account survives (its storage was removed above); missing fields are 0.
      changes.cold.set(toHex(key), encodeBasicData({ balance: line.balance ?? 0n, nonce: line.nonce ?? 0n, codeSize: line.codeSize ?? 0 }, `line ${line.line} (${line.address})`));
    } else if (line.balance !== undefined && line.nonce !== undefined && line.codeSize !== undefined) {
      changes.cold.set(toHex(key), encodeBasicData({ balance: line.balance, nonce: line.nonce, codeSize: line.codeSize }, `line ${line.line} (${line.address})`));
    } else if (line.balance !== undefined || line.nonce !== undefined || line.codeSize !== undefined) {
      partial.push({ key, line });
    }
    for (const { slot, value } of line.storage) setStorage(address, slot, isZeroWord(value) ? null : value);
  }

  // Fields a line leaves out keep the parent's values.
  if (partial.length) {
    const old = await ctx.read('cold', partial.map((p) => p.key));
    partial.forEach(({ key, line }, i) => {
      let prev: BasicData = { balance: 0n, nonce: 0n, codeSize: 0 };
      const word = old[i];
      if (word) {
        try {
          prev = decodeBasicData(word);
        } catch (err) {
          throw new EthError('EVALUE', `line ${line.line}: the parent's value of account ${line.address} is not basic data: ${(err as Error).message}`);
        }
      }
      const next = { balance: line.balance ?? prev.balance, nonce: line.nonce ?? prev.nonce, codeSize: line.codeSize ?? prev.codeSize };
      changes.cold.set(toHex(key), encodeBasicData(next, `line ${line.line} (${line.address})`));
    });
  }

  // Contracts whose lane changes: every slot they have moves (values from the parent unless the diff sets them).
  let moved = 0;
  const movedAddresses = [...ctx.oldManifest.difference(ctx.newManifest), ...ctx.newManifest.difference(ctx.oldManifest)];
  for (const a of movedAddresses) {
    const address = addressBytes(a);
    const from = ctx.oldManifest.laneOf(storageKey(address, 0n));
    const pending = (await ctx.slots.slotsOf(address)).filter((slot) => !storage.has(toHex(storageKey(address, slot))));
    const values = await ctx.read(from, pending.map((slot) => storageKey(address, slot)));
    pending.forEach((slot, i) => {
      const v = values[i];
      if (!v) throw new EthError('ESLOT_INDEX', `the slot index lists slot ${toHex(slot)} of ${a}, but the ${from} lane of the parent does not have it`);
      setStorage(address, slot, v);
      carried.add(toHex(storageKey(address, slot)));
    });
    moved += pending.length;
  }

  const slotChanges: SlotChange[] = [];
  for (const [hex, { address, slot, value }] of storage) {
    const key = storageKey(address, slot);
    const oldLane = ctx.oldManifest.laneOf(key);
    const newLane = ctx.newManifest.laneOf(key);
    if (oldLane !== newLane) changes[oldLane].set(hex, null); // leaves its old lane (a no-op when it was not there)
    changes[newLane].set(hex, value);
    if (!carried.has(hex)) slotChanges.push({ address, slot, present: value !== null });
  }
  return { changes, slotChanges, moved };
}
