#include "hint.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "aes.h"
#include "errors.h"
#include "kernels.h"
#include "threads.h"

namespace lanepir {

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

template <class T>
std::unique_ptr<T[], FreeDeleter> alignedArray(size_t count) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, std::max<size_t>(count, 1) * sizeof(T)) != 0 || !p)
    fail("ENOMEM", "cannot allocate " + std::to_string(count * sizeof(T)) + " bytes for the hint");
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

}  // namespace

void runHint(const Lane& lane, const uint8_t seed[16], size_t n, uint32_t* H, unsigned threads, KernelPath path,
             const HintProgress& progress) {
  const size_t es = lane.entrySize(), m = lane.m(), pairs = (m + 1) / 2;
  const uint64_t E = lane.entries(), R = lane.rows();
  const HintBlockFn kern = hintKernel(path);
  if (threads == 0) threads = 1;

  // 1. A, packed into lo/hi pairs of adjacent rows (see kernels.h). Generated
  // once per call in chunks of rows (m x n words in total, 64 MiB for
  // m = 16384, n = 1024).
  auto AP = alignedArray<uint32_t>(pairs * hintAStride(n));
  {
    const size_t chunkPairs = 64;
    const size_t chunks = (pairs + chunkPairs - 1) / chunkPairs;
    std::atomic<size_t> next{0};
    parallelRun(std::min<size_t>(threads, chunks), [&](unsigned) {
      std::vector<uint32_t> tmp(2 * chunkPairs * n);
      for (size_t ch; (ch = next.fetch_add(1)) < chunks;) {
        const size_t p0 = ch * chunkPairs, np = std::min(chunkPairs, pairs - p0);
        const size_t row0 = 2 * p0, rows = std::min<size_t>(2 * np, m - row0);
        expandA(seed, row0, rows, n, tmp.data());
        for (size_t pp = 0; pp < np; pp++) {
          const uint32_t* a0 = tmp.data() + 2 * pp * n;
          const uint32_t* a1 = 2 * pp + 1 < rows ? a0 + n : nullptr;  // odd m: the last pair's second row is 0
          uint32_t* dst = AP.get() + (p0 + pp) * hintAStride(n);
          for (size_t j = 0; j < n; j++) {
            const uint32_t v0 = a0[j], v1 = a1 ? a1[j] : 0;
            dst[(j / 16) * 32 + (j % 16)] = loPart(v0) | (loPart(v1) << 16);
            dst[(j / 16) * 32 + 16 + (j % 16)] = hiPart(v0) | (hiPart(v1) << 16);
          }
        }
      }
    });
  }

  // 2. Groups of G record rows (T = G*es rows of H) so one sweep over A is
  // shared by ~256 rows of output; column blocks of A sized for L2.
  const size_t G = std::max<size_t>(1, (256 + es - 1) / es);
  const size_t Tmax = G * es;
  size_t CB = std::max<size_t>(1, (size_t(256) << 10) / (8 * n));
  CB = std::min(CB, std::max<size_t>(1, (size_t(64) << 10) / (4 * Tmax)));
  CB = std::min(CB, pairs);
  const uint64_t groups = (R + G - 1) / G;
  std::atomic<uint64_t> nextGroup{0};
  std::mutex progressMu;
  uint64_t done = 0;

  parallelRun(unsigned(std::min<uint64_t>(threads, groups)), [&](unsigned) {
    auto XP = alignedArray<uint32_t>(Tmax * CB);
    for (uint64_t gi; (gi = nextGroup.fetch_add(1)) < groups;) {
      const uint64_t r0 = gi * G;
      const size_t g = size_t(std::min<uint64_t>(G, R - r0)), Tg = g * es;
      uint32_t* C = H + r0 * es * n;
      for (size_t pb = 0; pb < pairs; pb += CB) {
        const size_t cb = std::min(CB, pairs - pb);
        // Transpose this block of X into int16 pairs (X - 128); cells past
        // the last entry are X = 0, i.e. -128; the phantom column m (odd m) is 0.
        for (size_t gg = 0; gg < g; gg++) {
          const uint64_t base = (r0 + gg) * m;
          uint32_t* xrow = XP.get() + gg * es * cb;
          for (size_t pp = 0; pp < cb; pp++) {
            const size_t c = 2 * (pb + pp);
            const uint8_t* x0 = base + c < E ? lane.entryPtr(base + c) : nullptr;
            const bool has1 = c + 1 < m;
            const uint8_t* x1 = has1 && base + c + 1 < E ? lane.entryPtr(base + c + 1) : nullptr;
            const uint32_t pad1 = has1 ? 0xff80u : 0u;
            for (size_t b = 0; b < es; b++) {
              const uint32_t v0 = x0 ? uint16_t(int(x0[b]) - 128) : 0xff80u;
              const uint32_t v1 = x1 ? uint16_t(int(x1[b]) - 128) : pad1;
              xrow[b * cb + pp] = v0 | (v1 << 16);
            }
          }
        }
        kern(XP.get(), Tg, cb, AP.get() + pb * hintAStride(n), n, C);
      }
      if (progress) {
        std::lock_guard<std::mutex> lock(progressMu);
        done += g;
        progress(done, R);
      }
    }
  });
}

}  // namespace lanepir
