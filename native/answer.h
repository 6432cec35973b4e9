// Answer driver: K queries in one pass over a lane, multithreaded.
#pragma once
#include <cstdint>

#include "cpu.h"
#include "lane.h"

namespace lanepir {

constexpr int kMaxQueries = 16;

// queries: K x m words. out[k]: es * rows words, zero-initialised by the caller.
void runAnswer(const Lane& lane, const uint32_t* queries, int K, uint32_t* const* out, unsigned threads,
               KernelPath path);

}  // namespace lanepir
