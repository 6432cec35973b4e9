// Answer driver: K queries in one pass over a lane, on the kernel pool.
#pragma once
#include <cstdint>

#include "cpu.h"
#include "lane.h"

namespace lanepir {

constexpr int kMaxQueries = 16;

// queries[k]: m words each, read where they are (never copied). out[k]:
// es * rows words, every word written (no need to zero it first). `threads`
// is how many threads the pass may use (the caller and kernel pool threads).
void runAnswer(const Lane& lane, const uint32_t* const* queries, int K, uint32_t* const* out, unsigned threads,
               KernelPath path);

}  // namespace lanepir
