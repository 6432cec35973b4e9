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

// One measuring function per instruction form: twelve accumulators, each
// updated by STEP (an asm block, so the compiler can neither fuse nor drop it)
// once per iteration; the sum is returned so the loop is not dead.
#define LP_EACH12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define LP_PEAK_FN(NAME, TARGET, V, SET1, ADD, REDUCE, STEP)                          \
  __attribute__((target(TARGET))) unsigned NAME(long iters) {                       \
    const V a = SET1(3), b = SET1(5);                                               \
    V c0 = a, c1 = a, c2 = a, c3 = a, c4 = a, c5 = a, c6 = a, c7 = a, c8 = a, c9 = a, c10 = a, c11 = a; \
    for (long i = 0; i < iters; i++) { LP_EACH12(STEP) }                            \
    const V all[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};             \
    V s = all[0];                                                                   \
    for (int k = 1; k < 12; k++) s = ADD(s, all[k]);                                \
    return unsigned(REDUCE(s));                                                     \
  }

#define LP_MADD_ADD_Y(k) { __m256i t; __asm__ volatile("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+x"(c##k), "=&x"(t) : "x"(a), "x"(b)); }
#define LP_MADD_ADD_Z(k) { __m512i t; __asm__ volatile("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+v"(c##k), "=&v"(t) : "v"(a), "v"(b)); }
#define LP_DP_Y(k) __asm__ volatile("%{vex%} vpdpwssd %1, %2, %0" : "+x"(c##k) : "x"(a), "x"(b));
#define LP_DP_Z(k) __asm__ volatile("vpdpwssd %1, %2, %0" : "+v"(c##k) : "v"(a), "v"(b));
#define LP_FIRST_Y(s) _mm256_extract_epi32(s, 0)

LP_PEAK_FN(maddAddYmm, "avx2", __m256i, _mm256_set1_epi32, _mm256_add_epi32, LP_FIRST_Y, LP_MADD_ADD_Y)
LP_PEAK_FN(maddAddZmm, "avx512f,avx512bw", __m512i, _mm512_set1_epi32, _mm512_add_epi32, _mm512_reduce_add_epi32, LP_MADD_ADD_Z)
LP_PEAK_FN(dpYmm, "avx2,avxvnni", __m256i, _mm256_set1_epi32, _mm256_add_epi32, LP_FIRST_Y, LP_DP_Y)
LP_PEAK_FN(dpZmm, "avx512f,avx512bw,avx512vnni", __m512i, _mm512_set1_epi32, _mm512_add_epi32, _mm512_reduce_add_epi32, LP_DP_Z)

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
