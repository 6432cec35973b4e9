// Interface between the ISA-independent drivers (answer.cc, hint.cc) and the
// per-ISA kernels (kernels_*.cc). All arithmetic is mod 2^32 and every kernel
// must give bit-identical results.
//
// Query words are split q = lo + 2^16*hi with lo the signed low 16 bits, so
// x*q = x*lo + 2^16*(x*hi) mod 2^32 and two adjacent columns can share one
// 32-bit lane of a 16-bit multiply-add (vpmaddwd / vpdpwssd). Packed pairs:
//   lo2[p] = (q[2p] & 0xffff) | (q[2p+1] & 0xffff) << 16
//   hi2[p] = hi(q[2p])        | hi(q[2p+1]) << 16      (q[m] := 0)
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu.h"

namespace lanepir {

inline uint32_t loPart(uint32_t q) { return q & 0xffffu; }
inline uint32_t hiPart(uint32_t q) {
  const int32_t lo = int16_t(uint16_t(q & 0xffffu));
  return ((q - uint32_t(lo)) >> 16) & 0xffffu;
}

struct AnswerCtx {
  size_t es;      // entry size
  size_t m;       // columns
  size_t pairs;   // (m + 1) / 2
  int K;          // queries
  const uint32_t* q;     // K x m full words (portable kernel)
  const uint32_t* qlo2;  // K x pairs
  const uint32_t* qhi2;  // K x pairs
  const uint8_t* zeros;  // >= es + 64 zero bytes (stands in for a missing pair half)
  size_t prefetch;       // bytes ahead of the entries being read that the SIMD kernels prefetch
};

// Accumulate columns [c0, c0 + ncols) of one record row, whose entries lie
// back to back at p, into acc. acc layout: acc[(k * 2 + h) * es + b] with
// h = 0 the lo accumulator and h = 1 the hi accumulator; the row's answer is
// lo + (hi << 16).
using AnswerRunFn = void (*)(const AnswerCtx& ctx, const uint8_t* p, size_t c0, size_t ncols, uint32_t* acc);

// Hint block: C[t][j] += sum_p X(t,p) . A(p,j) for t < T, j < n, p < npairs.
//  xp: T x npairs packed pairs of int16 (X - 128), row stride npairs.
//  ap: npairs rows of hintAStride(n) words; within a row, per 16-column block jb:
//      [32*jb .. 32*jb+15] = lo2 of columns 16jb..16jb+15, [+16 .. +31] = hi2.
//  C: T x n, row stride n.
// Words between A rows: 2n plus one cache line, so a tile walking down a
// column block (one row every 8 KiB at n = 1024) does not map every row to
// the same few L1 sets.
inline size_t hintAStride(size_t n) { return 2 * n + 16; }

using HintBlockFn = void (*)(const uint32_t* xp, size_t T, size_t npairs, const uint32_t* ap, size_t n, uint32_t* C);

void answer_run_portable(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void hint_block_portable(const uint32_t*, size_t, size_t, const uint32_t*, size_t, uint32_t*);
#if defined(__x86_64__)
void answer_run_avx2(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void answer_run_avxvnni(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void answer_run_avx512(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void answer_run_avx512vnni(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void answer_run_avx512vbmi(const AnswerCtx&, const uint8_t*, size_t, size_t, uint32_t*);
void hint_block_avx2(const uint32_t*, size_t, size_t, const uint32_t*, size_t, uint32_t*);
void hint_block_avxvnni(const uint32_t*, size_t, size_t, const uint32_t*, size_t, uint32_t*);
void hint_block_avx512(const uint32_t*, size_t, size_t, const uint32_t*, size_t, uint32_t*);
void hint_block_avx512vnni(const uint32_t*, size_t, size_t, const uint32_t*, size_t, uint32_t*);
#endif

// Kernel for a path (picks the VNNI flavour when the CPU has it).
AnswerRunFn answerKernel(KernelPath p);
HintBlockFn hintKernel(KernelPath p);

}  // namespace lanepir
