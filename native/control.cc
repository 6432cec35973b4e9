#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "errors.h"

namespace lanepir {

namespace {

uint64_t nowMs() {
  using namespace std::chrono;
  return uint64_t(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

size_t segmentBytes(uint32_t slots) { return kHeaderBytes + size_t(slots) * kSlotBytes; }

std::string sysMsg(const std::string& what) { return what + ": " + std::strerror(errno); }

void checkName(const std::string& name) {
  if (name.size() < 2 || name[0] != '/' || name.size() > 200 || name.find('/', 1) != std::string::npos)
    fail("EPARAMS", "segment name must be '/' followed by up to 199 characters without '/': " + name);
}

bool processAlive(uint64_t pid) {
  if (pid == 0 || pid > uint64_t(INT32_MAX)) return false;
  return ::kill(pid_t(pid), 0) == 0 || errno == EPERM;
}

// Seqlock writer: the single writer makes seq odd, writes, makes it even. A
// writer killed mid-write leaves seq odd; the next writer (the primary
// clearing a dead worker's slot) steps past it to the next odd value.
uint64_t beginWrite(AU64& seq) {
  const uint64_t s = seq.load(std::memory_order_relaxed);
  const uint64_t odd = (s & 1) ? s + 2 : s + 1;
  seq.store(odd, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  return odd;
}
void endWrite(AU64& seq, uint64_t odd) { seq.store(odd + 1, std::memory_order_release); }

// Runs read() until it saw a stable, even sequence number around it. Bounded:
// a record left odd by a dead writer is reported instead of spun on forever.
template <typename F>
void readConsistent(const AU64& seq, F read) {
  // A write takes well under a microsecond; a record odd for this long has a dead writer.
  for (int attempt = 0; attempt < 20000; attempt++) {
    uint64_t s1 = seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      if (attempt > 100) std::this_thread::yield();
      continue;
    }
    read();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq.load(std::memory_order_relaxed) == s1) return;
  }
  fail("ESEGMENT_TORN", "a control segment record stayed mid-write (its writer died); it is cleared on the next write");
}

// Strings are stored NUL-padded in 64-bit words so every byte is read and
// written through the same lock-free atomics as the numbers.
template <size_t N>
void storeString(AU64 (&words)[N], const std::string& s) {
  uint64_t tmp[N] = {};
  std::memcpy(tmp, s.data(), s.size() < N * 8 ? s.size() : N * 8);
  for (size_t i = 0; i < N; i++) words[i].store(tmp[i], std::memory_order_relaxed);
}

template <size_t N>
std::string loadString(const AU64 (&words)[N], size_t len = N * 8) {
  uint64_t tmp[N];
  for (size_t i = 0; i < N; i++) tmp[i] = words[i].load(std::memory_order_relaxed);
  const char* c = reinterpret_cast<const char*>(tmp);
  if (len > N * 8) len = N * 8;
  return std::string(c, strnlen(c, len));
}

void checkId(const std::string& id) {
  if (id.size() >= kIdWords * 8) fail("EPARAMS", "generation id is longer than 31 bytes: " + id);
}

void* mapFd(int fd, size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail("EMMAP", sysMsg("mmap of control segment"));
  return p;
}

}  // namespace

ControlSegment::ControlSegment(std::string name, void* base, size_t bytes, uint32_t slots)
    : name_(std::move(name)), base_(base), bytes_(bytes), slots_(slots) {}

ControlSegment::~ControlSegment() { close(); }

ControlSegment* ControlSegment::create(const std::string& name, uint32_t slots) {
  checkName(name);
  if (slots < 1 || slots > 1024) fail("EPARAMS", "slots must be in [1, 1024]");
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 && errno == EEXIST) {
    // A segment of that name exists: replace it only if its primary is gone.
    int old = ::shm_open(name.c_str(), O_RDONLY, 0);
    uint64_t pid = 0;
    if (old >= 0) {
      struct stat st;
      if (::fstat(old, &st) == 0 && size_t(st.st_size) >= kHeaderBytes) {
        void* p = ::mmap(nullptr, kHeaderBytes, PROT_READ, MAP_SHARED, old, 0);
        if (p != MAP_FAILED) {
          auto* h = static_cast<ControlHeader*>(p);
          if (h->magic.load() == kControlMagic) pid = h->primaryPid.load();
          ::munmap(p, kHeaderBytes);
        }
      }
      ::close(old);
    }
    if (processAlive(pid) && pid != uint64_t(::getpid()))
      fail("ESEGMENT_BUSY", "control segment " + name + " belongs to a running server (pid " + std::to_string(pid) + ")");
    ::shm_unlink(name.c_str());
    fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  }
  if (fd < 0) fail("ESEGMENT", sysMsg("shm_open " + name));
  const size_t bytes = segmentBytes(slots);
  if (::ftruncate(fd, off_t(bytes)) != 0) {
    int e = errno;
    ::close(fd);
    ::shm_unlink(name.c_str());
    errno = e;
    fail("ESEGMENT", sysMsg("ftruncate " + name));
  }
  void* base;
  try {
    base = mapFd(fd, bytes);
  } catch (...) {
    ::close(fd);
    ::shm_unlink(name.c_str());
    throw;
  }
  ::close(fd);
  // ftruncate zero-filled the segment: every atomic starts at 0.
  auto* h = static_cast<ControlHeader*>(base);
  h->versionAndSlots.store(uint64_t(kControlLayoutVersion) | (uint64_t(slots) << 32));
  h->sizes.store(uint64_t(kHeaderBytes) | (uint64_t(kSlotBytes) << 32));
  h->primaryPid.store(uint64_t(::getpid()));
  h->createdMs.store(nowMs());
  h->pubBlock.store(kNone);
  auto* seg = new ControlSegment(name, base, bytes, slots);
  // Magic last: a reader that sees it sees an initialised header.
  h->magic.store(kControlMagic, std::memory_order_release);
  return seg;
}

ControlSegment* ControlSegment::open(const std::string& name) {
  checkName(name);
  int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) fail(errno == ENOENT ? "ENOSEGMENT" : "ESEGMENT", sysMsg("shm_open " + name));
  struct stat st;
  if (::fstat(fd, &st) != 0 || size_t(st.st_size) < kHeaderBytes) {
    ::close(fd);
    fail("ESEGMENT", "control segment " + name + " is too small");
  }
  void* base;
  try {
    base = mapFd(fd, size_t(st.st_size));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  auto* h = static_cast<ControlHeader*>(base);
  const uint64_t vs = h->versionAndSlots.load();
  const uint32_t version = uint32_t(vs), slots = uint32_t(vs >> 32);
  if (h->magic.load(std::memory_order_acquire) != kControlMagic || version != kControlLayoutVersion ||
      segmentBytes(slots) > size_t(st.st_size)) {
    ::munmap(base, size_t(st.st_size));
    fail("ESEGMENT", "control segment " + name + " has an unknown layout (magic/version " + std::to_string(version) + ")");
  }
  return new ControlSegment(name, base, size_t(st.st_size), slots);
}

WorkerSlot* ControlSegment::slot(uint32_t i) const {
  if (!base_) fail("ESEGMENT", "control segment is closed");
  if (i >= slots_) fail("EPARAMS", "slot " + std::to_string(i) + " out of range (" + std::to_string(slots_) + " slots)");
  return reinterpret_cast<WorkerSlot*>(static_cast<char*>(base_) + kHeaderBytes + size_t(i) * kSlotBytes);
}

uint64_t ControlSegment::primaryPid() const {
  if (!base_) fail("ESEGMENT", "control segment is closed");
  return header()->primaryPid.load();
}

void ControlSegment::publish(const std::string& id, uint64_t block, const std::string& dir) {
  if (!base_) fail("ESEGMENT", "control segment is closed");
  checkId(id);
  if (dir.size() > kDirWords * 8) fail("EPARAMS", "generation directory path is longer than 512 bytes");
  ControlHeader* h = header();
  const uint64_t odd = beginWrite(h->pubSeq);
  storeString(h->pubId, id);
  h->pubBlock.store(block, std::memory_order_relaxed);
  h->pubTimeMs.store(nowMs(), std::memory_order_relaxed);
  h->pubDirLen.store(dir.size(), std::memory_order_relaxed);
  storeString(h->pubDir, dir);
  h->pubCount.store(h->pubCount.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  endWrite(h->pubSeq, odd);
}

Published ControlSegment::readPublished() const {
  if (!base_) fail("ESEGMENT", "control segment is closed");
  const ControlHeader* h = header();
  Published p;
  readConsistent(h->pubSeq, [&] {
    p.count = h->pubCount.load(std::memory_order_relaxed);
    p.block = h->pubBlock.load(std::memory_order_relaxed);
    p.timeMs = h->pubTimeMs.load(std::memory_order_relaxed);
    p.id = loadString(h->pubId);
    p.dir = loadString(h->pubDir, size_t(h->pubDirLen.load(std::memory_order_relaxed)));
  });
  return p;
}

uint64_t ControlSegment::publishCount() const {
  if (!base_) fail("ESEGMENT", "control segment is closed");
  return header()->pubCount.load(std::memory_order_acquire);
}

void ControlSegment::writeSlot(uint32_t index, const SlotState& s) {
  WorkerSlot* w = slot(index);
  checkId(s.serving);
  for (const auto& h : s.held) checkId(h.first);
  const size_t n = s.held.size() < kHeldMax ? s.held.size() : kHeldMax;
  const uint64_t odd = beginWrite(w->seq);
  w->pid.store(s.pid, std::memory_order_relaxed);
  w->heartbeatMs.store(s.heartbeatMs ? s.heartbeatMs : nowMs(), std::memory_order_relaxed);
  w->requests.store(s.requests, std::memory_order_relaxed);
  storeString(w->serving, s.serving);
  w->heldCount.store(n, std::memory_order_relaxed);
  w->heldTotal.store(s.heldTotal > s.held.size() ? s.heldTotal : s.held.size(), std::memory_order_relaxed);
  for (size_t i = 0; i < kHeldMax; i++) {
    storeString(w->held[i].id, i < n ? s.held[i].first : std::string());
    w->held[i].inFlight.store(i < n ? s.held[i].second : 0, std::memory_order_relaxed);
  }
  endWrite(w->seq, odd);
}

SlotState ControlSegment::readSlot(uint32_t index) const {
  const WorkerSlot* w = slot(index);
  SlotState s;
  readConsistent(w->seq, [&] {
    s.pid = w->pid.load(std::memory_order_relaxed);
    s.heartbeatMs = w->heartbeatMs.load(std::memory_order_relaxed);
    s.requests = w->requests.load(std::memory_order_relaxed);
    s.serving = loadString(w->serving);
    uint64_t n = w->heldCount.load(std::memory_order_relaxed);
    if (n > kHeldMax) n = kHeldMax;
    s.heldTotal = w->heldTotal.load(std::memory_order_relaxed);
    if (s.heldTotal < n) s.heldTotal = n;
    s.held.clear();
    for (uint64_t i = 0; i < n; i++) s.held.emplace_back(loadString(w->held[i].id), w->held[i].inFlight.load(std::memory_order_relaxed));
  });
  return s;
}

void ControlSegment::clearSlot(uint32_t index) {
  SlotState empty;
  empty.heartbeatMs = 1;
  writeSlot(index, empty);
}

void ControlSegment::unlink() { ::shm_unlink(name_.c_str()); }

void ControlSegment::close() {
  if (base_) ::munmap(base_, bytes_);
  base_ = nullptr;
}

}  // namespace lanepir
