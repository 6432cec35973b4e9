// Public client API: everything a wallet needs to query a lanepir server.
export { PirClient, type PirClientOptions, type QueryState } from './client.js';
export { PirClientError, fetchError, describeCause } from './errors.js';
export { type Crs, parseCrs, queryBytes, answerBytes, hintBytes, hexToBytes, bytesToHex } from './crs.js';
export * from './params.js';
export {
  type LaneDelta,
  DeltaError,
  encodeDelta,
  decodeDelta,
  mergeDeltas,
  checkDelta,
  grownRows,
  isGenerationId,
  generationBlockNumber,
  DELTA_MAGIC,
  DELTA_VERSION,
} from './delta.js';
export { MatrixStream, littleEndianWords, wordsToLittleEndian } from './prg.js';
export { sampleErrors } from './sampler.js';
export { RemoteLane, type CachedHint, type HintCache, type HintSource, type LookupResult } from './remote.js';
