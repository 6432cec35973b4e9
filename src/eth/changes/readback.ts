// Reading touched accounts and slots back from the node at one block, by the
// block's hash with requireCanonical (EIP-1898): a node answers by hash for
// a block that is no longer canonical unless told not to, and a read-back
// must be of the chain the follower serves. (The follower's re-check of the
// header after ingesting also catches a reorg mid-way.)
import { type BlockRef, type EthRpc, address20, blockParam, preview, quantityBigInt } from '../rpc/client.js';
import { RpcError } from '../rpc/errors.js';
import { codeSize } from './answers.js';
import { type BlockDiff, word } from './diff.js';
import { type Touched } from './structlog.js';

/** Reads every touched account (balance, nonce, code size) and slot at `at`, and writes them into the diff. */
export async function readBack(rpc: EthRpc, at: BlockRef, touched: Touched, diff: BlockDiff): Promise<number> {
  const block = blockParam(at);
  const accounts = [...touched.accounts].map((a) => address20(a, 'touched account'));
  const slots: { address: string; slot: string }[] = [];
  for (const [address, set] of touched.slots) for (const slot of set) slots.push({ address, slot });
  const calls = [
    ...accounts.flatMap((a) => [
      { method: 'eth_getBalance', params: [a, block] },
      { method: 'eth_getTransactionCount', params: [a, block] },
      { method: 'eth_getCode', params: [a, block] },
    ]),
    ...slots.map(({ address, slot }) => ({ method: 'eth_getStorageAt', params: [address, slot, block] })),
  ];
  const answers = await rpc.many(calls);
  // Slots first: an account read back as empty (EIP-161) is then removed with them.
  const base = 3 * accounts.length;
  slots.forEach(({ address, slot }, i) => {
    const v = answers[base + i];
    if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{1,64}$/.test(v)) throw new RpcError('EBAD_RESPONSE', `eth_getStorageAt(${address}, ${slot}): expected a 32-byte word, got ${preview(v)}`);
    diff.setStorage(address, slot, word(v));
  });
  accounts.forEach((a, i) => {
    diff.setAccount(a, {
      balance: quantityBigInt(answers[3 * i], `eth_getBalance(${a})`),
      nonce: quantityBigInt(answers[3 * i + 1], `eth_getTransactionCount(${a})`),
      codeSize: codeSize(answers[3 * i + 2], `eth_getCode(${a})`),
    });
  });
  return calls.length;
}
