// TCP simultaneous open from one reused local port, driven by uv_poll on the caller's loop.
//
// A punch listens on the local port and connects from the same port to each target at once. Whichever
// connection to a target establishes first wins, whether through connect() or accept(); every other socket
// is closed and the winner's fd is handed to the callback, which from then on owns it.
//
// With a candidate callback the punch does not stop at the first connection: each one is handed over as a
// candidate while the listener and the other connectors carry on, until tp_punch_abort() (the caller found the
// connection it wanted) or the deadline. Someone else on the peer's address (a carrier NAT shares it) who
// connects first then cannot end the punch.
#ifndef TCP_PUNCH_PUNCH_H
#define TCP_PUNCH_PUNCH_H

#include <uv.h>

#include "socket.h"

#define TP_PUNCH_MAX_TARGETS 16

typedef struct tp_punch_s tp_punch_t;
typedef struct tp_punch_result_s tp_punch_result_t;

// A connection handed over while the punch goes on (status 0, fd >= 0): the callee owns `fd` from then on.
// Always called from a poll callback, never from inside tp_punch_start(); the callee may call tp_punch_abort().
typedef void (*tp_punch_candidate_cb)(const tp_punch_result_t* candidate, void* data);

typedef struct {
  struct sockaddr_storage local;  // address family and port to use; port 0 picks one
  int listen_fd;                  // a listening socket on `local` to accept from (borrowed: it is dup'ed), or -1
  int listen;                     // when listen_fd is -1: 1 to open a listener of our own on the port
  struct sockaddr_storage targets[TP_PUNCH_MAX_TARGETS];
  int target_count;
  uint64_t timeout_ms;            // overall deadline
  int64_t retry_ms;               // pause before reconnecting after an abort (RST, ICMP); < 0: a failure is final
  int first_ttl;                  // hop limit of each target's first SYN, 0 to leave it alone
  int accept_any_port;            // 1: the listener takes a target's address from any port (its NAT may remap it)
  tp_punch_candidate_cb on_candidate;  // set: hand every connection here and keep going (see above); NULL: stop at one
} tp_punch_opts_t;

struct tp_punch_result_s {
  int status;                     // 0, or a negative errno (-ETIMEDOUT at the deadline, -ECANCELED on abort)
  const char* syscall;            // the call that failed, for error messages
  int fd;                         // the connected socket when status is 0, else -1
  int via_accept;                 // 1 when the connection arrived through accept()
  struct sockaddr_storage local;
  struct sockaddr_storage remote;
  int attempts;                   // connect() calls made in all
  int last_errors[TP_PUNCH_MAX_TARGETS];  // each target's last connect error (negative errno), 0 if none
  int target_count;
  uint64_t elapsed_ms;
};

// Called exactly once, always from a later loop iteration than tp_punch_start(); the punch is freed after it.
typedef void (*tp_punch_cb)(const tp_punch_result_t* result, void* data);

// Starts a punch. On success stores the handle in `out` (valid until the callback runs) and returns 0;
// on a failure detected up front (bad options, bind errors) returns a negative errno, names the failing call in
// `syscall` and calls nothing.
int tp_punch_start(uv_loop_t* loop, const tp_punch_opts_t* opts, tp_punch_cb cb, void* data, tp_punch_t** out,
                   const char** syscall);

// Ends the punch early: the callback then reports -ECANCELED (the way a caller of a candidate punch stops it once
// a candidate proved good). Does nothing once the punch has finished.
void tp_punch_abort(tp_punch_t* punch);

#endif
