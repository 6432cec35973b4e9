// Keccak-f[1600] with the sponge for Keccak-256 (rate 136 bytes), written
// from the Keccak reference (FIPS 202 permutation, pre-standard padding).
#include "keccak.h"

#include <cstring>

namespace lanepir {
namespace {

constexpr uint64_t kRoundConstants[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};
// Rotation offsets and lane permutation of rho+pi, in the order the pi step visits the lanes.
constexpr int kRho[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
constexpr int kPi[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

inline uint64_t rotl(uint64_t x, int s) { return (x << s) | (x >> (64 - s)); }

void keccakF(uint64_t a[25]) {
  for (int round = 0; round < 24; round++) {
    uint64_t c[5];
    for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (int x = 0; x < 5; x++) {
      const uint64_t d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (int y = 0; y < 25; y += 5) a[y + x] ^= d;
    }
    uint64_t t = a[1];
    for (int i = 0; i < 24; i++) {
      const int j = kPi[i];
      const uint64_t next = a[j];
      a[j] = rotl(t, kRho[i]);
      t = next;
    }
    for (int y = 0; y < 25; y += 5) {
      uint64_t row[5];
      for (int x = 0; x < 5; x++) row[x] = a[y + x];
      for (int x = 0; x < 5; x++) a[y + x] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5]);
    }
    a[0] ^= kRoundConstants[round];
  }
}

constexpr size_t kRate = 136;

inline uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

}  // namespace

void keccak256(const uint8_t* prefix, size_t prefixLen, const uint8_t* msg, size_t msgLen, uint8_t out[32]) {
  uint64_t a[25] = {0};
  uint8_t block[kRate];
  size_t fill = 0;
  auto absorb = [&](const uint8_t* p, size_t len) {
    while (len > 0) {
      const size_t take = len < kRate - fill ? len : kRate - fill;
      std::memcpy(block + fill, p, take);
      fill += take;
      p += take;
      len -= take;
      if (fill == kRate) {
        for (size_t i = 0; i < kRate / 8; i++) a[i] ^= load64(block + 8 * i);
        keccakF(a);
        fill = 0;
      }
    }
  };
  absorb(prefix, prefixLen);
  absorb(msg, msgLen);
  std::memset(block + fill, 0, kRate - fill);
  block[fill] ^= 0x01;
  block[kRate - 1] ^= 0x80;
  for (size_t i = 0; i < kRate / 8; i++) a[i] ^= load64(block + 8 * i);
  keccakF(a);
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 8; b++) out[8 * i + b] = uint8_t(a[i] >> (8 * b));
}

}  // namespace lanepir
