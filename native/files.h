// Files of a generation as the server reads them: opened without blocking
// (a FIFO or device never stalls a thread), regular files only, and, when the
// caller knows which inode it validated, exactly that inode (dev, ino, size,
// mtime): so what is hashed, mapped or read is the file that was checked,
// whatever was renamed or re-linked in between.
#pragma once
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace lanepir {

struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtimeNs = 0;
};

// Opens `path` read-only, O_NONBLOCK | O_CLOEXEC | O_NOCTTY, and fstat()s it.
// Throws NativeError: `openCode` if it cannot be opened, ENOT_REGULAR if it is
// not a regular file, EFILE_CHANGED if `expect` is given and differs.
// Returns the fd (the caller closes it).
int openRegular(const std::string& path, const char* what, const char* openCode, struct stat* st,
                const FileIdentity* expect = nullptr);

// sha256 of each file (32 bytes each, in order, into `out`), `threads` files
// at a time. Each file is opened with openRegular (identity checked when
// `expect` is non-empty: one per file) and must not change while it is read.
// Stops with ECANCELED once `cancel` is set.
void sha256Files(const std::vector<std::string>& paths, const std::vector<FileIdentity>& expect, unsigned threads,
                 const std::atomic<bool>& cancel, uint8_t* out);

}  // namespace lanepir
