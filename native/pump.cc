#include "pump.h"

void tp_pump_napi_init(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}
