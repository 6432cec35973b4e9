#include "executor.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "answer.h"
#include "errors.h"

namespace lanepir {

namespace {

constexpr int64_t kIdleWaitNs = 100 * 1000000ll;  // wake up now and then: heartbeat, stop

void sleepOn(LaneBell& bell, uint32_t seen, int64_t timeoutNs) {
  bell.sleepers.store(1);  // seq_cst: a submitter that bumps seq after this store sees it and wakes us
  futexWait(&bell.seq, seen, timeoutNs);
  bell.sleepers.store(0);
}

}  // namespace

Executor::Executor(std::shared_ptr<Exchange> x, ExecutorOptions opts, std::function<void(const PassInfo&)> onPass)
    : x_(std::move(x)), opts_(opts), onPass_(std::move(onPass)) {
  if (opts_.batchMax < 1 || opts_.batchMax > unsigned(kMaxQueries)) fail("EPARAMS", "batchMax must be in [1, 16]");
  if (opts_.threads < 1) opts_.threads = 1;
  XHeader* h = x_->header();
  epoch_ = h->executorEpoch.fetch_add(1) + 1;
  h->executorPid.store(uint64_t(::getpid()));
  h->executorBeatMs.store(unixMs());
  h->executorState.store(1);
  // Queries a dead predecessor had in its pass are failed (their workers answer 503); queued ones stay queued.
  x_->failTaken();
  try {
    for (int l = 0; l < kExchangeLanes; l++) threads_.emplace_back([this, l] { laneLoop(l); });
  } catch (...) {
    stop();
    throw;
  }
}

Executor::~Executor() { stop(); }

uint64_t Executor::setGeneration(const std::string& id, std::array<std::shared_ptr<Lane>, kExchangeLanes> lanes) {
  if (id.empty() || id.size() >= kGenWords * 8) fail("EPARAMS", "generation id must have 1 to 31 bytes");
  std::lock_guard<std::mutex> lk(mu_);
  const uint64_t token = nextToken_++;
  held_[id] = Held{token, std::move(lanes)};
  return token;
}

bool Executor::dropGeneration(const std::string& id, uint64_t token) {
  std::array<std::shared_ptr<Lane>, kExchangeLanes> keep;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = held_.find(id);
    if (it == held_.end() || (token != 0 && it->second.token != token)) return false;
    keep = std::move(it->second.lanes);
    held_.erase(it);
  }
  // Dropped on a thread of its own: if this was the last reference, the unmap
  // (hundreds of ms for a large lane) must not run on the caller's (JS) thread.
  try {
    std::thread([k = std::move(keep)]() mutable { k = {}; }).detach();
  } catch (...) {
    // no thread: released here
  }
  return true;
}

std::vector<std::string> Executor::generations() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& e : held_) out.push_back(e.first);
  return out;
}

void Executor::start() {
  accepting_.store(true);
  x_->header()->executorState.store(2);
  for (auto& b : x_->header()->bells) {
    b.seq.fetch_add(1);
    futexWakeAll(&b.seq);
  }
}

void Executor::stop() {
  if (stopping_.exchange(true)) return;
  for (auto& b : x_->header()->bells) {
    b.seq.fetch_add(1);
    futexWakeAll(&b.seq);
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  XHeader* h = x_->header();
  if (h->executorPid.load() == uint64_t(::getpid()) && h->executorEpoch.load() == epoch_) h->executorState.store(3);
}

void Executor::scan(int lane, std::vector<Cand>& out) const {
  out.clear();
  const uint32_t D = x_->descriptors();
  for (uint32_t r = 0; r < x_->regions(); r++) {
    RegionHeader* rh = x_->region(r);
    if (rh->pid.load(std::memory_order_relaxed) == 0 || rh->inKernel[lane].load(std::memory_order_relaxed) == 0) continue;
    for (uint32_t d = 0; d < D; d++) {
      Desc* ds = x_->desc(r, d);
      if (ds->state.load(std::memory_order_acquire) != kQueued) continue;
      const uint64_t lw = ds->lane.load(std::memory_order_relaxed);
      if (descLane(lw) != lane) continue;
      out.push_back({r, d, descCount(lw), ds->submitNs.load(std::memory_order_relaxed), ds->ticket.load(std::memory_order_relaxed), loadGen(ds->gen)});
    }
  }
  std::sort(out.begin(), out.end(), [](const Cand& a, const Cand& b) {
    if (a.submitNs != b.submitNs) return a.submitNs < b.submitNs;
    if (a.region != b.region) return a.region < b.region;
    return a.ticket < b.ticket;
  });
}

void Executor::laneLoop(int lane) {
  XHeader* h = x_->header();
  LaneBell& bell = h->bells[lane];
  std::vector<Cand> cands;
  std::vector<Cand> taken;
  bool idle = true;
  bool jumped = false;  // the last pass went ahead of older queries of another generation
  while (!stopping_.load()) {
    h->executorBeatMs.store(unixMs(), std::memory_order_relaxed);
    uint32_t seen = bell.seq.load();
    if (!accepting_.load()) {
      sleepOn(bell, seen, kIdleWaitNs);
      continue;
    }
    scan(lane, cands);
    if (cands.empty()) {
      idle = true;
      sleepOn(bell, seen, kIdleWaitNs);
      continue;
    }
    // An idle lane waits up to the window (from the oldest query's arrival) for company.
    while (idle && opts_.windowNs > 0 && !cands.empty() && !stopping_.load()) {
      const std::string& g = cands[0].gen;
      uint64_t same = 0;
      for (const Cand& c : cands)
        if (c.gen == g) same += c.count;
      if (same >= opts_.batchMax) break;
      const uint64_t now = monotonicNs(), deadline = cands[0].submitNs + opts_.windowNs;
      if (now >= deadline) break;
      sleepOn(bell, seen, int64_t(deadline - now));
      seen = bell.seq.load();
      scan(lane, cands);
    }
    if (cands.empty()) continue;
    idle = false;
    // The pass: the oldest query's generation, whole requests of it oldest first, up to
    // batchMax queries (the first always fits: a request carries at most batchMax).
    // After a switch, queries pinned to the new generation (the newest query's) would
    // wait behind a pass of those queued for the old one: they go first instead, but
    // never twice in a row, so no generation waits more than one extra pass.
    std::string gen = cands[0].gen;
    const Cand* newest = &cands[0];
    for (const Cand& c : cands)
      if (c.submitNs >= newest->submitNs) newest = &c;
    const bool jump = !jumped && newest->gen != gen;
    if (jump) gen = newest->gen;
    taken.clear();
    uint64_t queries = 0;
    for (const Cand& c : cands) {
      if (c.gen != gen) continue;
      if (queries + std::max<uint32_t>(c.count, 1) > opts_.batchMax && !taken.empty()) break;
      Desc* ds = x_->desc(c.region, c.d);
      uint64_t s = kQueued;
      ds->reserved.store(epoch_, std::memory_order_relaxed);
      if (ds->state.compare_exchange_strong(s, kTaken, std::memory_order_acq_rel)) {  // fails if cancelled
        taken.push_back(c);
        queries += std::max<uint32_t>(c.count, 1);
      }
    }
    if (!taken.empty()) {
      jumped = jump;
      runPass(lane, gen, taken);
    }
  }
}

void Executor::runPass(int lane, const std::string& gen, std::vector<Cand>& taken) {
  std::shared_ptr<Lane> L;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = held_.find(gen);
    if (it != held_.end()) L = it->second.lanes[lane];
  }
  const size_t n = taken.size();
  std::vector<uint64_t> result(n, kOk);
  std::vector<const uint32_t*> qs;
  std::vector<uint32_t*> outs;
  std::vector<size_t> inPass;  // descriptors whose queries are in the pass
  if (!L) {
    std::fill(result.begin(), result.end(), uint64_t(kGenerationGone));
  } else {
    const uint64_t qBytes = L->m() * 4, aBytes = L->entrySize() * L->rows() * 4, limit = x_->dataBytes();
    for (size_t i = 0; i < n; i++) {
      Desc* ds = x_->desc(taken[i].region, taken[i].d);
      const uint64_t qo = ds->queryOff.load(std::memory_order_relaxed), qb = ds->queryBytes.load(std::memory_order_relaxed);
      const uint64_t ao = ds->answerOff.load(std::memory_order_relaxed), ab = ds->answerBytes.load(std::memory_order_relaxed);
      const uint64_t count = taken[i].count;
      // Areas must lie inside the worker's own data area, 4-byte aligned, and must not overlap.
      if (qo > limit || qb > limit - qo || ao > limit || ab > limit - ao || qo % 4 || ao % 4 || (qo < ao + ab && ao < qo + qb) ||
          count < 1 || count > kMaxQueries || qs.size() + count > size_t(kMaxQueries)) {
        result[i] = kBadDescriptor;
      } else if (qb != count * qBytes || ab != count * aBytes) {
        result[i] = kQuerySize;
      } else {
        uint8_t* data = x_->data(taken[i].region);
        for (uint64_t j = 0; j < count; j++) {
          qs.push_back(reinterpret_cast<const uint32_t*>(data + qo + j * qBytes));
          outs.push_back(reinterpret_cast<uint32_t*>(data + ao + j * aBytes));
        }
        inPass.push_back(i);
      }
    }
  }
  const uint64_t t0 = monotonicNs();
  if (!inPass.empty()) {
    try {
      runAnswer(*L, qs.data(), int(qs.size()), outs.data(), opts_.threads, opts_.path);
    } catch (...) {
      for (size_t i : inPass) result[i] = kKernelFailed;
    }
  }
  const uint64_t passNs = monotonicNs() - t0;
  const uint64_t K = qs.size();
  // The pass is reported before its answers are released, so that whoever
  // reads the statistics after an answer arrived sees its pass counted.
  if (K > 0 && onPass_) {
    try {
      onPass_(PassInfo{lane, int(K), double(passNs) / 1e9, L->bytes(), gen});
    } catch (...) {
      // statistics only
    }
  }
  std::vector<uint32_t> regions;
  for (size_t i = 0; i < n; i++) {
    Desc* ds = x_->desc(taken[i].region, taken[i].d);
    ds->result.store(result[i], std::memory_order_relaxed);
    ds->batch.store((result[i] == kOk ? K : 0) | (epoch_ << 32), std::memory_order_relaxed);
    ds->passNs.store(passNs, std::memory_order_relaxed);
    ds->state.store(kDone, std::memory_order_release);
    regions.push_back(taken[i].region);
  }
  std::sort(regions.begin(), regions.end());
  regions.erase(std::unique(regions.begin(), regions.end()), regions.end());
  for (uint32_t r : regions) {
    RegionHeader* rh = x_->region(r);
    rh->doneSeq.fetch_add(1);                // seq_cst, then:
    if (rh->waiting.load()) futexWakeAll(&rh->doneSeq);
  }
  LaneBell& bell = x_->header()->bells[lane];
  bell.passes.fetch_add(1, std::memory_order_relaxed);
  bell.answered.fetch_add(K, std::memory_order_relaxed);
}

}  // namespace lanepir
