// Runtime CPU feature detection and kernel-path selection.
#pragma once
#include <cstdint>
#include <string>

namespace lanepir {

enum class KernelPath { Portable = 0, Avx2 = 1, Avx512 = 2 };

struct CpuInfo {
  bool avx2 = false;        // AVX2 + OS ymm state
  bool avx512 = false;      // AVX-512 F+BW+VL + OS zmm/opmask state
  bool avx512vnni = false;  // AVX512_VNNI (implies avx512)
  bool avxvnni = false;     // AVX-VNNI (VEX-encoded, ymm)
  bool avx512vbmi = false;  // AVX512_VBMI (vpermb), used with VNNI only
};

const CpuInfo& cpuInfo();
// The fastest path this CPU runs.
KernelPath bestPath();
// The path used when a call does not name one: LANEPIR_KERNEL_PATH
// (portable, avx2, avx512 or auto; read once) if set, else bestPath(). A
// name this CPU cannot run, or an unknown one, makes every kernel call that
// relies on the default fail (EPARAMS / ECPU): a forced path is never
// silently replaced by another.
KernelPath defaultPath();
// LANEPIR_KERNEL_PATH as given ("" when unset).
const std::string& forcedPathName();
bool pathSupported(KernelPath p);
const char* pathName(KernelPath p);
// "auto" / "" -> defaultPath(); unknown name -> EPARAMS; unsupported -> ECPU.
KernelPath resolvePath(const std::string& name);
// Size of the largest cache of cpu0 (Linux sysfs; sysconf where that is
// missing; 32 MiB if neither says). A tuning hint only: VMs may misreport it.
uint64_t lastLevelCacheBytes();

}  // namespace lanepir
