// Run fn(0..n-1) on n threads (the caller is thread 0). Exceptions from any
// thread are re-thrown on the caller after every thread has joined, so no
// std::thread is ever destroyed while joinable.
#pragma once
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lanepir {

template <class F>
void parallelRun(unsigned n, F&& fn) {
  std::exception_ptr err;
  std::mutex mu;
  auto guarded = [&](unsigned t) {
    try {
      fn(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!err) err = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(n);
  for (unsigned t = 1; t < n; t++) {
    try {
      pool.emplace_back(guarded, t);
    } catch (...) {
      // Could not start a thread: run its share here instead.
      guarded(t);
    }
  }
  guarded(0);
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace lanepir
