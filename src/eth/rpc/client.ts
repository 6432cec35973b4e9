// A JSON-RPC client of an Ethereum node, on viem's transports: over HTTP,
// requests issued together go out as JSON-RPC batches (viem's batch
// scheduler) with timeouts and retries with backoff; over WebSocket, one
// socket that reconnects. On top: errors classified for the follower (a node
// that is away vs a method it does not offer), a bound on requests in flight,
// and typed reads of blocks and state at a block.
import { type Hex, type Transport, createClient, http, webSocket } from 'viem';
import { preview } from '../keys.js';
import { RpcError } from './errors.js';

export interface RpcOptions {
  url: string;
  /** Requests per JSON-RPC batch over HTTP (1 = no batching). Default 100. */
  batchSize?: number;
  /** Requests in flight at once (over HTTP: batchSize × this many). Default 4 batches. */
  concurrency?: number;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
  /** Retries of a failed transport request (backoff doubles from retryDelayMs). Default 3. */
  retryCount?: number;
  retryDelayMs?: number;
  /** Largest HTTP answer read (struct logs of a big transaction run to hundreds of MB). Default 256 MiB. */
  maxResponseBytes?: number;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 256 * 2 ** 20;

export interface RpcCall {
  method: string;
  params?: unknown[];
}

/** A block's header fields the follower needs (all hex strings lower-case). */
export interface BlockHeader {
  number: number;
  hash: Hex;
  parentHash: Hex;
  stateRoot: Hex;
  timestamp: number;
  miner: Hex;
  /** Hashes of the block's transactions, in order. */
  transactions: Hex[];
  /** Addresses credited by consensus-layer withdrawals (EIP-4895), if any. */
  withdrawals: Hex[];
  /** EIP-4788 parent beacon block root, when the block has one. */
  parentBeaconBlockRoot?: Hex;
}

/**
 * Which block a state read is at. By hash when we know it: sent as EIP-1898
 * {blockHash, requireCanonical: true}, so a node refuses the read once the
 * block is no longer canonical (without the flag geth answers from a
 * reorged-out block). A reorg between the reads and the follower's
 * re-check of the header is caught by that re-check.
 */
export type BlockRef = { blockHash: Hex } | number | 'latest';

/** A transaction's fields the change sources use (from a block with full transactions). */
export interface TxInfo {
  hash: Hex;
  from: Hex;
  /** null for a contract creation. */
  to: Hex | null;
  /** EIP-7702 (type 0x4): the signed authorizations, as the node sent them (recovered and checked by the caller). */
  authorizationList?: unknown[];
}

const HASH = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const QUANTITY = /^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$/;

/** Unsupported-method answers differ by node: -32601 (JSON-RPC), -32004 (EIP-1474, Hardhat), or words. */
const UNSUPPORTED_MESSAGE = /(method|namespace|api)\b.*\b(not found|not supported|unsupported|does not exist|not available|not enabled|is not implemented)|unknown method|method .* not allowed/i;

export function isUnsupported(err: unknown): boolean {
  return err instanceof RpcError && err.code === 'EUNSUPPORTED';
}

/** Turns whatever viem threw into an RpcError whose code says what to do about it. */
export function classifyRpcError(err: unknown, method: string, url: string): RpcError {
  if (err instanceof RpcError) return err;
  const chain: Record<string, unknown>[] = [];
  for (let e = err as Record<string, unknown> | undefined; e && chain.length < 8; e = e.cause as Record<string, unknown> | undefined) chain.push(e);
  const rpc = chain.find((e) => typeof e.code === 'number' && e.code !== -1);
  const text = chain.map((e) => String(e.details ?? e.shortMessage ?? e.message ?? '')).join(' ');
  const where = `${method} at ${redactUrl(url)}`;
  const tooLarge = chain.find((e) => e.name === 'ResponseBodyTooLargeError');
  if (tooLarge) {
    const max = Number(tooLarge.maxSize);
    return new RpcError('ETOO_LARGE', `${where}: the answer is larger than the limit of ${max >= 2 ** 20 ? `${Math.round(max / 2 ** 20)} MiB` : `${max} bytes`} (raise --rpc-max-response-mb)`);
  }
  if (rpc) {
    const code = rpc.code as number;
    const detail = String(rpc.details ?? rpc.shortMessage ?? rpc.message ?? '');
    if (code === -32601 || code === -32004 || UNSUPPORTED_MESSAGE.test(detail)) {
      return new RpcError('EUNSUPPORTED', `${where}: the node does not offer this method (${code}: ${detail})`, code);
    }
    return new RpcError('ERPC', `${where} failed: ${code}: ${detail}`, code);
  }
  const status = chain.map((e) => e.status).find((s) => typeof s === 'number') as number | undefined;
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new RpcError('ERPC', `${where}: HTTP ${status} ${text.slice(0, 200)}`);
  }
  const timedOut = chain.some((e) => e.name === 'TimeoutError');
  return new RpcError('EUNREACHABLE', `${where}: ${timedOut ? 'timed out' : 'unreachable'}${status ? ` (HTTP ${status})` : ''}: ${text.slice(0, 300)}`);
}

/** URLs of hosted nodes carry API keys in the path or query: log only scheme, host and port. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 || u.search ? '/…' : ''}`;
  } catch {
    return '(invalid url)';
  }
}

/** Runs fn over items with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export class EthRpc {
  readonly url: string;
  readonly isWebSocket: boolean;
  private readonly transport: Transport;
  private readonly client: { request: (args: { method: string; params?: unknown }) => Promise<unknown> };
  private readonly inFlight: number;
  /** Requests answered (for ingestion metrics). */
  requests = 0;

  constructor(opts: RpcOptions) {
    this.url = opts.url;
    let protocol: string;
    try {
      protocol = new URL(opts.url).protocol;
    } catch {
      throw new RpcError('EUNREACHABLE', `--rpc ${JSON.stringify(opts.url)} is not a URL`);
    }
    this.isWebSocket = protocol === 'ws:' || protocol === 'wss:';
    if (!this.isWebSocket && protocol !== 'http:' && protocol !== 'https:') {
      throw new RpcError('EUNREACHABLE', `--rpc must be an http(s):// or ws(s):// URL, got ${protocol}`);
    }
    const batchSize = opts.batchSize ?? 100;
    const common = { timeout: opts.timeoutMs ?? 30_000, retryCount: opts.retryCount ?? 3, retryDelay: opts.retryDelayMs ?? 150 };
    this.transport = this.isWebSocket
      ? webSocket(opts.url, { ...common, reconnect: { attempts: Number.MAX_SAFE_INTEGER, delay: 1000 }, keepAlive: { interval: 15_000 } })
      : http(opts.url, { ...common, maxResponseBodySize: opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES, ...(batchSize > 1 ? { batch: { batchSize, wait: 0 } } : {}) });
    this.client = createClient({ transport: this.transport }) as unknown as EthRpc['client'];
    this.inFlight = (this.isWebSocket ? 32 : batchSize) * (opts.concurrency ?? 4);
  }

  async request<T = unknown>(method: string, params: unknown[] = []): Promise<T> {
    try {
      const result = (await this.client.request({ method, params })) as T;
      this.requests++;
      return result;
    } catch (err) {
      throw classifyRpcError(err, method, this.url);
    }
  }

  /** Many requests, batched and bounded; fails with the first error. */
  many<T = unknown>(calls: readonly RpcCall[]): Promise<T[]> {
    return mapLimit(calls, this.inFlight, (c) => this.request<T>(c.method, c.params ?? []));
  }

  /** The transport's WebSocket subscription (undefined over HTTP). */
  get subscriber(): { subscribe: (args: { params: ['newHeads']; onData: (d: unknown) => void; onError?: (e: unknown) => void }) => Promise<{ unsubscribe: () => Promise<unknown> }> } | undefined {
    if (!this.isWebSocket) return undefined;
    const t = this.transport({ retryCount: 0 }) as unknown as { value: { subscribe: NonNullable<EthRpc['subscriber']>['subscribe'] } };
    return t.value;
  }

  async close(): Promise<void> {
    if (!this.isWebSocket) return;
    const t = this.transport({ retryCount: 0 }) as unknown as { value: { getRpcClient(): Promise<{ close(): void }> } };
    await t.value
      .getRpcClient()
      .then((c) => c.close())
      .catch(() => {});
  }

  async chainId(): Promise<number> {
    return quantityNumber(await this.request('eth_chainId'), 'eth_chainId');
  }

  async blockNumber(): Promise<number> {
    return quantityNumber(await this.request('eth_blockNumber'), 'eth_blockNumber');
  }

  /** The header of block `n` (or the latest); undefined when the node has no such block. */
  async header(n: number | 'latest'): Promise<BlockHeader | undefined> {
    const raw = await this.request('eth_getBlockByNumber', [typeof n === 'number' ? toQuantity(n) : n, false]);
    if (raw === null) return undefined;
    return parseHeader(raw, `eth_getBlockByNumber(${n})`);
  }

  /** The block with this hash and its transactions in full; undefined when the node does not know it. */
  async blockByHash(hash: Hex): Promise<{ header: BlockHeader; transactions: TxInfo[] } | undefined> {
    const what = `eth_getBlockByHash(${hash})`;
    const raw = await this.request('eth_getBlockByHash', [hash, true]);
    if (raw === null) return undefined;
    const header = parseHeader(raw, what);
    if (header.hash !== hash.toLowerCase()) throw new RpcError('EBAD_RESPONSE', `${what}: answered block ${header.hash}`);
    const transactions = ((raw as { transactions: unknown[] }).transactions).map((t, i) => parseTx(t, `${what}.transactions[${i}]`));
    return { header, transactions };
  }
}

export function toQuantity(n: number | bigint): Hex {
  return `0x${n.toString(16)}`;
}

export function blockParam(ref: BlockRef): unknown {
  if (typeof ref === 'number') return toQuantity(ref);
  if (ref === 'latest') return ref;
  return { blockHash: ref.blockHash, requireCanonical: true };
}

export function quantityBigInt(v: unknown, what: string): bigint {
  if (typeof v !== 'string' || !QUANTITY.test(v)) {
    // Some nodes answer "0x00…" for zero; accept any 0x-hex of at most 64 digits, refuse anything else.
    if (typeof v === 'string' && /^0x[0-9a-fA-F]{1,64}$/.test(v)) return BigInt(v);
    throw new RpcError('EBAD_RESPONSE', `${what}: expected a hex quantity, got ${preview(v)}`);
  }
  return BigInt(v);
}

export function quantityNumber(v: unknown, what: string): number {
  const b = quantityBigInt(v, what);
  if (b > BigInt(Number.MAX_SAFE_INTEGER)) throw new RpcError('EBAD_RESPONSE', `${what}: ${String(v)} is too large`);
  return Number(b);
}

export function hash32(v: unknown, what: string): Hex {
  if (typeof v !== 'string' || !HASH.test(v)) throw new RpcError('EBAD_RESPONSE', `${what}: expected a 32-byte hash, got ${preview(v)}`);
  return v.toLowerCase() as Hex;
}

export function address20(v: unknown, what: string): Hex {
  if (typeof v !== 'string' || !ADDRESS.test(v)) throw new RpcError('EBAD_RESPONSE', `${what}: expected an address, got ${preview(v)}`);
  return v.toLowerCase() as Hex;
}

/** A bounded rendering of a value for error messages (the one state files use). */
export { preview };

export function parseHeader(raw: unknown, what: string): BlockHeader {
  if (typeof raw !== 'object' || raw === null) throw new RpcError('EBAD_RESPONSE', `${what}: expected a block object, got ${preview(raw)}`);
  const b = raw as Record<string, unknown>;
  const txs = b.transactions;
  if (!Array.isArray(txs)) throw new RpcError('EBAD_RESPONSE', `${what}: the block has no transactions list`);
  const withdrawals = b.withdrawals;
  if (withdrawals !== undefined && withdrawals !== null && !Array.isArray(withdrawals)) throw new RpcError('EBAD_RESPONSE', `${what}: withdrawals is not a list`);
  return {
    number: quantityNumber(b.number, `${what}.number`),
    hash: hash32(b.hash, `${what}.hash`),
    parentHash: hash32(b.parentHash, `${what}.parentHash`),
    stateRoot: hash32(b.stateRoot, `${what}.stateRoot`),
    timestamp: quantityNumber(b.timestamp, `${what}.timestamp`),
    miner: address20(b.miner, `${what}.miner`),
    transactions: txs.map((t, i) => hash32(typeof t === 'object' && t !== null ? (t as { hash?: unknown }).hash : t, `${what}.transactions[${i}]`)),
    withdrawals: ((withdrawals as unknown[] | undefined) ?? []).map((w, i) => address20((w as { address?: unknown })?.address, `${what}.withdrawals[${i}].address`)),
    ...(b.parentBeaconBlockRoot ? { parentBeaconBlockRoot: hash32(b.parentBeaconBlockRoot, `${what}.parentBeaconBlockRoot`) } : {}),
  };
}

function parseTx(raw: unknown, what: string): TxInfo {
  if (typeof raw !== 'object' || raw === null) throw new RpcError('EBAD_RESPONSE', `${what}: expected a transaction object, got ${preview(raw)}`);
  const t = raw as Record<string, unknown>;
  const list = t.authorizationList;
  if (list !== undefined && list !== null && !Array.isArray(list)) throw new RpcError('EBAD_RESPONSE', `${what}.authorizationList: expected a list, got ${preview(list)}`);
  return {
    hash: hash32(t.hash, `${what}.hash`),
    from: address20(t.from, `${what}.from`),
    to: t.to === null || t.to === undefined ? null : address20(t.to, `${what}.to`),
    ...(Array.isArray(list) ? { authorizationList: list as unknown[] } : {}),
  };
}
