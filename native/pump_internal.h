// Internals of the relay pump shared by pump.cc (the engine: thread, commands, the JS-thread API) and
// pump_session.cc (one relayed session on the I/O thread). Not part of the addon's interface.
#ifndef TCP_PUNCH_PUMP_INTERNAL_H
#define TCP_PUNCH_PUMP_INTERNAL_H

#include <uv.h>

#include <atomic>
#include <unordered_map>

#include "pipe_pool.h"
#include "pump.h"
#include "pump_dir.h"

typedef enum { TP_CMD_START, TP_CMD_STOP, TP_CMD_CONFIGURE } tp_cmd_type_t;

typedef struct tp_session_s tp_session_t;

typedef struct tp_cmd_s {
  tp_cmd_type_t type;
  tp_session_t* session;       // START
  uint32_t id;                 // STOP
  tp_pump_reason_t reason;     // STOP
  tp_pump_config_t config;     // CONFIGURE
  struct tp_cmd_s* next;
} tp_cmd_t;

struct tp_session_s {
  tp_pump_engine_t* engine;
  uint32_t id;
  int fds[2];                  // A, B: our duplicates, closed by tp_session_end
  uv_poll_t polls[2];
  int poll_open[2];
  int poll_events[2];          // interest registered with uv_poll_start
  uv_timer_t timer;
  tp_dir_t dirs[2];            // [0] A to B, [1] B to A
  uint64_t allowance;          // bytes left to read, both directions together
  uint64_t max_duration_ms;
  uint64_t idle_ms;
  uint64_t started_at;
  uint64_t last_active;        // loop time of the last byte moved either way
  int handles;                 // open uv handles; the session is freed when the last one has closed
  int ending;
  tp_pump_result_t result;
  tp_pump_done_cb cb;
  void* data;
};

struct tp_pump_engine_s {
  uv_loop_t loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_mutex_t mutex;
  // Guarded by mutex: commands from the JS thread to the I/O thread.
  tp_cmd_t* cmd_head = NULL;
  tp_cmd_t* cmd_tail = NULL;
  int shutting_down = 0;
  // JS thread only.
  int thread_started = 0;
  uint32_t next_id = 1;
  // I/O thread only (and the JS thread after the join).
  std::unordered_map<uint32_t, tp_session_t*> sessions;
  tp_dir_t* wait_head = NULL;  // directions waiting for a carrier, oldest first
  tp_dir_t* wait_tail = NULL;
  int closing = 0;
  tp_pool_t pool;
  // Read by tp_pump_stats from any thread.
  std::atomic<size_t> active{0};
  std::atomic<size_t> waiting{0};
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<int> running{0};
};

// I/O thread: starts relaying a session handed over by a START command (ends it at once if that fails).
void tp_session_begin(tp_pump_engine_t* e, tp_session_t* s);

// I/O thread: ends a session; its callback runs once every handle has closed. Idempotent.
void tp_session_end(tp_session_t* s, tp_pump_reason_t reason, int err, int side);

// I/O thread: hands free carriers to directions waiting for one.
void tp_wake_waiters(tp_pump_engine_t* e);

#endif
