// Portable kernels: plain C++ the compiler may auto-vectorize. They define
// the reference behaviour the SIMD kernels must match bit for bit.
#include "kernels.h"

namespace lanepir {

void answer_run_portable(const AnswerCtx& ctx, const uint8_t* p, size_t c0, size_t ncols, uint32_t* acc) {
  const size_t es = ctx.es;
  for (size_t i = 0; i < ncols; i++) {
    const uint8_t* x = p + i * es;
    __builtin_prefetch(x + 8192);  // see answer_avx512.inc
    for (int k = 0; k < ctx.K; k++) {
      // Full 32-bit multiply into the lo accumulator; hi stays 0.
      const uint32_t qv = ctx.q[size_t(k) * ctx.m + c0 + i];
      uint32_t* a = acc + size_t(k) * 2 * es;
      for (size_t b = 0; b < es; b++) a[b] += uint32_t(x[b]) * qv;
    }
  }
}

void hint_block_portable(const uint32_t* xp, size_t T, size_t npairs, const uint32_t* ap, size_t n, uint32_t* C) {
  for (size_t t = 0; t < T; t++) {
    uint32_t* c = C + t * n;
    for (size_t p = 0; p < npairs; p++) {
      const uint32_t xv = xp[t * npairs + p];
      const int32_t x0 = int16_t(uint16_t(xv)), x1 = int16_t(uint16_t(xv >> 16));
      const uint32_t* a = ap + p * hintAStride(n);
      for (size_t j = 0; j < n; j++) {
        const uint32_t lo = a[(j / 16) * 32 + (j % 16)], hi = a[(j / 16) * 32 + 16 + (j % 16)];
        // Same products the SIMD kernels form (int16 x int16 pairs).
        const uint32_t l = uint32_t(x0 * int32_t(int16_t(uint16_t(lo)))) + uint32_t(x1 * int32_t(int16_t(uint16_t(lo >> 16))));
        const uint32_t h = uint32_t(x0 * int32_t(int16_t(uint16_t(hi)))) + uint32_t(x1 * int32_t(int16_t(uint16_t(hi >> 16))));
        c[j] += l + (h << 16);
      }
    }
  }
}

AnswerRunFn answerKernel(KernelPath p) {
#if defined(__x86_64__)
  const CpuInfo& ci = cpuInfo();
  if (p == KernelPath::Avx512)
    return ci.avx512vnni ? (ci.avx512vbmi ? answer_run_avx512vbmi : answer_run_avx512vnni) : answer_run_avx512;
  if (p == KernelPath::Avx2) return ci.avxvnni ? answer_run_avxvnni : answer_run_avx2;
#endif
  (void)p;
  return answer_run_portable;
}

HintBlockFn hintKernel(KernelPath p) {
#if defined(__x86_64__)
  const CpuInfo& ci = cpuInfo();
  if (p == KernelPath::Avx512) return ci.avx512vnni ? hint_block_avx512vnni : hint_block_avx512;
  if (p == KernelPath::Avx2) return ci.avxvnni ? hint_block_avxvnni : hint_block_avx2;
#endif
  (void)p;
  return hint_block_portable;
}

}  // namespace lanepir
