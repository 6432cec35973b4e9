// Transactions on a development chain, for tests, benchmarks and the demo:
// the repository's ERC-20 (contracts/Token.sol, compiled into
// contracts/build.json), ETH transfers, contract creation from a contract,
// a storage slot set to zero and an account emptied. Uses the node's
// unlocked accounts (eth_sendTransaction).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Abi, type Hex, encodeAbiParameters, encodeDeployData, encodeFunctionData, keccak256 } from 'viem';

interface Artifact {
  abi: Abi;
  bytecode: Hex;
}

export function contracts(): Record<'Token' | 'TokenFactory' | 'Ephemeral' | 'Phoenix' | 'PhoenixFactory', Artifact> {
  // dist/src/eth/devchain -> repository root
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
  const build = JSON.parse(fs.readFileSync(path.join(root, 'contracts', 'build.json'), 'utf8')) as { contracts: Record<string, Artifact> };
  return build.contracts as ReturnType<typeof contracts>;
}

/** The Solidity mapping slot of `holder` in a mapping at `slot` (the Token's balanceOf is at slot 0). */
export function mappingSlot(holder: Hex, slot = 0n): Hex {
  return keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [holder, slot]));
}

type Rpc = <T = unknown>(method: string, params?: unknown[]) => Promise<T>;

export interface Receipt {
  status: Hex;
  blockNumber: Hex;
  blockHash: Hex;
  contractAddress: Hex | null;
  transactionHash: Hex;
}

export class Traffic {
  readonly artifacts = contracts();
  accounts: Hex[] = [];

  constructor(private readonly rpc: Rpc) {}

  async init(): Promise<this> {
    this.accounts = (await this.rpc<Hex[]>('eth_accounts')).map((a) => a.toLowerCase() as Hex);
    return this;
  }

  /** Sends a transaction and waits for its receipt (mines a block if the node does not automine). */
  async send(tx: { from: Hex; to?: Hex; data?: Hex; value?: bigint; gas?: bigint; gasPrice?: bigint }): Promise<Receipt> {
    const hash = await this.rpc<Hex>('eth_sendTransaction', [
      {
        from: tx.from,
        ...(tx.to ? { to: tx.to } : {}),
        ...(tx.data ? { data: tx.data } : {}),
        ...(tx.value !== undefined ? { value: `0x${tx.value.toString(16)}` } : {}),
        ...(tx.gas !== undefined ? { gas: `0x${tx.gas.toString(16)}` } : {}),
        ...(tx.gasPrice !== undefined ? { gasPrice: `0x${tx.gasPrice.toString(16)}` } : {}),
      },
    ]);
    for (let i = 0; i < 600; i++) {
      const r = await this.rpc<Receipt | null>('eth_getTransactionReceipt', [hash]);
      if (r) return r;
      if (i === 0) await this.rpc('evm_mine').catch(() => {});
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`transaction ${hash} was not mined`);
  }

  async deployToken(from: Hex, supply: bigint): Promise<Hex> {
    const { abi, bytecode } = this.artifacts.Token;
    const r = await this.send({ from, data: encodeDeployData({ abi, bytecode, args: [supply, from] }) });
    if (r.status !== '0x1' || !r.contractAddress) throw new Error('token deployment failed');
    return r.contractAddress.toLowerCase() as Hex;
  }

  async deployFactory(from: Hex): Promise<Hex> {
    const { abi, bytecode } = this.artifacts.TokenFactory;
    const r = await this.send({ from, data: encodeDeployData({ abi, bytecode, args: [] }) });
    if (r.status !== '0x1' || !r.contractAddress) throw new Error('factory deployment failed');
    return r.contractAddress.toLowerCase() as Hex;
  }

  /** A token created by the factory (CREATE inside a call). */
  async createViaFactory(factory: Hex, from: Hex, supply: bigint): Promise<Receipt> {
    return this.send({ from, to: factory, data: encodeFunctionData({ abi: this.artifacts.TokenFactory.abi, functionName: 'create', args: [supply] }) });
  }

  async transferToken(token: Hex, from: Hex, to: Hex, amount: bigint): Promise<Receipt> {
    return this.send({ from, to: token, data: encodeFunctionData({ abi: this.artifacts.Token.abi, functionName: 'transfer', args: [to, amount] }) });
  }

  async transferEth(from: Hex, to: Hex, value: bigint): Promise<Receipt> {
    return this.send({ from, to, value });
  }

  /** A contract created and self-destructed in one transaction, forwarding `value` to `to`. */
  async ephemeral(from: Hex, to: Hex, value: bigint): Promise<Receipt> {
    const { abi, bytecode } = this.artifacts.Ephemeral;
    return this.send({ from, value, data: encodeDeployData({ abi, bytecode, args: [to] }) });
  }

  async balanceOf(token: Hex, holder: Hex, block: Hex | 'latest' = 'latest'): Promise<bigint> {
    const data = encodeFunctionData({ abi: this.artifacts.Token.abi, functionName: 'balanceOf', args: [holder] });
    return BigInt(await this.rpc<Hex>('eth_call', [{ to: token, data }, block]));
  }

  /**
   * Empties `from` (balance to exactly zero): a legacy transfer of its whole
   * balance less the fee, at a gas price above the base fee.
   */
  async emptyAccount(from: Hex, to: Hex): Promise<Receipt> {
    const balance = BigInt(await this.rpc<Hex>('eth_getBalance', [from, 'latest']));
    const block = await this.rpc<{ baseFeePerGas?: Hex }>('eth_getBlockByNumber', ['latest', false]);
    const gasPrice = (BigInt(block.baseFeePerGas ?? '0x3b9aca00') * 3n) / 2n + 1n;
    const fee = 21_000n * gasPrice;
    if (balance <= fee) throw new Error(`${from} cannot pay for its own emptying`);
    return this.send({ from, to, value: balance - fee, gas: 21_000n, gasPrice });
  }
}
