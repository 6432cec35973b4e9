// SimplePIR parameters (Henzinger et al., USENIX Security 2023) as lanepir
// fixes them, and the correctness bound that limits the matrix width m.
//
// LWE: n = 1024, q = 2^32, discrete Gaussian error with sigma = 6.4. These are
// the paper's parameters for q = 2^32 (128-bit security per the lattice
// estimator); the plaintext modulus p = 256 lets one matrix cell hold one byte.

export const LWE_N = 1024;
export const Q_BITS = 32;
export const PLAIN_MODULUS = 256;
/** Delta = q / p: the scale of the plaintext in a query. */
export const DELTA = 2 ** (Q_BITS - 8);
export const SIGMA = 6.4;
/** Largest decoding-failure probability the builder accepts (per decoded byte). */
export const MAX_FAILURE_LOG2 = -40;
/** Default columns for large lanes: 16384 keeps the hot lane's hint (8 MiB per 2^20 entries of 32 B) and query (64 KiB) both small. */
export const DEFAULT_COLUMNS = 16384;
/**
 * The paper's security estimate for n = 1024, q = 2^32, sigma = 6.4 assumes at
 * most 2^20 LWE samples; a query is m samples, so m is capped there as well.
 */
export const MAX_COLUMNS_SECURITY = 2 ** 20;

/**
 * log2 of the probability that one decoded byte is wrong for a matrix of m
 * columns. The noise in a decoded value is sum_c (x_c - p/2) e_c with
 * |x_c - p/2| <= p/2, so its variance is at most m (p/2)^2 sigma^2; decoding
 * fails only when |noise| >= Delta/2. The Gaussian tail bound gives
 *   Pr[fail] <= 2 exp(-(Delta/2)^2 / (2 m (p/2)^2 sigma^2)).
 */
export function failureLog2(m: number, sigma = SIGMA, p = PLAIN_MODULUS, delta = DELTA): number {
  const bound = delta / 2;
  const variance = m * (p / 2) ** 2 * sigma ** 2;
  return 1 - bound ** 2 / (2 * variance) / Math.LN2;
}

/** Largest m whose failure bound is within MAX_FAILURE_LOG2 (about 1.84M for p = 256). */
export function maxColumnsForCorrectness(): number {
  // failureLog2 is increasing in m: solve 1 - B/(m ln2) = MAX for m.
  const b = (DELTA / 2) ** 2 / (2 * (PLAIN_MODULUS / 2) ** 2 * SIGMA ** 2);
  return Math.floor(b / (Math.LN2 * (1 - MAX_FAILURE_LOG2)));
}

/** The default matrix width for a lane of `entries` entries. */
export function defaultColumns(entries: number): number {
  return entries >= DEFAULT_COLUMNS ? DEFAULT_COLUMNS : Math.max(1, entries);
}

/** Record rows R for a lane. */
export function recordRows(entries: number, m: number): number {
  return Math.ceil(entries / m);
}

export class ParamsError extends Error {
  readonly code = 'EPARAMS';
  constructor(message: string) {
    super(message);
    this.name = 'ParamsError';
  }
}

/** Throws ParamsError when m is unsafe (correctness or security). */
export function checkColumns(m: number): void {
  if (!Number.isSafeInteger(m) || m < 1) throw new ParamsError(`m must be a positive integer, got ${m}`);
  if (m > MAX_COLUMNS_SECURITY) {
    throw new ParamsError(`m = ${m} exceeds ${MAX_COLUMNS_SECURITY} columns, the sample count the LWE parameters are rated for`);
  }
  const f = failureLog2(m);
  if (f > MAX_FAILURE_LOG2) {
    throw new ParamsError(`m = ${m} gives a decoding-failure bound of 2^${f.toFixed(1)}, above 2^${MAX_FAILURE_LOG2}`);
  }
}
