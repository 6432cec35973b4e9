// The persistent kernel thread pool. Kernel passes used to start their
// threads anew on every pass (40-180 us each, more than a small lane's pass
// gains from a second thread); the pool's threads are started once and sleep
// between passes.
//
// run(n, width, fn) calls fn(0..n-1), each index exactly once, on the
// calling thread and on up to width - 1 pool threads, and returns when all
// are done. Indices are claimed
// dynamically, so a pool thread that is slow to wake (a busy machine) never
// holds a pass up: the caller claims its share instead. Several runs may be in
// flight at once (the hot and cold lanes' passes); pool threads serve them in
// arrival order. An exception from any fn is re-thrown by run() after every
// index has finished.
#pragma once
#include <cstdint>
#include <functional>

namespace lanepir {

class KernelPool {
 public:
  // The process-wide pool (created on first use, never destroyed: its threads
  // are detached and end with the process).
  static KernelPool& shared();

  void run(unsigned n, unsigned width, const std::function<void(unsigned)>& fn);

  // Threads started so far (grows to the largest width - 1 asked for, capped).
  unsigned threads() const;
  // run() calls so far.
  uint64_t runs() const;

 private:
  KernelPool() = default;
  struct Impl;
  Impl* impl();
};

}  // namespace lanepir
