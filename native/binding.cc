// The N-API surface of tcp-punch: one flat list of tp_napi_* functions over socket.h, punch.h and pump.h.
//
// Errors from the OS become JS Errors whose `code` is the errno name (EADDRINUSE, ETIMEDOUT...), with `errno`
// (negative, as in libuv) and `syscall`; bad arguments become TypeError/RangeError with an ERR_* code. Nothing
// here blocks: punches run on Node's own loop through uv_poll.
#include <napi.h>
#include <uv.h>

#include <unordered_map>
#include <string>

#include "punch.h"
#include "pump.h"
#include "socket.h"

static Napi::Error tp_napi_errno_error(Napi::Env env, int err, const char* syscall, const std::string& detail = "") {
  std::string msg = std::string(syscall) + " " + uv_err_name(err) + ": " + uv_strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

static Napi::Error tp_napi_arg_error(Napi::Env env, bool type, const std::string& msg) {
  Napi::Error e = type ? static_cast<Napi::Error>(Napi::TypeError::New(env, msg))
                       : static_cast<Napi::Error>(Napi::RangeError::New(env, msg));
  e.Set("code", Napi::String::New(env, type ? "ERR_INVALID_ARG_TYPE" : "ERR_INVALID_ARG_VALUE"));
  return e;
}

static Napi::Object tp_napi_endpoint(Napi::Env env, const struct sockaddr_storage* ss) {
  char ip[TP_IP_MAX] = "";
  int port = 0;
  tp_sockaddr_format(reinterpret_cast<const struct sockaddr*>(ss), ip, &port);
  Napi::Object o = Napi::Object::New(env);
  o.Set("host", Napi::String::New(env, ip));
  o.Set("port", Napi::Number::New(env, port));
  return o;
}

// Reads { host, port } into a sockaddr; throws on anything that is not a numeric IP and a port in 0..65535.
static void tp_napi_read_endpoint(Napi::Env env, Napi::Value v, const char* name, struct sockaddr_storage* out) {
  if (!v.IsObject()) throw tp_napi_arg_error(env, true, std::string(name) + " must be an object { host, port }");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value host = o.Get("host");
  Napi::Value port = o.Get("port");
  if (!host.IsString()) throw tp_napi_arg_error(env, true, std::string(name) + ".host must be a string");
  if (!port.IsNumber()) throw tp_napi_arg_error(env, true, std::string(name) + ".port must be a number");
  double p = port.As<Napi::Number>().DoubleValue();
  if (!(p >= 0 && p <= 65535) || p != static_cast<int>(p))
    throw tp_napi_arg_error(env, false, std::string(name) + ".port must be an integer in 0..65535");
  std::string ip = host.As<Napi::String>().Utf8Value();
  if (tp_sockaddr_parse(ip.c_str(), static_cast<int>(p), out) < 0)
    throw tp_napi_arg_error(env, false, std::string(name) + ".host must be a numeric IPv4 or IPv6 address");
}

// An integer option in min..max, or `fallback` when absent.
static double tp_napi_read_number(Napi::Object o, const char* key, double fallback, double min, double max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw tp_napi_arg_error(o.Env(), true, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw tp_napi_arg_error(o.Env(), false,
                            std::string(key) + " must be an integer in " + std::to_string(static_cast<int64_t>(min)) + ".." +
                                std::to_string(static_cast<int64_t>(max)));
  }
  return d;
}

// socketBind({ host, port }, listen: boolean) -> { fd, host, port }
static Napi::Value tp_napi_socket_bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_storage addr;
  tp_napi_read_endpoint(env, info[0], "local", &addr);
  bool listen = info[1].ToBoolean().Value();

  int fd = tp_socket_reusable(reinterpret_cast<struct sockaddr*>(&addr));
  if (fd < 0) throw tp_napi_errno_error(env, fd, "bind");
  int err = listen ? tp_socket_listen(fd, 64) : 0;
  if (err == 0) err = tp_socket_local(fd, &addr);
  if (err != 0) {
    tp_socket_close(fd);
    throw tp_napi_errno_error(env, err, listen ? "listen" : "getsockname");
  }
  Napi::Object o = tp_napi_endpoint(env, &addr);
  o.Set("fd", Napi::Number::New(env, fd));
  return o;
}

// socketClose(fd): only for fds this addon handed out and Node never adopted.
static Napi::Value tp_napi_socket_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw tp_napi_arg_error(env, true, "fd must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= INT32_MAX) || d != static_cast<int32_t>(d))
    throw tp_napi_arg_error(env, false, "fd must be an integer >= 0");
  int fd = static_cast<int>(d);
  tp_socket_close(fd);
  return env.Undefined();
}

// A punch in flight as JS sees it. Lives from punchStart until its completion callback has been delivered.
struct tp_napi_punch_t {
  Napi::Env env;
  Napi::FunctionReference callback;
  Napi::FunctionReference on_candidate;  // empty unless the punch hands over candidates
  Napi::AsyncContext context;
  uint32_t id;
  tp_punch_t* punch;  // NULL once finished
  bool env_gone;      // the environment is shutting down: free without calling into JS
  tp_napi_punch_t(Napi::Env e, Napi::Function cb, uint32_t i) : env(e), callback(Napi::Persistent(cb)),
      context(e, "tcp-punch:punch"), id(i), punch(NULL), env_gone(false) {}
};

// Punches still running in one environment, by id: JS refers to a punch by number, so a stale id can never reach
// freed memory, and an exiting worker can abort what is left instead of leaking fds.
struct tp_napi_state_t {
  uint32_t next_id = 1;
  std::unordered_map<uint32_t, tp_napi_punch_t*> live;
};

static void tp_napi_punch_on_done(const tp_punch_result_t* r, void* data) {
  tp_napi_punch_t* js = static_cast<tp_napi_punch_t*>(data);
  js->punch = NULL;
  if (js->env_gone) {
    if (r->fd >= 0) tp_socket_close(r->fd);
    delete js;
    return;
  }
  Napi::Env env = js->env;
  env.GetInstanceData<tp_napi_state_t>()->live.erase(js->id);
  Napi::HandleScope scope(env);

  Napi::Array last_errors = Napi::Array::New(env, r->target_count);
  for (int i = 0; i < r->target_count; i++) {
    int e = r->last_errors[i];
    last_errors.Set(i, e == 0 ? env.Null() : Napi::String::New(env, uv_err_name(e)));
  }
  Napi::Value err = env.Null();
  Napi::Object res = Napi::Object::New(env);
  if (r->status != 0) {
    Napi::Error e = tp_napi_errno_error(env, r->status, r->syscall ? r->syscall : "punch");
    e.Set("attempts", Napi::Number::New(env, r->attempts));
    e.Set("lastErrors", last_errors);
    err = e.Value();
  } else {
    res.Set("fd", Napi::Number::New(env, r->fd));
    res.Set("via", Napi::String::New(env, r->via_accept ? "accept" : "connect"));
    res.Set("local", tp_napi_endpoint(env, &r->local));
    res.Set("remote", tp_napi_endpoint(env, &r->remote));
    res.Set("attempts", Napi::Number::New(env, r->attempts));
    res.Set("lastErrors", last_errors);
  }
  res.Set("elapsedMs", Napi::Number::New(env, static_cast<double>(r->elapsed_ms)));
  try {
    js->callback.MakeCallback(env.Global(), {err, res}, js->context);
  } catch (const Napi::Error& e) {
    // We are in a libuv callback, not under a JS frame: report it as an uncaught exception, as Node would.
    napi_fatal_exception(env, e.Value());
  }
  delete js;
}

// A candidate of a punch that keeps going: onCandidate({ fd, via, local, remote, attempts, elapsedMs }).
static void tp_napi_punch_on_candidate(const tp_punch_result_t* r, void* data) {
  tp_napi_punch_t* js = static_cast<tp_napi_punch_t*>(data);
  if (js->env_gone) {
    tp_socket_close(r->fd);
    return;
  }
  Napi::Env env = js->env;
  Napi::HandleScope scope(env);
  Napi::Object res = Napi::Object::New(env);
  res.Set("fd", Napi::Number::New(env, r->fd));
  res.Set("via", Napi::String::New(env, r->via_accept ? "accept" : "connect"));
  res.Set("local", tp_napi_endpoint(env, &r->local));
  res.Set("remote", tp_napi_endpoint(env, &r->remote));
  res.Set("attempts", Napi::Number::New(env, r->attempts));
  res.Set("elapsedMs", Napi::Number::New(env, static_cast<double>(r->elapsed_ms)));
  try {
    js->on_candidate.MakeCallback(env.Global(), {res}, js->context);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

// punchStart({ local, listenFd, listen, targets, timeoutMs, retryMs, firstTtl }, callback[, onCandidate]) -> id
// With onCandidate the punch hands every connection there and runs until punchAbort(id) or its deadline.
static Napi::Value tp_napi_punch_start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw tp_napi_arg_error(env, true, "options must be an object");
  if (!info[1].IsFunction()) throw tp_napi_arg_error(env, true, "callback must be a function");
  Napi::Object o = info[0].As<Napi::Object>();

  tp_punch_opts_t opts;
  memset(&opts, 0, sizeof(opts));
  tp_napi_read_endpoint(env, o.Get("local"), "local", &opts.local);
  opts.listen_fd = static_cast<int>(tp_napi_read_number(o, "listenFd", -1, -1, INT32_MAX));
  opts.listen = o.Get("listen").ToBoolean().Value();
  Napi::Value targets = o.Get("targets");
  if (!targets.IsArray()) throw tp_napi_arg_error(env, true, "targets must be an array");
  Napi::Array arr = targets.As<Napi::Array>();
  if (arr.Length() < 1 || arr.Length() > TP_PUNCH_MAX_TARGETS)
    throw tp_napi_arg_error(env, false, "targets must hold 1.." + std::to_string(TP_PUNCH_MAX_TARGETS) + " endpoints");
  opts.target_count = static_cast<int>(arr.Length());
  for (int i = 0; i < opts.target_count; i++) {
    tp_napi_read_endpoint(env, arr.Get(i), "targets[i]", &opts.targets[i]);
    if (opts.targets[i].ss_family != opts.local.ss_family)
      throw tp_napi_arg_error(env, false, "targets must have the same address family as local");
  }
  opts.timeout_ms = static_cast<uint64_t>(tp_napi_read_number(o, "timeoutMs", 10000, 1, 86400000));
  opts.retry_ms = static_cast<int64_t>(tp_napi_read_number(o, "retryMs", 5, -1, 60000));
  opts.first_ttl = static_cast<int>(tp_napi_read_number(o, "firstTtl", 0, 0, 255));
  opts.accept_any_port = o.Get("acceptAnyPort").ToBoolean().Value() ? 1 : 0;

  uv_loop_t* loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");

  tp_napi_state_t* state = env.GetInstanceData<tp_napi_state_t>();
  uint32_t id = state->next_id++;
  if (state->next_id == 0) state->next_id = 1;
  tp_napi_punch_t* js = new tp_napi_punch_t(env, info[1].As<Napi::Function>(), id);
  if (info.Length() > 2 && info[2].IsFunction()) {
    js->on_candidate = Napi::Persistent(info[2].As<Napi::Function>());
    opts.on_candidate = tp_napi_punch_on_candidate;
  }
  const char* syscall = NULL;
  int err = tp_punch_start(loop, &opts, tp_napi_punch_on_done, js, &js->punch, &syscall);
  if (err != 0) {
    delete js;
    throw tp_napi_errno_error(env, err, syscall);
  }
  state->live[id] = js;
  return Napi::Number::New(env, id);
}

// punchAbort(id): the callback then reports ECANCELED. A no-op once the punch has finished.
static Napi::Value tp_napi_punch_abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw tp_napi_arg_error(env, true, "id must be a number");
  tp_napi_state_t* state = env.GetInstanceData<tp_napi_state_t>();
  auto it = state->live.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != state->live.end() && it->second->punch != NULL) tp_punch_abort(it->second->punch);
  return env.Undefined();
}

static void tp_napi_env_cleanup(Napi::Env, tp_napi_state_t* state) {
  for (auto& entry : state->live) {
    entry.second->env_gone = true;
    if (entry.second->punch != NULL) tp_punch_abort(entry.second->punch);
  }
  delete state;
}

// ---- The relay pump (pump.h) ----
//
// One pump engine per environment, made on first use. Completions come back from the engine's I/O thread through
// ONE threadsafe function per environment, not one per session (9,000 sessions must not mean 9,000 uv_async
// handles on Node's loop). It is unref'ed while no session runs, so an idle addon never keeps Node alive, and
// ref'ed while any does, as an open socket would be.
//
// Teardown: the threadsafe function is made when the addon loads, so Node always closes it when the environment
// goes away, and its finalizer is where the engine stops: tp_pump_engine_free() joins the I/O thread, after which
// nothing can call the threadsafe function again. A completion pushed while it closes is refused (napi_closing)
// and its record freed by that finalizer; call_js with a NULL env does nothing for the same reason.

struct tp_napi_pump_env_t;

// A session as JS sees it: from pumpStart until its callback has run.
struct tp_napi_pump_t {
  tp_napi_pump_env_t* penv;
  uint32_t id;
  Napi::FunctionReference callback;
  Napi::AsyncContext context;
  tp_pump_result_t result;  // written by the I/O thread before it hands the record over
  tp_napi_pump_t(Napi::Env e, tp_napi_pump_env_t* p, Napi::Function cb)
      : penv(p), id(0), callback(Napi::Persistent(cb)), context(e, "tcp-punch:pump") {
    memset(&result, 0, sizeof(result));
  }
};

struct tp_napi_pump_env_t {
  napi_threadsafe_function tsfn = NULL;  // set once at load, before any I/O thread exists
  tp_pump_engine_t* engine = NULL;
  tp_pump_config_t config;
  std::unordered_map<uint32_t, tp_napi_pump_t*> live;  // JS thread only
};

static tp_pump_engine_t* tp_napi_pump_engine(Napi::Env env, tp_napi_pump_env_t* penv) {
  if (penv->engine != NULL) return penv->engine;
  int err = tp_pump_engine_new(&penv->engine);
  if (err != 0) throw tp_napi_errno_error(env, err, "uv_loop_init");
  tp_pump_configure(penv->engine, &penv->config);  // no thread yet: applied in place, cannot fail
  return penv->engine;
}

// On the I/O thread.
static void tp_napi_pump_on_done(const tp_pump_result_t* r, void* data) {
  tp_napi_pump_t* js = static_cast<tp_napi_pump_t*>(data);
  js->result = *r;
  napi_call_threadsafe_function(js->penv->tsfn, js, napi_tsfn_nonblocking);
}

static const char* tp_napi_pump_side(int side) {
  return side == 0 ? "a" : "b";
}

// On the JS thread: delivers one completion.
static void tp_napi_pump_call_js(napi_env raw_env, napi_value, void* context, void* data) {
  if (raw_env == NULL) return;  // closing: the finalizer frees what is left
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(context);
  tp_napi_pump_t* js = static_cast<tp_napi_pump_t*>(data);
  penv->live.erase(js->id);
  if (penv->live.empty()) napi_unref_threadsafe_function(raw_env, penv->tsfn);

  Napi::Env env(raw_env);
  Napi::HandleScope scope(env);
  const tp_pump_result_t* r = &js->result;
  Napi::Object res = Napi::Object::New(env);
  res.Set("bytesAToB", Napi::Number::New(env, static_cast<double>(r->bytes_a_to_b)));
  res.Set("bytesBToA", Napi::Number::New(env, static_cast<double>(r->bytes_b_to_a)));
  res.Set("reason", Napi::String::New(env, tp_pump_reason_name(r->reason)));
  if (r->error != 0) res.Set("error", Napi::String::New(env, uv_err_name(r->error)));
  if (r->side >= 0) res.Set("side", Napi::String::New(env, tp_napi_pump_side(r->side)));
  res.Set("durationMs", Napi::Number::New(env, static_cast<double>(r->duration_ms)));
  try {
    js->callback.MakeCallback(env.Global(), {res}, js->context);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
  delete js;
}

static void tp_napi_pump_finalize(napi_env, void* data, void*) {
  tp_napi_pump_env_t* penv = static_cast<tp_napi_pump_env_t*>(data);
  if (penv->engine != NULL) tp_pump_engine_free(penv->engine);
  for (auto& entry : penv->live) delete entry.second;
  delete penv;
}

static tp_napi_pump_env_t* tp_napi_pump_env(const Napi::CallbackInfo& info) {
  return static_cast<tp_napi_pump_env_t*>(info.Data());
}

static int tp_napi_read_fd(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsNumber()) throw tp_napi_arg_error(env, true, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= INT32_MAX) || d != static_cast<int32_t>(d))
    throw tp_napi_arg_error(env, false, std::string(name) + " must be an integer >= 0");
  return static_cast<int>(d);
}

// A head: bytes the pump sends to one side before relaying (the relay's "paired" frame).
static std::string tp_napi_read_head(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return std::string();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw tp_napi_arg_error(o.Env(), true, std::string(key) + " must be a Buffer or Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() > 65536) throw tp_napi_arg_error(o.Env(), false, std::string(key) + " must be at most 64 KiB");
  return std::string(reinterpret_cast<const char*>(a.Data()), a.ByteLength());
}

// pumpStart(fdA, fdB, { maxBytes, maxDurationMs, headA, headB, splice }, onDone) -> id
// The pump works on duplicates: the caller closes its own fds (destroys its sockets) right after.
static Napi::Value tp_napi_pump_start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(info);
  tp_pump_opts_t opts;
  memset(&opts, 0, sizeof(opts));
  opts.fd_a = tp_napi_read_fd(env, info[0], "fdA");
  opts.fd_b = tp_napi_read_fd(env, info[1], "fdB");
  if (opts.fd_a == opts.fd_b) throw tp_napi_arg_error(env, false, "fdA and fdB must differ");
  if (!info[2].IsObject()) throw tp_napi_arg_error(env, true, "options must be an object");
  if (!info[3].IsFunction()) throw tp_napi_arg_error(env, true, "onDone must be a function");
  Napi::Object o = info[2].As<Napi::Object>();
  const double max_safe = 9007199254740991.0;
  opts.max_bytes = static_cast<uint64_t>(tp_napi_read_number(o, "maxBytes", 0, 0, max_safe));
  opts.max_duration_ms = static_cast<uint64_t>(tp_napi_read_number(o, "maxDurationMs", 0, 0, max_safe));
  opts.idle_ms = static_cast<uint64_t>(tp_napi_read_number(o, "idleTimeoutMs", 0, 0, max_safe));
  std::string head_a = tp_napi_read_head(o, "headA");
  std::string head_b = tp_napi_read_head(o, "headB");
  opts.head_a = head_a.data();
  opts.head_a_len = head_a.size();
  opts.head_b = head_b.data();
  opts.head_b_len = head_b.size();
  Napi::Value splice = o.Get("splice");
  opts.no_splice = !splice.IsUndefined() && !splice.ToBoolean().Value();

  tp_pump_engine_t* engine = tp_napi_pump_engine(env, penv);
  tp_napi_pump_t* js = new tp_napi_pump_t(env, penv, info[3].As<Napi::Function>());
  uint32_t id = 0;
  int err = tp_pump_start(engine, &opts, tp_napi_pump_on_done, js, &id);
  if (err != 0) {
    delete js;
    throw tp_napi_errno_error(env, err, "pumpStart");
  }
  js->id = id;
  if (penv->live.empty()) napi_ref_threadsafe_function(env, penv->tsfn);
  penv->live[id] = js;
  return Napi::Number::New(env, id);
}

// pumpStop(id, reason = 'stopped'): the session ends with that reason; a no-op once it has ended.
static Napi::Value tp_napi_pump_stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(info);
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
  auto it = penv->live.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == penv->live.end()) return env.Undefined();
  int err = tp_pump_stop(penv->engine, it->first, reason);
  if (err != 0) throw tp_napi_errno_error(env, err, "pumpStop");
  return env.Undefined();
}

// pumpStats() -> { sessions, waiting, pipesIdle, pipesInUse, buffersIdle, buffersInUse, started, completed, ... }
static Napi::Value tp_napi_pump_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(info);
  tp_pump_stats_t s;
  memset(&s, 0, sizeof(s));
  if (penv->engine != NULL) tp_pump_stats(penv->engine, &s);
  Napi::Object o = Napi::Object::New(env);
  o.Set("sessions", Napi::Number::New(env, static_cast<double>(s.sessions)));
  o.Set("waiting", Napi::Number::New(env, static_cast<double>(s.waiting)));
  o.Set("pipesIdle", Napi::Number::New(env, static_cast<double>(s.pipes_idle)));
  o.Set("pipesInUse", Napi::Number::New(env, static_cast<double>(s.pipes_lent)));
  o.Set("buffersIdle", Napi::Number::New(env, static_cast<double>(s.buffers_idle)));
  o.Set("buffersInUse", Napi::Number::New(env, static_cast<double>(s.buffers_lent)));
  o.Set("started", Napi::Number::New(env, static_cast<double>(s.started)));
  o.Set("completed", Napi::Number::New(env, static_cast<double>(s.completed)));
  o.Set("threadRunning", Napi::Boolean::New(env, s.thread_running != 0));
  o.Set("maxPipes", Napi::Number::New(env, static_cast<double>(penv->config.max_pipes)));
  o.Set("pipeSize", Napi::Number::New(env, static_cast<double>(penv->config.pipe_size)));
  o.Set("maxBuffers", Napi::Number::New(env, static_cast<double>(penv->config.max_buffers)));
  o.Set("bufferSize", Napi::Number::New(env, static_cast<double>(penv->config.buffer_size)));
  return o;
}

// pumpConfigure({ maxPipes, pipeSize, maxBuffers, bufferSize, maxIdle }): pool sizes; absent keys keep theirs.
static Napi::Value tp_napi_pump_configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_pump_env_t* penv = tp_napi_pump_env(info);
  if (!info[0].IsObject()) throw tp_napi_arg_error(env, true, "config must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  tp_pump_config_t c = penv->config;
  c.max_pipes = static_cast<size_t>(tp_napi_read_number(o, "maxPipes", static_cast<double>(c.max_pipes), 0, 4096));
  c.pipe_size = static_cast<size_t>(tp_napi_read_number(o, "pipeSize", static_cast<double>(c.pipe_size), 4096, 1 << 24));
  c.max_buffers = static_cast<size_t>(tp_napi_read_number(o, "maxBuffers", static_cast<double>(c.max_buffers), 1, 65536));
  c.buffer_size =
      static_cast<size_t>(tp_napi_read_number(o, "bufferSize", static_cast<double>(c.buffer_size), 1, 1 << 24));
  c.max_idle = static_cast<size_t>(tp_napi_read_number(o, "maxIdle", static_cast<double>(c.max_idle), 0, 4096));
  if (penv->engine != NULL) {
    int err = tp_pump_configure(penv->engine, &c);
    if (err != 0) throw tp_napi_errno_error(env, err, "pumpConfigure");
  }
  penv->config = c;
  return env.Undefined();
}

static void tp_napi_pump_register(Napi::Env env, Napi::Object exports) {
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
  exports.Set("pumpStart", Napi::Function::New(env, tp_napi_pump_start, "pumpStart", penv));
  exports.Set("pumpStop", Napi::Function::New(env, tp_napi_pump_stop, "pumpStop", penv));
  exports.Set("pumpStats", Napi::Function::New(env, tp_napi_pump_stats, "pumpStats", penv));
  exports.Set("pumpConfigure", Napi::Function::New(env, tp_napi_pump_configure, "pumpConfigure", penv));
}

static Napi::Object tp_napi_init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<tp_napi_state_t, tp_napi_env_cleanup>(new tp_napi_state_t());
  exports.Set("socketBind", Napi::Function::New(env, tp_napi_socket_bind, "socketBind"));
  exports.Set("socketClose", Napi::Function::New(env, tp_napi_socket_close, "socketClose"));
  exports.Set("punchStart", Napi::Function::New(env, tp_napi_punch_start, "punchStart"));
  exports.Set("punchAbort", Napi::Function::New(env, tp_napi_punch_abort, "punchAbort"));
  tp_napi_pump_register(env, exports);
  return exports;
}

NODE_API_MODULE(tcp_punch, tp_napi_init)
