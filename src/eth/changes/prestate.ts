// Change source 1: debug_traceBlockByHash with the prestateTracer in diff
// mode (geth; reth and Nethermind implement the same tracer). Per
// transaction the node answers {pre, post}:
//   - pre: the changed accounts before the transaction (only the fields and
//     slots that changed; geth omits zero nonces, empty code and zero slots);
//   - post: the fields that changed, with their new values; a slot cleared
//     to zero appears in pre and not in post;
//   - an account in pre and not in post was removed (self-destruct, EIP-161).
// The transactions are folded in order into one BlockDiff.
import { RpcError } from '../rpc/errors.js';
import { preview, quantityBigInt } from '../rpc/client.js';
import { type AnswerChecks, answerChecks, checkTraceEntries, codeSize } from './answers.js';
import { type BlockDiff, ZERO_WORD, word } from './diff.js';

interface PrestateAccount {
  balance?: string;
  nonce?: number | string;
  code?: string;
  storage?: Record<string, string>;
}

const check: AnswerChecks = answerChecks('prestateTracer');

/** geth writes nonces as JSON numbers, other fields as hex quantities. */
function quantity(v: unknown, what: string): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return quantityBigInt(v, `prestateTracer: ${what}`);
}

function storage(v: unknown, what: string): Map<string, string> {
  const out = new Map<string, string>();
  if (v === undefined || v === null) return out;
  for (const [slot, value] of Object.entries(check.object(v, what))) {
    if (!/^0x[0-9a-fA-F]{1,64}$/.test(slot)) check.bad(`${what} slot`, slot);
    if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{1,64}$/.test(value)) check.bad(`${what}[${slot}]`, value);
    out.set(word(slot), word(value));
  }
  return out;
}

/** Folds one transaction's {pre, post} into the block's diff. Returns the addresses it says were removed. */
export function applyPrestateDiff(diff: BlockDiff, result: unknown, where: string): string[] {
  const r = check.object(result, `${where} result`);
  const byAddress = (side: 'pre' | 'post') => {
    const m = new Map<string, PrestateAccount>();
    for (const [address, acct] of Object.entries(check.object(r[side] ?? {}, `${where} ${side}`))) {
      if (!/^0x[0-9a-fA-F]{40}$/.test(address)) check.bad(`${where} ${side} address`, address);
      m.set(address.toLowerCase(), check.object(acct, `${where} ${side}[${address}]`) as PrestateAccount);
    }
    return m;
  };
  const pre = byAddress('pre');
  const post = byAddress('post');
  const removed: string[] = [];
  for (const address of pre.keys()) {
    if (!post.has(address)) {
      diff.deleteAccount(address);
      removed.push(address);
    }
  }
  for (const [address, after] of post) {
    const at = `${where} post[${address}]`;
    if (after.balance !== undefined) diff.setBalance(address, quantity(after.balance, `${at}.balance`));
    if (after.nonce !== undefined) diff.setNonce(address, quantity(after.nonce, `${at}.nonce`));
    if (after.code !== undefined) diff.setCodeSize(address, codeSize(after.code, `prestateTracer: ${at}.code`));
    const newSlots = storage(after.storage, `${at}.storage`);
    const oldSlots = storage(pre.get(address)?.storage, `${where} pre[${address}].storage`);
    for (const [slot, value] of newSlots) diff.setStorage(address, slot, value);
    // In pre, not in post: cleared to zero.
    for (const slot of oldSlots.keys()) if (!newSlots.has(slot)) diff.setStorage(address, slot, ZERO_WORD);
  }
  return removed;
}

/**
 * Folds a whole debug_traceBlockByHash answer: one entry per transaction, in
 * order, each naming its transaction (txHash), which must be the block's.
 */
export function applyPrestateBlock(diff: BlockDiff, answer: unknown, txHashes: readonly string[], blockNumber: number): { removed: string[] } {
  const removed: string[] = [];
  checkTraceEntries('prestateTracer', answer, txHashes, 'txHash', blockNumber).forEach((e, i) => {
    const where = `block ${blockNumber} tx ${i} (${txHashes[i]})`;
    if (e.error !== undefined) throw new RpcError('ERPC', `prestateTracer: ${where} failed to trace: ${preview(e.error)}`);
    removed.push(...applyPrestateDiff(diff, e.result, where));
  });
  return { removed };
}
