// A block's transactions as every change source needs them: fetched once
// with the block by its hash (so they are the block's), and the EIP-7702
// authorities they name. An authorization (type 0x4) sets its authority's
// code (a delegation 0xef0100 ‖ address, or empty when cleared) and nonce;
// traces do not always show it (some nodes leave `code` out of post when a
// delegation is cleared; older reth stateDiff leaves 7702 code changes out),
// so every source reads each authority back at the block.
import { type Hex } from 'viem';
import { recoverAuthorizationAddress } from 'viem/utils';
import { type BlockHeader, type EthRpc, type TxInfo, preview } from '../rpc/client.js';
import { RpcError } from '../rpc/errors.js';
import { type Touched, touchAccount } from './structlog.js';

/** The block's transactions in order; EREORG when the node no longer knows the block. */
export async function blockTransactions(rpc: EthRpc, block: BlockHeader): Promise<TxInfo[]> {
  if (block.transactions.length === 0) return [];
  const got = await rpc.blockByHash(block.hash);
  if (!got) throw new RpcError('EREORG', `block ${block.number} (${block.hash}) is not known to the node any more (reorg?)`);
  const hashes = got.transactions.map((t) => t.hash);
  if (hashes.length !== block.transactions.length || hashes.some((h, i) => h !== block.transactions[i])) {
    throw new RpcError('EBAD_RESPONSE', `eth_getBlockByHash(${block.hash}): its transactions ${preview(hashes)} are not the header's ${preview(block.transactions)}`);
  }
  return got.transactions;
}

const QUANTITY = /^0x[0-9a-fA-F]{1,64}$/;

/** Adds the authority of every well-formed authorization whose signature recovers; an invalid one changes nothing (the EVM skips it too). */
export async function touchAuthorities(touched: Touched, txs: readonly TxInfo[]): Promise<void> {
  for (const tx of txs) {
    for (const [i, raw] of (tx.authorizationList ?? []).entries()) {
      const a = raw as Record<string, unknown> | null;
      const yParity = a?.yParity ?? a?.v;
      const fields = [a?.chainId, a?.nonce, a?.r, a?.s, yParity];
      if (!a || typeof a.address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(a.address) || !fields.every((f) => typeof f === 'string' && QUANTITY.test(f))) {
        throw new RpcError('EBAD_RESPONSE', `transaction ${tx.hash}: authorizationList[${i}] is not an authorization: ${preview(raw)}`);
      }
      let authority: string;
      try {
        authority = await recoverAuthorizationAddress({
          authorization: {
            address: a.address as Hex,
            chainId: Number(BigInt(a.chainId as string)),
            nonce: Number(BigInt(a.nonce as string)),
            r: a.r as Hex,
            s: a.s as Hex,
            yParity: Number(BigInt(yParity as string)),
          },
        });
      } catch {
        continue;
      }
      touchAccount(touched, authority);
    }
  }
}
