// The cluster's shared control segment: a small POSIX shared-memory region
// that the primary creates and every worker maps. It holds the published
// generation (written only by the primary) and one slot per worker (each
// written only by its worker). Every field is a lock-free 64-bit atomic, and
// each record is guarded by a seqlock so a reader never sees a torn record.
// The layout is fixed and versioned; docs/ARCHITECTURE.md describes it.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lanepir {

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free (address-free)");
static_assert(sizeof(std::atomic<uint64_t>) == 8, "atomic<uint64_t> must be a plain 64-bit word");

constexpr uint64_t kControlMagic = 0x0052495045'4E414CULL;  // "LANEPIR\0" little-endian
constexpr uint32_t kControlLayoutVersion = 2;
constexpr size_t kHeaderBytes = 4096;
constexpr size_t kSlotBytes = 4096;
constexpr size_t kDirWords = 64;  // 512 bytes of generation directory
constexpr size_t kIdWords = 4;    // generation id: up to 31 bytes, NUL-padded
// Held generations listed per worker: retain_generations (at most 64) + the
// current one + prepared ones, with room for requests still draining retired
// ones. A worker holding more says so in heldTotal (the list is then
// incomplete, and prune refuses to delete anything).
constexpr size_t kHeldMax = 100;
constexpr uint64_t kNone = ~uint64_t(0);

using AU64 = std::atomic<uint64_t>;

// Byte offsets are part of the documented layout (static_asserts below).
struct ControlHeader {
  AU64 magic;           // 0
  AU64 versionAndSlots; // 8: layout version (low 32 bits), slot count (high 32)
  AU64 sizes;           // 16: header bytes (low 32), slot bytes (high 32)
  AU64 primaryPid;      // 24
  AU64 createdMs;       // 32
  AU64 reserved[3];     // 40
  // Published generation (seqlock; odd seq = write in progress).
  AU64 pubSeq;          // 64
  AU64 pubCount;        // 72: number of publishes so far
  AU64 pubBlock;        // 80
  AU64 pubTimeMs;       // 88
  AU64 pubDirLen;       // 96
  AU64 pubId[kIdWords];    // 104 .. 136: generation id
  AU64 pubDir[kDirWords];  // 136 .. 648
};

struct HeldGeneration {
  AU64 id[kIdWords];
  AU64 inFlight;
};

struct WorkerSlot {
  AU64 seq;          // 0: seqlock
  AU64 pid;          // 8: 0 = free
  AU64 heartbeatMs;  // 16
  AU64 requests;     // 24: requests seen (monotonic)
  AU64 heldCount;    // 32: entries in held[] (<= kHeldMax)
  AU64 serving[kIdWords];         // 40 .. 72: generation served ("" = none)
  AU64 heldTotal;    // 72: generations the worker holds (> heldCount: held[] overflowed)
  AU64 reserved[2];  // 80 .. 96
  HeldGeneration held[kHeldMax];  // 96 .. 4096
};

static_assert(offsetof(ControlHeader, pubSeq) == 64, "layout");
static_assert(offsetof(ControlHeader, pubId) == 104, "layout");
static_assert(offsetof(ControlHeader, pubDir) == 136, "layout");
static_assert(sizeof(ControlHeader) <= kHeaderBytes, "layout");
static_assert(offsetof(WorkerSlot, serving) == 40, "layout");
static_assert(offsetof(WorkerSlot, heldTotal) == 72, "layout");
static_assert(offsetof(WorkerSlot, held) == 96, "layout");
static_assert(sizeof(HeldGeneration) == 40, "layout");
static_assert(sizeof(WorkerSlot) <= kSlotBytes, "layout");

struct Published {
  uint64_t count = 0, block = kNone, timeMs = 0;
  std::string id, dir;
};

struct SlotState {
  uint64_t pid = 0, heartbeatMs = 0, requests = 0;
  // How many generations the worker holds; at least held.size() (only the first kHeldMax are listed).
  uint64_t heldTotal = 0;
  std::string serving;  // "" = none
  std::vector<std::pair<std::string, uint64_t>> held;  // (generation, in-flight)
};

class ControlSegment {
 public:
  // Creates the segment (the primary). A stale segment whose primary is dead
  // is replaced; one whose primary is alive is an error (ESEGMENT_BUSY).
  static ControlSegment* create(const std::string& name, uint32_t slots);
  // Maps an existing segment (workers, inspection tools).
  static ControlSegment* open(const std::string& name);
  ~ControlSegment();

  const std::string& name() const { return name_; }
  uint32_t slots() const { return slots_; }
  uint64_t primaryPid() const;

  void publish(const std::string& id, uint64_t block, const std::string& dir);
  Published readPublished() const;
  // Cheap: one atomic load (changes on every publish).
  uint64_t publishCount() const;

  void writeSlot(uint32_t index, const SlotState& s);
  SlotState readSlot(uint32_t index) const;
  void clearSlot(uint32_t index);

  void unlink();  // remove the name (primary, at exit)
  void close();   // unmap

 private:
  ControlSegment(std::string name, void* base, size_t bytes, uint32_t slots);
  ControlHeader* header() const { return static_cast<ControlHeader*>(base_); }
  WorkerSlot* slot(uint32_t i) const;

  std::string name_;
  void* base_;
  size_t bytes_;
  uint32_t slots_;
};

}  // namespace lanepir
