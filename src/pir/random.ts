// CSPRNG words for secrets and errors. WebCrypto's getRandomValues exists in
// browsers and in Node (globalThis.crypto); it fills at most 64 KiB per call.
const MAX_FILL_WORDS = 65536 / 4;

export function randomWords(count: number): Uint32Array {
  const out = new Uint32Array(count);
  for (let off = 0; off < count; off += MAX_FILL_WORDS) {
    globalThis.crypto.getRandomValues(out.subarray(off, Math.min(count, off + MAX_FILL_WORDS)));
  }
  return out;
}
