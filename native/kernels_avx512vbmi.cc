// Kernels for AVX-512 + AVX512_VNNI + AVX512_VBMI (vpdpwssd zmm, vpermb). Only called after runtime dispatch (cpu.cc)
// confirmed the CPU and OS support these instructions; the target pragma
// applies to this translation unit's functions only.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi"))), apply_to = function)
#else
#pragma GCC push_options
// GCC 12 warns about _mm512_undefined_epi32() inside its own _mm512_slli_epi32.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx2,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")
#endif

// vpdpwssd through inline asm: GCC 12 spills and copies every accumulator
// around the _mm512_dpwssd_epi32 builtin in long unrolled loops.
static inline __m512i lpDpwssd512(__m512i acc, __m512i a, __m512i b) {
  __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}
#define DP512(acc, a, b) lpDpwssd512((acc), (a), (b))
#define LP_ANS_VBMI 1

namespace lanepir {
namespace {
#include "answer_avx512.inc"
}  // namespace

void answer_run_avx512vbmi(const AnswerCtx& ctx, const uint8_t* p, size_t c0, size_t ncols, uint32_t* acc) {
  answerRun512(ctx, p, c0, ncols, acc);
}
}  // namespace lanepir

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
