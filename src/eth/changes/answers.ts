// Checks of what a node answers to the change sources' requests: a shape we
// do not expect is an EBAD_RESPONSE naming the method and the field. Never
// guessed around: a wrong value would be served.
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
