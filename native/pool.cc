#include "pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanepir {

namespace {

constexpr unsigned kMaxThreads = 256;
// How long an idle pool thread looks for work before it sleeps: passes come
// back to back under load, and a sleeping thread takes tens of microseconds to
// wake. Short, so an idle server does not burn a core.
constexpr auto kSpin = std::chrono::microseconds(30);

inline void cpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

struct Job {
  const std::function<void(unsigned)>* fn = nullptr;
  unsigned n = 0;
  unsigned maxHelpers = 0;
  std::atomic<unsigned> next{0};    // next index to claim
  std::atomic<unsigned> done{0};    // indices finished
  std::atomic<unsigned> helpers{0}; // pool threads inside this job (guarded by the pool mutex on entry)
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr err;

  // Claims and runs indices until none is left.
  void work() {
    for (unsigned i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!err) err = std::current_exception();
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lk(mu);
        cv.notify_all();
      }
    }
  }
};

}  // namespace

struct KernelPool::Impl {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job*> jobs;  // jobs that may still have unclaimed indices
  std::atomic<uint64_t> posted{0};  // bumped on every new job (spinning threads watch it)
  std::atomic<unsigned> started{0};
  std::atomic<uint64_t> runs{0};

  void loop() {
    uint64_t seen = posted.load(std::memory_order_acquire);
    for (;;) {
      // Spin a little before sleeping.
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (posted.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until)
        for (int k = 0; k < 32; k++) cpuRelax();
      Job* j;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return !jobs.empty(); });
        seen = posted.load(std::memory_order_relaxed);
        j = jobs.front();
        if (j->next.load(std::memory_order_relaxed) >= j->n) {
          // Everything claimed: nothing left for helpers.
          jobs.pop_front();
          continue;
        }
        if (j->helpers.fetch_add(1, std::memory_order_relaxed) + 1 >= j->maxHelpers) jobs.pop_front();  // as wide as asked
      }
      j->work();
      {
        // The caller may return (and the Job go) once helpers is 0 again.
        std::lock_guard<std::mutex> lk(j->mu);
        if (j->helpers.fetch_sub(1, std::memory_order_acq_rel) == 1) j->cv.notify_all();
      }
    }
  }

  void ensure(unsigned want) {
    if (want > kMaxThreads) want = kMaxThreads;
    std::lock_guard<std::mutex> lk(mu);
    while (started.load() < want) {
      try {
        std::thread([this] { loop(); }).detach();
      } catch (...) {
        return;  // no more threads: callers do the work themselves
      }
      started.fetch_add(1);
    }
  }
};

KernelPool& KernelPool::shared() {
  static KernelPool* pool = new KernelPool();
  return *pool;
}

KernelPool::Impl* KernelPool::impl() {
  static Impl* i = new Impl();
  return i;
}

unsigned KernelPool::threads() const { return const_cast<KernelPool*>(this)->impl()->started.load(); }
uint64_t KernelPool::runs() const { return const_cast<KernelPool*>(this)->impl()->runs.load(); }

void KernelPool::run(unsigned n, unsigned width, const std::function<void(unsigned)>& fn) {
  if (n == 0) return;
  Impl* im = impl();
  im->runs.fetch_add(1, std::memory_order_relaxed);
  if (width > n) width = n;
  if (width <= 1) {
    for (unsigned i = 0; i < n; i++) fn(i);
    return;
  }
  im->ensure(width - 1);
  Job job;
  job.fn = &fn;
  job.n = n;
  job.maxHelpers = width - 1;
  {
    std::lock_guard<std::mutex> lk(im->mu);
    im->jobs.push_back(&job);
    im->posted.fetch_add(1, std::memory_order_release);
  }
  im->cv.notify_all();
  job.work();
  {
    // No helper may enter the job from here on.
    std::lock_guard<std::mutex> lk(im->mu);
    for (auto it = im->jobs.begin(); it != im->jobs.end(); ++it)
      if (*it == &job) {
        im->jobs.erase(it);
        break;
      }
  }
  {
    std::unique_lock<std::mutex> lk(job.mu);
    job.cv.wait(lk, [&] {
      return job.done.load(std::memory_order_acquire) == n && job.helpers.load(std::memory_order_acquire) == 0;
    });
  }
  if (job.err) std::rethrow_exception(job.err);
}

}  // namespace lanepir
