// The kernel executor: one thread per lane takes every query queued in the
// exchange for that lane (from every region, i.e. every worker), forms a pass
// of up to batchMax queries on one generation (oldest first), runs it on the
// kernel pool reading the queries and writing the answers in place, and wakes
// the workers whose queries it answered. One scan per lane serves all workers.
//
// The executor answers only generations it holds (setGeneration); a query for
// another fails with kGenerationGone. Until start() it takes nothing, so
// queries queued while it maps the generations the workers hold just wait.
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cpu.h"
#include "exchange.h"
#include "lane.h"

namespace lanepir {

struct PassInfo {
  int lane;
  int batch;
  double seconds;
  uint64_t bytes;
  std::string generation;
};

struct ExecutorOptions {
  unsigned batchMax = 16;
  uint64_t windowNs = 0;  // how long an idle lane waits for company (0: start at once)
  unsigned threads = 1;
  KernelPath path = KernelPath::Portable;
};

class Executor {
 public:
  // Takes shared ownership of the exchange; bumps its executor epoch and fails
  // queries a previous executor left in a pass.
  Executor(std::shared_ptr<Exchange> x, ExecutorOptions opts, std::function<void(const PassInfo&)> onPass);
  ~Executor();  // stop()

  // Lanes of a generation (nullptr: the generation has no such lane). Returns
  // a token; dropGeneration(id, token) removes it only if not replaced since.
  uint64_t setGeneration(const std::string& id, std::array<std::shared_ptr<Lane>, kExchangeLanes> lanes);
  bool dropGeneration(const std::string& id, uint64_t token);
  std::vector<std::string> generations() const;

  void start();  // begin taking queries (state: serving)
  void stop();   // lane threads stop after their pass; idempotent
  uint64_t epoch() const { return epoch_; }

 private:
  void laneLoop(int lane);
  struct Cand {
    uint32_t region, d, count;
    uint64_t submitNs, ticket;
    std::string gen;
  };
  // Queued descriptors of a lane, oldest first.
  void scan(int lane, std::vector<Cand>& out) const;
  void runPass(int lane, const std::string& gen, std::vector<Cand>& taken);

  std::shared_ptr<Exchange> x_;
  ExecutorOptions opts_;
  std::function<void(const PassInfo&)> onPass_;
  uint64_t epoch_ = 0;
  std::atomic<bool> accepting_{false}, stopping_{false};
  mutable std::mutex mu_;
  struct Held {
    uint64_t token;
    std::array<std::shared_ptr<Lane>, kExchangeLanes> lanes;
  };
  std::map<std::string, Held> held_;
  uint64_t nextToken_ = 1;
  std::vector<std::thread> threads_;
};

}  // namespace lanepir
