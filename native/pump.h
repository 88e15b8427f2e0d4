// The relay pump: moves bytes between two connected sockets in native code, off the JS thread.
//
// One engine runs one I/O thread with a private libuv loop (uv_poll per socket, uv_async for commands), so the
// same code serves Linux and macOS. On Linux bytes go socket -> pipe -> socket with splice(2); elsewhere, or when
// splice is refused (EINVAL) or disabled, through a buffer with recv()/send(). Pipes and buffers are borrowed
// from a pool only while bytes are in flight (pipe_pool.h): an idle session owns two sockets, two poll handles
// and a timer, nothing else.
//
// Each direction runs on its own; EOF on one side becomes shutdown(SHUT_WR) on the other. A session ends when
// both directions have finished, on the first error or reset, when a limit is hit, or on tp_pump_stop(). An
// abnormal end closes both sockets with a RST (SO_LINGER 0), so that no peer can mistake a cut stream for a
// complete one; a clean end (both EOFs propagated) closes them normally.
#ifndef TCP_PUNCH_PUMP_H
#define TCP_PUNCH_PUMP_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_pump_engine_s tp_pump_engine_t;

// Pool sizes (pipe_pool.h).
typedef struct {
  size_t max_pipes;            // pipes in all (idle + lent); 0 disables splice
  size_t pipe_size;            // asked of F_SETPIPE_SZ; the kernel may round it or refuse
  size_t max_buffers;          // buffers in all (idle + lent), at least 1
  size_t buffer_size;          // at least 1
  size_t max_idle;             // of each kind, kept for reuse while sessions run
} tp_pump_config_t;

typedef enum {
  TP_PUMP_EOF = 0,             // both directions reached EOF and were propagated
  TP_PUMP_ERROR,               // a socket failed with an error other than a reset
  TP_PUMP_RESET,               // a peer reset (ECONNRESET, EPIPE, ECONNABORTED)
  TP_PUMP_LIMIT_BYTES,         // more than max_bytes were offered
  TP_PUMP_LIMIT_DURATION,      // the session outlived max_duration_ms
  TP_PUMP_STOPPED,             // tp_pump_stop() or engine shutdown
  TP_PUMP_LIMIT_IDLE,          // no byte moved either way for idle_ms
} tp_pump_reason_t;

typedef struct {
  int fd_a;                    // borrowed unless `adopt`: the pump works on its own duplicates (F_DUPFD_CLOEXEC)
  int fd_b;
  uint64_t max_bytes;          // 0: none. The sum of both directions: what the session costs the relay.
  uint64_t max_duration_ms;    // 0: none
  uint64_t idle_ms;            // 0: none
  const char* head_a;          // sent to A before any relayed byte (copied; not counted), e.g. a "paired" frame
  size_t head_a_len;
  const char* head_b;
  size_t head_b_len;
  int no_splice;               // 1: always copy through a buffer
  int adopt;                   // 1: the pump takes fd_a and fd_b themselves, nonblocking stream sockets nobody
                               // else holds (a released held connection); on failure they stay the caller's
} tp_pump_opts_t;

typedef struct {
  uint32_t id;
  uint64_t bytes_a_to_b;       // bytes written to B (accepted by B's kernel)
  uint64_t bytes_b_to_a;
  tp_pump_reason_t reason;
  int error;                   // negative errno for TP_PUMP_ERROR / TP_PUMP_RESET, else 0
  int side;                    // whose socket failed: 0 = A, 1 = B, -1 = none
  uint64_t duration_ms;
} tp_pump_result_t;

// Called once per session on the I/O thread, after both sockets are closed; the session is freed after it.
typedef void (*tp_pump_done_cb)(const tp_pump_result_t* result, void* data);

typedef struct {
  size_t sessions;             // started and not yet completed
  size_t waiting;              // directions waiting for a pipe or buffer to come back
  size_t pipes_idle;
  size_t pipes_lent;
  size_t buffers_idle;
  size_t buffers_lent;
  uint64_t started;            // sessions started since the engine was made
  uint64_t completed;
  int thread_running;
} tp_pump_stats_t;

// The defaults: 64 pipes of 1 MiB (none outside Linux), 256 buffers of 64 KiB, 16 idle of each kind kept.
void tp_pump_config_default(tp_pump_config_t* config);

// Makes an engine with these pool sizes. Its thread starts with the first session.
int tp_pump_engine_new(tp_pump_engine_t** out, const tp_pump_config_t* config);

// Ends every session (their callbacks run with TP_PUMP_STOPPED), joins the thread and frees the engine.
// Must not be called from the I/O thread (that is, not from a done callback).
void tp_pump_engine_free(tp_pump_engine_t* engine);

// Starts a session: duplicates both fds at once (the caller may close its own right after), sends the heads (what
// the sockets take of them now; the I/O thread sends the rest) and queues the session for the I/O thread, which
// picks it up at the next tp_pump_wake(). Returns 0 and the session id, or a negative
// errno (EMFILE, ENOMEM...) with nothing started.
int tp_pump_start(tp_pump_engine_t* engine, const tp_pump_opts_t* opts, tp_pump_done_cb cb, void* data,
                  uint32_t* id);

// Wakes the I/O thread for the sessions queued since the last wake. Separate from tp_pump_start so that a caller
// starting many sessions in one turn of its loop pays one thread wakeup for all of them.
void tp_pump_wake(tp_pump_engine_t* engine);

// Asks the I/O thread to end a session with `reason`. Unknown or finished ids are ignored.
int tp_pump_stop(tp_pump_engine_t* engine, uint32_t id, tp_pump_reason_t reason);

// Changes pool sizes; applied on the I/O thread. Carriers already lent keep their size until they come back.
int tp_pump_configure(tp_pump_engine_t* engine, const tp_pump_config_t* config);

void tp_pump_stats(tp_pump_engine_t* engine, tp_pump_stats_t* out);

// The name of a reason as JS sees it ('eof', 'limit-bytes'...).
const char* tp_pump_reason_name(tp_pump_reason_t reason);

#endif
