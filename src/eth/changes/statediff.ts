// Change source 2: trace_replayBlockTransactions(block, ["stateDiff"])
// (Erigon, reth, Nethermind; the OpenEthereum format). Per transaction,
// stateDiff maps each touched address to its fields, each one of
//   "="                    unchanged
//   {"+": new}             born (the account or slot did not exist)
//   {"-": old}             died (removed)
//   {"*": {"from", "to"}}  changed
// An account whose balance (or nonce) died was removed. The transactions are
// folded in order into one BlockDiff.
import { RpcError } from '../rpc/errors.js';
import { type AnswerChecks, answerChecks, checkTraceEntries, codeSize } from './answers.js';
import { type BlockDiff, ZERO_WORD } from './diff.js';

type Delta = '=' | { '+': string } | { '-': string } | { '*': { from: string; to: string } };

const check: AnswerChecks = answerChecks('stateDiff');

function hex(v: unknown, what: string, bytes = false): string {
  if (typeof v !== 'string' || !(bytes ? /^0x([0-9a-fA-F]{2})*$/ : /^0x[0-9a-fA-F]{1,64}$/).test(v)) check.bad(`${what} is not hex`, v);
  return v;
}

/** The field's state after the transaction: unchanged, removed, or a new value. */
function after(d: unknown, what: string, bytes = false): { kind: 'same' } | { kind: 'died' } | { kind: 'set'; value: string } {
  if (d === '=') return { kind: 'same' };
  const o = check.object(d, what) as Exclude<Delta, '='>;
  if ('+' in o) return { kind: 'set', value: hex(o['+'], `${what}["+"]`, bytes) };
  if ('-' in o) return { kind: 'died' };
  if ('*' in o) return { kind: 'set', value: hex(check.object(o['*'], `${what}["*"]`).to, `${what}["*"].to`, bytes) };
  check.bad(`${what} is not "=", +, - or *`, d);
}

export function applyStateDiff(diff: BlockDiff, stateDiff: unknown, where: string): string[] {
  const removed: string[] = [];
  for (const [address, raw] of Object.entries(check.object(stateDiff, `${where} stateDiff`))) {
    if (!/^0x[0-9a-fA-F]{40}$/.test(address)) check.bad(`${where} address`, address);
    const a = check.object(raw, `${where} stateDiff[${address}]`);
    const at = `${where} stateDiff[${address}]`;
    const balance = after(a.balance ?? '=', `${at}.balance`);
    const nonce = after(a.nonce ?? '=', `${at}.nonce`);
    const code = after(a.code ?? '=', `${at}.code`, true);
    if (balance.kind === 'died' || nonce.kind === 'died') {
      diff.deleteAccount(address);
      removed.push(address.toLowerCase());
      continue;
    }
    if (balance.kind === 'set') diff.setBalance(address, BigInt(balance.value));
    if (nonce.kind === 'set') diff.setNonce(address, BigInt(nonce.value));
    if (code.kind === 'set') diff.setCodeSize(address, codeSize(code.value, `stateDiff: ${at}.code`));
    else if (code.kind === 'died') diff.setCodeSize(address, 0);
    for (const [slot, d] of Object.entries(check.object(a.storage ?? {}, `${at}.storage`))) {
      hex(slot, `${at}.storage slot`);
      const s = after(d, `${at}.storage[${slot}]`);
      if (s.kind === 'set') diff.setStorage(address, slot, s.value);
      else if (s.kind === 'died') diff.setStorage(address, slot, ZERO_WORD);
    }
  }
  return removed;
}

/**
 * Folds a whole trace_replayBlockTransactions answer: one entry per
 * transaction, in order, each naming its transaction (transactionHash),
 * which must be the block's (the replay is asked for by number).
 */
export function applyStateDiffBlock(diff: BlockDiff, answer: unknown, txHashes: readonly string[], blockNumber: number): { removed: string[] } {
  const removed: string[] = [];
  checkTraceEntries('stateDiff', answer, txHashes, 'transactionHash', blockNumber).forEach((e, i) => {
    const where = `block ${blockNumber} tx ${i} (${txHashes[i]})`;
    if (e.stateDiff === null || e.stateDiff === undefined) throw new RpcError('EBAD_RESPONSE', `stateDiff: ${where} has no stateDiff (was "stateDiff" asked for?)`);
    removed.push(...applyStateDiff(diff, e.stateDiff, where));
  });
  return { removed };
}
