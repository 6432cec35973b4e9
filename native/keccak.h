// Keccak-256 as Ethereum uses it (the original Keccak padding 0x01, not
// SHA3's 0x06), for hashing many short keys in the keyword-lane builder.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lanepir {

// out = keccak256(prefix || msg), 32 bytes.
void keccak256(const uint8_t* prefix, size_t prefixLen, const uint8_t* msg, size_t msgLen, uint8_t out[32]);

}  // namespace lanepir
