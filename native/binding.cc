// The N-API surface of tcp-punch: one flat table of tp_napi_* functions, written per job in binding_punch.cc
// (sockets, punches), binding_pump.cc (the relay pump) and binding_accept.cc (connections held natively), plus the
// helpers they share.
//
// Errors from the OS become JS Errors whose `code` is the errno name (EADDRINUSE, ETIMEDOUT...), with `errno`
// (negative, as in libuv) and `syscall`; bad arguments become TypeError/RangeError with an ERR_* code. Nothing
// here blocks: punches run on Node's own loop through uv_poll, the pump on its own thread.
#include <uv.h>

#include "binding.h"
#include "socket.h"

Napi::Error tp_napi_errno_error(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall) + " " + uv_err_name(err) + ": " + uv_strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

Napi::Error tp_napi_arg_error(Napi::Env env, bool type, const std::string& msg) {
  Napi::Error e = type ? static_cast<Napi::Error>(Napi::TypeError::New(env, msg))
                       : static_cast<Napi::Error>(Napi::RangeError::New(env, msg));
  e.Set("code", Napi::String::New(env, type ? "ERR_INVALID_ARG_TYPE" : "ERR_INVALID_ARG_VALUE"));
  return e;
}

double tp_napi_read_number(Napi::Object o, const char* key, double fallback, double min, double max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw tp_napi_arg_error(o.Env(), true, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw tp_napi_arg_error(o.Env(), false,
                            std::string(key) + " must be an integer in " + std::to_string(static_cast<int64_t>(min)) +
                                ".." + std::to_string(static_cast<int64_t>(max)));
  }
  return d;
}

int tp_napi_read_fd(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsNumber()) throw tp_napi_arg_error(env, true, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= INT32_MAX) || d != static_cast<int32_t>(d))
    throw tp_napi_arg_error(env, false, std::string(name) + " must be an integer >= 0");
  return static_cast<int>(d);
}

Napi::Object tp_napi_endpoint(Napi::Env env, const struct sockaddr_storage* ss) {
  char ip[TP_IP_MAX] = "";
  int port = 0;
  tp_sockaddr_format(reinterpret_cast<const struct sockaddr*>(ss), ip, &port);
  Napi::Object o = Napi::Object::New(env);
  o.Set("host", Napi::String::New(env, ip));
  o.Set("port", Napi::Number::New(env, port));
  return o;
}

// Reads { host, port } into a sockaddr; throws on anything that is not a numeric IP and a port in 0..65535.
void tp_napi_read_endpoint(Napi::Env env, Napi::Value v, const char* name, struct sockaddr_storage* out) {
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

void tp_napi_call(Napi::Env env, const Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args,
                  const Napi::AsyncContext& context) {
  try {
    fn.MakeCallback(env.Global(), args, context);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

tp_napi_state_t* tp_napi_state(Napi::Env env) {
  return env.GetInstanceData<tp_napi_state_t>();
}

static void tp_napi_state_free(Napi::Env, tp_napi_state_t* state) {
  tp_napi_punch_cleanup(state);
  tp_napi_accept_free(state);
  delete state;
}

static Napi::Object tp_napi_init(Napi::Env env, Napi::Object exports) {
  tp_napi_state_t* state = new tp_napi_state_t();
  env.SetInstanceData<tp_napi_state_t, tp_napi_state_free>(state);
  tp_napi_punch_init(env, state);
  tp_napi_pump_init(env, state);
  tp_napi_accept_init(env, state);
  static const struct {
    const char* name;
    Napi::Function::Callback fn;
  } table[] = {
      {"socketBind", tp_napi_socket_bind},
      {"socketClose", tp_napi_socket_close},
      {"socketRtt", tp_napi_socket_rtt},
      {"socketFastOpenConnect", tp_napi_socket_fast_open_connect},
      {"socketSetFastOpen", tp_napi_socket_set_fast_open},
      {"punchStart", tp_napi_punch_start},
      {"punchAbort", tp_napi_punch_abort},
      {"pumpOnDone", tp_napi_pump_on_done_set},
      {"pumpStart", tp_napi_pump_start},
      {"pumpStop", tp_napi_pump_stop},
      {"pumpStats", tp_napi_pump_stats},
      {"pumpConfigure", tp_napi_pump_configure},
      {"acceptOnEvent", tp_napi_accept_on_event},
      {"acceptListen", tp_napi_accept_listen},
      {"acceptClose", tp_napi_accept_close},
      {"acceptStats", tp_napi_accept_stats},
      {"connRefuse", tp_napi_conn_refuse},
      {"connRelease", tp_napi_conn_release},
      {"connDestroy", tp_napi_conn_destroy},
  };
  for (const auto& entry : table) exports.Set(entry.name, Napi::Function::New(env, entry.fn, entry.name));
  return exports;
}

NODE_API_MODULE(tcp_punch, tp_napi_init)
