// Public client API: everything a wallet needs to query a lanepir server.
export { PirClient, type PirClientOptions, type QueryState } from './client.js';
export { PirClientError, fetchError, describeCause } from './errors.js';
export { type Crs, type KeywordCrs, type LaneLayout, parseCrs, isKeywordCrs, queryBytes, answerBytes, hintBytes, hexToBytes, bytesToHex, KEYWORD_ENTRY_SIZE, KEYWORD_TAG_BYTES, KEYWORD_VALUE_BYTES } from './crs.js';
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
export {
  type KeyLocation,
  type KeywordQueries,
  type KeywordResult,
  keywordHash,
  candidateColumns,
  isZeroTag,
  locateKey,
  keywordParams,
  keywordQueries,
  dummyQueries,
  decodeKeyword,
  randomColumn,
  u64leMod,
  KEYWORD_HASH_BYTES,
} from './keyword.js';
export { KeywordReader, type KeywordReaderOptions, type KeywordRoundOptions, type KeywordRoundResult } from './keyword-remote.js';
