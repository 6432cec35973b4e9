// N-API face of files.h: hashFiles(paths, options) hashes files off the JS
// thread and can be cancelled (a reload that timed out or was abandoned).
#include <napi.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <thread>

#include "errors.h"
#include "files.h"
#include "files_napi.h"
#include "napi_errors.h"

namespace lanepir {

namespace {

uint64_t u64Field(const Napi::Object& o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) fail("EPARAMS", what + "." + key + " is out of range");
    return x;
  }
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || d != std::floor(d)) fail("EPARAMS", what + "." + key + " must be a non-negative integer");
    return uint64_t(d);
  }
  fail("EPARAMS", what + "." + key + " must be a BigInt or a number");
}

int64_t i64Field(const Napi::Object& o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t x = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) fail("EPARAMS", what + "." + key + " is out of range");
    return x;
  }
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::fabs(d) > 9007199254740991.0 || d != std::floor(d)) fail("EPARAMS", what + "." + key + " must be an integer");
    return int64_t(d);
  }
  fail("EPARAMS", what + "." + key + " must be a BigInt or a number");
}

class HashWorker : public Napi::AsyncWorker {
 public:
  HashWorker(Napi::Env env, std::vector<std::string> paths, std::vector<FileIdentity> expect, unsigned threads,
             std::shared_ptr<std::atomic<bool>> cancel)
      : Napi::AsyncWorker(env, "lanepir.hashFiles"),
        deferred_(Napi::Promise::Deferred::New(env)),
        paths_(std::move(paths)),
        expect_(std::move(expect)),
        threads_(threads),
        cancel_(std::move(cancel)),
        out_(paths_.size() * 32) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      sha256Files(paths_, expect_, threads_, *cancel_, out_.data());
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.msg);
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(Env(), out_.data(), out_.size())); }
  void OnError(const Napi::Error&) override { deferred_.Reject(codedError(Env(), failure_.code, failure_.msg).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  std::vector<FileIdentity> expect_;
  unsigned threads_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<uint8_t> out_;
  Failure failure_;
};

// hashFiles(paths, {threads, expect}) -> {promise: Promise<Buffer /* 32 bytes per file */>, cancel()}
Napi::Value HashFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsArray()) fail("EPARAMS", "hashFiles takes an array of file names");
    Napi::Array pa = info[0].As<Napi::Array>();
    std::vector<std::string> paths;
    paths.reserve(pa.Length());
    for (uint32_t i = 0; i < pa.Length(); i++) {
      Napi::Value s = pa.Get(i);
      if (!s.IsString()) fail("EPARAMS", "paths[" + std::to_string(i) + "] must be a string");
      paths.push_back(s.As<Napi::String>().Utf8Value());
    }
    unsigned threads = 1;
    std::vector<FileIdentity> expect;
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsObject()) fail("EPARAMS", "options must be an object");
      Napi::Object o = info[1].As<Napi::Object>();
      Napi::Value t = o.Get("threads");
      if (!t.IsUndefined()) {
        if (!t.IsNumber()) fail("EPARAMS", "options.threads must be a number");
        const double d = t.As<Napi::Number>().DoubleValue();
        if (!(d >= 1 && d <= 256) || d != std::floor(d)) fail("EPARAMS", "options.threads must be an integer in [1, 256]");
        threads = unsigned(d);
      }
      expect = identitiesArg(o.Get("expect"), "options.expect");
      if (!expect.empty() && expect.size() != paths.size()) fail("EPARAMS", "options.expect needs one identity per file");
    }
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    auto* w = new HashWorker(env, std::move(paths), std::move(expect), threads, cancel);
    Napi::Object job = Napi::Object::New(env);
    job.Set("promise", w->Promise());
    job.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo&) { cancel->store(true); }, "cancel"));
    w->Queue();
    return job;
  } catch (...) {
    rethrowCoded(env);
  }
}

}  // namespace

std::vector<FileIdentity> identitiesArg(const Napi::Value& v, const std::string& what) {
  std::vector<FileIdentity> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) fail("EPARAMS", what + " must be an array of {dev, ino, size, mtimeNs}");
  Napi::Array a = v.As<Napi::Array>();
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    const std::string w = what + "[" + std::to_string(i) + "]";
    if (!e.IsObject()) fail("EPARAMS", w + " must be an object");
    Napi::Object o = e.As<Napi::Object>();
    out.push_back({u64Field(o, "dev", w), u64Field(o, "ino", w), u64Field(o, "size", w), i64Field(o, "mtimeNs", w)});
  }
  return out;
}

void InitFiles(Napi::Env env, Napi::Object exports) { exports.Set("hashFiles", Napi::Function::New(env, HashFiles, "hashFiles")); }

}  // namespace lanepir
