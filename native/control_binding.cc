// N-API face of the control segment: controlCreate(name, slots) for the
// primary, controlOpen(name) for workers and inspection tools. Each returns a
// ControlHandle whose small typed accessors are cheap enough to call on
// every request (publishCount() is one atomic load).
#include <napi.h>

#include <memory>
#include <new>

#include "control.h"
#include "errors.h"
#include "napi_errors.h"

using namespace lanepir;

namespace {

Napi::Value u64OrNull(Napi::Env env, uint64_t v) {
  return v == kNone ? env.Null() : Napi::Number::New(env, double(v));
}

Napi::Value idOrNull(Napi::Env env, const std::string& id) {
  return id.empty() ? env.Null() : Napi::String::New(env, id);
}

// A generation id: a non-empty string (null/undefined where `allowNull`).
std::string idArg(const Napi::Value& v, const char* what, bool allowNull = false) {
  if (allowNull && (v.IsNull() || v.IsUndefined())) return std::string();
  if (!v.IsString()) fail("EPARAMS", std::string(what) + " must be a generation id string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty()) fail("EPARAMS", std::string(what) + " must not be empty");
  return s;
}

uint64_t u64Arg(const Napi::Value& v, const char* what, bool allowNull = false) {
  if (allowNull && (v.IsNull() || v.IsUndefined())) return kNone;
  if (!v.IsNumber()) fail("EPARAMS", std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != double(uint64_t(d))) fail("EPARAMS", std::string(what) + " must be a safe non-negative integer");
  return uint64_t(d);
}

class ControlHandle : public Napi::ObjectWrap<ControlHandle> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ControlSegment",
                       {
                           InstanceAccessor<&ControlHandle::Name>("name"),
                           InstanceAccessor<&ControlHandle::Slots>("slots"),
                           InstanceAccessor<&ControlHandle::PrimaryPid>("primaryPid"),
                           InstanceMethod<&ControlHandle::Publish>("publish"),
                           InstanceMethod<&ControlHandle::ReadPublished>("readPublished"),
                           InstanceMethod<&ControlHandle::PublishCount>("publishCount"),
                           InstanceMethod<&ControlHandle::WriteSlot>("writeSlot"),
                           InstanceMethod<&ControlHandle::ReadSlot>("readSlot"),
                           InstanceMethod<&ControlHandle::ClearSlot>("clearSlot"),
                           InstanceMethod<&ControlHandle::Unlink>("unlink"),
                           InstanceMethod<&ControlHandle::Close>("close"),
                       });
  }

  ControlHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ControlHandle>(info) {
    // Constructed only from controlCreate/controlOpen with an External.
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throwCoded(info.Env(), "EPARAMS", "use controlCreate() or controlOpen()");
      return;
    }
    seg_.reset(info[0].As<Napi::External<ControlSegment>>().Data());
  }

 private:
  template <typename F>
  Napi::Value guard(const Napi::CallbackInfo& info, F f) {
    try {
      if (!seg_) fail("ESEGMENT", "control segment is closed");
      return f();
    } catch (...) {
      throwCurrent(info.Env());
      return info.Env().Undefined();
    }
  }

  Napi::Value Name(const Napi::CallbackInfo& info) {
    return guard(info, [&] { return Napi::String::New(info.Env(), seg_->name()); });
  }
  Napi::Value Slots(const Napi::CallbackInfo& info) {
    return guard(info, [&] { return Napi::Number::New(info.Env(), seg_->slots()); });
  }
  Napi::Value PrimaryPid(const Napi::CallbackInfo& info) {
    return guard(info, [&] { return Napi::Number::New(info.Env(), double(seg_->primaryPid())); });
  }

  // publish({generation, blockNumber, dir})
  Napi::Value Publish(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      if (!info[0].IsObject()) fail("EPARAMS", "publish takes {generation, blockNumber, dir}");
      Napi::Object o = info[0].As<Napi::Object>();
      Napi::Value dir = o.Get("dir");
      if (!dir.IsString()) fail("EPARAMS", "dir must be a string");
      seg_->publish(idArg(o.Get("generation"), "generation"), u64Arg(o.Get("blockNumber"), "blockNumber"),
                    dir.As<Napi::String>().Utf8Value());
      return Napi::Number::New(info.Env(), double(seg_->publishCount()));
    });
  }

  Napi::Value ReadPublished(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      Published p = seg_->readPublished();
      if (p.count == 0) return info.Env().Null();
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("count", Napi::Number::New(info.Env(), double(p.count)));
      o.Set("generation", idOrNull(info.Env(), p.id));
      o.Set("blockNumber", u64OrNull(info.Env(), p.block));
      o.Set("publishedAt", Napi::Number::New(info.Env(), double(p.timeMs)));
      o.Set("dir", Napi::String::New(info.Env(), p.dir));
      return o;
    });
  }

  Napi::Value PublishCount(const Napi::CallbackInfo& info) {
    return guard(info, [&] { return Napi::Number::New(info.Env(), double(seg_->publishCount())); });
  }

  // writeSlot(index, {pid, serving, requests, held: [{generation, inFlight}], heldTotal?})
  // Every held generation may be passed: the first heldMax are listed, and
  // heldTotal (default: held.length) records how many there are.
  Napi::Value WriteSlot(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      const uint32_t index = uint32_t(u64Arg(info[0], "slot index"));
      if (!info[1].IsObject()) fail("EPARAMS", "writeSlot takes (index, {pid, serving, requests, held})");
      Napi::Object o = info[1].As<Napi::Object>();
      SlotState s;
      s.pid = u64Arg(o.Get("pid"), "pid");
      s.serving = idArg(o.Get("serving"), "serving", true);
      s.requests = o.Has("requests") ? u64Arg(o.Get("requests"), "requests") : 0;
      Napi::Value held = o.Get("held");
      if (held.IsArray()) {
        Napi::Array a = held.As<Napi::Array>();
        if (a.Length() > 1000000) fail("EPARAMS", "held has more than 1,000,000 entries");
        for (uint32_t i = 0; i < a.Length(); i++) {
          Napi::Value e = a.Get(i);
          if (!e.IsObject()) fail("EPARAMS", "held entries are {generation, inFlight}");
          Napi::Object h = e.As<Napi::Object>();
          s.held.emplace_back(idArg(h.Get("generation"), "held.generation"), u64Arg(h.Get("inFlight"), "held.inFlight"));
        }
      }
      if (o.Has("heldTotal") && !o.Get("heldTotal").IsUndefined()) s.heldTotal = u64Arg(o.Get("heldTotal"), "heldTotal");
      seg_->writeSlot(index, s);
      return info.Env().Undefined();
    });
  }

  Napi::Value ReadSlot(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      SlotState s = seg_->readSlot(uint32_t(u64Arg(info[0], "slot index")));
      Napi::Env env = info.Env();
      Napi::Object o = Napi::Object::New(env);
      o.Set("pid", Napi::Number::New(env, double(s.pid)));
      o.Set("heartbeatAt", Napi::Number::New(env, double(s.heartbeatMs)));
      o.Set("serving", idOrNull(env, s.serving));
      o.Set("requests", Napi::Number::New(env, double(s.requests)));
      Napi::Array held = Napi::Array::New(env, s.held.size());
      for (size_t i = 0; i < s.held.size(); i++) {
        Napi::Object h = Napi::Object::New(env);
        h.Set("generation", Napi::String::New(env, s.held[i].first));
        h.Set("inFlight", Napi::Number::New(env, double(s.held[i].second)));
        held.Set(uint32_t(i), h);
      }
      o.Set("held", held);
      o.Set("heldTotal", Napi::Number::New(env, double(s.heldTotal)));
      return o;
    });
  }

  Napi::Value ClearSlot(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      seg_->clearSlot(uint32_t(u64Arg(info[0], "slot index")));
      return info.Env().Undefined();
    });
  }

  Napi::Value Unlink(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      seg_->unlink();
      return info.Env().Undefined();
    });
  }

  // Unmaps now; later calls throw ESEGMENT (never touch freed memory).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    seg_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<ControlSegment> seg_;
};

Napi::FunctionReference* ControlHandle::ctor = nullptr;

Napi::Value Wrap(Napi::Env env, ControlSegment* seg) {
  return ControlHandle::ctor->New({Napi::External<ControlSegment>::New(env, seg)});
}

std::string nameArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) fail("EPARAMS", "segment name must be a string");
  return info[0].As<Napi::String>().Utf8Value();
}

Napi::Value ControlCreate(const Napi::CallbackInfo& info) {
  try {
    return Wrap(info.Env(), ControlSegment::create(nameArg(info), uint32_t(u64Arg(info[1], "slots"))));
  } catch (...) {
    throwCurrent(info.Env());
    return info.Env().Undefined();
  }
}

Napi::Value ControlOpen(const Napi::CallbackInfo& info) {
  try {
    return Wrap(info.Env(), ControlSegment::open(nameArg(info)));
  } catch (...) {
    throwCurrent(info.Env());
    return info.Env().Undefined();
  }
}

}  // namespace

namespace lanepir {

void InitControl(Napi::Env env, Napi::Object exports) {
  Napi::Function f = ControlHandle::Define(env);
  // One addon instance per process (no worker_threads use); the constructor lives as long as it.
  ControlHandle::ctor = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("controlCreate", Napi::Function::New(env, ControlCreate));
  exports.Set("controlOpen", Napi::Function::New(env, ControlOpen));
  exports.Set("controlLayout", [&] {
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", Napi::Number::New(env, kControlLayoutVersion));
    o.Set("headerBytes", Napi::Number::New(env, double(kHeaderBytes)));
    o.Set("slotBytes", Napi::Number::New(env, double(kSlotBytes)));
    o.Set("heldMax", Napi::Number::New(env, double(kHeldMax)));
    return o;
  }());
}

}  // namespace lanepir
