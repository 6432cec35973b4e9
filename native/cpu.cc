#include "cpu.h"

#include "errors.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <cstdint>
#endif

namespace lanepir {

namespace {

#if defined(__x86_64__)
uint64_t xgetbv0() {
  uint32_t lo, hi;
  // xgetbv with ecx=0 reads XCR0 (which register states the OS saves).
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}
#endif

CpuInfo detect() {
  CpuInfo info;
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return info;
  const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return info;
  const uint64_t xcr0 = xgetbv0();
  const bool ymmState = (xcr0 & 0x6) == 0x6;
  const bool zmmState = ymmState && (xcr0 & 0xE0) == 0xE0;
  if (__get_cpuid_max(0, nullptr) < 7) return info;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1, f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  const bool vnni512 = (c >> 11) & 1, vbmi = (c >> 1) & 1;
  __cpuid_count(7, 1, a, b, c, d);
  const bool avxvnni = (a >> 4) & 1;
  info.avx2 = ymmState && avx2;
  info.avx512 = zmmState && info.avx2 && f && bw && vl;
  info.avx512vnni = info.avx512 && vnni512;
  info.avxvnni = info.avx2 && avxvnni;
  info.avx512vbmi = info.avx512 && vbmi;
  // Testing aid: run the vpmaddwd flavours on a VNNI machine.
  const char* noVnni = std::getenv("LANEPIR_NO_VNNI");
  if (noVnni && *noVnni && std::string(noVnni) != "0") info.avx512vnni = info.avxvnni = false;
  const char* noVbmi = std::getenv("LANEPIR_NO_VBMI");
  if (noVbmi && *noVbmi && std::string(noVbmi) != "0") info.avx512vbmi = false;
#endif
  return info;
}

}  // namespace

const CpuInfo& cpuInfo() {
  static const CpuInfo info = detect();
  return info;
}

bool pathSupported(KernelPath p) {
  switch (p) {
    case KernelPath::Portable: return true;
    case KernelPath::Avx2: return cpuInfo().avx2;
    case KernelPath::Avx512: return cpuInfo().avx512;
  }
  return false;
}

KernelPath bestPath() {
  if (cpuInfo().avx512) return KernelPath::Avx512;
  if (cpuInfo().avx2) return KernelPath::Avx2;
  return KernelPath::Portable;
}

const char* pathName(KernelPath p) {
  switch (p) {
    case KernelPath::Portable: return "portable";
    case KernelPath::Avx2: return "avx2";
    case KernelPath::Avx512: return "avx512";
  }
  return "?";
}

const std::string& forcedPathName() {
  static const std::string name = [] {
    const char* v = std::getenv("LANEPIR_KERNEL_PATH");
    return std::string(v ? v : "");
  }();
  return name;
}

namespace {
KernelPath namedPath(const std::string& name) {
  KernelPath p;
  if (name == "portable") p = KernelPath::Portable;
  else if (name == "avx2") p = KernelPath::Avx2;
  else if (name == "avx512") p = KernelPath::Avx512;
  else fail("EPARAMS", "unknown kernel path '" + name + "' (expected auto, portable, avx2 or avx512)");
  if (!pathSupported(p)) fail("ECPU", std::string("kernel path '") + name + "' is not supported by this CPU");
  return p;
}
}  // namespace

KernelPath defaultPath() {
  const std::string& forced = forcedPathName();
  if (forced.empty() || forced == "auto") return bestPath();
  try {
    return namedPath(forced);
  } catch (const NativeError& e) {
    fail(e.code.c_str(), std::string("LANEPIR_KERNEL_PATH: ") + e.what());
  }
}

KernelPath resolvePath(const std::string& name) {
  if (name.empty() || name == "auto") return defaultPath();
  return namedPath(name);
}

uint64_t lastLevelCacheBytes() {
  static const uint64_t bytes = [] {
    uint64_t best = 0;
    int bestLevel = 0;
    for (int i = 0; i < 8; i++) {
      const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
      std::ifstream level(dir + "level"), size(dir + "size");
      int l = 0;
      std::string sz;
      if (!(level >> l) || !(size >> sz) || sz.empty()) continue;
      uint64_t v = std::strtoull(sz.c_str(), nullptr, 10);
      const char unit = sz.back();
      if (unit == 'K') v <<= 10;
      else if (unit == 'M') v <<= 20;
      if (l > bestLevel && v > 0) bestLevel = l, best = v;
    }
#if defined(_SC_LEVEL3_CACHE_SIZE)
    if (best == 0) {
      const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
      if (v > 0) best = uint64_t(v);
    }
#endif
    return best > 0 ? best : uint64_t(32) << 20;
  }();
  return bytes;
}

}  // namespace lanepir
