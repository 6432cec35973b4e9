#include "aes.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "errors.h"

namespace lanepir {

namespace {
struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
}  // namespace

void aesCtrKeystream(const uint8_t seed[16], uint64_t offset, uint8_t* out, size_t bytes) {
  if (bytes == 0) return;
  // Counter block of the first byte, as a 128-bit big-endian integer.
  const uint64_t block = offset / 16;
  uint8_t iv[16] = {0};
  for (int i = 0; i < 8; i++) iv[15 - i] = uint8_t(block >> (8 * i));
  std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_ctr(), nullptr, seed, iv) != 1)
    fail("ENOMEM", "cannot initialise AES-128-CTR");
  // Encrypting zeros yields the keystream; do it in place in `out`, starting
  // with the partial block we have to skip.
  size_t skip = size_t(offset % 16);
  if (skip) {
    uint8_t tmp[16] = {0};
    int outl = 0;
    EVP_EncryptUpdate(ctx.get(), tmp, &outl, tmp, 16);
    size_t take = std::min<size_t>(16 - skip, bytes);
    std::memcpy(out, tmp + skip, take);
    out += take;
    bytes -= take;
  }
  std::memset(out, 0, bytes);
  const size_t chunk = size_t(1) << 30;  // EVP takes int lengths
  while (bytes) {
    size_t n = bytes < chunk ? bytes : chunk;
    int outl = 0;
    if (EVP_EncryptUpdate(ctx.get(), out, &outl, out, int(n)) != 1) fail("ENOMEM", "AES-128-CTR failed");
    out += n;
    bytes -= n;
  }
}

void expandA(const uint8_t seed[16], uint64_t rowStart, uint64_t rowCount, uint64_t n, uint32_t* out) {
  aesCtrKeystream(seed, rowStart * n * 4, reinterpret_cast<uint8_t*>(out), size_t(rowCount * n * 4));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  for (uint64_t i = 0; i < rowCount * n; i++) out[i] = __builtin_bswap32(out[i]);
#endif
}

}  // namespace lanepir
