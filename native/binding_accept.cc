// The N-API glue of native listeners and held connections (acceptor.h), on Node's own loop.
//
// JS names listeners and connections by number, so a stale id can never reach freed memory. Every event of every
// listener in an environment reaches ONE JS function (acceptOnEvent):
//   onEvent(0, connId, listenerId, ip, port, first)   a connection was accepted; `first` is a Buffer or undefined
//   onEvent(1, connId, bytes)                           more bytes
//   onEvent(2, connId, code)                            it ended: code undefined at EOF, else the errno's name;
//                                                       the id is gone once this is called
#include <string.h>
#include <uv.h>

#include <string>
#include <unordered_map>

#include "acceptor.h"
#include "binding.h"
#include "socket.h"

struct tp_napi_accept_env_t {
  uint32_t next_id = 1;
  std::unordered_map<uint32_t, tp_conn_t*> conns;
  std::unordered_map<uint32_t, tp_listener_t*> listeners;
  Napi::FunctionReference on_event;
  Napi::AsyncContext* context = NULL;
  napi_env env = NULL;
  uv_loop_t* loop = NULL;
};

static tp_napi_accept_env_t* tp_napi_accept_env(Napi::Env env) {
  return tp_napi_state(env)->accept;
}

static uint32_t tp_napi_accept_next(tp_napi_accept_env_t* aenv) {
  uint32_t id = aenv->next_id++;
  if (aenv->next_id == 0) aenv->next_id = 1;
  return id;
}

static void tp_napi_accept_emit(tp_napi_accept_env_t* aenv, const std::initializer_list<napi_value>& args) {
  tp_napi_call(Napi::Env(aenv->env), aenv->on_event, args, *aenv->context);
}

static napi_value tp_napi_bytes(Napi::Env env, const char* bytes, size_t len) {
  return len == 0 ? static_cast<napi_value>(env.Undefined()) : Napi::Buffer<char>::Copy(env, bytes, len);
}

static void tp_napi_on_accept(tp_listener_t* l, tp_conn_t* c, const struct sockaddr* peer, const char* first,
                              size_t len) {
  tp_napi_accept_env_t* aenv = static_cast<tp_napi_accept_env_t*>(c->data);
  c->id = tp_napi_accept_next(aenv);
  aenv->conns.emplace(c->id, c);
  char ip[TP_IP_MAX] = "";
  int port = 0;
  tp_sockaddr_format(peer, ip, &port);
  Napi::Env env(aenv->env);
  Napi::HandleScope scope(env);
  uint32_t lid = tp_listener_id(l);
  tp_napi_accept_emit(aenv, {Napi::Number::New(env, 0), Napi::Number::New(env, c->id), Napi::Number::New(env, lid),
                             Napi::String::New(env, ip), Napi::Number::New(env, port), tp_napi_bytes(env, first, len)});
}

static void tp_napi_on_data(tp_conn_t* c, const char* bytes, size_t len) {
  tp_napi_accept_env_t* aenv = static_cast<tp_napi_accept_env_t*>(c->data);
  Napi::Env env(aenv->env);
  Napi::HandleScope scope(env);
  tp_napi_accept_emit(aenv, {Napi::Number::New(env, 1), Napi::Number::New(env, c->id), tp_napi_bytes(env, bytes, len)});
}

static void tp_napi_on_end(tp_conn_t* c, int err) {
  tp_napi_accept_env_t* aenv = static_cast<tp_napi_accept_env_t*>(c->data);
  aenv->conns.erase(c->id);
  Napi::Env env(aenv->env);
  Napi::HandleScope scope(env);
  napi_value code = err == 0 ? static_cast<napi_value>(env.Undefined()) : Napi::String::New(env, uv_err_name(err));
  tp_napi_accept_emit(aenv, {Napi::Number::New(env, 2), Napi::Number::New(env, c->id), code});
}

static const tp_conn_callbacks_t tp_napi_conn_callbacks = {tp_napi_on_accept, tp_napi_on_data, tp_napi_on_end};

// Takes a connection JS still holds out of the table, or NULL (ended meanwhile, or never ours): JS's calls are
// then no-ops.
static tp_conn_t* tp_napi_take_conn(const Napi::CallbackInfo& info) {
  tp_napi_accept_env_t* aenv = tp_napi_accept_env(info.Env());
  if (!info[0].IsNumber()) throw tp_napi_arg_error(info.Env(), true, "id must be a number");
  auto it = aenv->conns.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == aenv->conns.end()) return NULL;
  tp_conn_t* c = it->second;
  aenv->conns.erase(it);
  return c;
}

// acceptOnEvent(fn): once per environment, before the first acceptListen.
Napi::Value tp_napi_accept_on_event(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw tp_napi_arg_error(env, true, "onEvent must be a function");
  tp_napi_accept_env_t* aenv = tp_napi_accept_env(env);
  aenv->on_event = Napi::Persistent(info[0].As<Napi::Function>());
  if (aenv->context == NULL) aenv->context = new Napi::AsyncContext(env, "tcp-punch:accept");
  return env.Undefined();
}

// acceptListen({ host, port }, backlog) -> { id, host, port }: a listener of its own (SO_REUSEADDR, no
// SO_REUSEPORT), accepting at once.
Napi::Value tp_napi_accept_listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_accept_env_t* aenv = tp_napi_accept_env(env);
  if (aenv->on_event.IsEmpty() || aenv->loop == NULL) {
    Napi::Error e = Napi::Error::New(env, "acceptOnEvent() must be called before acceptListen()");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_STATE"));
    throw e;
  }
  struct sockaddr_storage addr;
  tp_napi_read_endpoint(env, info[0], "local", &addr);
  int backlog = static_cast<int>(tp_napi_read_fd(env, info[1], "backlog"));
  int fd = tp_socket_listener(reinterpret_cast<struct sockaddr*>(&addr), backlog);
  if (fd < 0) throw tp_napi_errno_error(env, fd, fd == -EADDRINUSE || fd == -EADDRNOTAVAIL ? "bind" : "listen");
  int err = tp_socket_local(fd, &addr);
  uint32_t id = tp_napi_accept_next(aenv);
  tp_listener_t* l = NULL;
  if (err == 0) err = tp_listener_start(aenv->loop, fd, &tp_napi_conn_callbacks, aenv, &l);
  if (err != 0) {
    tp_socket_close(fd);
    throw tp_napi_errno_error(env, err, "listen");
  }
  tp_listener_set_id(l, id);
  aenv->listeners.emplace(id, l);
  Napi::Object o = tp_napi_endpoint(env, &addr);
  o.Set("id", Napi::Number::New(env, id));
  o.Set("fd", Napi::Number::New(env, fd));
  return o;
}

// acceptClose(listenerId): stops accepting and closes the listening socket; a no-op for an unknown id.
Napi::Value tp_napi_accept_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_napi_accept_env_t* aenv = tp_napi_accept_env(env);
  if (!info[0].IsNumber()) throw tp_napi_arg_error(env, true, "id must be a number");
  auto it = aenv->listeners.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != aenv->listeners.end()) {
    tp_listener_close(it->second);
    aenv->listeners.erase(it);
  }
  return env.Undefined();
}

// connRefuse(id, bytes, lingerMs) -> boolean: sends a last message and closes after the peer or the linger.
Napi::Value tp_napi_conn_refuse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw tp_napi_arg_error(env, true, "bytes must be a Buffer or Uint8Array");
  if (!info[2].IsNumber()) throw tp_napi_arg_error(env, true, "lingerMs must be a number");
  double linger = info[2].As<Napi::Number>().DoubleValue();
  if (!(linger >= 0 && linger <= 2147483647.0)) throw tp_napi_arg_error(env, false, "lingerMs must be in 0..2^31-1");
  tp_conn_t* c = tp_napi_take_conn(info);
  if (c == NULL) return Napi::Boolean::New(env, false);
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  tp_conn_refuse(c, reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength(), static_cast<uint64_t>(linger));
  return Napi::Boolean::New(env, true);
}

// connRelease(id) -> fd | -1: the connection is no longer watched; the caller owns the fd.
Napi::Value tp_napi_conn_release(const Napi::CallbackInfo& info) {
  tp_conn_t* c = tp_napi_take_conn(info);
  return Napi::Number::New(info.Env(), c == NULL ? -1 : tp_conn_release(c));
}

// connDestroy(id): closes it now; a no-op for an unknown id.
Napi::Value tp_napi_conn_destroy(const Napi::CallbackInfo& info) {
  tp_conn_t* c = tp_napi_take_conn(info);
  if (c != NULL) tp_conn_destroy(c);
  return info.Env().Undefined();
}

// acceptStats() -> { listeners, open, refused, accepted, paused }
Napi::Value tp_napi_accept_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tp_acceptor_stats_t s;
  tp_acceptor_stats(&s);
  Napi::Object o = Napi::Object::New(env);
  o.Set("listeners", Napi::Number::New(env, static_cast<double>(tp_napi_accept_env(env)->listeners.size())));
  o.Set("open", Napi::Number::New(env, static_cast<double>(s.open)));
  o.Set("refused", Napi::Number::New(env, static_cast<double>(s.refused)));
  o.Set("accepted", Napi::Number::New(env, static_cast<double>(s.accepted)));
  o.Set("paused", Napi::Number::New(env, static_cast<double>(s.paused)));
  return o;
}

// The environment is going away (a worker exits): close what it still holds, calling nothing.
static void tp_napi_accept_cleanup(void* data) {
  tp_napi_accept_env_t* aenv = static_cast<tp_napi_accept_env_t*>(data);
  for (auto& entry : aenv->listeners) tp_listener_close(entry.second);
  for (auto& entry : aenv->conns) tp_conn_destroy(entry.second);
  aenv->listeners.clear();
  aenv->conns.clear();
  delete aenv->context;
  aenv->context = NULL;
  aenv->on_event.Reset();
}

void tp_napi_accept_init(Napi::Env env, tp_napi_state_t* state) {
  tp_napi_accept_env_t* aenv = new tp_napi_accept_env_t();
  aenv->env = env;
  if (napi_get_uv_event_loop(env, &aenv->loop) != napi_ok) aenv->loop = NULL;
  napi_add_env_cleanup_hook(env, tp_napi_accept_cleanup, aenv);
  state->accept = aenv;
}

void tp_napi_accept_free(tp_napi_state_t* state) {
  delete state->accept;
  state->accept = NULL;
}
