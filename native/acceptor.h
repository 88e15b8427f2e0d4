// Connections held in native code on Node's own loop: a listener that accepts them, and each connection read
// until its owner decides what to do with it.
//
// Why it exists: a relay accepting thousands of joins a second spends most of its JS time making and tearing down
// net.Sockets for connections that only ever carry one small frame before the pump takes their fds. Here a
// connection is an fd and a uv_poll handle. Its bytes and its end are reported to the owner; the owner answers
// by refusing it (a last message, then a lingering close), by releasing its fd (to the pump, or to a net.Socket),
// or by destroying it. What the bytes mean is the owner's business: nothing here knows the protocol.
//
// Everything runs on the loop's thread. A callback may refuse, release or destroy any connection, its own
// included; a connection is never touched after its callback returns.
#ifndef TCP_PUNCH_ACCEPTOR_H
#define TCP_PUNCH_ACCEPTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct tp_listener_s tp_listener_t;
typedef struct tp_conn_s tp_conn_t;

typedef struct {
  // A new connection; `first` holds what could be read from it at once (often the whole first message: with TCP
  // Fast Open it arrives with the SYN). It is open and read from then on.
  void (*on_accept)(tp_listener_t* l, tp_conn_t* c, const struct sockaddr* peer, const char* first, size_t len);
  // More bytes from an open connection.
  void (*on_data)(tp_conn_t* c, const char* bytes, size_t len);
  // The peer closed (err 0) or the connection failed (negative errno). It is closed and freed when this returns.
  void (*on_end)(tp_conn_t* c, int err);
} tp_conn_callbacks_t;

typedef enum {
  TP_CONN_OPEN = 0,   // read, every byte and the end reported
  TP_CONN_REFUSED,    // its last message sent, input discarded until the peer closes or the linger ends
  TP_CONN_CLOSING,    // handles closing; freed once they have
} tp_conn_state_t;

struct tp_conn_s {
  uv_poll_t poll;                       // initialised only once the connection outlives its accept callback
  uv_timer_t linger;                    // initialised only once refused
  int fd;
  int handles;                          // handles initialised and not yet closed
  int polling;                          // `poll` is initialised
  int in_accept;                        // its accept callback is running: the struct must outlive it
  tp_conn_state_t state;
  uint32_t id;                          // the owner's name for it
  uv_loop_t* loop;
  const tp_conn_callbacks_t* cb;
  void* data;                           // the owner's
};

typedef struct {
  size_t open;                          // connections accepted and not yet released, destroyed or ended
  size_t refused;                       // lingering after a refusal
  uint64_t accepted;
  uint64_t paused;                      // times accept stopped for lack of fds or memory
} tp_acceptor_stats_t;

// Starts accepting on `fd`, a listening socket the listener then owns; its connections carry `data`. Returns 0
// or a negative errno.
int tp_listener_start(uv_loop_t* loop, int fd, const tp_conn_callbacks_t* cb, void* data, tp_listener_t** out);

// Stops accepting and closes the listening socket. Connections accepted from it live on.
void tp_listener_close(tp_listener_t* l);

// The owner's name for a listener.
void tp_listener_set_id(tp_listener_t* l, uint32_t id);
uint32_t tp_listener_id(const tp_listener_t* l);

// Sends `bytes` (what the socket takes now: a refusal is one small frame), shuts down the sending side, and then
// discards input until the peer closes or `linger_ms` passes, when the connection is closed. No further callback.
void tp_conn_refuse(tp_conn_t* c, const char* bytes, size_t len, uint64_t linger_ms);

// Stops watching the connection and frees it; the caller owns the returned fd (nonblocking, close-on-exec).
int tp_conn_release(tp_conn_t* c);

// Closes the connection now. No further callback.
void tp_conn_destroy(tp_conn_t* c);

// Counters of this thread's connections and listeners.
void tp_acceptor_stats(tp_acceptor_stats_t* out);

#endif
