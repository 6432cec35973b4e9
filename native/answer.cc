#include "answer.h"

#include <algorithm>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace lanepir {

namespace {

// A row a chunk only saw part of; summed into the output after the pass.
struct PartialRow {
  uint64_t row;
  std::vector<uint32_t> words;  // K x es, already lo + (hi << 16)
};

void finalizeRow(const uint32_t* acc, int K, size_t es, uint32_t* const* dst, size_t dstOffset) {
  for (int k = 0; k < K; k++) {
    const uint32_t* lo = acc + size_t(k) * 2 * es;
    const uint32_t* hi = lo + es;
    uint32_t* d = dst[k] + dstOffset;
    for (size_t b = 0; b < es; b++) d[b] = lo[b] + (hi[b] << 16);
  }
}

// How far ahead of the entries being read the SIMD kernels prefetch. A lane
// that fits in the last-level cache is read from it, where a longer distance
// pays (32 MiB hot lane, K = 1, one thread: 8 KiB reached 0.82 of the
// in-cache read rate, 16 KiB 0.94); from memory 8 KiB is best (16 KiB cost
// ~4% on a 1 GiB lane).
size_t prefetchDistance(uint64_t laneBytes) { return laneBytes <= lastLevelCacheBytes() ? 16384 : 8192; }

// Chunks of at least this much lane data: more chunks than threads balance a
// busy machine (a thread that is slow to start takes fewer), but each chunk
// boundary costs a partial row and a cold prefetch stream.
constexpr uint64_t kMinChunkBytes = uint64_t(256) << 10;

}  // namespace

void runAnswer(const Lane& lane, const uint32_t* const* queries, int K, uint32_t* const* out, unsigned threads,
               KernelPath path) {
  const size_t es = lane.entrySize(), m = lane.m(), pairs = (m + 1) / 2;
  const uint64_t E = lane.entries();

  // Pack the queries into lo/hi pairs once per call (hi = the rounded top half,
  // so that lo is the signed low half: see kernels.h).
  std::vector<uint32_t> lo2(size_t(K) * pairs), hi2(size_t(K) * pairs);
  for (int k = 0; k < K; k++) {
    const uint32_t* q = queries[k];
    uint32_t* lo = lo2.data() + size_t(k) * pairs;
    uint32_t* hi = hi2.data() + size_t(k) * pairs;
    const size_t full = m / 2;
    for (size_t p = 0; p < full; p++) {
      const uint32_t q0 = q[2 * p], q1 = q[2 * p + 1];
      lo[p] = (q0 & 0xffffu) | (q1 << 16);
      hi[p] = (((q0 + 0x8000u) >> 16) & 0xffffu) | ((q1 + 0x8000u) & 0xffff0000u);
    }
    if (full < pairs) {
      const uint32_t q0 = q[2 * full];
      lo[full] = q0 & 0xffffu;
      hi[full] = ((q0 + 0x8000u) >> 16) & 0xffffu;
    }
  }
  // The portable kernel multiplies full words: it reads K x m contiguous words.
  std::vector<uint32_t> flat;
  const KernelPath effective = path;
  const AnswerRunFn run = answerKernel(effective);
  if (run == answer_run_portable) {
    flat.resize(size_t(K) * m);
    for (int k = 0; k < K; k++) std::copy(queries[k], queries[k] + m, flat.begin() + ptrdiff_t(size_t(k) * m));
  }
  std::vector<uint8_t> zeros(es + 64, 0);
  const AnswerCtx ctx{es, m, pairs, K, flat.data(), lo2.data(), hi2.data(), zeros.data(), prefetchDistance(lane.bytes())};

  if (threads == 0) threads = 1;
  uint64_t chunks = threads == 1 ? 1 : uint64_t(threads) * 4;
  chunks = std::min<uint64_t>(chunks, std::max<uint64_t>(threads, lane.bytes() / kMinChunkBytes));
  chunks = std::max<uint64_t>(1, std::min<uint64_t>(chunks, E));
  std::vector<std::vector<PartialRow>> partials(static_cast<size_t>(chunks));

  // Chunk c owns entries [E*c/C, E*(c+1)/C). Rows fully inside are written
  // straight to out (no other chunk touches them); edge rows go to partials.
  auto work = [&](unsigned c) {
    const uint64_t e0 = E * c / chunks, e1 = E * (c + 1) / chunks;
    if (e0 >= e1) return;
    std::vector<uint32_t> acc(size_t(K) * 2 * es);
    for (uint64_t r = e0 / m; r <= (e1 - 1) / m; r++) {
      const uint64_t rowStart = r * m, rowEnd = std::min<uint64_t>(rowStart + m, E);
      const uint64_t a = std::max(e0, rowStart), b = std::min(e1, rowEnd);
      std::fill(acc.begin(), acc.end(), 0u);
      lane.forEachRun(a, b, [&](const uint8_t* p, uint64_t first, uint64_t count) {
        run(ctx, p, size_t(first - rowStart), size_t(count), acc.data());
      });
      if (a == rowStart && b == rowEnd) {
        finalizeRow(acc.data(), K, es, out, size_t(r * es));
      } else {
        PartialRow pr{r, std::vector<uint32_t>(size_t(K) * es)};
        std::vector<uint32_t*> dst(K);
        for (int k = 0; k < K; k++) dst[k] = pr.words.data() + size_t(k) * es;
        finalizeRow(acc.data(), K, es, dst.data(), 0);
        partials[c].push_back(std::move(pr));
      }
    }
  };

  KernelPool::shared().run(unsigned(chunks), threads, work);

  // A split row: its first piece is stored, the others added (chunks are in entry order).
  uint64_t lastRow = ~uint64_t(0);
  for (auto& list : partials)
    for (const PartialRow& pr : list)
      for (int k = 0; k < K; k++) {
        uint32_t* d = out[k] + pr.row * es;
        const uint32_t* s = pr.words.data() + size_t(k) * es;
        if (pr.row != lastRow) std::copy(s, s + es, d);
        else
          for (size_t b = 0; b < es; b++) d[b] += s[b];
        if (k == K - 1) lastRow = pr.row;
      }
}

}  // namespace lanepir
