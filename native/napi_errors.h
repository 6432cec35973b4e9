// Turning native failures into JS errors with a `code` property, for the
// binding files. Call throwCurrent() inside a catch (...) block.
#pragma once
#include <napi.h>

#include <new>
#include <string>
#include <system_error>

#include "errors.h"

namespace lanepir {

inline Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

inline void throwCoded(Napi::Env env, const std::string& code, const std::string& msg) {
  codedError(env, code, msg).ThrowAsJavaScriptException();
}

// Rethrows the exception being handled and raises it in JS with its code.
inline void throwCurrent(Napi::Env env) {
  try {
    throw;
  } catch (const NativeError& e) {
    throwCoded(env, e.code, e.what());
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    throwCoded(env, "ENOMEM", "out of memory");
  } catch (const std::exception& e) {
    throwCoded(env, "EINTERNAL", e.what());
  } catch (...) {
    throwCoded(env, "EINTERNAL", "unknown native error");
  }
}

}  // namespace lanepir
