// Shared by the N-API glue files (binding.cc, binding_punch.cc, binding_pump.cc): argument readers, the errno
// error converter, and the tp_napi_* functions that binding.cc lists in the addon's one export table.
#ifndef TCP_PUNCH_BINDING_H
#define TCP_PUNCH_BINDING_H

#include <napi.h>

#include <string>

// A JS Error for a negative errno: `code` is its name (EADDRINUSE...), `errno` the negative value (as in libuv),
// `syscall` the failing call; `detail`, when given, is appended to the message.
Napi::Error tp_napi_errno_error(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

// A TypeError (`type`) or RangeError for a bad argument, with code ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE.
Napi::Error tp_napi_arg_error(Napi::Env env, bool type, const std::string& msg);

// An integer option in min..max, or `fallback` when absent.
double tp_napi_read_number(Napi::Object o, const char* key, double fallback, double min, double max);

// A file descriptor argument: an integer in 0..INT32_MAX.
int tp_napi_read_fd(Napi::Env env, Napi::Value v, const char* name);

// { host, port } of a socket address.
struct sockaddr_storage;
Napi::Object tp_napi_endpoint(Napi::Env env, const struct sockaddr_storage* ss);

// Reads { host, port } into a sockaddr; throws on anything that is not a numeric IP and a port in 0..65535.
void tp_napi_read_endpoint(Napi::Env env, Napi::Value v, const char* name, struct sockaddr_storage* out);

// Calls a JS callback from a libuv callback (no JS frame below): a throw becomes an uncaught exception, as Node's
// own callbacks do.
void tp_napi_call(Napi::Env env, const Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args,
                  const Napi::AsyncContext& context);

// Per-environment state, the addon's instance data: punches in flight and the pump's JS-side record.
struct tp_napi_punches_t;
struct tp_napi_pump_env_t;
struct tp_napi_accept_env_t;
struct tp_napi_state_t {
  tp_napi_punches_t* punches = nullptr;
  tp_napi_pump_env_t* pump = nullptr;  // freed by its threadsafe function's finalizer, not with the state
  tp_napi_accept_env_t* accept = nullptr;
};
tp_napi_state_t* tp_napi_state(Napi::Env env);

// binding_punch.cc: sockets and punches on Node's own loop.
Napi::Value tp_napi_socket_bind(const Napi::CallbackInfo& info);
Napi::Value tp_napi_socket_close(const Napi::CallbackInfo& info);
Napi::Value tp_napi_socket_rtt(const Napi::CallbackInfo& info);
Napi::Value tp_napi_socket_fast_open_connect(const Napi::CallbackInfo& info);
Napi::Value tp_napi_socket_set_fast_open(const Napi::CallbackInfo& info);
Napi::Value tp_napi_punch_start(const Napi::CallbackInfo& info);
Napi::Value tp_napi_punch_abort(const Napi::CallbackInfo& info);
void tp_napi_punch_init(Napi::Env env, tp_napi_state_t* state);
void tp_napi_punch_cleanup(tp_napi_state_t* state);  // the environment is going away

// binding_pump.cc: the relay pump (pump.h) on its own I/O thread.
Napi::Value tp_napi_pump_on_done_set(const Napi::CallbackInfo& info);
Napi::Value tp_napi_pump_start(const Napi::CallbackInfo& info);
Napi::Value tp_napi_pump_stop(const Napi::CallbackInfo& info);
Napi::Value tp_napi_pump_stats(const Napi::CallbackInfo& info);
Napi::Value tp_napi_pump_configure(const Napi::CallbackInfo& info);
void tp_napi_pump_init(Napi::Env env, tp_napi_state_t* state);

// binding_accept.cc: native listeners and the connections they hold (acceptor.h) on Node's own loop.
Napi::Value tp_napi_accept_on_event(const Napi::CallbackInfo& info);
Napi::Value tp_napi_accept_listen(const Napi::CallbackInfo& info);
Napi::Value tp_napi_accept_close(const Napi::CallbackInfo& info);
Napi::Value tp_napi_accept_stats(const Napi::CallbackInfo& info);
Napi::Value tp_napi_conn_refuse(const Napi::CallbackInfo& info);
Napi::Value tp_napi_conn_release(const Napi::CallbackInfo& info);
Napi::Value tp_napi_conn_destroy(const Napi::CallbackInfo& info);
void tp_napi_accept_init(Napi::Env env, tp_napi_state_t* state);
void tp_napi_accept_free(tp_napi_state_t* state);  // after its cleanup hook has closed what it held

#endif
