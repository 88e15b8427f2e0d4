// The native listener and its connections (acceptor.h).
#include "acceptor.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: a refused peer's reset raises SIGPIPE there, which Node ignores
#endif

struct tp_listener_s {
  uv_poll_t poll;
  uv_timer_t retry;                     // while paused for lack of fds
  int fd;
  int handles;
  uint32_t id;
  const tp_conn_callbacks_t* cb;
  void* data;
};

// Accepts per readable event: bounded, so a flood of connections cannot starve the rest of Node's loop.
#define TP_ACCEPT_BATCH 64
// How long accept pauses when the process is out of fds or memory (the listen backlog holds the queue meanwhile).
#define TP_ACCEPT_RETRY_MS 100

// One buffer per thread for reads: every read is handed on before the next one starts.
static thread_local char tp__buf[16 * 1024];
static thread_local tp_acceptor_stats_t tp__stats;

void tp_acceptor_stats(tp_acceptor_stats_t* out) {
  *out = tp__stats;
}

void tp_listener_set_id(tp_listener_t* l, uint32_t id) {
  l->id = id;
}

uint32_t tp_listener_id(const tp_listener_t* l) {
  return l->id;
}

/* ---- connections ---- */

static void tp__conn_free_unused(tp_conn_t* c) {
  if (c->handles == 0 && !c->in_accept) free(c);
}

static void tp__conn_on_close(uv_handle_t* h) {
  tp_conn_t* c = static_cast<tp_conn_t*>(h->data);
  c->handles--;
  tp__conn_free_unused(c);
}

// Closes the handles, then the fd unless it was released (-1). The struct goes once both handles have closed.
static void tp__conn_close(tp_conn_t* c, int close_fd) {
  if (c->state == TP_CONN_REFUSED) tp__stats.refused--;
  else tp__stats.open--;
  c->state = TP_CONN_CLOSING;
  if (c->polling) uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), tp__conn_on_close);
  if (c->handles == 1 + c->polling) uv_close(reinterpret_cast<uv_handle_t*>(&c->linger), tp__conn_on_close);
  // After uv_close: libuv has dropped the fd from its epoll set, so the number may be reused at once.
  if (close_fd) tp_socket_close(c->fd);
  tp__conn_free_unused(c);
}

static void tp__conn_on_io(uv_poll_t* h, int status, int events);

// Watches the connection from now on. A connection released or refused by its accept callback never needs
// this: a uv_poll costs an ioctl and three epoll_ctl calls over its life (libuv checks the fd with an add and a
// delete), which is most of what holding a connection costs the kernel.
static int tp__conn_poll(tp_conn_t* c) {
  if (c->polling) return 0;
  int err = uv_poll_init(c->loop, &c->poll, c->fd);
  if (err != 0) return err;
  c->poll.data = c;
  c->polling = 1;
  c->handles++;
  return uv_poll_start(&c->poll, UV_READABLE, tp__conn_on_io);
}

// One read: level-triggered polling brings the rest on the next turn, and a callback may have ended the
// connection, so nothing here loops over it.
static ssize_t tp__read(int fd) {
  ssize_t n;
  do
    n = recv(fd, tp__buf, sizeof(tp__buf), 0);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

static void tp__conn_end(tp_conn_t* c, int err) {
  c->cb->on_end(c, err);
  if (c->state != TP_CONN_CLOSING) tp__conn_close(c, 1);
}

static void tp__conn_on_io(uv_poll_t* h, int status, int) {
  tp_conn_t* c = static_cast<tp_conn_t*>(h->data);
  ssize_t n = status < 0 ? status : tp__read(c->fd);
  if (n == -EAGAIN || n == -EWOULDBLOCK) return;
  if (c->state == TP_CONN_REFUSED) {
    if (n <= 0) tp__conn_close(c, 1);  // the peer has seen the refusal and closed, or is gone
    return;
  }
  if (n > 0) c->cb->on_data(c, tp__buf, static_cast<size_t>(n));
  else tp__conn_end(c, static_cast<int>(n));
}

static void tp__conn_on_linger(uv_timer_t* t) {
  tp_conn_t* c = static_cast<tp_conn_t*>(t->data);
  if (c->state == TP_CONN_REFUSED) tp__conn_close(c, 1);
}

void tp_conn_refuse(tp_conn_t* c, const char* bytes, size_t len, uint64_t linger_ms) {
  if (c->state != TP_CONN_OPEN) return;
  if (tp__conn_poll(c) != 0) {
    tp__conn_close(c, 1);  // cannot watch it linger: close now, the peer still gets what was sent
    return;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, bytes + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // full or failed: a refusal is best effort, the close tells the peer the rest
    off += static_cast<size_t>(n);
  }
  shutdown(c->fd, SHUT_WR);
  tp__stats.open--;
  tp__stats.refused++;
  c->state = TP_CONN_REFUSED;
  uv_timer_init(c->loop, &c->linger);
  c->linger.data = c;
  c->handles++;
  uv_timer_start(&c->linger, tp__conn_on_linger, linger_ms, 0);
  // Like the socket Node would have closed after this delay: it does not keep the process alive by itself.
  uv_unref(reinterpret_cast<uv_handle_t*>(&c->linger));
}

int tp_conn_release(tp_conn_t* c) {
  int fd = c->fd;
  tp__conn_close(c, 0);
  return fd;
}

void tp_conn_destroy(tp_conn_t* c) {
  if (c->state != TP_CONN_CLOSING) tp__conn_close(c, 1);
}

/* ---- the listener ---- */

static void tp__listener_on_io(uv_poll_t* h, int status, int events);

static void tp__listener_on_retry(uv_timer_t* t) {
  tp_listener_t* l = static_cast<tp_listener_t*>(t->data);
  uv_poll_start(&l->poll, UV_READABLE, tp__listener_on_io);
}

static void tp__accepted(tp_listener_t* l, int fd, const struct sockaddr_storage* peer) {
  tp_conn_t* c = static_cast<tp_conn_t*>(calloc(1, sizeof(*c)));
  if (c == NULL) {
    tp_socket_close(fd);  // the peer sees a reset; the relay has no memory to refuse it more politely
    return;
  }
  // As net.createServer({ noDelay: true }): a relay forwards what it gets without waiting to fill a segment.
  int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  c->loop = l->poll.loop;
  c->fd = fd;
  c->cb = l->cb;
  c->data = l->data;
  c->in_accept = 1;
  tp__stats.open++;
  tp__stats.accepted++;
  ssize_t n = tp__read(fd);
  l->cb->on_accept(l, c, reinterpret_cast<const struct sockaddr*>(peer), tp__buf, n > 0 ? static_cast<size_t>(n) : 0);
  c->in_accept = 0;
  if (c->state == TP_CONN_CLOSING) return tp__conn_free_unused(c);
  if (c->state != TP_CONN_OPEN) return;
  if (n == 0 || (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK)) return tp__conn_end(c, static_cast<int>(n));
  int err = tp__conn_poll(c);
  if (err != 0) tp__conn_end(c, err);
}

static void tp__listener_on_io(uv_poll_t* h, int status, int) {
  tp_listener_t* l = static_cast<tp_listener_t*>(h->data);
  if (status < 0) return;  // a listening socket reports nothing worth acting on; the next accept says it
  for (int i = 0; i < TP_ACCEPT_BATCH; i++) {
    struct sockaddr_storage peer;
    int fd = tp_socket_accept(l->fd, &peer);
    if (fd >= 0) {
      tp__accepted(l, fd, &peer);
      continue;
    }
    if (fd == -ECONNABORTED) continue;
    if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
      // Level-triggered polling would spin on a connection it cannot take: wait for fds to come back.
      tp__stats.paused++;
      uv_poll_stop(&l->poll);
      uv_timer_start(&l->retry, tp__listener_on_retry, TP_ACCEPT_RETRY_MS, 0);
    }
    return;  // EAGAIN, or an error the next readable event retries
  }
}

int tp_listener_start(uv_loop_t* loop, int fd, const tp_conn_callbacks_t* cb, void* data, tp_listener_t** out) {
  tp_listener_t* l = static_cast<tp_listener_t*>(calloc(1, sizeof(*l)));
  if (l == NULL) return -ENOMEM;
  int err = uv_poll_init(loop, &l->poll, fd);
  if (err != 0) {
    free(l);
    return err;
  }
  uv_timer_init(loop, &l->retry);
  uv_unref(reinterpret_cast<uv_handle_t*>(&l->retry));
  l->poll.data = l;
  l->retry.data = l;
  l->fd = fd;
  l->handles = 2;
  l->cb = cb;
  l->data = data;
  uv_poll_start(&l->poll, UV_READABLE, tp__listener_on_io);
  *out = l;
  return 0;
}

static void tp__listener_on_close(uv_handle_t* h) {
  tp_listener_t* l = static_cast<tp_listener_t*>(h->data);
  if (--l->handles == 0) free(l);
}

void tp_listener_close(tp_listener_t* l) {
  uv_close(reinterpret_cast<uv_handle_t*>(&l->poll), tp__listener_on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(&l->retry), tp__listener_on_close);
  tp_socket_close(l->fd);
}
