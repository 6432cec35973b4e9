#include "files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "errors.h"
#include "threads.h"

namespace lanepir {

namespace {

std::string sysErr(int e) { return std::strerror(e); }

int64_t mtimeNs(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec); }

const char* kindOf(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISDIR(m)) return "a directory";
  return "not a regular file";
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct MdCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(ctx); }
};

constexpr size_t kChunk = size_t(1) << 20;

// Returns false when `stop` was set meanwhile (another file failed).
bool sha256One(const std::string& path, const FileIdentity* expect, const std::atomic<bool>& cancel,
               const std::atomic<bool>& stop, std::vector<uint8_t>& buf, uint8_t* out) {
  struct stat st;
  Fd f;
  f.fd = openRegular(path, "file", "EFILE_OPEN", &st, expect);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // best effort
#endif
  MdCtx md;
  if (!md.ctx || EVP_DigestInit_ex(md.ctx, EVP_sha256(), nullptr) != 1) fail("ENOMEM", "cannot start a sha256 digest");
  const uint64_t size = uint64_t(st.st_size);
  uint64_t off = 0;
  while (off < size) {
    if (cancel.load(std::memory_order_relaxed)) fail("ECANCELED", "hashing was cancelled");
    if (stop.load(std::memory_order_relaxed)) return false;
    const size_t want = size_t(std::min<uint64_t>(size - off, kChunk));
    ssize_t got = ::pread(f.fd, buf.data(), want, off_t(off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("EIO", "read of " + path + " failed: " + sysErr(errno));
    if (got == 0) fail("EFILE_CHANGED", path + " became shorter while it was read");
    EVP_DigestUpdate(md.ctx, buf.data(), size_t(got));
    off += uint64_t(got);
  }
  unsigned len = 0;
  if (EVP_DigestFinal_ex(md.ctx, out, &len) != 1 || len != 32) fail("EIO", "sha256 of " + path + " failed");
  // A file written while it was hashed has no defined checksum.
  struct stat after;
  if (::fstat(f.fd, &after) != 0) fail("EIO", "cannot stat " + path + ": " + sysErr(errno));
  if (uint64_t(after.st_size) != size || mtimeNs(after) != mtimeNs(st))
    fail("EFILE_CHANGED", path + " changed while it was read");
  return true;
}

}  // namespace

int openRegular(const std::string& path, const char* what, const char* openCode, struct stat* st,
                const FileIdentity* expect) {
  // O_NONBLOCK: opening a FIFO without a writer (or a device) returns at once
  // instead of blocking the thread; reads of regular files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail(openCode, std::string("cannot open ") + what + " " + path + ": " + sysErr(errno));
  Fd guard;
  guard.fd = fd;
  if (::fstat(fd, st) != 0) fail(openCode, std::string("cannot stat ") + what + " " + path + ": " + sysErr(errno));
  if (!S_ISREG(st->st_mode)) fail("ENOT_REGULAR", std::string(what) + " " + path + " is " + kindOf(st->st_mode) + ", not a regular file");
  if (expect && (uint64_t(st->st_dev) != expect->dev || uint64_t(st->st_ino) != expect->ino ||
                 uint64_t(st->st_size) != expect->size || mtimeNs(*st) != expect->mtimeNs))
    fail("EFILE_CHANGED", std::string(what) + " " + path + " is not the file that was validated (replaced or modified since)");
  guard.fd = -1;
  return fd;
}

void sha256Files(const std::vector<std::string>& paths, const std::vector<FileIdentity>& expect, unsigned threads,
                 const std::atomic<bool>& cancel, uint8_t* out) {
  if (!expect.empty() && expect.size() != paths.size()) fail("EPARAMS", "one identity per file, or none");
  if (paths.empty()) return;
  if (threads == 0) threads = 1;
  if (threads > paths.size()) threads = unsigned(paths.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};  // the first failure stops the other threads
  parallelRun(threads, [&](unsigned) {
    std::vector<uint8_t> buf(kChunk);
    try {
      for (;;) {
        if (stop.load(std::memory_order_relaxed)) return;
        const size_t i = next.fetch_add(1);
        if (i >= paths.size()) return;
        if (!sha256One(paths[i], expect.empty() ? nullptr : &expect[i], cancel, stop, buf, out + 32 * i)) return;
      }
    } catch (...) {
      stop.store(true);
      throw;
    }
  });
}

}  // namespace lanepir
