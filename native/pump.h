// The relay pump: moves bytes between two sockets in native code (placeholder until the relay lands).
#ifndef TCP_PUNCH_PUMP_H
#define TCP_PUNCH_PUMP_H

#include <napi.h>

void tp_pump_napi_init(Napi::Env env, Napi::Object exports);

#endif
