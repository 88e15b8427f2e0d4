// The N-API glue of the relay pump (pump.h).
//
// One pump engine per environment, made on first use. Completions come back from the engine's I/O thread through
// ONE threadsafe function per environment and reach ONE JS function (pumpOnDone), so a running session keeps no
// JS-side record in the addon at all: no callback reference, no async context, no uv handle on Node's loop. The
// threadsafe function is unref'ed while no session runs, so an idle addon never keeps Node alive, and ref'ed
// while any does, as an open socket would be.
//
// Teardown: the threadsafe function is made when the addon loads, so Node always closes it when the environment
// goes away, and its finalizer is where the engine stops: tp_pump_engine_free() joins the I/O thread, after which
// nothing can call the threadsafe function again. A completion pushed while it closes is refused (napi_closing)
// and leaked to nobody: call_js with a NULL env frees it, as does the finalizer's drain.
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <string>

#include "binding.h"
#include "pump.h"

struct tp_napi_pump_env_t {
  napi_threadsafe_function tsfn = NULL;  // set once at load, before any I/O thread exists
  tp_pump_engine_t* engine = NULL;
  tp_pump_config_t config;
  size_t live = 0;                       // sessions started and not yet reported (JS thread only)
  uv_check_t* wake = NULL;               // on Node's loop: one I/O-thread wakeup per loop turn that started sessions
  Napi::FunctionReference on_done;
  Napi::AsyncContext* context = NULL;
};

static tp_napi_pump_env_t* tp_napi_pump_env(Napi::Env env) {
  return tp_napi_state(env)->pump;
}

// Node's check phase, after the poll phase of the turn that started sessions: hands them all over at once.
static void tp_napi_pump_on_check(uv_check_t* handle) {
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(handle->data);
  uv_check_stop(handle);
  if (penv->engine != NULL) tp_pump_wake(penv->engine);
}

// Runs before the threadsafe function's finalizer (cleanup hooks run in reverse order of registration): whatever
// is still queued is handed over, so tp_pump_engine_free() ends those sessions too.
static void tp_napi_pump_cleanup(void* data) {
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(data);
  if (penv->engine != NULL) tp_pump_wake(penv->engine);
  // Its own allocation: libuv finishes the close on a later turn, maybe after penv is gone.
  uv_close(reinterpret_cast<uv_handle_t*>(penv->wake), [](uv_handle_t* h) { free(h); });
  penv->wake = NULL;
}

// On the I/O thread: the result travels in a copy, since the session is freed once this returns.
static void tp_napi_pump_on_done(const tp_pump_result_t* r, void* data) {
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(data);
  tp_pump_result_t* copy = static_cast<tp_pump_result_t*>(malloc(sizeof(*copy)));
  if (copy == NULL) return;  // out of memory: the session is gone either way; JS sees it as never ending
  *copy = *r;
  if (napi_call_threadsafe_function(penv->tsfn, copy, napi_tsfn_nonblocking) != napi_ok) free(copy);
}

// On the JS thread: onDone(id, bytesAToB, bytesBToA, reason, error, side, durationMs).
static void tp_napi_pump_call_js(napi_env raw_env, napi_value, void* context, void* data) {
  tp_pump_result_t* r = static_cast<tp_pump_result_t*>(data);
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(context);
  if (raw_env == NULL || penv->on_done.IsEmpty()) {
    free(r);
    return;
  }
  if (penv->live > 0 && --penv->live == 0) napi_unref_threadsafe_function(raw_env, penv->tsfn);
  Napi::Env env(raw_env);
  Napi::HandleScope scope(env);
  napi_value none = env.Undefined();
  napi_value error = r->error != 0 ? Napi::String::New(env, uv_err_name(r->error)) : none;
  napi_value side = r->side >= 0 ? Napi::String::New(env, r->side == 0 ? "a" : "b") : none;
  std::initializer_list<napi_value> args = {
      Napi::Number::New(env, r->id),
      Napi::Number::New(env, static_cast<double>(r->bytes_a_to_b)),
      Napi::Number::New(env, static_cast<double>(r->bytes_b_to_a)),
      Napi::String::New(env, tp_pump_reason_name(r->reason)),
      error,
      side,
      Napi::Number::New(env, static_cast<double>(r->duration_ms)),
  };
  free(r);
  tp_napi_call(env, penv->on_done, args, *penv->context);
}

static void tp_napi_pump_finalize(napi_env, void* data, void*) {
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(data);
  if (penv->engine != NULL) tp_pump_engine_free(penv->engine);
  delete penv->context;
  delete penv;
}

// A head: bytes the pump sends to one side before relaying (the relay's "paired" frame).
static void tp_napi_read_head(Napi::Object o, const char* key, const char** bytes, size_t* len) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw tp_napi_arg_error(o.Env(), true, std::string(key) + " must be a Buffer or Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() > 65536) throw tp_napi_arg_error(o.Env(), false, std::string(key) + " must be at most 64 KiB");
  *bytes = reinterpret_cast<const char*>(a.Data());
  *len = a.ByteLength();
}

// pumpOnDone(fn): where every session's end is reported, once per environment before the first pumpStart.
Napi::Value tp_napi_pump_on_done_set(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw tp_napi_arg_error(env, true, "onDone must be a function");
  tp_napi_pump_env_t* penv = tp_napi_pump_env(env);
  penv->on_done = Napi::Persistent(info[0].As<Napi::Function>());
  if (penv->context == NULL) penv->context = new Napi::AsyncContext(env, "tcp-punch:pump");
  return env.Undefined();
}

// pumpStart(fdA, fdB, { maxBytes, maxDurationMs, idleTimeoutMs, headA, headB, splice, adopt }) -> id
// The pump works on duplicates: the caller closes its own fds (destroys its sockets) right after. With `adopt` it
// takes the fds themselves (released held connections, acceptor.h), which stay the caller's if it throws.
Napi::Value tp_napi_pump_start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(env);
  if (penv->on_done.IsEmpty()) {
    Napi::Error e = Napi::Error::New(env, "pumpOnDone() must be called before pumpStart()");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_STATE"));
    throw e;
  }
  tp_pump_opts_t opts;
  memset(&opts, 0, sizeof(opts));
  opts.fd_a = tp_napi_read_fd(env, info[0], "fdA");
  opts.fd_b = tp_napi_read_fd(env, info[1], "fdB");
  if (opts.fd_a == opts.fd_b) throw tp_napi_arg_error(env, false, "fdA and fdB must differ");
  if (!info[2].IsObject()) throw tp_napi_arg_error(env, true, "options must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  const double max_safe = 9007199254740991.0;
  opts.max_bytes = static_cast<uint64_t>(tp_napi_read_number(o, "maxBytes", 0, 0, max_safe));
  opts.max_duration_ms = static_cast<uint64_t>(tp_napi_read_number(o, "maxDurationMs", 0, 0, max_safe));
  opts.idle_ms = static_cast<uint64_t>(tp_napi_read_number(o, "idleTimeoutMs", 0, 0, max_safe));
  tp_napi_read_head(o, "headA", &opts.head_a, &opts.head_a_len);
  tp_napi_read_head(o, "headB", &opts.head_b, &opts.head_b_len);
  Napi::Value splice = o.Get("splice");
  opts.no_splice = !splice.IsUndefined() && !splice.ToBoolean().Value();
  opts.adopt = o.Get("adopt").ToBoolean().Value();

  if (penv->engine == NULL) {
    int err = tp_pump_engine_new(&penv->engine, &penv->config);
    if (err != 0) throw tp_napi_errno_error(env, err, "uv_loop_init");
  }
  uint32_t id = 0;
  int err = tp_pump_start(penv->engine, &opts, tp_napi_pump_on_done, penv, &id);
  if (err != 0) throw tp_napi_errno_error(env, err, "pumpStart");
  if (penv->live++ == 0) napi_ref_threadsafe_function(env, penv->tsfn);
  if (penv->wake != NULL) uv_check_start(penv->wake, tp_napi_pump_on_check);  // a no-op while already started
  else tp_pump_wake(penv->engine);
  return Napi::Number::New(env, id);
}

// pumpStop(id, reason = 'stopped'): the session ends with that reason; a no-op once it has ended.
Napi::Value tp_napi_pump_stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(env);
  if (!info[0].IsNumber()) throw tp_napi_arg_error(env, true, "id must be a number");
  tp_pump_reason_t reason = TP_PUMP_STOPPED;
  if (!info[1].IsUndefined()) {
    std::string name = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    if (name == "limit-bytes") reason = TP_PUMP_LIMIT_BYTES;
    else if (name == "limit-duration") reason = TP_PUMP_LIMIT_DURATION;
    else if (name == "limit-idle") reason = TP_PUMP_LIMIT_IDLE;
    else if (name != "stopped")
      throw tp_napi_arg_error(env, false, "reason must be 'stopped', 'limit-bytes', 'limit-duration' or 'limit-idle'");
  }
  if (penv->engine == NULL) return env.Undefined();
  int err = tp_pump_stop(penv->engine, info[0].As<Napi::Number>().Uint32Value(), reason);
  if (err != 0) throw tp_napi_errno_error(env, err, "pumpStop");
  return env.Undefined();
}

// pumpStats() -> { sessions, waiting, pipesIdle, pipesInUse, buffersIdle, buffersInUse, started, completed, ... }
Napi::Value tp_napi_pump_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(env);
  tp_pump_stats_t s;
  memset(&s, 0, sizeof(s));
  if (penv->engine != NULL) tp_pump_stats(penv->engine, &s);
  const tp_pump_config_t& c = penv->config;
  Napi::Object o = Napi::Object::New(env);
  const struct {
    const char* key;
    double value;
  } fields[] = {
      {"sessions", static_cast<double>(s.sessions)},     {"waiting", static_cast<double>(s.waiting)},
      {"pipesIdle", static_cast<double>(s.pipes_idle)},  {"pipesInUse", static_cast<double>(s.pipes_lent)},
      {"buffersIdle", static_cast<double>(s.buffers_idle)}, {"buffersInUse", static_cast<double>(s.buffers_lent)},
      {"started", static_cast<double>(s.started)},       {"completed", static_cast<double>(s.completed)},
      {"maxPipes", static_cast<double>(c.max_pipes)},    {"pipeSize", static_cast<double>(c.pipe_size)},
      {"maxBuffers", static_cast<double>(c.max_buffers)}, {"bufferSize", static_cast<double>(c.buffer_size)},
      {"maxIdle", static_cast<double>(c.max_idle)},
  };
  for (const auto& f : fields) o.Set(f.key, Napi::Number::New(env, f.value));
  o.Set("threadRunning", Napi::Boolean::New(env, s.thread_running != 0));
  return o;
}

// pumpConfigure({ maxPipes, pipeSize, maxBuffers, bufferSize, maxIdle }): pool sizes; absent keys keep theirs.
Napi::Value tp_napi_pump_configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(env);
  if (!info[0].IsObject()) throw tp_napi_arg_error(env, true, "config must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  tp_pump_config_t c = penv->config;
  const struct {
    const char* key;
    size_t* field;
    double min, max;
  } keys[] = {
      {"maxPipes", &c.max_pipes, 0, 4096},        {"pipeSize", &c.pipe_size, 4096, 1 << 24},
      {"maxBuffers", &c.max_buffers, 1, 65536},   {"bufferSize", &c.buffer_size, 1, 1 << 24},
      {"maxIdle", &c.max_idle, 0, 4096},
  };
  for (const auto& k : keys)
    *k.field = static_cast<size_t>(tp_napi_read_number(o, k.key, static_cast<double>(*k.field), k.min, k.max));
  if (penv->engine != NULL) {
    int err = tp_pump_configure(penv->engine, &c);
    if (err != 0) throw tp_napi_errno_error(env, err, "pumpConfigure");
  }
  penv->config = c;
  return env.Undefined();
}

void tp_napi_pump_init(Napi::Env env, tp_napi_state_t* state) {
  tp_napi_pump_env_t* penv = new tp_napi_pump_env_t();
  tp_pump_config_default(&penv->config);
  napi_value name = Napi::String::New(env, "tcp-punch:pump");
  napi_status st = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, penv, tp_napi_pump_finalize, penv,
                                                   tp_napi_pump_call_js, &penv->tsfn);
  if (st != napi_ok) {
    delete penv;
    throw Napi::Error::New(env, "cannot create the pump's threadsafe function");
  }
  napi_unref_threadsafe_function(env, penv->tsfn);
  // Without the check handle (no memory), every start wakes the I/O thread itself.
  uv_loop_t* loop = NULL;
  uv_check_t* wake = static_cast<uv_check_t*>(malloc(sizeof(uv_check_t)));
  if (wake != NULL && napi_get_uv_event_loop(env, &loop) == napi_ok && uv_check_init(loop, wake) == 0) {
    wake->data = penv;
    uv_unref(reinterpret_cast<uv_handle_t*>(wake));
    penv->wake = wake;
    napi_add_env_cleanup_hook(env, tp_napi_pump_cleanup, penv);
  } else {
    free(wake);
  }
  state->pump = penv;
}
