// N-API bindings. Everything heavy runs in AsyncWorkers; each worker holds
// its own std::shared_ptr<Lane>, so a lane's memory outlives release() of the
// JS handle until the last running call is done. No C++ exception crosses
// into JS: NativeError becomes an Error with `code`, bad_alloc -> ENOMEM.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "aes.h"
#include "answer.h"
#include "cpu.h"
#include "errors.h"
#include "hint.h"
#include "files_napi.h"
#include "keccak.h"
#include "lane.h"
#include "napi_errors.h"
#include "pool.h"

using namespace lanepir;

namespace lanepir {
void InitControl(Napi::Env env, Napi::Object exports);
void InitExchange(Napi::Env env, Napi::Object exports);
std::shared_ptr<Lane> laneFromJs(Napi::Env env, const Napi::Value& v);
void InitFiles(Napi::Env env, Napi::Object exports);
}

namespace {

struct AddonData {
  Napi::FunctionReference laneCtor;
};

// ---- argument helpers (throw NativeError EPARAMS) ----

uint64_t toUint(const Napi::Value& v, const std::string& what, uint64_t lo, uint64_t hi) {
  if (!v.IsNumber()) fail("EPARAMS", what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < double(lo) || d > double(hi))
    fail("EPARAMS", what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                        v.ToString().Utf8Value());
  return uint64_t(d);
}

uint64_t optUint(const Napi::Object& o, const char* key, uint64_t def, uint64_t lo, uint64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  return toUint(v, std::string("options.") + key, lo, hi);
}

unsigned defaultThreads() {
  unsigned t = std::thread::hardware_concurrency();
  return t ? t : 1;
}

struct CallOptions {
  unsigned threads = defaultThreads();
  KernelPath path = KernelPath::Portable;
};

CallOptions parseCallOptions(const Napi::Value& v) {
  CallOptions co;
  if (v.IsUndefined() || v.IsNull()) {
    co.path = defaultPath();
    return co;
  }
  if (!v.IsObject()) fail("EPARAMS", "options must be an object");
  Napi::Object o = v.As<Napi::Object>();
  co.threads = unsigned(optUint(o, "threads", co.threads, 1, 1024));
  Napi::Value p = o.Get("path");
  if (!p.IsUndefined() && !p.IsNull()) {
    if (!p.IsString()) fail("EPARAMS", "options.path must be a string");
    co.path = resolvePath(p.As<Napi::String>().Utf8Value());
  } else {
    co.path = defaultPath();
  }
  return co;
}

std::vector<uint8_t> parseSeed(const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail("EPARAMS", "seed must be a Uint8Array of 16 bytes");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ElementLength() != 16) fail("EPARAMS", "seed must be 16 bytes, got " + std::to_string(a.ElementLength()));
  return std::vector<uint8_t>(a.Data(), a.Data() + 16);
}

Napi::ArrayBuffer newBuffer(Napi::Env env, uint64_t bytes) {
  if (bytes > (uint64_t(1) << 34)) fail("ENOMEM", "result of " + std::to_string(bytes) + " bytes is too large");
  try {
    return Napi::ArrayBuffer::New(env, size_t(bytes));
  } catch (const Napi::Error& e) {
    fail("ENOMEM", "cannot allocate a result of " + std::to_string(bytes) + " bytes: " + e.Message());
  }
}

// ---- promise workers ----

// AsyncWorker resolving/rejecting a promise; subclasses implement Run() (worker
// thread, may throw) and Result() (JS thread).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  // Drops the worker's lane reference. Called on the worker thread after Run:
  // if it is the last reference, the unmap (page-table teardown, hundreds of
  // ms for a large warm lane) happens here and not on the JS thread.
  virtual void DropLane() {}

  void Execute() override {
    try {
      Run();
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.msg);
    }
    DropLane();
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(Result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      Failure f = currentFailure();
      deferred_.Reject(codedError(env, f.code, f.msg).Value());
    }
  }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(codedError(Env(), failure_.code, failure_.msg, failure_.range).Value());
  }

  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

// Call inside catch (...) of an async entry point: the exception being handled
// as a rejected promise (async calls never throw synchronously).
Napi::Promise rejectedCurrent(Napi::Env env) {
  auto d = Napi::Promise::Deferred::New(env);
  try {
    throw;
  } catch (const Napi::Error& e) {
    d.Reject(e.Value());
  } catch (...) {
    const Failure f = currentFailure();
    d.Reject(codedError(env, f.code, f.msg, f.range).Value());
  }
  return d.Promise();
}

// Starts a worker and hands its promise to JS.
template <class W>
Napi::Promise queued(W* w) {
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---- LaneHandle ----

class LaneWrap : public Napi::ObjectWrap<LaneWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "LaneHandle",
                       {InstanceAccessor<&LaneWrap::GetEntries>("entries"),
                        InstanceAccessor<&LaneWrap::GetEntrySize>("entrySize"),
                        InstanceAccessor<&LaneWrap::GetM>("m"), InstanceAccessor<&LaneWrap::GetRows>("rows"),
                        InstanceAccessor<&LaneWrap::GetBytes>("bytes"), InstanceAccessor<&LaneWrap::GetMode>("mode"),
                        InstanceAccessor<&LaneWrap::GetReleased>("released"),
                        InstanceMethod<&LaneWrap::Release>("release"), InstanceMethod<&LaneWrap::Answer>("answer"),
                        InstanceMethod<&LaneWrap::ReadEntry>("readEntry"), InstanceMethod<&LaneWrap::Warm>("warm")});
  }

  // Only constructible from C++ (openLane passes the lane in an External).
  explicit LaneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LaneWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw codedError(info.Env(), "EPARAMS", "LaneHandle cannot be constructed directly; use openLane()");
    lane_ = *info[0].As<Napi::External<std::shared_ptr<Lane>>>().Data();
    entries_ = lane_->entries();
    es_ = lane_->entrySize();
    m_ = lane_->m();
    rows_ = lane_->rows();
    bytes_ = lane_->bytes();
    memory_ = lane_->memory();
  }
  // Fallback for a handle that was never released: drop its reference on a
  // thread of its own (a finalizer must not block on an unmap either).
  ~LaneWrap() override {
    if (lane_) std::thread([lane = std::move(lane_)]() mutable { lane.reset(); }).detach();
  }

  static Napi::Object Create(Napi::Env env, std::shared_ptr<Lane> lane) {
    AddonData* data = env.GetInstanceData<AddonData>();
    auto ext = Napi::External<std::shared_ptr<Lane>>::New(env, &lane);
    return data->laneCtor.New({ext});
  }

  // The lane, or null if released. Shares ownership with the caller.
  std::shared_ptr<Lane> lane() const { return lane_; }
  std::shared_ptr<Lane> liveLane() const {
    if (!lane_) fail("ERELEASED", "the lane handle was released");
    return lane_;
  }

 private:
  Napi::Value GetEntries(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), double(entries_)); }
  Napi::Value GetEntrySize(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), double(es_)); }
  Napi::Value GetM(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), double(m_)); }
  Napi::Value GetRows(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), double(rows_)); }
  Napi::Value GetBytes(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), double(bytes_)); }
  Napi::Value GetMode(const Napi::CallbackInfo& i) { return Napi::String::New(i.Env(), laneMemoryName(memory_)); }
  Napi::Value GetReleased(const Napi::CallbackInfo& i) { return Napi::Boolean::New(i.Env(), !lane_); }

  Napi::Value Release(const Napi::CallbackInfo& i);

  Napi::Value ReadEntry(const Napi::CallbackInfo& info);
  Napi::Value Answer(const Napi::CallbackInfo& info);
  Napi::Value Warm(const Napi::CallbackInfo& info);

  std::shared_ptr<Lane> lane_;
  uint64_t entries_ = 0, es_ = 0, m_ = 0, rows_ = 0, bytes_ = 0;
  LaneMemory memory_ = LaneMemory::Mmap;
};

LaneWrap* unwrapLane(Napi::Env env, const Napi::Value& v) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->laneCtor.Value()))
    fail("EPARAMS", "lane must be a LaneHandle returned by openLane()");
  return LaneWrap::Unwrap(v.As<Napi::Object>());
}

}  // namespace

// For the other binding files (the executor takes lanes from JS).
std::shared_ptr<Lane> lanepir::laneFromJs(Napi::Env env, const Napi::Value& v) { return unwrapLane(env, v)->liveLane(); }

namespace {

Napi::Value LaneWrap::ReadEntry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    auto lane = liveLane();
    if (info.Length() < 1 || !info[0].IsNumber()) fail("EPARAMS", "index must be a number");
    const double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d >= double(lane->entries()))
      throw codedError(env, "EPARAMS",
                       "entry index " + info[0].ToString().Utf8Value() + " is out of range [0, " +
                           std::to_string(lane->entries()) + ")",
                       /*range=*/true);
    const uint8_t* p = lane->entryPtr(uint64_t(d));
    return Napi::Buffer<uint8_t>::Copy(env, p, size_t(lane->entrySize()));
  } catch (...) {
    rethrowCoded(env);
  }
}

class WarmWorker : public PromiseWorker {
 public:
  WarmWorker(Napi::Env env, std::shared_ptr<Lane> lane) : PromiseWorker(env, "lanepir.warm"), lane_(std::move(lane)) {}

 protected:
  void Run() override { warmLane(*lane_); }
  void DropLane() override { lane_.reset(); }
  std::shared_ptr<Lane> lane_;
};

// Drops a lane reference off the JS thread (release()); resolves when done,
// i.e. after the unmap if it was the last reference.
class DropWorker : public PromiseWorker {
 public:
  DropWorker(Napi::Env env, std::shared_ptr<Lane> lane) : PromiseWorker(env, "lanepir.release"), lane_(std::move(lane)) {}

 protected:
  void Run() override { lane_.reset(); }
  std::shared_ptr<Lane> lane_;
};

// Idempotent; running calls keep their own references. The reference is
// dropped on a worker thread; the promise resolves once that is done.
Napi::Value LaneWrap::Release(const Napi::CallbackInfo& i) {
  return queued(new DropWorker(i.Env(), std::move(lane_)));  // leaves lane_ empty
}

Napi::Value LaneWrap::Warm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    auto* w = new WarmWorker(env, liveLane());
    return queued(w);
  } catch (...) {
    return rejectedCurrent(env);
  }
}

class AnswerWorker : public PromiseWorker {
 public:
  // The queries are read in place by the kernel threads: the worker holds a
  // reference to each one's ArrayBuffer until it is done (JS must not write
  // to them meanwhile; the server never does).
  AnswerWorker(Napi::Env env, std::shared_ptr<Lane> lane, const std::vector<Napi::Uint32Array>& queries, CallOptions co)
      : PromiseWorker(env, "lanepir.answer"), lane_(std::move(lane)), K_(int(queries.size())), co_(co) {
    for (const Napi::Uint32Array& a : queries) {
      queries_.push_back(a.Data());
      queryRefs_.push_back(Napi::Persistent(a.ArrayBuffer()));
    }
    // Result buffers are created here (JS thread) and only exposed on resolve.
    const uint64_t words = lane_->entrySize() * lane_->rows();
    for (int k = 0; k < K_; k++) {
      Napi::ArrayBuffer ab = newBuffer(env, words * 4);
      out_.push_back(static_cast<uint32_t*>(ab.Data()));
      refs_.push_back(Napi::Persistent(ab));
    }
    words_ = size_t(words);
  }

 protected:
  void Run() override { runAnswer(*lane_, queries_.data(), K_, out_.data(), co_.threads, co_.path); }
  void DropLane() override { lane_.reset(); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array arr = Napi::Array::New(env, size_t(K_));
    for (int k = 0; k < K_; k++)
      arr.Set(uint32_t(k), Napi::Uint32Array::New(env, words_, refs_[k].Value(), 0));
    return arr;
  }

  std::shared_ptr<Lane> lane_;
  std::vector<const uint32_t*> queries_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> queryRefs_;
  int K_;
  CallOptions co_;
  size_t words_ = 0;
  std::vector<uint32_t*> out_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> refs_;
};

Napi::Value LaneWrap::Answer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    auto lane = liveLane();
    if (info.Length() < 1 || !info[0].IsArray()) fail("EPARAMS", "queries must be an array of Uint32Array");
    Napi::Array qs = info[0].As<Napi::Array>();
    const uint32_t K = qs.Length();
    if (K < 1 || K > uint32_t(kMaxQueries))
      fail("EPARAMS", "answer takes 1.." + std::to_string(kMaxQueries) + " queries, got " + std::to_string(K));
    const size_t m = size_t(lane->m());
    std::vector<Napi::Uint32Array> queries;
    queries.reserve(K);
    for (uint32_t k = 0; k < K; k++) {
      Napi::Value v = qs.Get(k);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
        fail("EPARAMS", "query " + std::to_string(k) + " must be a Uint32Array");
      Napi::Uint32Array a = v.As<Napi::Uint32Array>();
      if (a.ElementLength() != m)
        fail("EQUERY_SIZE", "query " + std::to_string(k) + " has " + std::to_string(a.ElementLength()) +
                                " elements, expected m = " + std::to_string(m));
      queries.push_back(a);
    }
    CallOptions co = parseCallOptions(info.Length() > 1 ? info[1] : env.Undefined());
    auto* w = new AnswerWorker(env, std::move(lane), queries, co);
    return queued(w);
  } catch (...) {
    return rejectedCurrent(env);
  }
}

// ---- module functions ----

class OpenWorker : public PromiseWorker {
 public:
  OpenWorker(Napi::Env env, LaneParams p) : PromiseWorker(env, "lanepir.openLane"), params_(std::move(p)) {}

 protected:
  void Run() override { lane_ = Lane::open(params_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = LaneWrap::Create(env, lane_);
    lane_.reset();  // the handle now holds the only reference
    return o;
  }
  LaneParams params_;
  std::shared_ptr<Lane> lane_;
};

Napi::Value OpenLane(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) fail("EPARAMS", "openLane takes an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    LaneParams p;
    Napi::Value shards = o.Get("shards");
    if (!shards.IsArray()) fail("EPARAMS", "options.shards must be an array of file names");
    Napi::Array sa = shards.As<Napi::Array>();
    for (uint32_t i = 0; i < sa.Length(); i++) {
      Napi::Value s = sa.Get(i);
      if (!s.IsString()) fail("EPARAMS", "options.shards[" + std::to_string(i) + "] must be a string");
      p.shards.push_back(s.As<Napi::String>().Utf8Value());
    }
    const uint64_t maxSafe = (uint64_t(1) << 53) - 1;
    p.entrySize = toUint(o.Get("entrySize"), "options.entrySize", 1, 1 << 20);
    p.entries = toUint(o.Get("entries"), "options.entries", 1, maxSafe);
    p.shardSize = toUint(o.Get("shardSize"), "options.shardSize", 1, maxSafe);
    p.m = toUint(o.Get("m"), "options.m", 1, uint64_t(1) << 32);
    Napi::Value mode = o.Get("mode");
    const std::string ms = mode.IsString() ? mode.As<Napi::String>().Utf8Value() : "";
    if (ms == "memory") p.memory = LaneMemory::Memory;
    else if (ms == "cache") p.memory = LaneMemory::Cache;
    else if (ms != "mmap") fail("EPARAMS", "options.mode must be 'mmap', 'memory' or 'cache'");
    Napi::Value ids = o.Get("contentIds");
    if (!ids.IsUndefined() && !ids.IsNull()) {
      if (!ids.IsArray()) fail("EPARAMS", "options.contentIds must be an array of strings (one per shard)");
      Napi::Array ia = ids.As<Napi::Array>();
      if (ia.Length() != p.shards.size()) fail("EPARAMS", "options.contentIds needs one string per shard");
      for (uint32_t i = 0; i < ia.Length(); i++) {
        Napi::Value v = ia.Get(i);
        if (!v.IsString()) fail("EPARAMS", "options.contentIds[" + std::to_string(i) + "] must be a string");
        p.contentIds.push_back(v.As<Napi::String>().Utf8Value());
      }
    }
    p.expect = identitiesArg(o.Get("expect"), "options.expect");
    auto* w = new OpenWorker(env, std::move(p));
    return queued(w);
  } catch (...) {
    return rejectedCurrent(env);
  }
}

// Hint with progress: AsyncProgressWorker delivers the latest (done) value on
// the JS thread; OnOK makes sure the callback has seen (total, total).
class HintWorker : public Napi::AsyncProgressWorker<uint64_t> {
 public:
  HintWorker(Napi::Env env, std::shared_ptr<Lane> lane, std::vector<uint8_t> seed, size_t n, CallOptions co,
             Napi::Function onProgress)
      : Napi::AsyncProgressWorker<uint64_t>(env, "lanepir.hint"),
        deferred_(Napi::Promise::Deferred::New(env)),
        lane_(std::move(lane)),
        seed_(std::move(seed)),
        n_(n),
        co_(co) {
    if (!onProgress.IsEmpty()) progressFn_ = Napi::Persistent(onProgress);
    total_ = lane_->rows();
    words_ = lane_->entrySize() * lane_->rows() * n;
    Napi::ArrayBuffer ab = newBuffer(env, words_ * 4);
    out_ = static_cast<uint32_t*>(ab.Data());
    outRef_ = Napi::Persistent(ab);
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    try {
      HintProgress cb;
      if (!progressFn_.IsEmpty())
        cb = [&progress](uint64_t done, uint64_t) { progress.Send(&done, 1); };
      runHint(*lane_, seed_.data(), n_, out_, co_.threads, co_.path, cb);
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.msg);
    }
    lane_.reset();  // off the JS thread (see PromiseWorker::DropLane)
  }
  void OnProgress(const uint64_t* data, size_t count) override {
    if (!count || progressFn_.IsEmpty() || callbackError_) return;
    Call(data[count - 1]);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!progressFn_.IsEmpty() && !callbackError_ && lastSent_ < total_) Call(total_);
    if (callbackError_) {
      deferred_.Reject(callbackErrorValue_.Value());
      return;
    }
    deferred_.Resolve(Napi::Uint32Array::New(env, size_t(words_), outRef_.Value(), 0));
  }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(codedError(Env(), failure_.code, failure_.msg).Value());
  }

 private:
  void Call(uint64_t done) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    lastSent_ = done;
    try {
      progressFn_.Call({Napi::Number::New(env, double(done)), Napi::Number::New(env, double(total_))});
    } catch (const Napi::Error& e) {
      // A throwing callback rejects the hint promise (once the work is done).
      callbackError_ = true;
      callbackErrorValue_ = Napi::Persistent(e.Value());
    }
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Lane> lane_;
  std::vector<uint8_t> seed_;
  size_t n_;
  CallOptions co_;
  Napi::FunctionReference progressFn_;
  uint64_t total_ = 0, lastSent_ = 0, words_ = 0;
  uint32_t* out_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> outRef_;
  Failure failure_;
  bool callbackError_ = false;
  Napi::Reference<Napi::Object> callbackErrorValue_;
};

Napi::Value Hint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    LaneWrap* wrap = unwrapLane(env, info[0]);
    auto lane = wrap->liveLane();
    std::vector<uint8_t> seed = parseSeed(info[1]);
    const uint64_t n = toUint(info[2], "n", 16, 1 << 20);
    if (n % 16 != 0) fail("EPARAMS", "n must be a multiple of 16, got " + std::to_string(n));
    Napi::Value ov = info.Length() > 3 ? info[3] : env.Undefined();
    CallOptions co = parseCallOptions(ov);
    Napi::Function cb;
    if (ov.IsObject()) {
      Napi::Value f = ov.As<Napi::Object>().Get("onProgress");
      if (f.IsFunction()) cb = f.As<Napi::Function>();
      else if (!f.IsUndefined() && !f.IsNull()) fail("EPARAMS", "options.onProgress must be a function");
    }
    auto* w = new HintWorker(env, std::move(lane), std::move(seed), size_t(n), co, cb);
    return queued(w);
  } catch (...) {
    return rejectedCurrent(env);
  }
}

Napi::Value ExpandA(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    std::vector<uint8_t> seed = parseSeed(info[0]);
    const uint64_t rowStart = toUint(info[1], "rowStart", 0, uint64_t(1) << 40);
    const uint64_t rowCount = toUint(info[2], "rowCount", 0, uint64_t(1) << 32);
    const uint64_t n = toUint(info[3], "n", 1, 1 << 24);
    if (rowCount * n > (uint64_t(1) << 29)) fail("EPARAMS", "expandA result too large (max 2^29 words)");
    Napi::ArrayBuffer ab = newBuffer(env, rowCount * n * 4);
    expandA(seed.data(), rowStart, rowCount, n, static_cast<uint32_t*>(ab.Data()));
    return Napi::Uint32Array::New(env, size_t(rowCount * n), ab, 0);
  } catch (...) {
    rethrowCoded(env);
  }
}

// keccakBatch(prefix, data, offsets): keccak256(prefix || data[offsets[i] .. offsets[i+1]))
// for every key, 32 bytes each, back to back. Synchronous: callers pass a few
// thousand short keys at a time (microseconds each).
Napi::Value KeccakBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    auto bytesArg = [](const Napi::Value& v, const char* what) {
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        fail("EPARAMS", std::string(what) + " must be a Uint8Array");
      return v.As<Napi::Uint8Array>();
    };
    Napi::Uint8Array prefix = bytesArg(info[0], "prefix");
    Napi::Uint8Array data = bytesArg(info[1], "data");
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      fail("EPARAMS", "offsets must be a Uint32Array");
    Napi::Uint32Array offsets = info[2].As<Napi::Uint32Array>();
    const size_t count = offsets.ElementLength() == 0 ? 0 : offsets.ElementLength() - 1;
    for (size_t i = 0; i < count; i++) {
      if (offsets[i] > offsets[i + 1] || offsets[i + 1] > data.ElementLength()) fail("EPARAMS", "offsets must ascend within data");
    }
    Napi::ArrayBuffer ab = newBuffer(env, uint64_t(count) * 32);
    uint8_t* out = static_cast<uint8_t*>(ab.Data());
    for (size_t i = 0; i < count; i++) {
      keccak256(prefix.Data(), prefix.ElementLength(), data.Data() + offsets[i], offsets[i + 1] - offsets[i], out + 32 * i);
    }
    return Napi::Uint8Array::New(env, count * 32, ab, 0);
  } catch (...) {
    rethrowCoded(env);
  }
}

class BandwidthWorker : public PromiseWorker {
 public:
  BandwidthWorker(Napi::Env env, std::shared_ptr<Lane> lane, unsigned threads, unsigned passes)
      : PromiseWorker(env, "lanepir.readBandwidth"), lane_(std::move(lane)), bytes_(lane_->bytes()), threads_(threads), passes_(passes) {}

 protected:
  void Run() override { seconds_ = readBandwidth(*lane_, threads_, passes_); }
  void DropLane() override { lane_.reset(); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("seconds", seconds_);
    o.Set("bytes", double(bytes_) * passes_);
    return o;
  }
  std::shared_ptr<Lane> lane_;
  uint64_t bytes_;  // lane_ is dropped before Result runs
  unsigned threads_, passes_;
  double seconds_ = 0;
};

Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    LaneWrap* wrap = unwrapLane(env, info[0]);
    auto lane = wrap->liveLane();
    unsigned threads = defaultThreads(), passes = 1;
    if (info.Length() > 1 && !info[1].IsUndefined()) threads = unsigned(toUint(info[1], "threads", 1, 1024));
    if (info.Length() > 2 && !info[2].IsUndefined()) passes = unsigned(toUint(info[2], "passes", 1, 1 << 20));
    auto* w = new BandwidthWorker(env, std::move(lane), threads, passes);
    return queued(w);
  } catch (...) {
    return rejectedCurrent(env);
  }
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuInfo& ci = cpuInfo();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx2", ci.avx2);
  o.Set("avx512", ci.avx512);
  o.Set("avx512vnni", ci.avx512vnni);
  o.Set("avxvnni", ci.avxvnni);
  o.Set("best", pathName(bestPath()));
  // What kernels use when a call names no path (LANEPIR_KERNEL_PATH, else best); null when the variable names a path this CPU cannot run.
  try {
    o.Set("default", pathName(defaultPath()));
  } catch (const NativeError&) {
    o.Set("default", env.Null());
  }
  o.Set("forced", forcedPathName().empty() ? env.Null() : Napi::String::New(env, forcedPathName()));
  o.Set("poolThreads", double(KernelPool::shared().threads()));
  Napi::Array paths = Napi::Array::New(env);
  uint32_t i = 0;
  for (KernelPath p : {KernelPath::Portable, KernelPath::Avx2, KernelPath::Avx512})
    if (pathSupported(p)) paths.Set(i++, pathName(p));
  o.Set("paths", paths);
  return o;
}

Napi::Value MappingStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MappingStatsValue s = mappingStats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("lanes", double(s.lanes));
  o.Set("bytes", double(s.bytes));
  const ShardCache::Stats c = ShardCache::shared().stats();
  Napi::Object co = Napi::Object::New(env);
  co.Set("regions", double(c.regions));
  co.Set("regionBytes", double(c.regionBytes));
  co.Set("shards", double(c.shards));
  co.Set("liveBytes", double(c.liveBytes));
  co.Set("hits", double(c.hits));
  co.Set("misses", double(c.misses));
  co.Set("readBytes", double(c.readBytes));
  o.Set("cache", co);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->laneCtor = Napi::Persistent(LaneWrap::Define(env));
  env.SetInstanceData(data);
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("openLane", Napi::Function::New(env, OpenLane, "openLane"));
  exports.Set("hint", Napi::Function::New(env, Hint, "hint"));
  exports.Set("expandA", Napi::Function::New(env, ExpandA, "expandA"));
  exports.Set("keccakBatch", Napi::Function::New(env, KeccakBatch, "keccakBatch"));
  exports.Set("mappingStats", Napi::Function::New(env, MappingStats, "mappingStats"));
  exports.Set("readBandwidth", Napi::Function::New(env, ReadBandwidth, "readBandwidth"));
  InitControl(env, exports);  // cluster control segment (control_binding.cc)
  InitExchange(env, exports);  // query exchange and kernel executor (exchange_binding.cc)
  InitFiles(env, exports);     // hashFiles (files_binding.cc)
  return exports;
}

}  // namespace

NODE_API_MODULE(lanepir, Init)
