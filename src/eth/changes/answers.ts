// Checks of what a node answers to the change sources' requests: a shape we
// do not expect is an EBAD_RESPONSE naming the method and the field, and a
// trace of other transactions than the block's is an EREORG. Never guessed
// around: a wrong value would be served.
import { RpcError } from '../rpc/errors.js';
import { preview } from '../rpc/client.js';

export interface AnswerChecks {
  /** Refuses the answer: `what` is wrong, `v` is what came. */
  bad(what: string, v: unknown): never;
  /** `v` as a JSON object, or refused. */
  object(v: unknown, what: string): Record<string, unknown>;
}

/** The checks for one kind of answer; messages start with `source` (declare the result with its type: `never` then narrows). */
export function answerChecks(source: string): AnswerChecks {
  const bad = (what: string, v: unknown): never => {
    throw new RpcError('EBAD_RESPONSE', `${source}: ${what}: ${preview(v)}`);
  };
  const object = (v: unknown, what: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${what} is not an object`, v);
    return v as Record<string, unknown>;
  };
  return { bad, object };
}

/** The length of hex bytes (code), checked. */
export function codeSize(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^0x([0-9a-fA-F]{2})*$/.test(v)) throw new RpcError('EBAD_RESPONSE', `${what}: expected hex bytes, got ${preview(v)}`);
  return (v.length - 2) / 2;
}

/**
 * A block trace has one entry per transaction, in order, each naming its
 * transaction (`field`): checked against the block's transaction hashes, so
 * a trace of another block at that height (or a reordered answer) is never
 * folded in.
 */
export function checkTraceEntries(source: string, answer: unknown, txHashes: readonly string[], field: string, blockNumber: number): Record<string, unknown>[] {
  const { bad, object }: AnswerChecks = answerChecks(source);
  if (!Array.isArray(answer)) bad(`block ${blockNumber}: expected one result per transaction`, answer);
  const entries = answer as unknown[];
  if (entries.length !== txHashes.length) {
    throw new RpcError('EBAD_RESPONSE', `${source}: block ${blockNumber} has ${txHashes.length} transactions, the trace has ${entries.length} results`);
  }
  return entries.map((entry, i) => {
    const e = object(entry, `block ${blockNumber} trace ${i}`);
    const hash = e[field];
    if (typeof hash !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(hash)) bad(`block ${blockNumber} trace ${i} names no transaction (${field}; a node too old to say?)`, hash);
    if ((hash as string).toLowerCase() !== txHashes[i]!.toLowerCase()) {
      throw new RpcError('EREORG', `${source}: block ${blockNumber} tx ${i} traced is ${hash as string}, not the block's ${txHashes[i]} (the block at that height changed?)`);
    }
    return e;
  });
}
