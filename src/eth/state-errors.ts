// A node that no longer has the state a block's changes are read against: a
// full (non-archive) node keeps only the recent state (geth ~128 blocks), so
// traces and read-backs of an older block fail. Each client words it its own
// way; none gives it a code of its own. Recognised here so that the follower
// names the cause instead of retrying under a generic line.
import { EthError } from './errors.js';

/**
 * Messages of state that is gone (or not there yet), by client:
 *   geth:       "missing trie node <hash> (path …)", "historical state <root> is not available",
 *               "required historical state unavailable (reexec=128)", "state <root> is not available"
 *   Nethermind: "No state available for block 0x…", "… is missing from the DB" (MissingTrieNodeException)
 *   reth:       "state at block #N is pruned", "distance to target block exceeds maximum configured value"
 *   Erigon:     "… history … pruned …", "state … not available"
 *   Besu:       "world state unavailable", "Missing node …"
 * Only state words count: "header not found" / "block not found" are a node
 * behind or a block gone in a reorg, which the follower handles apart.
 */
const STATE_UNAVAILABLE = new RegExp(
  [
    'missing trie node',
    'trie node .* (is )?missing',
    'is missing from the db',
    'no state available',
    '\\bstate\\b.*(not available|unavailable)',
    'required historical state',
    'world state unavailable',
    'state at block .* pruned',
    '\\bpruned\\b',
    'distance to target block exceeds maximum',
  ].join('|'),
  'i',
);

/** Codes of errors that mean "the node could not even be asked" or "it does not offer the method": never a state miss. */
const NOT_A_STATE_ANSWER = new Set(['EUNREACHABLE', 'EUNSUPPORTED', 'ETOO_LARGE']);

/** True when `err` is a node's answer that it lacks the state of a block. */
export function isStateUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && NOT_A_STATE_ANSWER.has(code)) return false;
  return STATE_UNAVAILABLE.test(err.message);
}

/** The follower's error for it: code ESTATE_UNAVAILABLE, a message naming the block and what to do. */
export function stateUnavailableError(block: number, cause: Error): EthError {
  const error = new EthError(
    'ESTATE_UNAVAILABLE',
    `the node no longer has the state of block ${block} (not an archive node?): start from a more recent state file (--from-block within the node's recent blocks), or use an archive node [node said: ${cause.message.slice(0, 300)}]`,
  );
  (error as { cause?: unknown }).cause = cause;
  return error;
}
