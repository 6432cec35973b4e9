// The public matrix A of SimplePIR: the AES-128-CTR keystream of a 16-byte
// seed (counter block starts at 0, incremented as a 128-bit big-endian
// integer). A is m x n uint32, row-major, little-endian words.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lanepir {

// Writes `bytes` keystream bytes starting at keystream byte `offset`.
void aesCtrKeystream(const uint8_t seed[16], uint64_t offset, uint8_t* out, size_t bytes);

// Rows [rowStart, rowStart + rowCount) of A with n words per row.
void expandA(const uint8_t seed[16], uint64_t rowStart, uint64_t rowCount, uint64_t n, uint32_t* out);

}  // namespace lanepir
