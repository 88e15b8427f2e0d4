#include "punch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

// One socket and its poll handle. Every socket of a punch (listener and connectors) gets one of these; it frees
// itself in its close callback, because uv_close() finishes only on a later loop iteration.
typedef struct {
  tp_punch_t* punch;
  int fd;
  int target;  // index into targets, -1 for the listener
  uv_poll_t poll;
} tp_sock_t;

typedef struct {
  tp_sock_t* sock;  // the connector in flight, NULL while waiting to retry
  uint64_t retry_at;
  uint64_t started_at;  // loop time of the last connect()
  int attempts;
} tp_target_state_t;

struct tp_punch_s {
  uv_loop_t* loop;
  tp_punch_opts_t opts;
  tp_punch_cb cb;
  void* data;
  int family;
  struct sockaddr_storage local;  // bound address, with the port the kernel chose when opts said 0
  tp_sock_t* listener;
  tp_target_state_t targets[TP_PUNCH_MAX_TARGETS];
  uv_timer_t timer;
  uint64_t started;
  uint64_t deadline;
  int handles;  // open uv handles; the punch is freed when this reaches zero after finishing
  int done;
  tp_punch_result_t result;
};

// Retries run at opts.retry_ms for this long after the start, then no faster than TP_PUNCH_SLOW_RETRY_MS.
#define TP_PUNCH_FAST_RETRY_MS 2000
#define TP_PUNCH_SLOW_RETRY_MS 100

static void tp__punch_finish(tp_punch_t* p, int status, const char* syscall, tp_sock_t* winner);
static void tp__punch_arm(tp_punch_t* p);
static void tp__punch_connected(tp_punch_t* p, tp_sock_t* s);
static void tp__target_connect(tp_punch_t* p, int target);

static void tp__punch_release(tp_punch_t* p) {
  if (--p->handles > 0) return;
  // Every handle is closed, so no callback of ours can run again: hand over the result and free.
  p->cb(&p->result, p->data);
  free(p);
}

static void tp__sock_on_close(uv_handle_t* handle) {
  tp_sock_t* s = static_cast<tp_sock_t*>(handle->data);
  tp_punch_t* p = s->punch;
  free(s);
  tp__punch_release(p);
}

// Closes the socket unless it was handed over as the result (fd set to -1 first).
static void tp__sock_close(tp_sock_t* s) {
  tp_socket_close(s->fd);
  s->fd = -1;
  uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), tp__sock_on_close);
}

static void tp__timer_on_close(uv_handle_t* handle) {
  tp__punch_release(static_cast<tp_punch_t*>(handle->data));
}

static tp_sock_t* tp__sock_new(tp_punch_t* p, int fd, int target, uv_poll_cb cb, int events) {
  tp_sock_t* s = static_cast<tp_sock_t*>(calloc(1, sizeof(*s)));
  if (s == NULL) return NULL;
  s->punch = p;
  s->fd = fd;
  s->target = target;
  if (uv_poll_init(p->loop, &s->poll, fd) != 0) {
    free(s);
    return NULL;
  }
  s->poll.data = s;
  p->handles++;
  // Cannot fail for a socket uv_poll_init() accepted: epoll registration happens lazily on the next loop turn.
  uv_poll_start(&s->poll, events, cb);
  return s;
}

// Errors after which the same target is worth another SYN: a NAT or firewall refused an early SYN, an ICMP error
// arrived before the other side opened its mapping, or the 4-tuple is taken by a connection still in our
// listener's queue (accept() will find it).
static int tp__retryable(int err) {
  switch (err) {
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ETIMEDOUT:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EHOSTDOWN:
    case -ENETDOWN:
    case -EADDRNOTAVAIL:
    case -EPERM:  // an iptables REJECT or a local firewall verdict on the SYN
    case -EACCES:
      return 1;
    default:
      return 0;
  }
}

static void tp__connector_on_io(uv_poll_t* handle, int status, int events);

// The next SYN must follow an RST or ICMP abort at once: our NAT's entry is still open for it, and the peer's SYN
// may arrive at any moment. While no connector is open, that SYN meets only the listener, whose SYN-ACK carries a
// new sequence number that our NAT's conntrack (which saw the aborted SYN) drops; the dead-end request then holds
// the 4-tuple (EADDRNOTAVAIL) until the punch times out. So retries are paced start to start, and an abort that
// came a round trip after its SYN is followed by the next SYN in the same callback. After the first seconds the
// peer is unlikely to be merely late, so the pace drops to spare the network.
static void tp__target_retry(tp_punch_t* p, int target) {
  tp_target_state_t* t = &p->targets[target];
  uint64_t now = uv_now(p->loop);
  uint64_t gap = static_cast<uint64_t>(p->opts.retry_ms);
  if (now - p->started >= TP_PUNCH_FAST_RETRY_MS && gap < TP_PUNCH_SLOW_RETRY_MS) gap = TP_PUNCH_SLOW_RETRY_MS;
  if (now > t->started_at && now - t->started_at >= gap) {
    tp__target_connect(p, target);  // no recursion: a connect() that fails at once has started_at == now
    return;
  }
  t->retry_at = t->started_at + gap;
  tp__punch_arm(p);
}

static void tp__target_failed(tp_punch_t* p, int target, int err) {
  tp_target_state_t* t = &p->targets[target];
  p->result.last_errors[target] = err;
  t->sock = NULL;
  if (!tp__retryable(err)) {
    tp__punch_finish(p, err, "connect", NULL);
    return;
  }
  if (p->opts.retry_ms < 0) {
    // No retries: the punch fails once no target and no listener is left to win.
    int pending = p->listener != NULL;
    for (int i = 0; i < p->opts.target_count; i++) pending |= p->targets[i].sock != NULL;
    if (!pending) tp__punch_finish(p, err, "connect", NULL);
    return;
  }
  tp__target_retry(p, target);
}

static void tp__target_connect(tp_punch_t* p, int target) {
  tp_target_state_t* t = &p->targets[target];
  t->retry_at = 0;
  int fd = tp_socket_reusable(reinterpret_cast<struct sockaddr*>(&p->local));
  if (fd < 0) {
    // The port is ours only while every socket on it has both reuse options: someone else took it.
    tp__punch_finish(p, fd, "bind", NULL);
    return;
  }

  int restore = 0;
  if (p->opts.first_ttl > 0 && t->attempts == 0) {
    // The low-TTL SYN opens our own NAT mapping but expires before the remote NAT, which therefore has nothing to
    // answer with a RST. Only the first SYN is short: the hop limit goes back right after connect() has sent it,
    // so the kernel's retransmissions and our SYN-ACK reach the peer.
    int orig = 0;
    if (tp_socket_get_ttl(fd, p->family, &orig) == 0 && tp_socket_set_ttl(fd, p->family, p->opts.first_ttl) == 0)
      restore = orig;
  }

  t->attempts++;
  t->started_at = uv_now(p->loop);
  p->result.attempts++;
  int err = tp_socket_connect(fd, reinterpret_cast<struct sockaddr*>(&p->opts.targets[target]));
  if (restore > 0) tp_socket_set_ttl(fd, p->family, restore);

  if (err != 0 && err != -EINPROGRESS) {
    tp_socket_close(fd);
    tp__target_failed(p, target, err);
    return;
  }

  tp_sock_t* s = tp__sock_new(p, fd, target, tp__connector_on_io, UV_WRITABLE);
  if (s == NULL) {
    tp_socket_close(fd);
    tp__punch_finish(p, -ENOMEM, "uv_poll_init", NULL);
    return;
  }
  t->sock = s;
  // A candidate punch learns of an immediate connect from its poll handle: a candidate must never reach the caller
  // from inside tp_punch_start().
  if (err == 0 && p->opts.on_candidate == NULL) tp__punch_finish(p, 0, NULL, s);
}

static void tp__connector_on_io(uv_poll_t* handle, int status, int events) {
  (void)events;
  (void)status;  // libuv reports POLLERR as UV_EBADF and stops the handle; the socket itself says what happened
  tp_sock_t* s = static_cast<tp_sock_t*>(handle->data);
  tp_punch_t* p = s->punch;
  if (p->done) return;
  // Established wins, whatever SO_ERROR says: an ICMP error that arrived while connect() held the socket is only a
  // soft error, left in SO_ERROR while the handshake goes on and completes.
  struct sockaddr_storage peer;
  if (tp_socket_peer(s->fd, &peer) == 0) {
    tp__punch_connected(p, s);
    return;
  }
  int err = tp_socket_error(s->fd);
  if (err == 0 || err == -EINPROGRESS || err == -EALREADY || tp_socket_is_connecting(s->fd) == 1) {
    // Still in SYN_SENT: keep this socket. Its SYN created our NAT's mapping, and a replacement with a new initial
    // sequence number would be dropped by conntrack once the peer's SYN has come through.
    uv_poll_start(&s->poll, UV_WRITABLE, tp__connector_on_io);
    return;
  }
  int target = s->target;
  tp__sock_close(s);
  tp__target_failed(p, target, err);
}

// Hands a connected fd to the candidate callback, which owns it from then on.
static void tp__punch_candidate(tp_punch_t* p, int fd, int via_accept) {
  tp_punch_result_t c;
  memset(&c, 0, sizeof(c));
  c.fd = fd;
  c.via_accept = via_accept;
  tp_socket_local(fd, &c.local);
  tp_socket_peer(fd, &c.remote);
  c.attempts = p->result.attempts;
  memcpy(c.last_errors, p->result.last_errors, sizeof(c.last_errors));
  c.target_count = p->result.target_count;
  c.elapsed_ms = uv_now(p->loop) - p->started;
  p->opts.on_candidate(&c, p->data);
}

// A connector's connect() completed: the winner, or (candidate punch) one candidate more. That target gets no
// further connector: its 4-tuple belongs to the candidate (a duplicate connect() would only fail with
// EADDRNOTAVAIL), and a connection to a target's exact endpoint that fails the caller's check means the peer
// itself failed, which ends the punch. The listener and the other targets carry on.
static void tp__punch_connected(tp_punch_t* p, tp_sock_t* s) {
  if (p->opts.on_candidate == NULL) {
    tp__punch_finish(p, 0, NULL, s);
    return;
  }
  int fd = s->fd;
  s->fd = -1;  // handed over: tp__sock_close() must leave it open
  p->targets[s->target].sock = NULL;
  tp__sock_close(s);
  tp__punch_candidate(p, fd, 0);
}

static void tp__listener_on_io(uv_poll_t* handle, int status, int events) {
  (void)events;
  tp_sock_t* s = static_cast<tp_sock_t*>(handle->data);
  tp_punch_t* p = s->punch;
  if (p->done) return;
  if (status < 0) {
    int err = tp_socket_error(s->fd);
    tp__punch_finish(p, err != 0 ? err : status, "accept", NULL);
    return;
  }
  // Bounded so a flood of strangers on the port cannot monopolise the loop; the rest wait for the next wakeup.
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage peer;
    int fd = tp_socket_accept(s->fd, &peer);
    if (fd == -EAGAIN || fd == -EWOULDBLOCK) return;
    if (fd == -ECONNABORTED || fd == -EPROTO) continue;
    if (fd < 0) {
      tp__punch_finish(p, fd, "accept", NULL);
      return;
    }
    int expected = 0;
    for (int t = 0; t < p->opts.target_count && !expected; t++) {
      // A symmetric NAT in front of the peer gives its connection to us another port than the one the server saw.
      const struct sockaddr* want = reinterpret_cast<struct sockaddr*>(&p->opts.targets[t]);
      const struct sockaddr* got = reinterpret_cast<struct sockaddr*>(&peer);
      expected = p->opts.accept_any_port ? tp_sockaddr_equal_host(got, want) : tp_sockaddr_equal(got, want);
    }
    if (!expected) {
      // Someone other than the expected peer found the port: refuse without disturbing the punch.
      tp_socket_close(fd);
      continue;
    }
    if (p->opts.on_candidate == NULL) {
      p->result.via_accept = 1;
      p->result.fd = fd;
      memcpy(&p->result.remote, &peer, sizeof(peer));
      tp__punch_finish(p, 0, NULL, NULL);
      return;
    }
    tp__punch_candidate(p, fd, 1);
    if (p->done) return;  // the caller stopped the punch from its callback
  }
}

static void tp__timer_on_fire(uv_timer_t* timer) {
  tp_punch_t* p = static_cast<tp_punch_t*>(timer->data);
  if (p->done) return;
  uint64_t now = uv_now(p->loop);
  if (now >= p->deadline) {
    tp__punch_finish(p, -ETIMEDOUT, "connect", NULL);
    return;
  }
  for (int i = 0; i < p->opts.target_count && !p->done; i++) {
    tp_target_state_t* t = &p->targets[i];
    if (t->sock == NULL && t->retry_at != 0 && t->retry_at <= now) tp__target_connect(p, i);
  }
  if (!p->done) tp__punch_arm(p);
}

static void tp__punch_arm(tp_punch_t* p) {
  uint64_t next = p->deadline;
  for (int i = 0; i < p->opts.target_count; i++) {
    uint64_t at = p->targets[i].retry_at;
    if (p->targets[i].sock == NULL && at != 0 && at < next) next = at;
  }
  uint64_t now = uv_now(p->loop);
  uv_timer_start(&p->timer, tp__timer_on_fire, next > now ? next - now : 0, 0);
}

static void tp__punch_finish(tp_punch_t* p, int status, const char* syscall, tp_sock_t* winner) {
  if (p->done) return;
  p->done = 1;
  tp_punch_result_t* r = &p->result;
  r->status = status;
  r->syscall = syscall;
  r->elapsed_ms = uv_now(p->loop) - p->started;

  if (winner != NULL) {
    r->fd = winner->fd;
    winner->fd = -1;  // handed over: tp__sock_close() must leave it open
    memcpy(&r->remote, &p->opts.targets[winner->target], sizeof(r->remote));
  }
  if (r->fd >= 0) {
    tp_socket_local(r->fd, &r->local);
    tp_socket_peer(r->fd, &r->remote);
  } else {
    memcpy(&r->local, &p->local, sizeof(r->local));
  }

  if (p->listener != NULL) tp__sock_close(p->listener);
  p->listener = NULL;
  for (int i = 0; i < p->opts.target_count; i++) {
    if (p->targets[i].sock != NULL) tp__sock_close(p->targets[i].sock);
    p->targets[i].sock = NULL;
  }
  uv_timer_stop(&p->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), tp__timer_on_close);
}

static int tp__punch_open_listener(tp_punch_t* p, const char** syscall) {
  int fd;
  if (p->opts.listen_fd >= 0) {
    // Borrow the caller's listener through a duplicate, so the caller may close its own fd at any time.
    *syscall = "dup";
    fd = fcntl(p->opts.listen_fd, F_DUPFD_CLOEXEC, 0);
    if (fd == -1) return -errno;
  } else {
    *syscall = "bind";
    fd = tp_socket_reusable(reinterpret_cast<struct sockaddr*>(&p->local));
    if (fd < 0) return fd;
    *syscall = "listen";
    int err = tp_socket_listen(fd, 64);
    if (err != 0) {
      tp_socket_close(fd);
      return err;
    }
  }
  *syscall = "getsockname";
  int err = tp_socket_local(fd, &p->local);
  if (err == 0 && p->local.ss_family != p->family) err = -EAFNOSUPPORT;
  if (err != 0) {
    tp_socket_close(fd);
    return err;
  }
  p->listener = tp__sock_new(p, fd, -1, tp__listener_on_io, UV_READABLE);
  if (p->listener == NULL) {
    tp_socket_close(fd);
    return -ENOMEM;
  }
  return 0;
}

// Without a listener, port 0 must still resolve to one port shared by every connector: reserve it with a bound
// socket for the duration of the start-up.
static int tp__punch_pick_port(tp_punch_t* p, const char** syscall) {
  *syscall = "bind";
  int fd = tp_socket_reusable(reinterpret_cast<struct sockaddr*>(&p->local));
  if (fd < 0) return fd;
  int err = tp_socket_local(fd, &p->local);
  tp_socket_close(fd);
  return err;
}

int tp_punch_start(uv_loop_t* loop, const tp_punch_opts_t* opts, tp_punch_cb cb, void* data, tp_punch_t** out,
                   const char** syscall) {
  *syscall = "punch";
  if (opts->target_count < 1 || opts->target_count > TP_PUNCH_MAX_TARGETS) return -EINVAL;
  int family = opts->local.ss_family;
  if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
  for (int i = 0; i < opts->target_count; i++)
    if (opts->targets[i].ss_family != family) return -EAFNOSUPPORT;

  tp_punch_t* p = static_cast<tp_punch_t*>(calloc(1, sizeof(*p)));
  if (p == NULL) return -ENOMEM;
  p->loop = loop;
  memcpy(&p->opts, opts, sizeof(*opts));
  p->cb = cb;
  p->data = data;
  p->family = family;
  memcpy(&p->local, &opts->local, sizeof(p->local));
  p->result.fd = -1;
  p->result.target_count = opts->target_count;

  int err = 0;
  if (opts->listen_fd >= 0 || opts->listen) {
    err = tp__punch_open_listener(p, syscall);
  } else {
    err = tp__punch_pick_port(p, syscall);
  }
  if (err != 0) {  // nothing was opened: the listener is the last step and cleans up after itself
    free(p);
    return err;
  }

  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  p->handles++;
  uv_update_time(loop);
  p->started = uv_now(loop);
  p->deadline = p->started + opts->timeout_ms;
  *out = p;
  // Listen first, connect second: a SYN that reaches us before our own connect() must find a listener rather than
  // draw a RST that could tear down the peer's NAT mapping.
  for (int i = 0; i < opts->target_count && !p->done; i++) tp__target_connect(p, i);
  if (!p->done) tp__punch_arm(p);
  return 0;
}

void tp_punch_abort(tp_punch_t* p) {
  tp__punch_finish(p, -ECANCELED, "abort", NULL);
}
