// N-API face of the query exchange (exchange.h) and the kernel executor
// (executor.h):
//   exchangeCreate(name | null, regions, descriptors, dataBytes) / exchangeOpen(name)
//     -> ExchangeHandle (the primary resets regions of dead workers, fails the
//        passes of a dead executor, reads statistics)
//   exchangeClient(exchange, region, onComplete) -> KernelClient (a worker:
//        the data area as a Uint8Array, submit/cancel/free, and a waiter
//        thread that hands finished queries to onComplete on the JS thread)
//   executorStart(exchange, options, onPass) -> Executor (lane threads on the
//        kernel pool; generations registered from LaneHandles)
#include <napi.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "cpu.h"
#include "errors.h"
#include "exchange.h"
#include "executor.h"
#include "lane.h"
#include "napi_errors.h"

namespace lanepir {
std::shared_ptr<Lane> laneFromJs(Napi::Env env, const Napi::Value& v);
}

using namespace lanepir;

namespace {

uint64_t numArg(const Napi::Value& v, const std::string& what, uint64_t lo, uint64_t hi) {
  if (!v.IsNumber()) fail("EPARAMS", what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < double(lo) || d > double(hi))
    fail("EPARAMS", what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return uint64_t(d);
}

int laneArg(const Napi::Value& v) { return int(numArg(v, "lane", 0, kExchangeLanes - 1)); }

// ---- ExchangeHandle ----

class ExchangeWrap : public Napi::ObjectWrap<ExchangeWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "QueryExchange",
                       {InstanceAccessor<&ExchangeWrap::Name>("name"), InstanceAccessor<&ExchangeWrap::Regions>("regions"),
                        InstanceAccessor<&ExchangeWrap::Descriptors>("descriptors"),
                        InstanceAccessor<&ExchangeWrap::DataBytes>("dataBytes"),
                        InstanceMethod<&ExchangeWrap::ResetRegion>("resetRegion"),
                        InstanceMethod<&ExchangeWrap::FailTaken>("failTaken"), InstanceMethod<&ExchangeWrap::Stats>("stats"),
                        InstanceMethod<&ExchangeWrap::Unlink>("unlink"), InstanceMethod<&ExchangeWrap::Close>("close")});
  }
  explicit ExchangeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExchangeWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throwCoded(info.Env(), "EPARAMS", "use exchangeCreate() or exchangeOpen()");
      return;
    }
    x_ = *info[0].As<Napi::External<std::shared_ptr<Exchange>>>().Data();
  }
  static Napi::Value Wrap(Napi::Env env, std::shared_ptr<Exchange> x) {
    auto ext = Napi::External<std::shared_ptr<Exchange>>::New(env, &x);
    return ctor->New({ext});
  }
  std::shared_ptr<Exchange> live() const {
    if (!x_) fail("ESEGMENT", "the query exchange is closed");
    return x_;
  }

 private:
  template <typename F>
  Napi::Value guard(const Napi::CallbackInfo& info, F f) {
    try {
      live();
      return f();
    } catch (...) {
      throwCurrent(info.Env());
      return info.Env().Undefined();
    }
  }
  Napi::Value Name(const Napi::CallbackInfo& i) {
    return guard(i, [&] { return Napi::String::New(i.Env(), x_->name()); });
  }
  Napi::Value Regions(const Napi::CallbackInfo& i) {
    return guard(i, [&] { return Napi::Number::New(i.Env(), x_->regions()); });
  }
  Napi::Value Descriptors(const Napi::CallbackInfo& i) {
    return guard(i, [&] { return Napi::Number::New(i.Env(), x_->descriptors()); });
  }
  Napi::Value DataBytes(const Napi::CallbackInfo& i) {
    return guard(i, [&] { return Napi::Number::New(i.Env(), double(x_->dataBytes())); });
  }
  Napi::Value ResetRegion(const Napi::CallbackInfo& i) {
    return guard(i, [&] {
      x_->resetRegion(uint32_t(numArg(i[0], "region", 0, x_->regions() - 1)));
      return i.Env().Undefined();
    });
  }
  Napi::Value FailTaken(const Napi::CallbackInfo& i) {
    return guard(i, [&] { return Napi::Number::New(i.Env(), double(x_->failTaken())); });
  }
  // {executor: {pid, epoch, state, heartbeatAt}, lanes: [{passes, answered}], regions: [{pid, incarnation, inKernel: [hot, cold], submitted, completed}]}
  Napi::Value Stats(const Napi::CallbackInfo& i) {
    return guard(i, [&]() -> Napi::Value {
      Napi::Env env = i.Env();
      XHeader* h = x_->header();
      Napi::Object o = Napi::Object::New(env);
      Napi::Object e = Napi::Object::New(env);
      e.Set("pid", double(h->executorPid.load()));
      e.Set("epoch", double(h->executorEpoch.load()));
      static const char* states[] = {"none", "starting", "serving", "stopped"};
      const uint64_t st = h->executorState.load();
      e.Set("state", st < 4 ? states[st] : "unknown");
      e.Set("heartbeatAt", double(h->executorBeatMs.load()));
      o.Set("executor", e);
      Napi::Array lanes = Napi::Array::New(env, kExchangeLanes);
      for (int l = 0; l < kExchangeLanes; l++) {
        Napi::Object lo = Napi::Object::New(env);
        lo.Set("passes", double(h->bells[l].passes.load()));
        lo.Set("answered", double(h->bells[l].answered.load()));
        lanes.Set(uint32_t(l), lo);
      }
      o.Set("lanes", lanes);
      Napi::Array regions = Napi::Array::New(env, x_->regions());
      for (uint32_t r = 0; r < x_->regions(); r++) {
        RegionHeader* rh = x_->region(r);
        Napi::Object ro = Napi::Object::New(env);
        ro.Set("pid", double(rh->pid.load()));
        ro.Set("incarnation", double(rh->incarnation.load()));
        Napi::Array ik = Napi::Array::New(env, kExchangeLanes);
        for (int l = 0; l < kExchangeLanes; l++) ik.Set(uint32_t(l), double(rh->inKernel[l].load()));
        ro.Set("inKernel", ik);
        ro.Set("submitted", double(rh->submitted.load()));
        ro.Set("completed", double(rh->completed.load()));
        regions.Set(r, ro);
      }
      o.Set("regions", regions);
      return o;
    });
  }
  Napi::Value Unlink(const Napi::CallbackInfo& i) {
    return guard(i, [&] {
      x_->unlink();
      return i.Env().Undefined();
    });
  }
  // Drops this handle's reference (clients and executors keep theirs).
  Napi::Value Close(const Napi::CallbackInfo& i) {
    x_.reset();
    return i.Env().Undefined();
  }

  std::shared_ptr<Exchange> x_;
};

Napi::FunctionReference* ExchangeWrap::ctor = nullptr;

std::shared_ptr<Exchange> exchangeArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ExchangeWrap::ctor->Value()))
    fail("EPARAMS", "expected a query exchange from exchangeCreate() or exchangeOpen()");
  return ExchangeWrap::Unwrap(v.As<Napi::Object>())->live();
}

Napi::Value ExchangeCreate(const Napi::CallbackInfo& info) {
  try {
    std::string name;
    if (info[0].IsString()) name = info[0].As<Napi::String>().Utf8Value();
    else if (!info[0].IsNull() && !info[0].IsUndefined()) fail("EPARAMS", "name must be a string, or null for a private exchange");
    const uint32_t regions = uint32_t(numArg(info[1], "regions", 1, 1024));
    const uint32_t desc = uint32_t(numArg(info[2], "descriptors", 1, 65536));
    const uint64_t data = numArg(info[3], "dataBytes", 4096, uint64_t(1) << 36);
    return ExchangeWrap::Wrap(info.Env(), std::shared_ptr<Exchange>(Exchange::create(name, regions, desc, data)));
  } catch (...) {
    throwCurrent(info.Env());
    return info.Env().Undefined();
  }
}

Napi::Value ExchangeOpen(const Napi::CallbackInfo& info) {
  try {
    if (!info[0].IsString()) fail("EPARAMS", "exchange name must be a string");
    return ExchangeWrap::Wrap(info.Env(), std::shared_ptr<Exchange>(Exchange::open(info[0].As<Napi::String>().Utf8Value())));
  } catch (...) {
    throwCurrent(info.Env());
    return info.Env().Undefined();
  }
}

// ---- KernelClient ----

struct Completions {
  std::vector<uint32_t> words;  // (descriptor, result, batch, pass microseconds) per finished query
};

class ClientWrap : public Napi::ObjectWrap<ClientWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KernelClient",
                       {InstanceAccessor<&ClientWrap::Data>("data"), InstanceAccessor<&ClientWrap::Descriptors>("descriptors"),
                        InstanceAccessor<&ClientWrap::Region>("region"),
                        InstanceMethod<&ClientWrap::Submit>("submit"), InstanceMethod<&ClientWrap::Cancel>("cancel"),
                        InstanceMethod<&ClientWrap::Free>("free"), InstanceMethod<&ClientWrap::Pending>("pending"),
                        InstanceMethod<&ClientWrap::Executor>("executor"), InstanceMethod<&ClientWrap::State>("state"),
                        InstanceMethod<&ClientWrap::Ref>("ref"),
                        InstanceMethod<&ClientWrap::Unref>("unref"), InstanceMethod<&ClientWrap::Close>("close")});
  }

  // new KernelClient(exchange, region, onComplete, claimTimeoutMs)
  explicit ClientWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ClientWrap>(info) {
    Napi::Env env = info.Env();
    try {
      x_ = exchangeArg(env, info[0]);
      region_ = uint32_t(numArg(info[1], "region", 0, x_->regions() - 1));
      if (!info[2].IsFunction()) fail("EPARAMS", "onComplete must be a function");
      const uint64_t claimMs = info.Length() > 3 && !info[3].IsUndefined() ? numArg(info[3], "claimTimeoutMs", 0, 600000) : 10000;
      if (!x_->claimRegion(region_, uint64_t(::getpid()), claimMs))
        fail("EBUSY", "region " + std::to_string(region_) + " of the query exchange still has queries in a pass of a former owner");
      // The data area, without a copy. The ArrayBuffer holds the mapping alive (shared_ptr in its finalizer hint).
      auto* keep = new std::shared_ptr<Exchange>(x_);
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
          env, x_->data(region_), size_t(x_->dataBytes()), [](Napi::Env, void*, std::shared_ptr<Exchange>* k) { delete k; }, keep);
      data_ = Napi::Persistent(Napi::Uint8Array::New(env, size_t(x_->dataBytes()), ab, 0));
      tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "lanepir.exchange.completions", 0, 1);
      tsfn_.Unref(env);  // JS refs it while queries are pending (ref()/unref())
      hasTsfn_ = true;
      // At environment teardown Node closes the tsfn: stop the waiter first (hooks run last-added first).
      cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
        envGone_ = true;
        stopWaiter();
      }));
      waiter_ = std::thread([this] { waitLoop(); });
    } catch (...) {
      if (x_ && x_->region(region_)->pid.load() == uint64_t(::getpid())) x_->resetRegion(region_);
      throwCurrent(env);
    }
  }
  ~ClientWrap() override { shutdown(); }

 private:
  void waitLoop() {
    RegionHeader* rh = x_->region(region_);
    const uint32_t D = x_->descriptors();
    while (!stop_.load()) {
      const uint32_t seen = rh->doneSeq.load();
      auto* c = new Completions();
      for (uint32_t d = 0; d < D; d++) {
        Desc* ds = x_->desc(region_, d);
        uint64_t s = kDone;
        if (ds->state.load(std::memory_order_acquire) != kDone) continue;
        if (!ds->state.compare_exchange_strong(s, kDelivered, std::memory_order_acq_rel)) continue;
        const uint64_t lw = ds->lane.load(std::memory_order_relaxed);
        if (descLane(lw) >= 0 && descLane(lw) < kExchangeLanes) rh->inKernel[descLane(lw)].fetch_sub(descCount(lw));
        rh->completed.fetch_add(1, std::memory_order_relaxed);
        const uint64_t us = ds->passNs.load(std::memory_order_relaxed) / 1000;
        c->words.insert(c->words.end(), {d, uint32_t(ds->result.load(std::memory_order_relaxed)),
                                         uint32_t(ds->batch.load(std::memory_order_relaxed)), uint32_t(std::min<uint64_t>(us, 0xffffffffu))});
      }
      if (!c->words.empty()) {
        const napi_status st = tsfn_.NonBlockingCall(c, [](Napi::Env env, Napi::Function fn, Completions* data) {
          std::unique_ptr<Completions> own(data);
          if (!env || fn.IsEmpty()) return;
          Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, own->words.size() * 4);
          std::memcpy(ab.Data(), own->words.data(), own->words.size() * 4);
          fn.Call({Napi::Uint32Array::New(env, own->words.size(), ab, 0)});
        });
        if (st != napi_ok) delete c;
      } else {
        delete c;
      }
      rh->waiting.store(1);  // seq_cst: an executor that bumps doneSeq after this sees it and wakes us
      futexWait(&rh->doneSeq, seen, 200 * 1000000ll);
      rh->waiting.store(0);
    }
  }

  void stopWaiter() {
    stop_.store(true);
    if (x_) {
      RegionHeader* rh = x_->region(region_);
      rh->doneSeq.fetch_add(1);
      futexWakeAll(&rh->doneSeq);
    }
    if (waiter_.joinable()) waiter_.join();
  }

  void shutdown() {
    if (closed_) return;
    closed_ = true;
    stopWaiter();
    if (hasTsfn_ && !envGone_) {
      cleanup_.Remove(Env());
      tsfn_.Abort();
    }
    hasTsfn_ = false;
    // Nothing of this owner stays queued; a pass that has it finishes and the next owner frees it.
    if (x_ && x_->region(region_)->pid.load() == uint64_t(::getpid())) x_->resetRegion(region_);
  }

  Napi::Value Ref(const Napi::CallbackInfo& i) {
    if (hasTsfn_ && !envGone_) tsfn_.Ref(i.Env());
    return i.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& i) {
    if (hasTsfn_ && !envGone_) tsfn_.Unref(i.Env());
    return i.Env().Undefined();
  }

  Desc* descArg(const Napi::Value& v) const {
    if (closed_) fail("ESEGMENT", "the kernel client is closed");
    return x_->desc(region_, uint32_t(numArg(v, "descriptor", 0, x_->descriptors() - 1)));
  }

  Napi::Value Data(const Napi::CallbackInfo&) { return data_.Value(); }
  Napi::Value Descriptors(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), x_->descriptors()); }
  Napi::Value Region(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), region_); }

  // submit(d, lane, generation, queryOff, queryBytes, answerOff, answerBytes, count = 1)
  Napi::Value Submit(const Napi::CallbackInfo& i) {
    try {
      Desc* ds = descArg(i[0]);
      const int lane = laneArg(i[1]);
      const uint32_t count = i.Length() > 7 && !i[7].IsUndefined() ? uint32_t(numArg(i[7], "count", 1, 16)) : 1;
      if (!i[2].IsString()) fail("EPARAMS", "generation must be a string");
      const uint64_t limit = x_->dataBytes();
      const uint64_t qo = numArg(i[3], "queryOff", 0, limit), qb = numArg(i[4], "queryBytes", 0, limit);
      const uint64_t ao = numArg(i[5], "answerOff", 0, limit), ab = numArg(i[6], "answerBytes", 0, limit);
      if (ds->state.load() != kFree) fail("EPARAMS", "descriptor is in use");
      RegionHeader* rh = x_->region(region_);
      storeGen(ds->gen, i[2].As<Napi::String>().Utf8Value());
      ds->lane.store(packLane(lane, count), std::memory_order_relaxed);
      ds->queryOff.store(qo, std::memory_order_relaxed);
      ds->queryBytes.store(qb, std::memory_order_relaxed);
      ds->answerOff.store(ao, std::memory_order_relaxed);
      ds->answerBytes.store(ab, std::memory_order_relaxed);
      ds->result.store(0, std::memory_order_relaxed);
      ds->ticket.store(rh->ticket.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      ds->submitNs.store(monotonicNs(), std::memory_order_relaxed);
      rh->inKernel[lane].fetch_add(count);
      rh->submitted.fetch_add(1, std::memory_order_relaxed);
      ds->state.store(kQueued, std::memory_order_release);
      LaneBell& bell = x_->header()->bells[lane];
      bell.seq.fetch_add(1);                     // seq_cst, then:
      if (bell.sleepers.load()) futexWakeAll(&bell.seq);
      return i.Env().Undefined();
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }

  // A query not taken into a pass yet is withdrawn (true); otherwise it completes as usual (false).
  Napi::Value Cancel(const Napi::CallbackInfo& i) {
    try {
      Desc* ds = descArg(i[0]);
      uint64_t s = kQueued;
      if (!ds->state.compare_exchange_strong(s, kFree, std::memory_order_acq_rel)) return Napi::Boolean::New(i.Env(), false);
      const uint64_t lw = ds->lane.load(std::memory_order_relaxed);
      if (descLane(lw) >= 0 && descLane(lw) < kExchangeLanes) x_->region(region_)->inKernel[descLane(lw)].fetch_sub(descCount(lw));
      return Napi::Boolean::New(i.Env(), true);
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }

  // The answer was sent: the descriptor (and, in JS, its areas) can be reused.
  Napi::Value Free(const Napi::CallbackInfo& i) {
    try {
      Desc* ds = descArg(i[0]);
      uint64_t s = kDelivered;
      if (!ds->state.compare_exchange_strong(s, kFree, std::memory_order_acq_rel))
        fail("EPARAMS", "descriptor is not delivered (state " + std::to_string(s) + ")");
      return i.Env().Undefined();
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }

  // Queries of the lane queued or in a pass, over every live region (the lane's back-pressure).
  Napi::Value Pending(const Napi::CallbackInfo& i) {
    try {
      const int lane = laneArg(i[0]);
      uint64_t n = 0;
      for (uint32_t r = 0; r < x_->regions(); r++) {
        RegionHeader* rh = x_->region(r);
        if (rh->pid.load(std::memory_order_relaxed) != 0) n += rh->inKernel[lane].load(std::memory_order_relaxed);
      }
      return Napi::Number::New(i.Env(), double(n));
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }

  // A descriptor's state (0 free, 1 queued, 2 in a pass, 3 done, 4 delivered): tests and diagnostics.
  Napi::Value State(const Napi::CallbackInfo& i) {
    try {
      return Napi::Number::New(i.Env(), double(descArg(i[0])->state.load()));
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }

  Napi::Value Executor(const Napi::CallbackInfo& i) {
    Napi::Env env = i.Env();
    XHeader* h = x_->header();
    Napi::Object e = Napi::Object::New(env);
    e.Set("pid", double(h->executorPid.load()));
    e.Set("epoch", double(h->executorEpoch.load()));
    e.Set("serving", h->executorState.load() == 2);
    e.Set("heartbeatAt", double(h->executorBeatMs.load()));
    return e;
  }

  Napi::Value Close(const Napi::CallbackInfo& i) {
    shutdown();
    return i.Env().Undefined();
  }

  std::shared_ptr<Exchange> x_;
  uint32_t region_ = 0;
  Napi::Reference<Napi::Uint8Array> data_;
  Napi::ThreadSafeFunction tsfn_;
  bool hasTsfn_ = false, envGone_ = false;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  std::thread waiter_;
  std::atomic<bool> stop_{false};
  bool closed_ = false;
};

Napi::FunctionReference* ClientWrap::ctor = nullptr;

// ---- Executor ----

class ExecutorWrap : public Napi::ObjectWrap<ExecutorWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KernelExecutor",
                       {InstanceAccessor<&ExecutorWrap::Epoch>("epoch"),
                        InstanceMethod<&ExecutorWrap::SetGeneration>("setGeneration"),
                        InstanceMethod<&ExecutorWrap::DropGeneration>("dropGeneration"),
                        InstanceMethod<&ExecutorWrap::Generations>("generations"),
                        InstanceMethod<&ExecutorWrap::Start>("start"), InstanceMethod<&ExecutorWrap::Stop>("stop")});
  }

  // new KernelExecutor(exchange, {batchMax, windowMs, threads, path}, onPass?)
  explicit ExecutorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExecutorWrap>(info) {
    Napi::Env env = info.Env();
    try {
      auto x = exchangeArg(env, info[0]);
      ExecutorOptions o;
      o.path = defaultPath();
      const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
      o.threads = hw;
      if (info[1].IsObject()) {
        Napi::Object opts = info[1].As<Napi::Object>();
        if (!opts.Get("batchMax").IsUndefined()) o.batchMax = unsigned(numArg(opts.Get("batchMax"), "batchMax", 1, 16));
        Napi::Value w = opts.Get("windowMs");
        if (!w.IsUndefined()) {
          if (!w.IsNumber() || !(w.As<Napi::Number>().DoubleValue() >= 0) || w.As<Napi::Number>().DoubleValue() > 1000)
            fail("EPARAMS", "windowMs must be a number in [0, 1000]");
          o.windowNs = uint64_t(w.As<Napi::Number>().DoubleValue() * 1e6);
        }
        Napi::Value t = opts.Get("threads");
        if (!t.IsUndefined() && !(t.IsNumber() && t.As<Napi::Number>().DoubleValue() == 0))
          o.threads = unsigned(numArg(t, "threads", 1, 1024));
        Napi::Value p = opts.Get("path");
        if (p.IsString()) o.path = resolvePath(p.As<Napi::String>().Utf8Value());
      }
      if (info.Length() > 2 && info[2].IsFunction()) {
        tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "lanepir.executor.passes", 0, 1);
        tsfn_.Unref(env);
        hasTsfn_ = true;
      }
      // At environment teardown: stop the lane threads before Node closes the tsfn.
      cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
        envGone_ = true;
        if (ex_) ex_->stop();
      }));
      hasHook_ = true;
      Napi::ThreadSafeFunction tsfn = tsfn_;
      const bool has = hasTsfn_;
      ex_ = std::make_unique<lanepir::Executor>(std::move(x), o, [tsfn, has](const PassInfo& p) mutable {
        if (!has) return;
        auto* copy = new PassInfo(p);
        if (tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, PassInfo* d) {
              std::unique_ptr<PassInfo> own(d);
              if (!env || fn.IsEmpty()) return;
              Napi::Object o = Napi::Object::New(env);
              o.Set("lane", own->lane == 0 ? "hot" : "cold");
              o.Set("batch", own->batch);
              o.Set("seconds", own->seconds);
              o.Set("bytes", double(own->bytes));
              o.Set("generation", own->generation);
              fn.Call({o});
            }) != napi_ok)
          delete copy;
      });
    } catch (...) {
      throwCurrent(env);
    }
  }
  ~ExecutorWrap() override { shutdown(); }

 private:
  void shutdown() {
    if (ex_) ex_->stop();
    ex_.reset();
    if (hasHook_ && !envGone_) cleanup_.Remove(Env());
    hasHook_ = false;
    if (hasTsfn_ && !envGone_) tsfn_.Abort();
    hasTsfn_ = false;
  }
  lanepir::Executor& live() {
    if (!ex_) fail("ESTOPPED", "the executor is stopped");
    return *ex_;
  }
  Napi::Value Epoch(const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), ex_ ? double(ex_->epoch()) : 0); }

  // setGeneration(id, {hot?: LaneHandle, cold?: LaneHandle}) -> token
  Napi::Value SetGeneration(const Napi::CallbackInfo& i) {
    try {
      if (!i[0].IsString()) fail("EPARAMS", "generation must be a string");
      if (!i[1].IsObject()) fail("EPARAMS", "lanes must be an object {hot?, cold?}");
      Napi::Object lo = i[1].As<Napi::Object>();
      std::array<std::shared_ptr<Lane>, kExchangeLanes> lanes;
      const char* names[kExchangeLanes] = {"hot", "cold"};
      for (int l = 0; l < kExchangeLanes; l++) {
        Napi::Value v = lo.Get(names[l]);
        if (!v.IsUndefined() && !v.IsNull()) lanes[size_t(l)] = laneFromJs(i.Env(), v);
      }
      return Napi::Number::New(i.Env(), double(live().setGeneration(i[0].As<Napi::String>().Utf8Value(), std::move(lanes))));
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }
  Napi::Value DropGeneration(const Napi::CallbackInfo& i) {
    try {
      if (!i[0].IsString()) fail("EPARAMS", "generation must be a string");
      const uint64_t token = i.Length() > 1 && !i[1].IsUndefined() ? numArg(i[1], "token", 0, uint64_t(1) << 53) : 0;
      if (!ex_) return Napi::Boolean::New(i.Env(), false);  // stopped: it holds nothing any more
      return Napi::Boolean::New(i.Env(), ex_->dropGeneration(i[0].As<Napi::String>().Utf8Value(), token));
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }
  Napi::Value Generations(const Napi::CallbackInfo& i) {
    try {
      auto g = live().generations();
      Napi::Array a = Napi::Array::New(i.Env(), g.size());
      for (size_t k = 0; k < g.size(); k++) a.Set(uint32_t(k), g[k]);
      return a;
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }
  Napi::Value Start(const Napi::CallbackInfo& i) {
    try {
      live().start();
      return i.Env().Undefined();
    } catch (...) {
      throwCurrent(i.Env());
      return i.Env().Undefined();
    }
  }
  Napi::Value Stop(const Napi::CallbackInfo& i) {
    shutdown();
    return i.Env().Undefined();
  }

  std::unique_ptr<lanepir::Executor> ex_;
  Napi::ThreadSafeFunction tsfn_;
  bool hasTsfn_ = false, hasHook_ = false, envGone_ = false;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
};

Napi::FunctionReference* ExecutorWrap::ctor = nullptr;

}  // namespace

namespace lanepir {

void InitExchange(Napi::Env env, Napi::Object exports) {
  ExchangeWrap::ctor = new Napi::FunctionReference(Napi::Persistent(ExchangeWrap::Define(env)));
  ClientWrap::ctor = new Napi::FunctionReference(Napi::Persistent(ClientWrap::Define(env)));
  ExecutorWrap::ctor = new Napi::FunctionReference(Napi::Persistent(ExecutorWrap::Define(env)));
  exports.Set("exchangeCreate", Napi::Function::New(env, ExchangeCreate, "exchangeCreate"));
  exports.Set("exchangeOpen", Napi::Function::New(env, ExchangeOpen, "exchangeOpen"));
  exports.Set("KernelClient", ClientWrap::ctor->Value());
  exports.Set("KernelExecutor", ExecutorWrap::ctor->Value());
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("version", kExchangeVersion);
  layout.Set("headerBytes", double(kXHeaderBytes));
  layout.Set("regionHeaderBytes", double(kRegionHeaderBytes));
  layout.Set("descriptorBytes", double(kDescBytes));
  exports.Set("exchangeLayout", layout);
}

}  // namespace lanepir
