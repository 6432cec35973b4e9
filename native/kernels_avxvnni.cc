// Kernels for AVX2 + AVX-VNNI (vpdpwssd ymm). Only called after runtime dispatch (cpu.cc)
// confirmed the CPU and OS support these instructions; the target pragma
// applies to this translation unit's functions only.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,avxvnni")
#endif

// {vex} vpdpwssd through inline asm (see kernels_avx512vnni.cc: GCC 12
// spills accumulators around the builtin).
static inline __m256i lpDpwssd256(__m256i acc, __m256i a, __m256i b) {
  __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b));
  return acc;
}
#define DP256(acc, a, b) lpDpwssd256((acc), (a), (b))

namespace lanepir {
namespace {
#include "answer_avx2.inc"
#include "hint_avx2.inc"
}  // namespace

void answer_run_avxvnni(const AnswerCtx& ctx, const uint8_t* p, size_t c0, size_t ncols, uint32_t* acc) {
  answerRun256(ctx, p, c0, ncols, acc);
}
void hint_block_avxvnni(const uint32_t* xp, size_t T, size_t np, const uint32_t* ap, size_t n, uint32_t* C) {
  hintBlock256(xp, T, np, ap, n, C);
}
}  // namespace lanepir

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
