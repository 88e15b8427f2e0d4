// Carriers for the relay pump: the kernel pipes that splice(2) moves bytes through, and plain buffers for
// read()/write() where splice is unavailable. A direction of a relayed session borrows one carrier only while
// bytes are in flight and gives it back once it is empty, so thousands of idle sessions hold none.
//
// Why a pool at all: a pipe costs two fds and, once F_SETPIPE_SZ has grown it, pages counted against the user's
// pipe-buffer quota (fs.pipe-user-pages-soft, 64 MiB by default, after which new pipes get a single page). A
// relay already spends two fds per session under a hard per-process limit, so pipes are capped and reused.
//
// Single-threaded: only the pump's I/O thread touches a pool; the counters are atomics so that stats can be
// read from JS at any time.
#ifndef TCP_PUNCH_PIPE_POOL_H
#define TCP_PUNCH_PIPE_POOL_H

#include <stddef.h>

#include <atomic>

#include "pump.h"

typedef enum { TP_CARRIER_PIPE = 1, TP_CARRIER_BUFFER = 2 } tp_carrier_kind_t;

typedef struct tp_carrier_s {
  tp_carrier_kind_t kind;
  int rfd;                     // pipe: read end
  int wfd;                     // pipe: write end
  char* buf;                   // buffer
  size_t size;                 // capacity in bytes
  struct tp_carrier_s* next;   // idle list
} tp_carrier_t;

typedef struct {
  tp_pump_config_t config;
  tp_carrier_t* idle_pipes;
  tp_carrier_t* idle_buffers;
  std::atomic<size_t> pipes_idle;
  std::atomic<size_t> pipes_lent;
  std::atomic<size_t> buffers_idle;
  std::atomic<size_t> buffers_lent;
  int pipe_error;              // the last error creating a pipe (negative errno), 0 if none
  char* scratch;               // never lent: see tp_pool_scratch
  size_t scratch_size;
} tp_pool_t;

void tp_pool_init(tp_pool_t* pool, const tp_pump_config_t* config);

// Lends an empty pipe (Linux only), or NULL when the cap is reached or a pipe cannot be made (`pool->pipe_error`).
tp_carrier_t* tp_pool_take_pipe(tp_pool_t* pool);

// Lends a buffer, or NULL when the cap is reached or memory is short.
tp_carrier_t* tp_pool_take_buffer(tp_pool_t* pool);

// True when a take of that kind could succeed without waiting for a carrier to come back.
int tp_pool_can_take(const tp_pool_t* pool, int pipe);

// Takes a carrier back. `empty` says the carrier holds no byte: a pipe with data left in it can never be reused
// (its bytes belong to a session that ended), so it is closed; an idle list longer than max_idle is trimmed.
void tp_pool_give(tp_pool_t* pool, tp_carrier_t* c, int empty);

// A buffer that is never lent, for copies that hold no byte between calls (a dry pool's fallback), or NULL when
// memory is short. Stays valid until tp_pool_trim(pool, 0).
char* tp_pool_scratch(tp_pool_t* pool, size_t* size);

// Frees idle carriers down to `keep` of each kind (and the scratch buffer too when `keep` is 0).
void tp_pool_trim(tp_pool_t* pool, size_t keep);

#endif
