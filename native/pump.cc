// The pump engine: its I/O thread and loop, the command queue from the JS thread, and the public API of pump.h.
// What happens to one session on the I/O thread is in pump_session.cc.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <new>
#include <vector>

#include "pump_internal.h"
#include "socket.h"

const char* tp_pump_reason_name(tp_pump_reason_t reason) {
  switch (reason) {
    case TP_PUMP_EOF: return "eof";
    case TP_PUMP_ERROR: return "error";
    case TP_PUMP_RESET: return "reset";
    case TP_PUMP_LIMIT_BYTES: return "limit-bytes";
    case TP_PUMP_LIMIT_DURATION: return "limit-duration";
    case TP_PUMP_STOPPED: return "stopped";
    case TP_PUMP_LIMIT_IDLE: return "limit-idle";
  }
  return "error";
}

/* ---- the engine (I/O thread) ---- */

static void tp__engine_on_async(uv_async_t* async) {
  tp_pump_engine_t* e = static_cast<tp_pump_engine_t*>(async->data);
  uv_mutex_lock(&e->mutex);
  tp_cmd_t* cmd = e->cmd_head;
  e->cmd_head = e->cmd_tail = NULL;
  int shutdown = e->shutting_down;
  uv_mutex_unlock(&e->mutex);

  while (cmd != NULL) {
    tp_cmd_t* next = cmd->next;
    if (cmd->type == TP_CMD_START) {
      tp_session_begin(e, cmd->session);
    } else if (cmd->type == TP_CMD_STOP) {
      auto it = e->sessions.find(cmd->id);
      if (it != e->sessions.end()) tp_session_end(it->second, cmd->reason, 0, -1);
    } else {
      e->pool.config = cmd->config;
      tp_pool_trim(&e->pool, cmd->config.max_idle);
    }
    free(cmd);
    cmd = next;
  }

  if (shutdown && !e->closing) {
    e->closing = 1;
    std::vector<tp_session_t*> all;
    all.reserve(e->sessions.size());
    for (auto& entry : e->sessions) all.push_back(entry.second);
    for (tp_session_t* s : all) tp_session_end(s, TP_PUMP_STOPPED, 0, -1);
    // With the async handle closed the loop ends once the sessions' handles have closed.
    uv_close(reinterpret_cast<uv_handle_t*>(&e->async), NULL);
    return;
  }
  tp_wake_waiters(e);
}

static void tp__engine_thread(void* arg) {
  tp_pump_engine_t* e = static_cast<tp_pump_engine_t*>(arg);
  // Process signals are Node's to handle on its own threads. This also keeps the SIGPIPE that splice(2) raises on
  // a reset peer (it has no MSG_NOSIGNAL) pending on this thread instead of killing an embedder that did not
  // ignore SIGPIPE as Node does; the call still fails with EPIPE. Faults stay deliverable.
  sigset_t set;
  sigfillset(&set);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  e->running = 1;
  uv_run(&e->loop, UV_RUN_DEFAULT);
  e->running = 0;
}

/* ---- the JS-thread side ---- */

void tp_pump_config_default(tp_pump_config_t* c) {
#ifdef __linux__
  c->max_pipes = 64;
#else
  c->max_pipes = 0;  // no splice(2) outside Linux
#endif
  // The most an unprivileged process may ask (fs.pipe-max-size): a quarter of the splice calls 256 KiB needs,
  // which measured 0.11-0.20 relay CPU-s/GB against 0.16-0.46 on this project's loopback benchmark.
  c->pipe_size = 1024 * 1024;
  c->max_buffers = 256;
  c->buffer_size = 64 * 1024;
  c->max_idle = 16;
}

int tp_pump_engine_new(tp_pump_engine_t** out, const tp_pump_config_t* config) {
  tp_pump_engine_t* e = new (std::nothrow) tp_pump_engine_t();
  if (e == NULL) return -ENOMEM;
  tp_pool_init(&e->pool, config);
  int err = uv_loop_init(&e->loop);
  if (err != 0) {
    delete e;
    return err;
  }
  err = uv_mutex_init(&e->mutex);
  if (err == 0) err = uv_async_init(&e->loop, &e->async, tp__engine_on_async);
  if (err != 0) {
    uv_loop_close(&e->loop);
    delete e;
    return err;
  }
  e->async.data = e;
  *out = e;
  return 0;
}

void tp_pump_engine_free(tp_pump_engine_t* e) {
  if (e->thread_started) {
    uv_mutex_lock(&e->mutex);
    e->shutting_down = 1;
    uv_mutex_unlock(&e->mutex);
    uv_async_send(&e->async);
    uv_thread_join(&e->thread);
  } else {
    // The thread never ran: close the async handle on this thread instead.
    uv_close(reinterpret_cast<uv_handle_t*>(&e->async), NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
  }
  tp_pool_trim(&e->pool, 0);
  uv_loop_close(&e->loop);
  uv_mutex_destroy(&e->mutex);
  delete e;
}

static void tp__engine_post(tp_pump_engine_t* e, tp_cmd_t* cmd) {
  cmd->next = NULL;
  uv_mutex_lock(&e->mutex);
  if (e->cmd_tail != NULL) e->cmd_tail->next = cmd;
  else e->cmd_head = cmd;
  e->cmd_tail = cmd;
  uv_mutex_unlock(&e->mutex);
}

// A duplicate of a connected stream socket, made nonblocking. The duplicate shares the open file description, so
// this also sets O_NONBLOCK on the caller's fd, which Node's sockets have anyway.
static int tp__dup_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return -errno;
  if (type != SOCK_STREAM) return -EINVAL;
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup == -1) return -errno;
  int err = tp_socket_set_nonblock(dup, 1);
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (err == 0 && setsockopt(dup, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) != 0) err = -errno;
#endif
  if (err != 0) {
    tp_socket_close(dup);
    return err;
  }
  return dup;
}

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: tp__dup_socket set SO_NOSIGPIPE
#endif

// Sends what the socket takes of a direction's head now, on the calling thread, once the session can no longer
// fail to start: a head is a few dozen bytes on a socket that has sent nothing yet, so it goes whole, and the
// peer learns it is paired without waiting for the I/O thread to be scheduled (on a busy machine that wait is
// most of a session's setup time). The I/O thread sends whatever is left, or meets the same error and ends the
// session as it would have; nothing is relayed before the head is gone either way.
static void tp__send_head(tp_dir_t* d) {
  while (d->head != NULL && d->head_off < d->head_len) {
    ssize_t n = send(d->dst, d->head + d->head_off, d->head_len - d->head_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    d->head_off += static_cast<size_t>(n);
  }
  free(d->head);
  d->head = NULL;
}

static int tp__copy_head(tp_dir_t* d, const char* bytes, size_t len) {
  if (len == 0) return 0;
  d->head = static_cast<char*>(malloc(len));
  if (d->head == NULL) return -ENOMEM;
  memcpy(d->head, bytes, len);
  d->head_len = len;
  return 0;
}

int tp_pump_start(tp_pump_engine_t* e, const tp_pump_opts_t* opts, tp_pump_done_cb cb, void* data, uint32_t* id) {
  if (opts->fd_a < 0 || opts->fd_b < 0 || opts->fd_a == opts->fd_b) return -EINVAL;
  tp_session_t* s = static_cast<tp_session_t*>(calloc(1, sizeof(*s)));
  tp_cmd_t* cmd = static_cast<tp_cmd_t*>(calloc(1, sizeof(*cmd)));
  int err = s == NULL || cmd == NULL ? -ENOMEM : 0;
  int fa = -1, fb = -1;
  if (err == 0) err = fa = opts->adopt ? opts->fd_a : tp__dup_socket(opts->fd_a);
  if (err >= 0) err = fb = opts->adopt ? opts->fd_b : tp__dup_socket(opts->fd_b);
  if (err >= 0) err = tp__copy_head(&s->dirs[1], opts->head_a, opts->head_a_len);  // B to A carries A's head
  if (err >= 0) err = tp__copy_head(&s->dirs[0], opts->head_b, opts->head_b_len);
  if (err >= 0 && !e->thread_started) {
    err = uv_thread_create(&e->thread, tp__engine_thread, e);
    if (err == 0) e->thread_started = 1;
  }
  if (err < 0) {
    if (fa >= 0 && !opts->adopt) tp_socket_close(fa);
    if (fb >= 0 && !opts->adopt) tp_socket_close(fb);
    if (s != NULL) {
      free(s->dirs[0].head);
      free(s->dirs[1].head);
    }
    free(s);
    free(cmd);
    return err;
  }

  s->engine = e;
  s->id = e->next_id++;
  if (e->next_id == 0) e->next_id = 1;
  s->fds[0] = fa;
  s->fds[1] = fb;
  s->allowance = opts->max_bytes > 0 ? opts->max_bytes : UINT64_MAX;
  s->max_duration_ms = opts->max_duration_ms;
  s->idle_ms = opts->idle_ms;
  s->cb = cb;
  s->data = data;
  s->result.side = -1;
  for (int i = 0; i < 2; i++) {
    tp_dir_t* d = &s->dirs[i];
    d->owner = s;
    d->index = i;
    d->src = s->fds[i];
    d->dst = s->fds[1 - i];
    d->use_splice = !opts->no_splice;
  }
  tp__send_head(&s->dirs[1]);
  tp__send_head(&s->dirs[0]);
  cmd->type = TP_CMD_START;
  cmd->session = s;
  e->active++;
  e->started++;
  *id = s->id;
  tp__engine_post(e, cmd);
  return 0;
}

void tp_pump_wake(tp_pump_engine_t* e) {
  if (e->thread_started) uv_async_send(&e->async);
}

int tp_pump_stop(tp_pump_engine_t* e, uint32_t id, tp_pump_reason_t reason) {
  if (!e->thread_started) return 0;
  tp_cmd_t* cmd = static_cast<tp_cmd_t*>(calloc(1, sizeof(*cmd)));
  if (cmd == NULL) return -ENOMEM;
  cmd->type = TP_CMD_STOP;
  cmd->id = id;
  cmd->reason = reason;
  tp__engine_post(e, cmd);
  uv_async_send(&e->async);
  return 0;
}

int tp_pump_configure(tp_pump_engine_t* e, const tp_pump_config_t* config) {
  if (config->max_buffers < 1 || config->buffer_size < 1) return -EINVAL;
  tp_cmd_t* cmd = static_cast<tp_cmd_t*>(calloc(1, sizeof(*cmd)));
  if (cmd == NULL) return -ENOMEM;
  cmd->type = TP_CMD_CONFIGURE;
  cmd->config = *config;
#ifndef __linux__
  cmd->config.max_pipes = 0;
#endif
  if (!e->thread_started) {
    // No thread yet, so no race: apply it here and now.
    e->pool.config = cmd->config;
    free(cmd);
    return 0;
  }
  tp__engine_post(e, cmd);
  uv_async_send(&e->async);
  return 0;
}

void tp_pump_stats(tp_pump_engine_t* e, tp_pump_stats_t* out) {
  out->sessions = e->active;
  out->waiting = e->waiting;
  out->pipes_idle = e->pool.pipes_idle;
  out->pipes_lent = e->pool.pipes_lent;
  out->buffers_idle = e->pool.buffers_idle;
  out->buffers_lent = e->pool.buffers_lent;
  out->started = e->started;
  out->completed = e->completed;
  out->thread_running = e->running;
}
