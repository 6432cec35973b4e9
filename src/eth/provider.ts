// An EIP-1193 provider whose state reads are private:
//
//   const provider = createLanepirProvider({ url: 'https://pir.example', passthrough: window.ethereum });
//   const client = createPublicClient({ transport: custom(provider) });   // viem
//
// Answered privately by lanepir: eth_getBalance, eth_getTransactionCount,
// eth_getStorageAt, and eth_call of ERC-20 balanceOf(address) (selector
// 0x70a08231) on tokens of the server's hot manifest; eth_blockNumber and
// eth_chainId come from the served generation. Block tags: "latest",
// "pending", "safe" and "finalized" all mean the block the server serves
// (lanepir has no pending state and no finality information: the served block
// is the newest it built); a block number or hash (EIP-1898) means that block
// if the server still serves it (read privately at the newest block and
// rebuilt with the lanes' public deltas), else the request fails. Everything else goes to `passthrough` when one is given,
// and otherwise fails with EIP-1193 error 4200. A private method never falls
// back to the passthrough: when it cannot be answered privately it fails.
// Browser-safe.
import { numberToHex } from 'viem';
import { type StateClient, type StateClientOptions, type ReadOptions, StateClient as Client } from './client.js';
import { EthError } from './errors.js';
import { ProviderRpcError } from './rpc-error.js';

export { ProviderRpcError } from './rpc-error.js';
import { parseAddress, parseWord, wordFromBigInt, wordToHex } from './keys.js';
import { type ProviderListener, providerEvents } from './provider-events.js';

export interface Eip1193RequestArgs {
  method: string;
  params?: readonly unknown[] | object;
}

export interface Eip1193Like {
  request(args: Eip1193RequestArgs): Promise<unknown>;
}

export interface LanepirProviderOptions extends StateClientOptions {
  /** Where methods lanepir does not answer go (never the private ones). */
  passthrough?: Eip1193Like;
  /** Use this client instead of making one from the options. */
  client?: StateClient;
}

export const ERC20_BALANCE_OF = '0x70a08231';
/** Methods answered privately; they never reach the passthrough. */
export const PRIVATE_METHODS = ['eth_getBalance', 'eth_getTransactionCount', 'eth_getStorageAt', 'eth_blockNumber', 'eth_chainId'] as const;

type Listener = ProviderListener;

export interface LanepirProvider extends Eip1193Like {
  on(event: string, listener: Listener): LanepirProvider;
  removeListener(event: string, listener: Listener): LanepirProvider;
  /** The client behind the provider (stats, manifest). */
  readonly client: StateClient;
}

const SERVED_TAGS = new Set(['latest', 'pending', 'safe', 'finalized']);

function invalid(message: string): never {
  throw new ProviderRpcError(-32602, message);
}

/** A block parameter (tag, number, or EIP-1898 object) as read options. */
function blockOptions(param: unknown): ReadOptions & { blockHash?: string } {
  if (param === undefined || param === null) return {};
  if (typeof param === 'string') {
    if (SERVED_TAGS.has(param)) return {};
    if (param === 'earliest') return { block: 0n };
    if (/^0x[0-9a-fA-F]{1,16}$/.test(param)) return { block: BigInt(param) };
    invalid(`invalid block parameter ${JSON.stringify(param)} (latest, pending, safe, finalized, earliest or a hex block number)`);
  }
  if (typeof param === 'object') {
    const o = param as { blockNumber?: unknown; blockHash?: unknown };
    if (typeof o.blockHash === 'string' && /^0x[0-9a-fA-F]{64}$/.test(o.blockHash)) return { blockHash: o.blockHash.toLowerCase() };
    if (o.blockNumber !== undefined) return blockOptions(o.blockNumber);
  }
  invalid(`invalid block parameter ${JSON.stringify(param)}`);
}

function params(args: Eip1193RequestArgs): unknown[] {
  if (args.params === undefined) return [];
  if (!Array.isArray(args.params)) invalid(`${args.method} takes positional params`);
  return args.params as unknown[];
}

/** Maps a failed private read to an EIP-1193 error (never to a fallback). */
function rpcError(err: unknown): ProviderRpcError {
  if (err instanceof ProviderRpcError) return err;
  const code = (err as { code?: unknown }).code;
  const message = (err as Error).message ?? String(err);
  if (code === 'EADDRESS' || code === 'EWORD' || code === 'EPARAMS' || code === 'ELAYOUT') return new ProviderRpcError(-32602, message, { code });
  if (code === 'EBLOCK') return new ProviderRpcError(-32000, message, { code });
  return new ProviderRpcError(-32603, `lanepir: ${message}`, { code });
}

export function createLanepirProvider(opts: LanepirProviderOptions): LanepirProvider {
  const client = opts.client ?? new Client(opts);
  const events = providerEvents(() => provider);
  let connected = false;
  const { emit } = events;

  /** A read at the requested block; a block hash is looked up among the blocks the server serves. */
  const atBlock = async <T extends { block: { hash: string | null } }>(block: ReturnType<typeof blockOptions>, read: (o: ReadOptions) => Promise<T>): Promise<T> => {
    let number = block.block;
    if (block.blockHash !== undefined) {
      const info = await client.info();
      const g = (info.generations ?? []).find((x) => x.block_hash === block.blockHash);
      if (!g) throw new ProviderRpcError(-32000, `block ${block.blockHash} is not served`, { code: 'EBLOCK' });
      number = BigInt(g.block_number);
    }
    const r = await read(number !== undefined ? { block: number } : {});
    if (block.blockHash !== undefined && r.block.hash !== block.blockHash) {
      throw new ProviderRpcError(-32000, `block ${block.blockHash} is not served (read block ${r.block.hash ?? 'of unknown hash'})`, { code: 'EBLOCK' });
    }
    return r;
  };

  const privately = async (args: Eip1193RequestArgs): Promise<unknown> => {
    const p = params(args);
    switch (args.method) {
      case 'eth_chainId': {
        const { chainId } = await client.latestBlock();
        if (chainId === null) throw new ProviderRpcError(-32603, 'lanepir: the server does not know its chain id (its generations were built without --chain-id)');
        return numberToHex(chainId);
      }
      case 'eth_blockNumber':
        return numberToHex((await client.latestBlock()).number);
      case 'eth_getBalance':
      case 'eth_getTransactionCount': {
        const address = parseAddress(p[0], `${args.method} address`);
        const r = await atBlock(blockOptions(p[1]), (o) => client.getAccount(address, o));
        return numberToHex(args.method === 'eth_getBalance' ? r.balance : r.nonce);
      }
      case 'eth_getStorageAt': {
        const address = parseAddress(p[0], 'eth_getStorageAt address');
        const slot = parseWord(p[1], 'eth_getStorageAt slot');
        return (await atBlock(blockOptions(p[2]), (o) => client.getStorageAt(address, wordToHex(slot), o))).value;
      }
      case 'eth_call': {
        const call = p[0] as { to?: unknown; data?: unknown; input?: unknown };
        const { token, holder } = balanceOfCall(call)!;
        const r = await atBlock(blockOptions(p[1]), (o) => client.getErc20Balance(token, holder, o));
        return wordToHex(wordFromBigInt(r.balance));
      }
      default:
        throw new Error(`not a private method: ${args.method}`);
    }
  };

  /** A balanceOf(holder) call on a token the served manifest lists as ERC-20 (undefined: not one lanepir answers). */
  const isPrivateCall = async (args: Eip1193RequestArgs): Promise<boolean> => {
    if (args.method !== 'eth_call') return (PRIVATE_METHODS as readonly string[]).includes(args.method);
    const call = params(args)[0];
    const parsed = balanceOfCall(call);
    if (!parsed) return false;
    const { generation } = await client.latestBlock();
    return (await client.manifest(generation)).contract(parsed.token)?.erc20 !== undefined;
  };

  const provider: LanepirProvider = {
    client,
    async request(args: Eip1193RequestArgs): Promise<unknown> {
      if (typeof args !== 'object' || args === null || typeof args.method !== 'string') throw new ProviderRpcError(-32600, 'request({ method, params }) needs a method name');
      let isPrivate: boolean;
      try {
        isPrivate = await isPrivateCall(args);
      } catch (err) {
        throw rpcError(err);
      }
      if (isPrivate) {
        try {
          const result = await privately(args);
          if (!connected) {
            connected = true;
            emit('connect', { chainId: await client.latestBlock().then((b) => (b.chainId === null ? null : numberToHex(b.chainId)), () => null) });
          }
          return result;
        } catch (err) {
          throw rpcError(err);
        }
      }
      if (opts.passthrough) return opts.passthrough.request(args);
      throw new ProviderRpcError(4200, `${args.method} is not answered by lanepir (private reads: eth_getBalance, eth_getTransactionCount, eth_getStorageAt, eth_call of balanceOf on hot-manifest tokens, eth_blockNumber, eth_chainId) and no passthrough provider is configured`);
    },
    on: events.on,
    removeListener: events.removeListener,
  };
  return provider;
}

/** The token and holder of an eth_call of balanceOf(address), or undefined when the call is something else. */
export function balanceOfCall(call: unknown): { token: string; holder: string } | undefined {
  if (typeof call !== 'object' || call === null) return undefined;
  const c = call as { to?: unknown; data?: unknown; input?: unknown };
  const data = typeof c.input === 'string' ? c.input : c.data;
  if (typeof c.to !== 'string' || typeof data !== 'string') return undefined;
  const d = data.toLowerCase();
  // selector + one ABI word holding an address (12 zero bytes, then 20 bytes)
  if (d.length !== 2 + 8 + 64 || !d.startsWith(ERC20_BALANCE_OF) || !/^0{24}[0-9a-f]{40}$/.test(d.slice(10))) return undefined;
  try {
    return { token: parseAddress(c.to, 'eth_call to'), holder: parseAddress(`0x${d.slice(34)}`, 'balanceOf holder') };
  } catch (err) {
    if (err instanceof EthError) return undefined;
    throw err;
  }
}
