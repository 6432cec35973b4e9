// Instruction peaks of this core for the hint kernels' inner step, measured by
// the kernel bench (compiled with g++ at bench time, see isa-peaks.ts): how
// many multiply-adds of 16-bit pairs into 32-bit lanes one thread retires per
// second with each instruction form the kernel paths use. Twelve independent
// accumulators per loop, so throughput, not latency, is measured. Prints one
// JSON object; a form the CPU lacks is null.
//
//   madd_add_ymm  vpmaddwd + vpaddd on ymm   (AVX2 path without VNNI): 16 products per pair
//   madd_add_zmm  vpmaddwd + vpaddd on zmm   (AVX-512 path without VNNI): 32
//   dpwssd_ymm    vpdpwssd on ymm            (AVX-VNNI): 16
//   dpwssd_zmm    vpdpwssd on zmm            (AVX-512 VNNI): 32
#include <immintrin.h>

#include <chrono>
#include <cstdio>

namespace {

constexpr long kIters = 20000000;

#define LP_ACC12(T, init) T c0 = init, c1 = init, c2 = init, c3 = init, c4 = init, c5 = init, c6 = init, c7 = init, c8 = init, c9 = init, c10 = init, c11 = init;
#define LP_EACH12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

__attribute__((target("avx2"))) unsigned maddAddYmm(long iters) {
  const __m256i a = _mm256_set1_epi32(3), b = _mm256_set1_epi32(5);
  LP_ACC12(__m256i, a)
  for (long i = 0; i < iters; i++) {
#define LP_S(k)                                                                                  \
  {                                                                                              \
    __m256i t;                                                                                   \
    __asm__ volatile("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+x"(c##k), "=&x"(t) : "x"(a), "x"(b)); \
  }
    LP_EACH12(LP_S)
#undef LP_S
  }
  __m256i s = c0;
#define LP_R(k) s = _mm256_add_epi32(s, c##k);
  LP_EACH12(LP_R)
#undef LP_R
  return unsigned(_mm256_extract_epi32(s, 0));
}

__attribute__((target("avx512f,avx512bw"))) unsigned maddAddZmm(long iters) {
  const __m512i a = _mm512_set1_epi32(3), b = _mm512_set1_epi32(5);
  LP_ACC12(__m512i, a)
  for (long i = 0; i < iters; i++) {
#define LP_S(k)                                                                                  \
  {                                                                                              \
    __m512i t;                                                                                   \
    __asm__ volatile("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+v"(c##k), "=&v"(t) : "v"(a), "v"(b)); \
  }
    LP_EACH12(LP_S)
#undef LP_S
  }
  __m512i s = c0;
#define LP_R(k) s = _mm512_add_epi32(s, c##k);
  LP_EACH12(LP_R)
#undef LP_R
  return unsigned(_mm512_reduce_add_epi32(s));
}

__attribute__((target("avx2,avxvnni"))) unsigned dpYmm(long iters) {
  const __m256i a = _mm256_set1_epi32(3), b = _mm256_set1_epi32(5);
  LP_ACC12(__m256i, a)
  for (long i = 0; i < iters; i++) {
#define LP_S(k) __asm__ volatile("%{vex%} vpdpwssd %1, %2, %0" : "+x"(c##k) : "x"(a), "x"(b));
    LP_EACH12(LP_S)
#undef LP_S
  }
  __m256i s = c0;
#define LP_R(k) s = _mm256_add_epi32(s, c##k);
  LP_EACH12(LP_R)
#undef LP_R
  return unsigned(_mm256_extract_epi32(s, 0));
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) unsigned dpZmm(long iters) {
  const __m512i a = _mm512_set1_epi32(3), b = _mm512_set1_epi32(5);
  LP_ACC12(__m512i, a)
  for (long i = 0; i < iters; i++) {
#define LP_S(k) __asm__ volatile("vpdpwssd %1, %2, %0" : "+v"(c##k) : "v"(a), "v"(b));
    LP_EACH12(LP_S)
#undef LP_S
  }
  __m512i s = c0;
#define LP_R(k) s = _mm512_add_epi32(s, c##k);
  LP_EACH12(LP_R)
#undef LP_R
  return unsigned(_mm512_reduce_add_epi32(s));
}

volatile unsigned sink;

// Best of three runs, in instructions (steps) per second.
template <class F>
double rate(F f) {
  f(kIters / 10);  // warm-up (clock ramp)
  double best = 0;
  for (int r = 0; r < 3; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    sink = f(kIters);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (12.0 * kIters / s > best) best = 12.0 * kIters / s;
  }
  return best;
}

void field(const char* name, bool ok, double (*measure)(), bool last) {
  if (ok) std::printf("\"%s\": %.4g%s", name, measure(), last ? "" : ", ");
  else std::printf("\"%s\": null%s", name, last ? "" : ", ");
}

}  // namespace

int main() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  const bool vnni512 = avx512 && __builtin_cpu_supports("avx512vnni");
  const bool avxvnni = avx2 && __builtin_cpu_supports("avxvnni");
  std::printf("{");
  field("madd_add_ymm", avx2, [] { return rate(maddAddYmm); }, false);
  field("madd_add_zmm", avx512, [] { return rate(maddAddZmm); }, false);
  field("dpwssd_ymm", avxvnni, [] { return rate(dpYmm); }, false);
  field("dpwssd_zmm", vnni512, [] { return rate(dpZmm); }, true);
  std::printf("}\n");
  return 0;
}
