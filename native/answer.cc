#include "answer.h"

#include <algorithm>
#include <vector>

#include "kernels.h"
#include "threads.h"

namespace lanepir {

namespace {

// A row this thread only saw part of; summed into the output after join.
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

}  // namespace

void runAnswer(const Lane& lane, const uint32_t* queries, int K, uint32_t* const* out, unsigned threads,
               KernelPath path) {
  const size_t es = lane.entrySize(), m = lane.m(), pairs = (m + 1) / 2;
  const uint64_t E = lane.entries();

  // Pack the queries into lo/hi pairs once per call.
  std::vector<uint32_t> lo2(size_t(K) * pairs), hi2(size_t(K) * pairs);
  for (int k = 0; k < K; k++) {
    const uint32_t* q = queries + size_t(k) * m;
    for (size_t p = 0; p < pairs; p++) {
      const uint32_t q0 = q[2 * p], q1 = 2 * p + 1 < m ? q[2 * p + 1] : 0;
      lo2[k * pairs + p] = loPart(q0) | (loPart(q1) << 16);
      hi2[k * pairs + p] = hiPart(q0) | (hiPart(q1) << 16);
    }
  }
  std::vector<uint8_t> zeros(es + 64, 0);
  const AnswerCtx ctx{es, m, pairs, K, queries, lo2.data(), hi2.data(), zeros.data()};
  const AnswerRunFn run = answerKernel(path);

  if (threads == 0) threads = 1;
  if (threads > E) threads = unsigned(E);
  std::vector<std::vector<PartialRow>> partials(threads);

  // Thread t owns entries [E*t/T, E*(t+1)/T). Rows fully inside are written
  // straight to out (no other thread touches them); edge rows go to partials.
  auto work = [&](unsigned t) {
    const uint64_t e0 = E * t / threads, e1 = E * (t + 1) / threads;
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
        partials[t].push_back(std::move(pr));
      }
    }
  };

  parallelRun(threads, work);

  for (auto& list : partials)
    for (const PartialRow& pr : list)
      for (int k = 0; k < K; k++) {
        uint32_t* d = out[k] + pr.row * es;
        const uint32_t* s = pr.words.data() + size_t(k) * es;
        for (size_t b = 0; b < es; b++) d[b] += s[b];
      }
}

}  // namespace lanepir
