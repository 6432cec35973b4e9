// Hint driver: H = (X - 128) * A mod 2^32, (es * rows) x n, row-major.
#pragma once
#include <cstdint>
#include <functional>

#include "cpu.h"
#include "lane.h"

namespace lanepir {

// Called (serialised, from worker threads) as record rows finish.
using HintProgress = std::function<void(uint64_t done, uint64_t total)>;

// H: es * rows * n words, zero-initialised by the caller.
void runHint(const Lane& lane, const uint8_t seed[16], size_t n, uint32_t* H, unsigned threads, KernelPath path,
             const HintProgress& progress);

}  // namespace lanepir
