#include "lane.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cpu.h"
#include "errors.h"
#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanepir {

namespace {

std::atomic<uint64_t> gLanes{0};
std::atomic<uint64_t> gBytes{0};

// Closes the fd on every exit path of open().
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string sysErr(int e) { return std::strerror(e); }

}  // namespace

MappingStatsValue mappingStats() { return {gLanes.load(), gBytes.load()}; }

const char* laneMemoryName(LaneMemory m) {
  switch (m) {
    case LaneMemory::Mmap: return "mmap";
    case LaneMemory::Memory: return "memory";
    case LaneMemory::Cache: return "cache";
  }
  return "?";
}

Lane::~Lane() {
  for (auto& mp : maps_) ::munmap(mp.first, mp.second);
  if (buffer_) ::munmap(buffer_, bufferBytes_);
  if (counted_) {
    gLanes.fetch_sub(1);
    gBytes.fetch_sub(heldBytes_);
  }
}

std::shared_ptr<Lane> Lane::open(const LaneParams& p) {
  if (p.entrySize == 0 || p.entries == 0 || p.m == 0 || p.shardSize == 0)
    fail("EPARAMS", "entrySize, entries, m and shardSize must be positive");
  if (p.shardSize % p.entrySize != 0)
    fail("EPARAMS", "shardSize " + std::to_string(p.shardSize) + " is not a multiple of entrySize " +
                        std::to_string(p.entrySize));
  if (p.shards.empty()) fail("EPARAMS", "no shard files given");
  if (!p.expect.empty() && p.expect.size() != p.shards.size()) fail("EPARAMS", "expect needs one identity per shard");
  if (p.entries > (uint64_t(1) << 48) / p.entrySize) fail("EPARAMS", "lane too large");
  const uint64_t total = p.entries * p.entrySize;
  const uint64_t expectShards = (total + p.shardSize - 1) / p.shardSize;

  std::shared_ptr<Lane> lane(new Lane());
  lane->es_ = p.entrySize;
  lane->entries_ = p.entries;
  lane->m_ = p.m;
  lane->memory_ = p.memory;
  if (!p.contentIds.empty() && p.contentIds.size() != p.shards.size()) fail("EPARAMS", "one content id per shard, or none");
  lane->segEntries_ = p.shardSize / p.entrySize;

  // Open and size-check every shard before mapping anything.
  std::vector<Fd> fds(p.shards.size());
  std::vector<uint64_t> sizes(p.shards.size());
  std::vector<struct stat> sts(p.shards.size());
  uint64_t sum = 0;
  for (size_t i = 0; i < p.shards.size(); i++) {
    const std::string& name = p.shards[i];
    // Never blocks on a FIFO or device; regular files only; the validated inode when given.
    struct stat st;
    fds[i].fd = openRegular(name, "shard", "ESHARD_OPEN", &st, p.expect.empty() ? nullptr : &p.expect[i]);
    sts[i] = st;
    sizes[i] = uint64_t(st.st_size);
    const bool last = i + 1 == p.shards.size();
    if (!last && sizes[i] != p.shardSize)
      fail("ESHARD_SIZE", "shard " + name + " has " + std::to_string(sizes[i]) + " bytes, expected " +
                              std::to_string(p.shardSize));
    if (last && (sizes[i] == 0 || sizes[i] > p.shardSize || sizes[i] % p.entrySize != 0))
      fail("ESHARD_SIZE", "last shard " + name + " has " + std::to_string(sizes[i]) + " bytes, expected 1.." +
                              std::to_string(p.shardSize) + " and a multiple of entrySize " +
                              std::to_string(p.entrySize));
    sum += sizes[i];
  }
  if (sum != total || p.shards.size() != expectShards)
    fail("ESHARD_SIZE", "shards hold " + std::to_string(sum) + " bytes in " + std::to_string(p.shards.size()) +
                            " files, expected " + std::to_string(total) + " bytes (" + std::to_string(p.entries) +
                            " entries of " + std::to_string(p.entrySize) + ") in " + std::to_string(expectShards) +
                            " files; last shard " + p.shards.back() + " has " + std::to_string(sizes.back()) +
                            " bytes");

  if (p.memory == LaneMemory::Memory) {
    // One 2 MiB-aligned buffer so the kernels see a single segment.
    const size_t align = size_t(2) << 20;
    const size_t allocBytes = (total + align - 1) / align * align;
    void* raw = ::mmap(nullptr, allocBytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) fail("ENOMEM", "cannot allocate " + std::to_string(total) + " bytes for the lane");
    uint8_t* r = static_cast<uint8_t*>(raw);
    uint8_t* buf = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(r) + align - 1) & ~uintptr_t(align - 1));
    if (buf > r) ::munmap(r, size_t(buf - r));
    if (r + allocBytes + align > buf + allocBytes) ::munmap(buf + allocBytes, size_t(r + allocBytes + align - (buf + allocBytes)));
    lane->buffer_ = buf;
    lane->bufferBytes_ = allocBytes;
#ifdef MADV_HUGEPAGE
    ::madvise(buf, allocBytes, MADV_HUGEPAGE);  // fewer TLB misses for the kernels; best effort
#endif
    uint8_t* dst = buf;
    for (size_t i = 0; i < p.shards.size(); i++) {
      uint64_t off = 0;
      while (off < sizes[i]) {
        size_t want = size_t(std::min<uint64_t>(sizes[i] - off, uint64_t(1) << 30));
        ssize_t got = ::pread(fds[i].fd, dst + off, want, off_t(off));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
          fail("EIO", "read of shard " + p.shards[i] + " failed: " + (got < 0 ? sysErr(errno) : "unexpected EOF"));
        off += uint64_t(got);
      }
      dst += sizes[i];
    }
    lane->segs_.push_back({buf, 0, p.entries});
    lane->segEntries_ = p.entries;
  } else if (p.memory == LaneMemory::Cache) {
    std::vector<int> rawFds(p.shards.size());
    for (size_t i = 0; i < p.shards.size(); i++) rawFds[i] = fds[i].fd;
    lane->bufs_ = ShardCache::shared().acquire(p.shards, rawFds, sts, p.contentIds, p.shardSize);
    // Adjacent buffers of consecutive shards (a lane read into one region) form one segment.
    uint64_t first = 0;
    for (size_t i = 0; i < lane->bufs_.size(); i++) {
      const ShardCache::Buf& b = *lane->bufs_[i];
      const uint64_t count = b.bytes / p.entrySize;
      Segment* last = lane->segs_.empty() ? nullptr : &lane->segs_.back();
      if (last && last->data + last->count * p.entrySize == b.data && last->count * p.entrySize % p.shardSize == 0) {
        last->count += count;
      } else {
        lane->segs_.push_back({b.data, first, count});
      }
      first += count;
    }
    // Uneven segments (some coalesced) are found by binary search.
    const uint64_t step = lane->segs_[0].count;
    lane->segEntries_ = step;
    for (size_t i = 0; i < lane->segs_.size(); i++)
      if (lane->segs_[i].firstEntry != i * step || (i + 1 < lane->segs_.size() ? lane->segs_[i].count != step : lane->segs_[i].count > step))
        lane->evenSegments_ = false;
  } else {
    uint64_t first = 0;
    lane->maps_.reserve(p.shards.size());
    for (size_t i = 0; i < p.shards.size(); i++) {
      void* addr = ::mmap(nullptr, sizes[i], PROT_READ, MAP_SHARED, fds[i].fd, 0);
      if (addr == MAP_FAILED) fail("EMMAP", "mmap of shard " + p.shards[i] + " failed: " + sysErr(errno));
      lane->maps_.push_back({addr, size_t(sizes[i])});
      if (::madvise(addr, sizes[i], MADV_SEQUENTIAL) != 0)
        fail("EMMAP", "madvise of shard " + p.shards[i] + " failed: " + sysErr(errno));
      const uint64_t count = sizes[i] / p.entrySize;
      lane->segs_.push_back({static_cast<const uint8_t*>(addr), first, count});
      first += count;
    }
    // fds close here (Fd destructors); the mappings stay valid.
  }
  lane->heldBytes_ = total;
  lane->counted_ = true;
  gLanes.fetch_add(1);
  gBytes.fetch_add(total);
  return lane;
}

void warmLane(const Lane& lane) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  uint64_t sink = 0;
  for (const Segment& s : lane.segments()) {
    const uint64_t bytes = s.count * lane.entrySize();
    const volatile uint8_t* d = s.data;
    for (uint64_t off = 0; off < bytes; off += page) sink += d[off];
    if (bytes) sink += d[bytes - 1];
  }
  static std::atomic<uint64_t> keep{0};
  keep.fetch_add(sink, std::memory_order_relaxed);  // keeps the reads alive
}

namespace {
uint64_t sumBytes(const uint8_t* p, uint64_t n) {
  // Eight independent lanes so the compiler vectorizes and the loop is load-bound.
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  uint64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    // Same software prefetch distance as the answer kernels, so the two are
    // compared at the same (streaming) access pattern.
    __builtin_prefetch(p + i + 8192);
    for (int j = 0; j < 8; j++) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      acc[j] += v;
    }
  }
  uint64_t s = 0;
  for (; i < n; i++) s += p[i];
  for (int j = 0; j < 8; j++) s += acc[j];
  return s;
}
#if defined(__x86_64__)
// AVX2 flavour for x86 (wide loads, two prefetches per 128 bytes), so the
// bandwidth reference is not limited by the baseline-SSE2 loop.
__attribute__((target("avx2"))) uint64_t sumBytesAvx2(const uint8_t* p, uint64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  uint64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 8192), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 8192 + 64), _MM_HINT_T0);
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t s = t[0] + t[1] + t[2] + t[3];
  for (; i < n; i++) s += p[i];
  return s;
}
#endif

uint64_t sumLane(const uint8_t* p, uint64_t n) {
#if defined(__x86_64__)
  if (cpuInfo().avx2) return sumBytesAvx2(p, n);
#endif
  return sumBytes(p, n);
}

}  // namespace

double readBandwidth(const Lane& lane, unsigned threads, unsigned passes) {
  if (threads == 0) threads = 1;
  if (threads > lane.entries()) threads = unsigned(lane.entries());
  std::vector<uint64_t> sinks(threads * 8, 0);
  auto work = [&](unsigned t) {
    const uint64_t e0 = lane.entries() * t / threads, e1 = lane.entries() * (t + 1) / threads;
    uint64_t s = 0;
    for (unsigned pass = 0; pass < passes; pass++)
      lane.forEachRun(e0, e1, [&](const uint8_t* p, uint64_t, uint64_t n) { s += sumLane(p, n * lane.entrySize()); });
    sinks[t * 8] = s;
  };
  auto t0 = std::chrono::steady_clock::now();
  KernelPool::shared().run(threads, threads, work);
  auto t1 = std::chrono::steady_clock::now();
  static std::atomic<uint64_t> keep{0};
  for (uint64_t v : sinks) keep.fetch_add(v, std::memory_order_relaxed);
  return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace lanepir
