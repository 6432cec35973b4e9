// The wallet client: private reads of Ethereum state by address, slot and
// token (browser-safe; exported from lanepir/client).
//
//   const client = new StateClient({ url: 'https://pir.example' });
//   const { balance, nonce, exists, block } = await client.getAccount('0x…');
//
// A round routes each key to its lane with the server's public hot manifest
// and looks all keys up at once through the keyword-lane reader, lane hiding
// on by default (every lane gets the same number of queries whatever the keys
// are). All results of a round come from one generation, which they name
// (block number and hash). Values are checked before they are returned: an
// account word that is not EIP-7864 basic data is an error, never a balance.
import { type Address } from 'viem';
import { KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, hexToBytes } from '../pir/crs.js';
import { type LaneDelta, decodeDelta } from '../pir/delta.js';
import { type KeywordResult, keywordHash } from '../pir/keyword.js';
import { KeywordReader } from '../pir/keyword-remote.js';
import { type HintCache } from '../pir/remote.js';
import { type Erc20Layout } from './erc20.js';
import { EthError } from './errors.js';
import { type EthLane, HotManifest } from './hot-manifest.js';
import { accountKey, parseAddress, parseWord, storageKey, toHex, wordToBigInt, wordToHex } from './keys.js';
import { decodeBasicData } from './values.js';

export interface StateClientOptions {
  /** The server's public URL. */
  url: string;
  /** Lane hiding (default true): every lane gets k * d queries whatever the keys are. Turning it off tells the server which lanes a round needs. */
  hideLanes?: boolean;
  /** Pad a round's key count up to a multiple of this, so the server does not learn how many keys a round reads (e.g. 16). */
  padTo?: number;
  /** Where lane hints are kept between runs (default: memory only). */
  cache?: HintCache;
  fetch?: typeof fetch;
  /** Per-request time limit (default 30 s). */
  timeoutMs?: number;
}

/** The block a result is from: the served generation's block. */
export interface BlockRef {
  number: bigint;
  /** null when the server was built without the block hash. */
  hash: `0x${string}` | null;
  /** The generation id (the block number, or `<block>r<k>` for a block rebuilt after a reorg). */
  generation: string;
}

export interface AccountResult {
  kind: 'account';
  address: Address;
  balance: bigint;
  nonce: bigint;
  codeSize: number;
  /** False when the state has no such account (balance, nonce and code size then read 0, as Ethereum does). */
  exists: boolean;
  block: BlockRef;
}

export interface StorageResult {
  kind: 'storage';
  address: Address;
  slot: `0x${string}`;
  /** 0x + 64 hex digits (zero when absent). */
  value: `0x${string}`;
  exists: boolean;
  block: BlockRef;
}

export interface Erc20Result {
  kind: 'erc20';
  token: Address;
  holder: Address;
  balance: bigint;
  /** The storage slot read (0x + 64 hex). */
  slot: `0x${string}`;
  exists: boolean;
  block: BlockRef;
}

export type StateRead =
  | { kind: 'account'; address: string }
  | { kind: 'storage'; address: string; slot: bigint | number | string }
  /** balanceSlot/layout: for a token the manifest does not describe (layout default "solidity"). */
  | { kind: 'erc20'; token: string; holder: string; balanceSlot?: bigint | number | string; layout?: Erc20Layout };

export type StateResult = AccountResult | StorageResult | Erc20Result;

export interface ReadOptions {
  /**
   * The block to read at (default: the block the server serves now). An
   * earlier block must still be served (listed in /info `generations`; else
   * EBLOCK): the round then reads the candidate columns at the served block
   * privately and rebuilds them at the earlier one from the lane's public
   * delta between the two.
   */
  block?: bigint | number;
}

/** What the last round cost (for benchmarks and diagnostics). */
export interface RoundStats {
  generation: string;
  keys: number;
  queries: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** Milliseconds: manifest, hint, query, network, decode, total. */
  timings: Record<string, number>;
}

export interface InfoGeneration {
  generation: string;
  block_number: number;
  block_hash?: string | null;
}

export interface Info {
  generation: string | null;
  block_number: number | null;
  block_hash?: string | null;
  chain_id?: number | null;
  generations?: InfoGeneration[];
  lanes?: Record<string, { layout?: string; key_seed?: string; m?: number }>;
}

const MANIFESTS_KEPT = 8;
const ROUTING_ATTEMPTS = 3;

export class StateClient {
  private readonly reader: KeywordReader;
  private readonly fetchFn: typeof fetch;
  private readonly manifests = new Map<string, Promise<HotManifest>>();
  /** Stats of the newest round. */
  lastRound: RoundStats | undefined;

  constructor(private readonly opts: StateClientOptions) {
    if (typeof opts?.url !== 'string') throw new EthError('EPARAMS', 'StateClient needs { url }');
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.reader = new KeywordReader({
      url: opts.url,
      ...(opts.cache ? { cache: opts.cache } : {}),
      fetch: this.fetchFn,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    if (opts.padTo !== undefined && (!Number.isSafeInteger(opts.padTo) || opts.padTo < 1)) throw new EthError('EPARAMS', `padTo must be a positive integer, got ${opts.padTo}`);
  }

  private async get(path: string): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchFn(new URL(path, this.opts.url), { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new EthError('ENETWORK', `${new URL(path, this.opts.url)}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (!res.ok) {
      let body: { error?: string; code?: string } = {};
      try {
        body = (await res.json()) as typeof body;
      } catch {
        // not JSON
      }
      throw new EthError(body.code ?? `EHTTP_${res.status}`, `${res.url}: HTTP ${res.status}${body.error ? `: ${body.error}` : ''}`);
    }
    return res;
  }

  /** The server's /info: current generation, its block, the chain id, the generations it serves. */
  async info(): Promise<Info> {
    return (await (await this.get('/info')).json()) as Info;
  }

  /** The hot manifest of generation `generation` (immutable: fetched once per generation). */
  manifest(generation: string): Promise<HotManifest> {
    let m = this.manifests.get(generation);
    if (!m) {
      m = this.get(`/manifest?generation=${encodeURIComponent(generation)}`)
        .then((res) => res.text())
        .then((text) => HotManifest.parse(text, `/manifest of generation ${generation}`));
      this.manifests.set(generation, m);
      m.catch(() => this.manifests.delete(generation));
      while (this.manifests.size > MANIFESTS_KEPT) this.manifests.delete(this.manifests.keys().next().value!);
    }
    return m;
  }

  /** The served block (the newest generation). */
  async latestBlock(): Promise<BlockRef & { chainId: number | null }> {
    const info = await this.info();
    if (info.generation === null || info.block_number === null) throw new EthError('ENOT_READY', 'the server has no generation loaded yet');
    return { number: BigInt(info.block_number), hash: (info.block_hash as `0x${string}` | null) ?? null, generation: info.generation, chainId: info.chain_id ?? null };
  }

  async getAccount(address: string, opts: ReadOptions = {}): Promise<AccountResult> {
    return (await this.readMany([{ kind: 'account', address }], opts))[0] as AccountResult;
  }

  async getStorageAt(address: string, slot: bigint | number | string, opts: ReadOptions = {}): Promise<StorageResult> {
    return (await this.readMany([{ kind: 'storage', address, slot }], opts))[0] as StorageResult;
  }

  /**
   * `holder`'s balance of `token`: the balance slot comes from the server's
   * hot manifest; for a token it does not describe give `balanceSlot` (and
   * `layout`), or this throws ETOKEN.
   */
  async getErc20Balance(
    token: string,
    holder: string,
    opts: ReadOptions & { balanceSlot?: bigint | number | string; layout?: Erc20Layout } = {},
  ): Promise<Erc20Result> {
    const read: StateRead = { kind: 'erc20', token, holder, ...(opts.balanceSlot !== undefined ? { balanceSlot: opts.balanceSlot } : {}), ...(opts.layout ? { layout: opts.layout } : {}) };
    return (await this.readMany([read], opts))[0] as Erc20Result;
  }

  /** Several reads in one round, all from one generation; results in the order asked. */
  async readMany(reads: StateRead[], opts: ReadOptions = {}): Promise<StateResult[]> {
    if (!Array.isArray(reads)) throw new EthError('EPARAMS', 'readMany takes an array of reads');
    if (reads.length === 0) return [];
    // Inputs are checked before anything is sent.
    const parsed = reads.map((r, i) => parseRead(r, i));
    if (opts.block !== undefined && !(typeof opts.block === 'bigint' ? opts.block >= 0n : Number.isSafeInteger(opts.block) && opts.block >= 0)) {
      throw new EthError('EPARAMS', `block must be a non-negative integer, got ${String(opts.block)}`);
    }
    const started = now();
    let info = await this.info();
    if (info.generation === null || info.block_number === null) throw new EthError('ENOT_READY', 'the server has no generation loaded yet');
    // An earlier block: the generation that holds it (routing uses that generation's manifest).
    let past: string | undefined;
    if (opts.block !== undefined && BigInt(opts.block) !== BigInt(info.block_number)) {
      past = pastGeneration(info, BigInt(opts.block));
    }
    let generation = info.generation;
    const manifestStarted = now();
    let manifest = await this.manifest(past ?? generation);
    let manifestMs = now() - manifestStarted;
    for (let attempt = 1; ; attempt++) {
      const keys = parsed.map((p) => keyOf(p, manifest));
      const lanes = keys.map((k) => manifest.laneOf(k));
      const byLane: Record<EthLane, Uint8Array[]> = { hot: [], cold: [] };
      const position = keys.map((k, i) => byLane[lanes[i]!].push(k) - 1);
      const round = await this.reader.lookupRound(
        Object.fromEntries(Object.entries(byLane).filter(([, l]) => l.length > 0)),
        { hide: this.opts.hideLanes ?? true, ...(this.opts.padTo !== undefined ? { padTo: this.opts.padTo } : {}) },
      );
      if (past === undefined && round.generation !== generation) {
        // The server moved on: the round is valid only if the new generation's manifest routes these keys the same way.
        const t = now();
        const next = await this.manifest(round.generation);
        manifestMs += now() - t;
        const sameRouting = parsed.every((p, i) => sameBytes(keyOf(p, next), keys[i]!) && next.laneOf(keys[i]!) === lanes[i]);
        generation = round.generation;
        manifest = next;
        info = await this.info();
        if (!sameRouting) {
          if (attempt >= ROUTING_ATTEMPTS) throw new EthError('EGENERATION_SKEW', 'the hot manifest changed under every attempt; try again');
          continue;
        }
      }
      let results: Record<string, KeywordResult[]> = round.results;
      let block: BlockRef;
      if (past !== undefined && round.generation !== past) {
        // Rebuild each key's columns at the earlier generation from the public deltas (every keyword lane's
        // delta is fetched, whichever lanes the keys are in, so the requests do not say).
        const t = now();
        if (round.generation !== info.generation) info = await this.info();
        const deltaLanes = (this.opts.hideLanes ?? true) ? Object.keys(info.lanes ?? {}).filter((l) => info.lanes![l]!.layout === 'keyword') : Object.keys(byLane).filter((l) => byLane[l as EthLane].length > 0);
        const deltas = new Map<string, LaneDelta>();
        for (const l of deltaLanes) deltas.set(l, await this.delta(l, past, round.generation));
        results = {};
        for (const l of Object.keys(byLane) as EthLane[]) {
          const seed = info.lanes?.[l]?.key_seed;
          results[l] = byLane[l].map((key, k) => {
            if (!seed) throw new EthError('EANSWER', `/info does not give the ${l} lane's key_seed`);
            return readAtPast(key, hexToBytes(seed), round.results[l]![k]!, deltas.get(l)!);
          });
        }
        manifestMs += now() - t;
        block = blockOf(info, past, Number(opts.block));
      } else {
        block = blockOf(info, round.generation, round.blockNumber);
      }
      if (opts.block !== undefined && BigInt(opts.block) !== block.number) {
        throw new EthError('EBLOCK', `block ${opts.block} is not served (the server moved to block ${block.number} during the read); try again`);
      }
      const t = now();
      const out = parsed.map((p, i) => {
        const r = results[lanes[i]!]?.[position[i]!];
        if (!r) throw new EthError('EANSWER', `the round returned no result for read ${i}`);
        return decodeResult(p, keys[i]!, r, block);
      });
      const decodeMs = now() - t;
      this.lastRound = {
        generation: round.generation,
        keys: parsed.length,
        queries: round.queries,
        bytesSent: round.bytesSent,
        bytesReceived: round.bytesReceived,
        timings: { manifest: manifestMs, ...round.timings, decode: round.timings.decode + decodeMs, total: now() - started },
      };
      return out;
    }
  }

  /** The lane's delta from generation `from` to `to` (public; the same for every key). */
  private async delta(lane: string, from: string, to: string): Promise<LaneDelta> {
    let res: Response;
    try {
      res = await this.get(`/delta/${lane}?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('EDELTA') || (err as { code?: string }).code === 'EGENERATION_GONE') {
        throw new EthError('EBLOCK', `generation ${from} can no longer be read: ${(err as Error).message}`);
      }
      throw err;
    }
    const d = decodeDelta(new Uint8Array(await res.arrayBuffer()));
    if (d.from !== from || d.to !== to || d.entrySize !== KEYWORD_ENTRY_SIZE) throw new EthError('EANSWER', `the ${lane} delta is not ${from} -> ${to} of a keyword lane`);
    return d;
  }
}

/** The served generation of block `block` (the newest rebuild when a reorg left several); EBLOCK when none. */
function pastGeneration(info: Info, block: bigint): string {
  const held = (info.generations ?? []).filter((g) => BigInt(g.block_number) === block);
  if (held.length === 0) {
    const blocks = (info.generations ?? []).map((g) => g.block_number);
    throw new EthError('EBLOCK', `block ${block} is not served (the server serves blocks ${blocks.length ? `${Math.min(...blocks)}..${Math.max(...blocks)}` : 'none'})`);
  }
  return held.map((g) => g.generation).sort((a, b) => (a.length - b.length) || (a < b ? -1 : 1)).pop()!;
}

/**
 * A key's entry at an earlier generation: its candidate columns as decoded
 * at the later one, with the delta's changes undone (rows the lane gained
 * since are dropped). Every changed byte's new value must be what was
 * decoded, else the answer and the delta disagree and nothing is returned.
 */
function readAtPast(key: Uint8Array, keySeed: Uint8Array, now: KeywordResult, delta: LaneDelta): KeywordResult {
  if (!now.columns) throw new EthError('EANSWER', 'the round did not keep the decoded columns');
  const es = KEYWORD_ENTRY_SIZE;
  const { m } = delta;
  const pastRows = Math.ceil(delta.fromEntries / m);
  const tag = keywordHash(keySeed, key).subarray(0, KEYWORD_TAG_BYTES);
  let found: Uint8Array | undefined;
  for (const [c, column] of now.columns) {
    const old = column.slice(0, pastRows * es);
    for (let k = 0; k < delta.indices.length; k++) {
      const i = delta.indices[k]!;
      if (i % m !== c) continue;
      const r = Math.floor(i / m);
      if (r >= pastRows) continue;
      for (let b = 0; b < es; b++) {
        const o = delta.oldValues[k * es + b]!;
        const n = delta.newValues[k * es + b]!;
        if (o === n) continue;
        if (column[r * es + b] !== n) throw new EthError('EANSWER', 'the decoded column and the delta disagree; refusing to read the earlier block');
        old[r * es + b] = o;
      }
    }
    for (let r = 0; r < pastRows; r++) {
      if (!sameBytes(old.subarray(r * es, r * es + KEYWORD_TAG_BYTES), tag)) continue;
      if (found) throw new EthError('EANSWER', 'two entries carry the key\'s tag at the earlier block; refusing to choose');
      found = old.slice(r * es + KEYWORD_TAG_BYTES, (r + 1) * es);
    }
  }
  return found ? { exists: true, value: found } : { exists: false, value: new Uint8Array(32) };
}

type ParsedRead =
  | { kind: 'account'; address: Address }
  | { kind: 'storage'; address: Address; slot: Uint8Array }
  | { kind: 'erc20'; token: Address; holder: Address; balanceSlot?: bigint | number | string; layout?: Erc20Layout };

function parseRead(r: StateRead, i: number): ParsedRead {
  const what = `read ${i}`;
  if (typeof r !== 'object' || r === null) throw new EthError('EPARAMS', `${what}: expected an object`);
  switch (r.kind) {
    case 'account':
      return { kind: 'account', address: parseAddress(r.address, `${what}: address`) };
    case 'storage':
      return { kind: 'storage', address: parseAddress(r.address, `${what}: address`), slot: parseWord(r.slot, `${what}: slot`) };
    case 'erc20': {
      if (r.layout !== undefined && r.layout !== 'solidity' && r.layout !== 'vyper') throw new EthError('ELAYOUT', `${what}: layout must be "solidity" or "vyper"`);
      if (r.balanceSlot !== undefined) parseWord(r.balanceSlot, `${what}: balanceSlot`);
      return {
        kind: 'erc20',
        token: parseAddress(r.token, `${what}: token`),
        holder: parseAddress(r.holder, `${what}: holder`),
        ...(r.balanceSlot !== undefined ? { balanceSlot: r.balanceSlot } : {}),
        ...(r.layout ? { layout: r.layout } : {}),
      };
    }
    default:
      throw new EthError('EPARAMS', `${what}: kind must be "account", "storage" or "erc20"`);
  }
}

function keyOf(p: ParsedRead, manifest: HotManifest): Uint8Array {
  if (p.kind === 'account') return accountKey(p.address);
  if (p.kind === 'storage') return storageKey(p.address, p.slot);
  return manifest.erc20BalanceKey(p.token, p.holder, p.balanceSlot !== undefined ? { balanceSlot: p.balanceSlot, ...(p.layout ? { layout: p.layout } : {}) } : undefined);
}

function blockOf(info: Info, generation: string, blockNumber: number): BlockRef {
  const entry = info.generations?.find((g) => g.generation === generation);
  const hash = entry ? entry.block_hash ?? null : info.generation === generation ? info.block_hash ?? null : null;
  if (!Number.isSafeInteger(blockNumber)) throw new EthError('EANSWER', `the server did not name the block of generation ${generation}`);
  return { number: BigInt(blockNumber), hash: hash as `0x${string}` | null, generation };
}

function decodeResult(p: ParsedRead, key: Uint8Array, r: { exists: boolean; value: Uint8Array }, block: BlockRef): StateResult {
  if (r.value.length !== 32) throw new EthError('EANSWER', `a value is 32 bytes, got ${r.value.length}`);
  if (!r.exists && r.value.some((b) => b !== 0)) throw new EthError('EANSWER', 'an absent key came with a non-zero value');
  switch (p.kind) {
    case 'account': {
      let d = { balance: 0n, nonce: 0n, codeSize: 0 };
      if (r.exists) {
        try {
          d = decodeBasicData(r.value);
        } catch (err) {
          throw new EthError('EANSWER', `the value of account ${p.address} is not EIP-7864 basic data: ${(err as Error).message}`);
        }
      }
      return { kind: 'account', address: p.address, ...d, exists: r.exists, block };
    }
    case 'storage':
      return { kind: 'storage', address: p.address, slot: wordToHex(p.slot), value: wordToHex(r.value), exists: r.exists, block };
    case 'erc20':
      return { kind: 'erc20', token: p.token, holder: p.holder, balance: wordToBigInt(r.value), slot: `0x${toHex(key.subarray(21))}`, exists: r.exists, block };
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function now(): number {
  return performance.now();
}
