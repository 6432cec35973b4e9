// Kernels for AVX2 (vpmaddwd + vpaddd). Only called after runtime dispatch (cpu.cc)
// confirmed the CPU and OS support these instructions; the target pragma
// applies to this translation unit's functions only.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

// vpmaddwd + vpaddd as one asm block with its own scratch register: left to
// itself GCC 12 issues every multiply of a tile first and then spills the
// accumulators to make room for the products (the hint's 3-row tile).
static inline __m256i lpMaddAdd256(__m256i acc, __m256i a, __m256i b) {
  __m256i t;
  __asm__("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "xm"(a), "x"(b));
  return acc;
}
#define DP256(acc, a, b) lpMaddAdd256((acc), (a), (b))

namespace lanepir {
namespace {
#include "answer_avx2.inc"
#include "hint_avx2.inc"
}  // namespace

void answer_run_avx2(const AnswerCtx& ctx, const uint8_t* p, size_t c0, size_t ncols, uint32_t* acc) {
  answerRun256(ctx, p, c0, ncols, acc);
}
void hint_block_avx2(const uint32_t* xp, size_t T, size_t np, const uint32_t* ap, size_t n, uint32_t* C) {
  hintBlock256(xp, T, np, ap, n, C);
}
}  // namespace lanepir

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
