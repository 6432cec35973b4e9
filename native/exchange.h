// The query exchange: shared memory through which servers (cluster workers,
// or a single process) hand queries to the kernel executor and get answers
// back, with no copy on either side. docs/ARCHITECTURE.md describes the
// layout; the byte offsets below are part of it.
//
//   header (4096 B): identity, sizes, the executor's pid/epoch/state, and one
//                    doorbell per lane (a futex word the executor sleeps on)
//   region i (one per worker slot), regionBytes each:
//     region header (4096 B): owner pid, incarnation, the completion futex
//                    word its waiter thread sleeps on, queries in the kernel
//                    per lane (back-pressure)
//     descriptors:   `descriptors` x 128 B, one per request in flight (1..16
//                    queries back to back, answered in the same pass)
//     data:          `dataBytes` for query and answer areas (the worker
//                    allocates them; the executor only reads queries and
//                    writes answers inside this region, bounds-checked)
//
// A descriptor moves FREE -> QUEUED (worker) -> TAKEN (executor, CAS) ->
// DONE (executor: answer written) -> DELIVERED (the worker's waiter thread,
// CAS) -> FREE (the worker, when the response is sent). A QUEUED descriptor
// can be cancelled (CAS back to FREE). Each state store is a release, each
// load an acquire: a descriptor's fields and areas are written before the
// state that hands them over. Every field is a lock-free 64-bit atomic
// (address-free across processes); futex words are 32-bit atomics woken with
// shared (non-private) futex calls.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lanepir {

constexpr uint64_t kExchangeMagic = 0x000047484358504CULL;  // "LPXCHG\0\0" little-endian
constexpr uint32_t kExchangeVersion = 1;
constexpr size_t kXHeaderBytes = 4096;
constexpr size_t kRegionHeaderBytes = 4096;
constexpr size_t kDescBytes = 128;
constexpr int kExchangeLanes = 2;  // 0 = hot, 1 = cold
constexpr size_t kGenWords = 4;    // generation id: up to 31 bytes, NUL-padded

enum DescState : uint64_t { kFree = 0, kQueued = 1, kTaken = 2, kDone = 3, kDelivered = 4 };

// Result codes (a descriptor's `result`); names in resultName().
enum DescResult : uint64_t {
  kOk = 0,
  kGenerationGone = 1,  // the executor does not hold the generation
  kQuerySize = 2,       // areas do not fit the lane's shape
  kExecutorLost = 3,    // the executor died during the pass
  kKernelFailed = 4,    // the kernel threw
  kBadDescriptor = 5,   // areas outside the region, bad lane
};
const char* resultName(uint64_t r);

using XU64 = std::atomic<uint64_t>;
using XU32 = std::atomic<uint32_t>;

struct alignas(64) LaneBell {
  XU32 seq;       // bumped by every submit to the lane (futex word)
  XU32 sleepers;  // the lane's executor thread sleeps (or is about to)
  XU64 passes;    // passes run (stats)
  XU64 answered;  // queries answered (stats)
};

struct XHeader {
  XU64 magic;           // 0
  XU64 versionWorkers;  // 8: version (low 32), regions (high 32)
  XU64 regionBytes;     // 16
  XU64 descriptors;     // 24: per region
  XU64 dataBytes;       // 32: per region
  XU64 dataOffset;      // 40: from the region start
  XU64 primaryPid;      // 48
  XU64 executorPid;     // 56
  XU64 executorEpoch;   // 64: bumped at every executor start
  XU64 executorState;   // 72: 0 none, 1 starting, 2 serving, 3 stopped
  XU64 executorBeatMs;  // 80: heartbeat (Unix ms)
  XU64 reserved[21];    // 88 .. 256
  LaneBell bells[kExchangeLanes];  // 256 .. 384
};

struct RegionHeader {
  XU64 pid;          // 0: owner (0 = free)
  XU64 incarnation;  // 8: bumped whenever the region is reset
  XU32 doneSeq;      // 16: bumped after the executor finishes descriptors here (futex word)
  XU32 waiting;      // 20: the owner's waiter thread sleeps (or is about to)
  XU64 inKernel[kExchangeLanes];  // 24: queries in descriptors QUEUED or TAKEN, per lane
  XU64 submitted;    // 40 (stats)
  XU64 completed;    // 48 (stats)
  XU64 ticket;       // 56: last submit ticket
};

struct Desc {
  XU64 state;        // 0
  XU64 lane;         // 8: lane (low 32 bits) | queries in this descriptor (high 32, 1..16)
  XU64 gen[kGenWords];  // 16 .. 48
  XU64 queryOff;     // 48: from the data area start
  XU64 queryBytes;   // 56
  XU64 answerOff;    // 64
  XU64 answerBytes;  // 72
  XU64 submitNs;     // 80: CLOCK_MONOTONIC (shared by all processes on the machine)
  XU64 ticket;       // 88: submit order within the region
  XU64 result;       // 96
  XU64 batch;        // 104: queries in its pass (low 32) | executor epoch (high 32)
  XU64 passNs;       // 112: pass duration
  XU64 reserved;     // 120
};

static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free, "lock-free atomics");
static_assert(sizeof(Desc) == kDescBytes, "layout");
static_assert(offsetof(XHeader, bells) == 256, "layout");
static_assert(sizeof(XHeader) <= kXHeaderBytes, "layout");
static_assert(sizeof(RegionHeader) <= kRegionHeaderBytes, "layout");

// Futex helpers on shared memory (cross-process: no FUTEX_PRIVATE_FLAG).
// Waits while *word == expected, at most timeoutNs (< 0: no limit).
void futexWait(XU32* word, uint32_t expected, int64_t timeoutNs);
void futexWakeAll(XU32* word);

uint64_t monotonicNs();
uint64_t unixMs();

void storeGen(XU64 (&words)[kGenWords], const std::string& id);
std::string loadGen(const XU64 (&words)[kGenWords]);

// A mapped exchange. Shared memory (by name) for a cluster; anonymous for a
// single process, where the executor and the one region live in one process.
class Exchange {
 public:
  // The primary (or a single process, name == ""): creates and zero-fills it,
  // reserving the memory (posix_fallocate) so that running out of /dev/shm
  // is an error now, never a SIGBUS later.
  static Exchange* create(const std::string& name, uint32_t regions, uint32_t descriptors, uint64_t dataBytes);
  static Exchange* open(const std::string& name);
  ~Exchange();

  const std::string& name() const { return name_; }
  XHeader* header() const { return static_cast<XHeader*>(base_); }
  uint32_t regions() const { return regions_; }
  uint32_t descriptors() const { return descriptors_; }
  uint64_t dataBytes() const { return dataBytes_; }
  RegionHeader* region(uint32_t i) const;
  Desc* desc(uint32_t region, uint32_t d) const;
  uint8_t* data(uint32_t region) const;

  // Primary, when worker slot i exits: queued queries are dropped, finished
  // ones freed; queries in a pass finish there and are freed by the next
  // owner. Bumps the incarnation; the back-pressure counts go to 0.
  void resetRegion(uint32_t i);
  // When the executor is gone: every TAKEN descriptor becomes DONE with
  // kExecutorLost and its owner is woken. Returns how many.
  uint64_t failTaken();
  // A new owner of region i: waits (up to timeoutMs) for queries of a former
  // owner that are still in a pass, then frees everything. False on timeout.
  bool claimRegion(uint32_t i, uint64_t pid, uint64_t timeoutMs);

  void unlink();

 private:
  Exchange(std::string name, void* base, size_t bytes);
  std::string name_;
  void* base_;
  size_t bytes_;
  uint32_t regions_ = 0, descriptors_ = 0;
  uint64_t regionBytes_ = 0, dataBytes_ = 0, dataOffset_ = 0;
};

}  // namespace lanepir

namespace lanepir {
// The lane and query count packed in a descriptor's lane word.
inline uint64_t packLane(int lane, uint32_t count) { return uint64_t(uint32_t(lane)) | (uint64_t(count) << 32); }
inline int descLane(uint64_t w) { return int(uint32_t(w)); }
inline uint32_t descCount(uint64_t w) { return uint32_t(w >> 32); }
}  // namespace lanepir
