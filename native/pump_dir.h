// One direction of a relayed session: bytes from `src` to `dst`, through a carrier borrowed from the pool.
// Internal to the pump; everything here runs on the pump's I/O thread.
#ifndef TCP_PUNCH_PUMP_DIR_H
#define TCP_PUNCH_PUMP_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "pipe_pool.h"

typedef struct tp_dir_s {
  void* owner;                 // the session
  int index;                   // 0: A to B, 1: B to A
  int src;
  int dst;
  tp_carrier_t* carrier;       // borrowed while pending > 0 (and during a read)
  size_t pending;              // bytes in the carrier not yet written to dst
  size_t off;                  // buffer carrier: offset of the first pending byte
  char* head;                  // bytes to write to dst before anything else, or NULL
  size_t head_len;
  size_t head_off;
  uint64_t bytes;              // written to dst
  int use_splice;
  int eof;                     // src reached EOF
  int done;                    // EOF propagated: shutdown(dst, SHUT_WR) done
  int want_read;               // poll interest, set by tp_dir_run
  int want_write;
  int failed_dst;              // set with an error result: 1 when dst failed, 0 when src did
  // The carrier wait list (owned by the engine).
  int waiting;
  struct tp_dir_s* wait_prev;
  struct tp_dir_s* wait_next;
} tp_dir_t;

// Results of tp_dir_run besides a negative errno.
enum {
  TP_DIR_AGAIN = 0,            // blocked: wait for want_read / want_write
  TP_DIR_DONE = 1,             // EOF propagated; nothing more to do
  TP_DIR_LIMIT = 2,            // the byte allowance is spent and src offers more
  TP_DIR_NO_CARRIER = 3,       // no pipe or buffer is free and no scratch memory for a copy: wait for a carrier
};

// Moves what it can without blocking, at most about `budget` bytes so that one busy session cannot starve the
// others (the loop is level-triggered: a direction stopped by its budget is called again on the next turn).
// `allowance` is the session's remaining byte allowance, shared by both directions, and is charged as bytes are
// read. Returns a TP_DIR_* value or a negative errno (then see failed_dst).
int tp_dir_run(tp_dir_t* d, tp_pool_t* pool, uint64_t* allowance, size_t budget);

// Gives the carrier back (closing a pipe that still holds bytes) and frees the head. For session end.
void tp_dir_release(tp_dir_t* d, tp_pool_t* pool);

#endif
