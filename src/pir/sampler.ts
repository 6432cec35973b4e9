// Constant-time discrete Gaussian sampler (cumulative distribution table).
//
// |x| is drawn by comparing one 62-bit uniform value against every entry of
// a table of cumulative probabilities (always the whole table, with
// arithmetic instead of branches), then a uniform sign is applied the same
// way. Nothing about the sample steers control flow or memory addresses.
import { SIGMA } from './params.js';
import { randomWords } from './random.js';

const TWO31 = 2 ** 31;

interface Table {
  hi: Int32Array; // threshold bits 61..31
  lo: Int32Array; // threshold bits 30..0
}

/** Splits v in [0, 1] into a 62-bit fixed-point (hi, lo) pair. */
function fixed62(v: number): [number, number] {
  const scaled = v * TWO31;
  const hi = Math.floor(scaled);
  const lo = Math.floor((scaled - hi) * TWO31);
  return [hi, lo];
}

/**
 * Thresholds T_k = 2^62 * Pr[|x| <= k] for k = 0, 1, ... while the remaining
 * tail is at least 2^-62. The upper thresholds are computed as 1 - tail with
 * the tail summed from the far end, so they keep full relative precision.
 */
export function buildTable(sigma: number): Table {
  const rho = (k: number) => Math.exp(-(k * k) / (2 * sigma * sigma));
  const far = Math.ceil(sigma * 14); // rho(far) < 2^-140: nothing beyond matters
  const mass: number[] = [];
  for (let k = 0; k <= far; k++) mass.push(k === 0 ? rho(0) : 2 * rho(k));
  const total = mass.reduce((a, b) => a + b, 0);
  // tail[k] = Pr[|x| > k], summed smallest first.
  const tail = new Array<number>(far + 1).fill(0);
  for (let k = far - 1; k >= 0; k--) tail[k] = tail[k + 1]! + mass[k + 1]! / total;
  const hi: number[] = [];
  const lo: number[] = [];
  let cdf = 0;
  for (let k = 0; k < far && tail[k]! >= 2 ** -62; k++) {
    cdf += mass[k]! / total;
    let h: number;
    let l: number;
    if (cdf < 0.5) {
      [h, l] = fixed62(cdf);
    } else {
      // 2^62 - 2^62 * tail, borrowing across the two halves.
      const [th, tl] = fixed62(tail[k]!);
      h = TWO31 - 1 - th;
      l = TWO31 - tl;
      if (l === TWO31) {
        h += 1;
        l = 0;
      }
    }
    hi.push(h);
    lo.push(l);
  }
  return { hi: Int32Array.from(hi), lo: Int32Array.from(lo) };
}

const TABLE = buildTable(SIGMA);

/** 1 when a < b else 0, for a, b in [0, 2^31), without branching. */
function lt31(a: number, b: number): number {
  return (a - b) >>> 31;
}

/**
 * Fills `out` with samples from the discrete Gaussian of standard deviation
 * 6.4, as uint32 values mod 2^32 (negative x is 2^32 + x).
 */
export function sampleErrors(out: Uint32Array, table: Table = TABLE): Uint32Array {
  const rnd = randomWords(out.length * 2);
  const { hi, lo } = table;
  const size = hi.length;
  for (let i = 0; i < out.length; i++) {
    const w0 = rnd[2 * i]!;
    const uHi = w0 & 0x7fffffff;
    const sign = w0 >>> 31;
    const uLo = rnd[2 * i + 1]! & 0x7fffffff;
    // |x| = number of thresholds T_k with T_k <= u, i.e. not (u < T_k).
    let k = 0;
    for (let j = 0; j < size; j++) {
      const h = hi[j]!;
      const less = lt31(uHi, h);
      const equal = 1 - (less | lt31(h, uHi));
      const below = less | (equal & lt31(uLo, lo[j]!));
      k += 1 - below;
    }
    // x = sign ? -k : k, as arithmetic.
    out[i] = (k - 2 * sign * k) >>> 0;
  }
  rnd.fill(0);
  return out;
}

/** Table size (for tests and docs). */
export const TABLE_SIZE = TABLE.hi.length;
