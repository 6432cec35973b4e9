#include "exchange.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "errors.h"

namespace lanepir {

namespace {

std::string sysMsg(const std::string& what) { return what + ": " + std::strerror(errno); }

size_t pageRound(uint64_t b) { return size_t((b + 4095) / 4096 * 4096); }

bool processAlive(uint64_t pid) {
  if (pid == 0 || pid > uint64_t(INT32_MAX)) return false;
  return ::kill(pid_t(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

const char* resultName(uint64_t r) {
  switch (r) {
    case kOk: return "OK";
    case kGenerationGone: return "EGENERATION_GONE";
    case kQuerySize: return "EQUERY_SIZE";
    case kExecutorLost: return "EEXECUTOR_LOST";
    case kKernelFailed: return "EKERNEL";
    case kBadDescriptor: return "EBAD_DESCRIPTOR";
  }
  return "EUNKNOWN";
}

void futexWait(XU32* word, uint32_t expected, int64_t timeoutNs) {
  struct timespec ts, *tp = nullptr;
  if (timeoutNs >= 0) {
    ts.tv_sec = time_t(timeoutNs / 1000000000);
    ts.tv_nsec = long(timeoutNs % 1000000000);
    tp = &ts;
  }
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, tp, nullptr, 0);
}

void futexWakeAll(XU32* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

uint64_t monotonicNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint64_t unixMs() {
  using namespace std::chrono;
  return uint64_t(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

void storeGen(XU64 (&words)[kGenWords], const std::string& id) {
  if (id.size() >= kGenWords * 8) fail("EPARAMS", "generation id is longer than 31 bytes: " + id);
  uint64_t tmp[kGenWords] = {};
  std::memcpy(tmp, id.data(), id.size());
  for (size_t i = 0; i < kGenWords; i++) words[i].store(tmp[i], std::memory_order_relaxed);
}

std::string loadGen(const XU64 (&words)[kGenWords]) {
  uint64_t tmp[kGenWords];
  for (size_t i = 0; i < kGenWords; i++) tmp[i] = words[i].load(std::memory_order_relaxed);
  const char* c = reinterpret_cast<const char*>(tmp);
  return std::string(c, strnlen(c, kGenWords * 8 - 1));
}

Exchange::Exchange(std::string name, void* base, size_t bytes) : name_(std::move(name)), base_(base), bytes_(bytes) {
  XHeader* h = header();
  const uint64_t vw = h->versionWorkers.load();
  regions_ = uint32_t(vw >> 32);
  descriptors_ = uint32_t(h->descriptors.load());
  regionBytes_ = h->regionBytes.load();
  dataBytes_ = h->dataBytes.load();
  dataOffset_ = h->dataOffset.load();
}

Exchange::~Exchange() {
  if (base_) ::munmap(base_, bytes_);
}

Exchange* Exchange::create(const std::string& name, uint32_t regions, uint32_t descriptors, uint64_t dataBytes) {
  if (regions < 1 || regions > 1024) fail("EPARAMS", "regions must be in [1, 1024]");
  if (descriptors < 1 || descriptors > 65536) fail("EPARAMS", "descriptors must be in [1, 65536]");
  if (dataBytes < 4096 || dataBytes > (uint64_t(1) << 36)) fail("EPARAMS", "dataBytes must be in [4 KiB, 64 GiB]");
  const uint64_t dataOffset = kRegionHeaderBytes + pageRound(uint64_t(descriptors) * kDescBytes);
  const uint64_t regionBytes = dataOffset + pageRound(dataBytes);
  const uint64_t total = kXHeaderBytes + regionBytes * regions;
  void* base;
  if (name.empty()) {
    base = ::mmap(nullptr, size_t(total), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) fail("ENOMEM", sysMsg("cannot map a " + std::to_string(total) + "-byte exchange"));
  } else {
    if (name.size() < 2 || name[0] != '/' || name.size() > 200 || name.find('/', 1) != std::string::npos)
      fail("EPARAMS", "exchange name must be '/' followed by up to 199 characters without '/': " + name);
    int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST) {
      // Left by a primary that died: replace it, unless that primary still runs.
      int old = ::shm_open(name.c_str(), O_RDONLY, 0);
      uint64_t pid = 0;
      if (old >= 0) {
        struct stat st;
        if (::fstat(old, &st) == 0 && size_t(st.st_size) >= kXHeaderBytes) {
          void* p = ::mmap(nullptr, kXHeaderBytes, PROT_READ, MAP_SHARED, old, 0);
          if (p != MAP_FAILED) {
            auto* h = static_cast<XHeader*>(p);
            if (h->magic.load() == kExchangeMagic) pid = h->primaryPid.load();
            ::munmap(p, kXHeaderBytes);
          }
        }
        ::close(old);
      }
      if (processAlive(pid) && pid != uint64_t(::getpid()))
        fail("ESEGMENT_BUSY", "query exchange " + name + " belongs to a running server (pid " + std::to_string(pid) + ")");
      ::shm_unlink(name.c_str());
      fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    }
    if (fd < 0) fail("ESEGMENT", sysMsg("shm_open " + name));
    int err = ::ftruncate(fd, off_t(total)) == 0 ? 0 : errno;
    // Reserve the pages now: a full /dev/shm must fail the start, not SIGBUS a worker later.
    if (!err) err = ::posix_fallocate(fd, 0, off_t(total));
    if (err) {
      ::close(fd);
      ::shm_unlink(name.c_str());
      fail(err == ENOSPC ? "ENOSPC" : "ESEGMENT",
           "cannot reserve " + std::to_string(total >> 20) + " MiB for the query exchange " + name + " in /dev/shm: " +
               std::strerror(err) + " (make /dev/shm larger, or lower exchange_mib / max_pending_per_lane / workers)");
    }
    base = ::mmap(nullptr, size_t(total), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int mapErr = errno;
    ::close(fd);
    if (base == MAP_FAILED) {
      ::shm_unlink(name.c_str());
      errno = mapErr;
      fail("EMMAP", sysMsg("mmap of the query exchange"));
    }
  }
  auto* h = static_cast<XHeader*>(base);
  h->versionWorkers.store(uint64_t(kExchangeVersion) | (uint64_t(regions) << 32));
  h->regionBytes.store(regionBytes);
  h->descriptors.store(descriptors);
  h->dataBytes.store(dataBytes);
  h->dataOffset.store(dataOffset);
  h->primaryPid.store(uint64_t(::getpid()));
  h->magic.store(kExchangeMagic, std::memory_order_release);  // last: a reader that sees it sees the rest
  return new Exchange(name, base, size_t(total));
}

Exchange* Exchange::open(const std::string& name) {
  int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) fail(errno == ENOENT ? "ENOSEGMENT" : "ESEGMENT", sysMsg("shm_open " + name));
  struct stat st;
  if (::fstat(fd, &st) != 0 || size_t(st.st_size) < kXHeaderBytes) {
    ::close(fd);
    fail("ESEGMENT", "query exchange " + name + " is too small");
  }
  void* base = ::mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) fail("EMMAP", sysMsg("mmap of the query exchange " + name));
  auto* h = static_cast<XHeader*>(base);
  const uint64_t vw = h->versionWorkers.load();
  const uint64_t need = kXHeaderBytes + h->regionBytes.load() * (vw >> 32);
  if (h->magic.load(std::memory_order_acquire) != kExchangeMagic || uint32_t(vw) != kExchangeVersion || need > uint64_t(st.st_size)) {
    ::munmap(base, size_t(st.st_size));
    fail("ESEGMENT", "query exchange " + name + " has an unknown layout");
  }
  return new Exchange(name, base, size_t(st.st_size));
}

RegionHeader* Exchange::region(uint32_t i) const {
  if (i >= regions_) fail("EPARAMS", "region " + std::to_string(i) + " out of range (" + std::to_string(regions_) + ")");
  return reinterpret_cast<RegionHeader*>(static_cast<char*>(base_) + kXHeaderBytes + size_t(i) * regionBytes_);
}

Desc* Exchange::desc(uint32_t r, uint32_t d) const {
  return reinterpret_cast<Desc*>(reinterpret_cast<char*>(region(r)) + kRegionHeaderBytes + size_t(d) * kDescBytes);
}

uint8_t* Exchange::data(uint32_t r) const { return reinterpret_cast<uint8_t*>(region(r)) + dataOffset_; }

void Exchange::resetRegion(uint32_t i) {
  RegionHeader* rh = region(i);
  rh->pid.store(0);
  for (uint32_t d = 0; d < descriptors_; d++) {
    Desc* ds = desc(i, d);
    uint64_t s = ds->state.load(std::memory_order_acquire);
    // Queued: dropped (the executor's CAS to TAKEN fails from here on). Taken: left to finish.
    while ((s == kQueued || s == kDone || s == kDelivered) && !ds->state.compare_exchange_weak(s, kFree)) {
    }
  }
  for (auto& c : rh->inKernel) c.store(0);
  rh->incarnation.fetch_add(1);
  rh->doneSeq.fetch_add(1);
  futexWakeAll(&rh->doneSeq);
}

uint64_t Exchange::failTaken() {
  uint64_t n = 0;
  for (uint32_t r = 0; r < regions_; r++) {
    bool any = false;
    for (uint32_t d = 0; d < descriptors_; d++) {
      Desc* ds = desc(r, d);
      uint64_t s = kTaken;
      if (ds->state.load(std::memory_order_acquire) != kTaken) continue;
      ds->result.store(kExecutorLost, std::memory_order_relaxed);
      ds->batch.store(0, std::memory_order_relaxed);
      ds->passNs.store(0, std::memory_order_relaxed);
      if (ds->state.compare_exchange_strong(s, kDone, std::memory_order_acq_rel)) {
        n++;
        any = true;
      }
    }
    if (any) {
      RegionHeader* rh = region(r);
      rh->doneSeq.fetch_add(1);
      futexWakeAll(&rh->doneSeq);
    }
  }
  return n;
}

bool Exchange::claimRegion(uint32_t i, uint64_t pid, uint64_t timeoutMs) {
  RegionHeader* rh = region(i);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    bool taken = false;
    for (uint32_t d = 0; d < descriptors_ && !taken; d++) taken = desc(i, d)->state.load() == kTaken;
    if (!taken) break;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (uint32_t d = 0; d < descriptors_; d++) desc(i, d)->state.store(kFree);
  for (auto& c : rh->inKernel) c.store(0);
  rh->incarnation.fetch_add(1);
  rh->pid.store(pid, std::memory_order_release);
  return true;
}

void Exchange::unlink() {
  if (!name_.empty()) ::shm_unlink(name_.c_str());
}

}  // namespace lanepir
