// The hot-contract manifest: which contracts' storage lives in the hot lane.
// Public: every generation carries it (hot-manifest.json, served at
// GET /manifest), so a wallet routes its keys exactly as the builder did.
//   {"version": 1, "contracts": [{"address": "0x…", "label": "USDC",
//                                  "erc20": {"balance_slot": 9, "layout": "solidity"}}]}
// Routing: the storage of a listed contract is hot; every account and all
// other storage is cold. Browser-safe.
import { type Address } from 'viem';
import { z } from 'zod';
import { type Erc20Layout, erc20BalanceSlot } from './erc20.js';
import { EthError } from './errors.js';
import { ACCOUNT_KEY_BYTES, ACCOUNT_KEY_TAG, STORAGE_KEY_BYTES, STORAGE_KEY_TAG, parseAddress, parseWord, storageKey, toHex } from './keys.js';

export const HOT_MANIFEST_FILE = 'hot-manifest.json';
export const HOT_MANIFEST_VERSION = 1;
/** Bounds that keep the file small enough to fetch on every wallet start. */
export const MAX_HOT_CONTRACTS = 10_000;
export const MAX_HOT_MANIFEST_BYTES = 4 * 1024 * 1024;

export type EthLane = 'hot' | 'cold';

const balanceSlot = z.union([
  z.number().int().nonnegative().refine(Number.isSafeInteger, 'must be an exact integer (give large slots as 0x hex strings)'),
  z.string().regex(/^0x[0-9a-fA-F]{1,64}$/, 'must be a non-negative integer or 0x followed by 1 to 64 hex digits'),
]);

const contractSchema = z
  .object({
    address: z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'must be 0x followed by 40 hex digits'),
    label: z.string().min(1).max(64).optional(),
    erc20: z.object({ balance_slot: balanceSlot, layout: z.enum(['solidity', 'vyper']) }).strict().optional(),
  })
  .strict();

export const hotManifestSchema = z
  .object({
    version: z.literal(HOT_MANIFEST_VERSION),
    contracts: z.array(contractSchema).max(MAX_HOT_CONTRACTS),
  })
  .strict();

export type HotManifestJson = z.infer<typeof hotManifestSchema>;

export interface HotContract {
  address: Address;
  label?: string;
  erc20?: { balanceSlot: Uint8Array; layout: Erc20Layout };
}

export class HotManifest {
  /** Lowercase hex (no 0x) of each listed address -> its entry. */
  private readonly byAddress: Map<string, HotContract>;

  private constructor(
    readonly contracts: readonly HotContract[],
    private readonly json: HotManifestJson,
  ) {
    this.byAddress = new Map(contracts.map((c) => [c.address.slice(2).toLowerCase(), c]));
  }

  /** The empty manifest: everything is cold. */
  static empty(): HotManifest {
    return HotManifest.fromJson({ version: HOT_MANIFEST_VERSION, contracts: [] });
  }

  /** Parses manifest text; `where` names the file in errors. */
  static parse(text: string, where = HOT_MANIFEST_FILE): HotManifest {
    if (text.length > MAX_HOT_MANIFEST_BYTES) throw new EthError('EHOT_MANIFEST', `${where}: larger than ${MAX_HOT_MANIFEST_BYTES} bytes`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new EthError('EHOT_MANIFEST', `${where}: not valid JSON: ${(err as Error).message}`);
    }
    return HotManifest.fromJson(json, where);
  }

  static fromJson(value: unknown, where = HOT_MANIFEST_FILE): HotManifest {
    const parsed = hotManifestSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new EthError('EHOT_MANIFEST', `${where}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    const contracts: HotContract[] = [];
    const seen = new Set<string>();
    parsed.data.contracts.forEach((c, i) => {
      let address: Address;
      try {
        address = parseAddress(c.address, `contracts.${i}.address`);
      } catch (err) {
        throw new EthError('EHOT_MANIFEST', `${where}: ${(err as Error).message}`);
      }
      const lower = address.toLowerCase();
      if (seen.has(lower)) throw new EthError('EHOT_MANIFEST', `${where}: contracts.${i}: ${address} is listed twice`);
      seen.add(lower);
      contracts.push({
        address,
        ...(c.label !== undefined ? { label: c.label } : {}),
        ...(c.erc20 ? { erc20: { balanceSlot: parseWord(c.erc20.balance_slot, 'balance_slot'), layout: c.erc20.layout } } : {}),
      });
    });
    // The canonical form: checksummed addresses, everything else as given.
    const json: HotManifestJson = {
      version: HOT_MANIFEST_VERSION,
      contracts: parsed.data.contracts.map((c, i) => ({ ...c, address: contracts[i]!.address })),
    };
    return new HotManifest(contracts, json);
  }

  /** The canonical JSON text (what a generation stores and /manifest serves). */
  toJson(): string {
    return JSON.stringify(this.json, null, 2) + '\n';
  }

  toJsonValue(): HotManifestJson {
    return this.json;
  }

  /** The listed contract at `address`, if any. */
  contract(address: string): HotContract | undefined {
    return this.byAddress.get(address.replace(/^0x/, '').toLowerCase());
  }

  isHotContract(address: string | Uint8Array): boolean {
    return this.byAddress.has(typeof address === 'string' ? address.replace(/^0x/, '').toLowerCase() : toHex(address));
  }

  /** Which lane holds `key`: storage of a listed contract is hot, everything else cold. */
  laneOf(key: Uint8Array): EthLane {
    if (key.length === ACCOUNT_KEY_BYTES && key[0] === ACCOUNT_KEY_TAG) return 'cold';
    if (key.length === STORAGE_KEY_BYTES && key[0] === STORAGE_KEY_TAG) return this.isHotContract(key.subarray(1, 21)) ? 'hot' : 'cold';
    throw new EthError('EKEY', `not an Ethereum key (${key.length} bytes)`);
  }

  /** Addresses listed here and not in `other` (their storage moves when switching from this manifest to other). */
  difference(other: HotManifest): Address[] {
    return this.contracts.filter((c) => !other.isHotContract(c.address)).map((c) => c.address);
  }

  /**
   * The key of `holder`'s balance in `token`: from the manifest's ERC-20 entry,
   * or from `slot` (the mapping's slot) and `layout` when given. Throws ETOKEN
   * when neither says where the balances are.
   */
  erc20BalanceKey(token: string, holder: string, override?: { balanceSlot: bigint | number | string; layout?: Erc20Layout }): Uint8Array {
    const listed = this.contract(token)?.erc20;
    let slot: Uint8Array;
    let layout: Erc20Layout;
    if (override) {
      slot = parseWord(override.balanceSlot, 'balance slot');
      layout = override.layout ?? listed?.layout ?? 'solidity';
    } else if (listed) {
      slot = listed.balanceSlot;
      layout = listed.layout;
    } else {
      throw new EthError(
        'ETOKEN',
        `${token} is not an ERC-20 token in the server's hot manifest: give its balance mapping slot (and layout) to read a balance`,
      );
    }
    return storageKey(token, erc20BalanceSlot(holder, slot, layout));
  }
}
