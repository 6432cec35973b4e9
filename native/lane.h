// Lane memory: the entries of one lane, either mmap'ed shard files or one
// in-process buffer. Owned through std::shared_ptr: the JS handle holds one
// reference and every running kernel call holds its own, so the memory is
// unmapped/freed exactly when the last user is done (never on GC timing).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "files.h"
#include "shard_cache.h"

namespace lanepir {

// Where a lane's bytes live:
//  Mmap   - one read-only mapping per shard file (page cache, 4 KiB pages);
//  Memory - one 2 MiB-aligned huge-page buffer, read whole per generation;
//  Cache  - shard buffers in huge-page memory from the ShardCache, shared with
//           every other lane (generation) that has the same shard files.
enum class LaneMemory { Mmap = 0, Memory = 1, Cache = 2 };

struct LaneParams {
  std::vector<std::string> shards;
  uint64_t entrySize = 0;
  uint64_t entries = 0;
  uint64_t shardSize = 0;
  uint64_t m = 0;
  LaneMemory memory = LaneMemory::Mmap;
  // Cache mode: the manifest's sha256 of each shard (or empty): a cached
  // buffer is reused only for the same file identity and the same checksum.
  std::vector<std::string> contentIds;
  // When given (one per shard): each shard must be exactly this file, the one
  // the caller validated; otherwise EFILE_CHANGED.
  std::vector<FileIdentity> expect;
};

const char* laneMemoryName(LaneMemory m);

// A contiguous piece of lane memory holding whole entries.
struct Segment {
  const uint8_t* data;
  uint64_t firstEntry;
  uint64_t count;  // entries in this segment
};

class Lane {
 public:
  // Validates, opens and maps/reads the shards. Throws NativeError.
  static std::shared_ptr<Lane> open(const LaneParams& p);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  uint64_t entrySize() const { return es_; }
  uint64_t entries() const { return entries_; }
  uint64_t m() const { return m_; }
  uint64_t rows() const { return (entries_ + m_ - 1) / m_; }
  uint64_t bytes() const { return entries_ * es_; }
  LaneMemory memory() const { return memory_; }
  const std::vector<Segment>& segments() const { return segs_; }

  // Segment holding entry e (e < entries).
  const Segment& segmentOf(uint64_t e) const {
    if (evenSegments_) return segs_[size_t(e / segEntries_)];
    size_t lo = 0, hi = segs_.size();  // last segment with firstEntry <= e
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      if (segs_[mid].firstEntry <= e) lo = mid;
      else hi = mid;
    }
    return segs_[lo];
  }
  const uint8_t* entryPtr(uint64_t e) const {
    const Segment& s = segmentOf(e);
    return s.data + (e - s.firstEntry) * es_;
  }
  // Calls f(ptr, firstEntry, count) for each maximal run of entries of
  // [e0, e1) that is contiguous in memory (one segment).
  template <class F>
  void forEachRun(uint64_t e0, uint64_t e1, F&& f) const {
    while (e0 < e1) {
      const Segment& s = segmentOf(e0);
      uint64_t end = s.firstEntry + s.count;
      if (end > e1) end = e1;
      f(s.data + (e0 - s.firstEntry) * es_, e0, end - e0);
      e0 = end;
    }
  }

 private:
  Lane() = default;
  uint64_t es_ = 0, entries_ = 0, m_ = 0;
  uint64_t segEntries_ = 1;  // entries per segment (all but the last)
  LaneMemory memory_ = LaneMemory::Mmap;
  std::vector<Segment> segs_;
  // Segments are found by entry / segEntries_ unless they are uneven (cache
  // mode coalesces adjacent shard buffers): then by binary search.
  bool evenSegments_ = true;
  // What must be undone in the destructor.
  std::vector<std::pair<void*, size_t>> maps_;
  void* buffer_ = nullptr;
  size_t bufferBytes_ = 0;
  std::vector<ShardCache::Ref> bufs_;
  uint64_t heldBytes_ = 0;
  bool counted_ = false;
};

struct MappingStatsValue {
  uint64_t lanes;
  uint64_t bytes;
};
MappingStatsValue mappingStats();

// Touch every page of the lane once (pre-fault).
void warmLane(const Lane& lane);
// Read all lane bytes with `threads` threads, `passes` times; returns seconds.
double readBandwidth(const Lane& lane, unsigned threads, unsigned passes);

}  // namespace lanepir
