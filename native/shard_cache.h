// The shard cache: lane memory held once per process, in anonymous memory
// the kernel can back with transparent huge pages, shared by every
// generation that contains the same shard file.
//
// Why: a mapped shard lives in the page cache in 4 KiB pages (shmem and file
// THP are usually off), and the kernels lose 20-30% to TLB misses on large
// lanes. Reading a lane into one huge-page buffer (in-memory mode) is fast to
// scan but costs a whole-lane read and a whole-lane copy per generation. An
// incremental generation hard-links every unchanged shard to its parent, so
// keying shard buffers by file identity (device, inode, size, mtime, and the
// manifest's sha256 when given) lets a new generation reuse its parent's
// buffers and read only the shards that changed.
//
// Buffers are slots of equal size carved from regions: 2 MiB-aligned
// anonymous mappings advised MADV_HUGEPAGE. A fresh lane gets one region, so
// its shards are contiguous and the kernels see long runs; later shards take
// free slots first (lowest address first), so memory stays bounded by the
// shards alive. A region is unmapped when its last slot is freed.
#pragma once
#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lanepir {

class ShardCache {
 public:
  // One shard's bytes. Immutable once published; freed (slot returned) when
  // the last lane holding it is gone.
  struct Buf {
    const uint8_t* data = nullptr;
    uint64_t bytes = 0;
    ~Buf();
    void* pool = nullptr;  // the slot pool it came from
    void* slot = nullptr;
  };
  using Ref = std::shared_ptr<const Buf>;

  struct Stats {
    uint64_t regions = 0;      // mappings held
    uint64_t regionBytes = 0;  // bytes mapped (slots in use or free)
    uint64_t shards = 0;       // shard buffers alive
    uint64_t liveBytes = 0;    // bytes of shard data alive
    uint64_t hits = 0;         // shards reused from the cache (total)
    uint64_t misses = 0;       // shards read from their files (total)
    uint64_t readBytes = 0;    // bytes read from files (total)
  };

  static ShardCache& shared();

  // Buffers for the given open shards (fds[i] with stat sts[i], all regular
  // files): cached ones are reused, the others are read (in parallel) into
  // fresh slots of `slotBytes` (>= every shard's size). contentIds[i], when
  // non-empty, must also match for a cached buffer to be reused (the
  // manifest's sha256: a reused inode number can never alias another file's
  // bytes). Throws NativeError (EIO, ENOMEM); nothing is cached then.
  std::vector<Ref> acquire(const std::vector<std::string>& names, const std::vector<int>& fds,
                           const std::vector<struct stat>& sts, const std::vector<std::string>& contentIds,
                           uint64_t slotBytes);

  Stats stats() const;

 private:
  ShardCache() = default;
};

}  // namespace lanepir
