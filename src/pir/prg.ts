// Expansion of the public matrix A from its seed: the AES-128-CTR keystream of
// the seed with a 128-bit big-endian counter starting at zero. A[c][j] is the
// little-endian uint32 at byte 4*(c*n + j), so row c starts at counter block
// c*n/4 and any range of rows can be generated on its own. WebCrypto only, so
// the same code runs in browsers. This stream is public and never feeds secrets.

const BLOCK = 16;

type AesKey = Awaited<ReturnType<typeof globalThis.crypto.subtle.importKey>>;

async function importKey(seed: Uint8Array): Promise<AesKey> {
  if (seed.length !== 16) throw new RangeError(`A's seed must be 16 bytes, got ${seed.length}`);
  return globalThis.crypto.subtle.importKey('raw', seed as Uint8Array<ArrayBuffer>, { name: 'AES-CTR' }, false, ['encrypt']);
}

/** The 16-byte big-endian counter block for block number `block` (< 2^53). */
function counterBlock(block: number): Uint8Array<ArrayBuffer> {
  const ctr = new Uint8Array(BLOCK);
  let v = block;
  for (let i = BLOCK - 1; i >= 0 && v > 0; i--) {
    ctr[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return ctr;
}

/** A stream of A's rows; keeps the imported key so repeated ranges are cheap. */
export class MatrixStream {
  /** The all-zero plaintext, kept: WebCrypto copies its input, so one buffer serves every call (no megabyte of garbage per step). */
  private zeros = new Uint8Array(0);

  private constructor(
    private readonly key: AesKey,
    readonly n: number,
  ) {}

  static async create(seed: Uint8Array, n: number): Promise<MatrixStream> {
    if (!Number.isInteger(n) || n <= 0 || n % 4 !== 0) throw new RangeError(`n must be a positive multiple of 4, got ${n}`);
    return new MatrixStream(await importKey(seed), n);
  }

  /** Rows [rowStart, rowStart + rowCount) of A, row-major. */
  async rows(rowStart: number, rowCount: number): Promise<Uint32Array> {
    const bytes = rowCount * this.n * 4;
    if (this.zeros.byteLength < bytes) this.zeros = new Uint8Array(bytes);
    const ks = await globalThis.crypto.subtle.encrypt(
      { name: 'AES-CTR', counter: counterBlock((rowStart * this.n * 4) / BLOCK), length: 128 },
      this.key,
      this.zeros.subarray(0, bytes),
    );
    return littleEndianWords(new Uint8Array(ks));
  }
}

/** Reads bytes as little-endian uint32 words, whatever the host byte order. */
export function littleEndianWords(bytes: Uint8Array): Uint32Array {
  if (bytes.byteLength % 4 !== 0) throw new RangeError('byte length must be a multiple of 4');
  if (HOST_LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  const out = new Uint32Array(bytes.byteLength / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
  return out;
}

/** Serializes words as little-endian bytes. */
export function wordsToLittleEndian(words: Uint32Array): Uint8Array {
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const out = new Uint8Array(words.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) view.setUint32(4 * i, words[i]!, true);
  return out;
}

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
