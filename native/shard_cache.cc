#include "shard_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "errors.h"
#include "threads.h"

namespace lanepir {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

int64_t mtimeNs(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec); }

struct Region {
  uint8_t* base;
  size_t bytes;
  size_t live = 0;  // slots in use
};

struct SlotPool {
  uint64_t slotBytes;
  std::map<uint8_t*, Region> regions;  // by base address
  std::set<uint8_t*> free;             // free slots, lowest address first
};

struct Key {
  uint64_t dev, ino;
  bool operator==(const Key& o) const { return dev == o.dev && ino == o.ino; }
};
struct KeyHash {
  size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.ino * 0x9E3779B97F4A7C15ull ^ k.dev); }
};

struct Entry {
  std::weak_ptr<const ShardCache::Buf> buf;
  uint64_t size;
  int64_t mtimeNs;
  std::string contentId;
};

struct State {
  std::mutex mu;
  std::unordered_map<Key, Entry, KeyHash> entries;
  std::map<uint64_t, SlotPool> pools;  // by slot size
  uint64_t shards = 0, liveBytes = 0;
  std::atomic<uint64_t> hits{0}, misses{0}, readBytes{0};
};

State& state() {
  static State* s = new State();  // never destroyed: buffers may outlive static destruction order
  return *s;
}

// A 2 MiB-aligned anonymous mapping advised for huge pages (best effort).
uint8_t* mapRegion(size_t bytes) {
  const size_t want = bytes + kHugePage;
  void* p = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("ENOMEM", "cannot map " + std::to_string(bytes) + " bytes of lane memory: " + std::strerror(errno));
  uint8_t* raw = static_cast<uint8_t*>(p);
  uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~uintptr_t(kHugePage - 1));
  if (base > raw) ::munmap(raw, size_t(base - raw));
  const size_t tail = size_t(raw + want - (base + bytes));
  if (tail) ::munmap(base + bytes, tail);
#ifdef MADV_HUGEPAGE
  ::madvise(base, bytes, MADV_HUGEPAGE);
#endif
  return base;
}

// Under the state lock: `count` slots of pool `sp`, free ones first (lowest address first), then one new region.
std::vector<uint8_t*> takeSlots(SlotPool& sp, size_t count) {
  std::vector<uint8_t*> out;
  out.reserve(count);
  while (out.size() < count && !sp.free.empty()) {
    out.push_back(*sp.free.begin());
    sp.free.erase(sp.free.begin());
  }
  const size_t need = count - out.size();
  if (need) {
    const size_t bytes = (need * sp.slotBytes + kHugePage - 1) / kHugePage * kHugePage;
    uint8_t* base = mapRegion(bytes);
    sp.regions.emplace(base, Region{base, bytes});
    const size_t slots = bytes / sp.slotBytes;
    for (size_t i = 0; i < slots; i++) {
      if (i < need) out.push_back(base + i * sp.slotBytes);
      else sp.free.insert(base + i * sp.slotBytes);
    }
  }
  for (uint8_t* s : out) {
    auto it = std::prev(sp.regions.upper_bound(s));
    it->second.live++;
  }
  return out;
}

// Under the state lock: returns a slot; unmaps its region when it was the last one in use.
void giveSlot(SlotPool& sp, uint8_t* slot) {
  auto it = std::prev(sp.regions.upper_bound(slot));
  Region& r = it->second;
  sp.free.insert(slot);
  if (--r.live > 0) return;
  sp.free.erase(sp.free.lower_bound(r.base), sp.free.lower_bound(r.base + r.bytes));
  ::munmap(r.base, r.bytes);
  sp.regions.erase(it);
}

struct Fill {
  size_t index;  // into the caller's arrays
  std::shared_ptr<ShardCache::Buf> buf;
};

void readShard(const std::string& name, int fd, const struct stat& st, uint8_t* dst) {
  const uint64_t size = uint64_t(st.st_size);
  uint64_t off = 0;
  while (off < size) {
    const size_t want = size_t(std::min<uint64_t>(size - off, uint64_t(1) << 30));
    const ssize_t got = ::pread(fd, dst + off, want, off_t(off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("EIO", "read of shard " + name + " failed: " + std::strerror(errno));
    if (got == 0) fail("EIO", "shard " + name + " became shorter while it was read");
    off += uint64_t(got);
  }
  struct stat after;
  if (::fstat(fd, &after) != 0) fail("EIO", "cannot stat shard " + name + ": " + std::strerror(errno));
  if (after.st_size != st.st_size || mtimeNs(after) != mtimeNs(st))
    fail("EIO", "shard " + name + " changed while it was read (generations are immutable: never write into a served one)");
}

}  // namespace

ShardCache& ShardCache::shared() {
  static ShardCache* c = new ShardCache();
  return *c;
}

ShardCache::Buf::~Buf() {
  if (!slot) return;
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  s.shards--;
  s.liveBytes -= bytes;
  giveSlot(*static_cast<SlotPool*>(pool), static_cast<uint8_t*>(slot));
}

std::vector<ShardCache::Ref> ShardCache::acquire(const std::vector<std::string>& names, const std::vector<int>& fds,
                                                 const std::vector<struct stat>& sts,
                                                 const std::vector<std::string>& contentIds, uint64_t slotBytes) {
  const size_t n = fds.size();
  if (sts.size() != n || names.size() != n || (!contentIds.empty() && contentIds.size() != n))
    fail("EPARAMS", "shard cache: one name, fd, stat (and content id) per shard");
  slotBytes = (slotBytes + 63) / 64 * 64;
  State& s = state();
  std::vector<Ref> out(n);
  std::vector<Fill> fills;
  std::vector<Ref> dropLater;  // references released outside the lock (a last one frees a slot, which locks)
  {
    std::lock_guard<std::mutex> lk(s.mu);
    for (size_t i = 0; i < n; i++) {
      if (uint64_t(sts[i].st_size) > slotBytes) fail("EPARAMS", "shard " + names[i] + " is larger than its slot");
      auto it = s.entries.find(Key{uint64_t(sts[i].st_dev), uint64_t(sts[i].st_ino)});
      if (it == s.entries.end()) continue;
      Ref r = it->second.buf.lock();
      const std::string& id = contentIds.empty() ? std::string() : contentIds[i];
      if (r && it->second.size == uint64_t(sts[i].st_size) && it->second.mtimeNs == mtimeNs(sts[i]) &&
          it->second.contentId == id && r->bytes == uint64_t(sts[i].st_size)) {
        out[i] = std::move(r);
      } else if (r) {
        dropLater.push_back(std::move(r));
      }
    }
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) missing += out[i] ? 0 : 1;
    if (missing) {
      SlotPool& sp = s.pools.try_emplace(slotBytes, SlotPool{slotBytes, {}, {}}).first->second;
      std::vector<uint8_t*> slots = takeSlots(sp, missing);
      size_t k = 0;
      for (size_t i = 0; i < n; i++) {
        if (out[i]) continue;
        auto b = std::make_shared<Buf>();
        b->data = slots[k];
        b->bytes = uint64_t(sts[i].st_size);
        b->pool = &sp;
        b->slot = slots[k];
        k++;
        s.shards++;
        s.liveBytes += b->bytes;
        fills.push_back({i, std::move(b)});
      }
    }
  }
  dropLater.clear();
  s.hits.fetch_add(n - fills.size(), std::memory_order_relaxed);
  if (fills.empty()) return out;

  // Read the changed shards (page cache to memory is CPU-bound: a few threads).
  std::atomic<size_t> next{0};
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = unsigned(std::min<size_t>({fills.size(), size_t(hw), size_t(4)}));
  parallelRun(threads, [&](unsigned) {
    for (size_t f; (f = next.fetch_add(1)) < fills.size();) {
      const size_t i = fills[f].index;
      readShard(names[i], fds[i], sts[i], static_cast<uint8_t*>(fills[f].buf->slot));
    }
  });  // a failure throws here; the fresh buffers return their slots as `fills` unwinds

  uint64_t bytes = 0;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    for (Fill& f : fills) {
      const size_t i = f.index;
      bytes += f.buf->bytes;
      s.entries[Key{uint64_t(sts[i].st_dev), uint64_t(sts[i].st_ino)}] =
          Entry{f.buf, uint64_t(sts[i].st_size), mtimeNs(sts[i]), contentIds.empty() ? std::string() : contentIds[i]};
      out[i] = std::move(f.buf);
    }
    // Forget entries whose buffers are gone (bounded by the shards ever cached at once).
    if (s.entries.size() > 2 * s.shards + 1024)
      for (auto it = s.entries.begin(); it != s.entries.end();)
        it = it->second.buf.expired() ? s.entries.erase(it) : std::next(it);
  }
  s.misses.fetch_add(fills.size(), std::memory_order_relaxed);
  s.readBytes.fetch_add(bytes, std::memory_order_relaxed);
  return out;
}

ShardCache::Stats ShardCache::stats() const {
  State& s = state();
  Stats st;
  std::lock_guard<std::mutex> lk(s.mu);
  for (const auto& p : s.pools) {
    st.regions += p.second.regions.size();
    for (const auto& r : p.second.regions) st.regionBytes += r.second.bytes;
  }
  st.shards = s.shards;
  st.liveBytes = s.liveBytes;
  st.hits = s.hits.load();
  st.misses = s.misses.load();
  st.readBytes = s.readBytes.load();
  return st;
}

}  // namespace lanepir
