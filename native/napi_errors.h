// Turning native failures into JS errors with a `code` property, shared by
// the binding files. Failure captures a caught exception without touching
// N-API (so an AsyncWorker can capture it on its thread and reject on the JS
// thread); throwCurrent() raises the exception being handled in JS.
#pragma once
#include <napi.h>

#include <new>
#include <string>
#include <system_error>

#include "errors.h"

namespace lanepir {

inline Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& msg, bool range = false) {
  Napi::Error e = range ? Napi::RangeError::New(env, msg) : Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Code and message of whatever the current catch block caught.
struct Failure {
  std::string code, msg;
  bool range = false;
};

inline Failure currentFailure() {
  try {
    throw;
  } catch (const NativeError& e) {
    return {e.code, e.what(), false};
  } catch (const std::bad_alloc&) {
    return {"ENOMEM", "out of memory", false};
  } catch (const std::system_error& e) {
    return {"ENOMEM", std::string("system resource error: ") + e.what(), false};
  } catch (const std::exception& e) {
    return {"EPARAMS", e.what(), false};
  } catch (...) {
    return {"EPARAMS", "unknown native error", false};
  }
}

// Call inside catch (...) of a synchronous binding (C++ exceptions enabled):
// rethrows as a Napi::Error carrying the code, which N-API raises in JS.
[[noreturn]] inline void rethrowCoded(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    const Failure f = currentFailure();
    throw codedError(env, f.code, f.msg, f.range);
  }
}

inline void throwCoded(Napi::Env env, const std::string& code, const std::string& msg) {
  codedError(env, code, msg).ThrowAsJavaScriptException();
}

// Call inside catch (...): raises the exception being handled in JS with its code.
inline void throwCurrent(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (...) {
    const Failure f = currentFailure();
    codedError(env, f.code, f.msg, f.range).ThrowAsJavaScriptException();
  }
}

}  // namespace lanepir
