// The N-API glue of sockets and punches (socket.h, punch.h): both run on Node's own loop through uv_poll.
#include <string.h>
#include <uv.h>

#include <string>
#include <unordered_map>

#include "binding.h"
#include "punch.h"
#include "socket.h"

// socketBind({ host, port }, listen: boolean) -> { fd, host, port }
Napi::Value tp_napi_socket_bind(const Napi::CallbackInfo& info) {
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
Napi::Value tp_napi_socket_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_socket_close(tp_napi_read_fd(env, info[0], "fd"));
  return env.Undefined();
}

// socketFastOpenConnect({ host, port }[, { host, port }]) -> fd: a Fast Open socket for net.Socket({ fd }).
Napi::Value tp_napi_socket_fast_open_connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_storage remote, local;
  tp_napi_read_endpoint(env, info[0], "remote", &remote);
  bool bind_local = info.Length() > 1 && !info[1].IsUndefined();
  if (bind_local) tp_napi_read_endpoint(env, info[1], "local", &local);
  int fd = tp_socket_fast_open_connect(reinterpret_cast<struct sockaddr*>(&remote),
                                       bind_local ? reinterpret_cast<struct sockaddr*>(&local) : NULL);
  if (fd < 0) throw tp_napi_errno_error(env, fd, "connect", "TCP_FASTOPEN_CONNECT");
  return Napi::Number::New(env, fd);
}

// socketSetFastOpen(fd, qlen): on a listening socket Node owns.
Napi::Value tp_napi_socket_set_fast_open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = tp_napi_read_fd(env, info[0], "fd");
  int qlen = tp_napi_read_fd(env, info[1], "qlen");
  int err = tp_socket_set_fast_open(fd, qlen);
  if (err != 0) throw tp_napi_errno_error(env, err, "setsockopt", "TCP_FASTOPEN");
  return env.Undefined();
}

Napi::Value tp_napi_socket_rtt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned us = 0;
  int r = tp_socket_rtt(tp_napi_read_fd(env, info[0], "fd"), &us);
  if (r < 0) throw tp_napi_errno_error(env, r, "getsockopt", "TCP_INFO");
  return Napi::Number::New(env, us);
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
struct tp_napi_punches_t {
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
  tp_napi_state(env)->punches->live.erase(js->id);
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
  tp_napi_call(env, js->callback, {err, res}, js->context);
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
  tp_napi_call(env, js->on_candidate, {res}, js->context);
}

// punchStart({ local, listenFd, listen, targets, timeoutMs, retryMs, firstTtl }, callback[, onCandidate]) -> id
// With onCandidate the punch hands every connection there and runs until punchAbort(id) or its deadline.
Napi::Value tp_napi_punch_start(const Napi::CallbackInfo& info) {
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

  tp_napi_punches_t* state = tp_napi_state(env)->punches;
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
Napi::Value tp_napi_punch_abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw tp_napi_arg_error(env, true, "id must be a number");
  tp_napi_punches_t* state = tp_napi_state(env)->punches;
  auto it = state->live.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != state->live.end() && it->second->punch != NULL) tp_punch_abort(it->second->punch);
  return env.Undefined();
}

void tp_napi_punch_init(Napi::Env, tp_napi_state_t* state) {
  state->punches = new tp_napi_punches_t();
}

void tp_napi_punch_cleanup(tp_napi_state_t* state) {
  for (auto& entry : state->punches->live) {
    entry.second->env_gone = true;
    if (entry.second->punch != NULL) tp_punch_abort(entry.second->punch);
  }
  delete state->punches;
}
