// Typed failures inside the native code. Kernels and lane code throw
// NativeError; the N-API layer (addon.cc) turns it into a JS Error whose
// `code` property is the string below. Nothing here depends on N-API so the
// kernels stay plain C++.
#pragma once
#include <stdexcept>
#include <string>

namespace lanepir {

struct NativeError : std::runtime_error {
  std::string code;
  NativeError(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& msg) { throw NativeError(code, msg); }

}  // namespace lanepir
