#include "pump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include <atomic>
#include <new>
#include <unordered_map>
#include <vector>

#include "pipe_pool.h"
#include "pump_dir.h"
#include "socket.h"

// Bytes one direction may move per wakeup before yielding to the other sessions.
#define TP_PUMP_BUDGET (1024 * 1024)

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
  int fds[2];                  // A, B: our duplicates, closed by tp__session_end
  uv_poll_t polls[2];
  int poll_open[2];
  int poll_events[2];          // interest registered with uv_poll_start
  uv_timer_t timer;
  tp_dir_t dirs[2];            // [0] A to B, [1] B to A
  uint64_t allowance;          // bytes left to read, both directions together
  uint64_t max_duration_ms;
  uint64_t started_at;
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

const char* tp_pump_reason_name(tp_pump_reason_t reason) {
  switch (reason) {
    case TP_PUMP_EOF: return "eof";
    case TP_PUMP_ERROR: return "error";
    case TP_PUMP_RESET: return "reset";
    case TP_PUMP_LIMIT_BYTES: return "limit-bytes";
    case TP_PUMP_LIMIT_DURATION: return "limit-duration";
    case TP_PUMP_STOPPED: return "stopped";
  }
  return "error";
}

static tp_pump_reason_t tp__classify(int err) {
  return err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED ? TP_PUMP_RESET : TP_PUMP_ERROR;
}

/* ---- the carrier wait list ---- */

static void tp__wait_push(tp_pump_engine_t* e, tp_dir_t* d) {
  d->waiting = 1;
  d->wait_next = NULL;
  d->wait_prev = e->wait_tail;
  if (e->wait_tail != NULL) e->wait_tail->wait_next = d;
  else e->wait_head = d;
  e->wait_tail = d;
  e->waiting++;
}

static void tp__wait_remove(tp_pump_engine_t* e, tp_dir_t* d) {
  if (!d->waiting) return;
  if (d->wait_prev != NULL) d->wait_prev->wait_next = d->wait_next;
  else e->wait_head = d->wait_next;
  if (d->wait_next != NULL) d->wait_next->wait_prev = d->wait_prev;
  else e->wait_tail = d->wait_prev;
  d->waiting = 0;
  d->wait_prev = d->wait_next = NULL;
  e->waiting--;
}

/* ---- sessions (I/O thread) ---- */

static void tp__session_run(tp_session_t* s, int i);
static void tp__session_update(tp_session_t* s);

static void tp__session_on_close(uv_handle_t* handle) {
  tp_session_t* s = static_cast<tp_session_t*>(handle->data);
  if (--s->handles > 0) return;
  tp_pump_engine_t* e = s->engine;
  // Both sockets are closed and no callback of ours can run again for this session.
  s->cb(&s->result, s->data);
  free(s);
  e->completed++;
  e->active--;
  if (e->sessions.empty()) tp_pool_trim(&e->pool, 0);  // nothing in flight: give every idle pipe back
}

static void tp__session_end(tp_session_t* s, tp_pump_reason_t reason, int err, int side) {
  if (s->ending) return;
  s->ending = 1;
  tp_pump_engine_t* e = s->engine;
  tp_pump_result_t* r = &s->result;
  r->id = s->id;
  r->bytes_a_to_b = s->dirs[0].bytes;
  r->bytes_b_to_a = s->dirs[1].bytes;
  r->reason = reason;
  r->error = err;
  r->side = side;
  r->duration_ms = uv_now(&e->loop) - s->started_at;

  for (int i = 0; i < 2; i++) {
    tp__wait_remove(e, &s->dirs[i]);
    tp_dir_release(&s->dirs[i], &e->pool);
  }
  e->sessions.erase(s->id);

  for (int i = 0; i < 2; i++) {
    // uv_close stops polling at once (the fd leaves epoll/kqueue), so the fd can be closed right after.
    if (s->poll_open[i]) uv_close(reinterpret_cast<uv_handle_t*>(&s->polls[i]), tp__session_on_close);
    if (reason != TP_PUMP_EOF) {
      // A RST instead of a FIN: a stream cut by a limit, a stop or the other side's failure must never look
      // complete to the peer that is still reading.
      struct linger lg = {1, 0};
      setsockopt(s->fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    tp_socket_close(s->fds[i]);
    s->fds[i] = -1;
  }
  uv_timer_stop(&s->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->timer), tp__session_on_close);
}

static void tp__session_run(tp_session_t* s, int i) {
  tp_dir_t* d = &s->dirs[i];
  if (s->ending || d->waiting) return;
  int r = tp_dir_run(d, &s->engine->pool, &s->allowance, TP_PUMP_BUDGET);
  switch (r) {
    case TP_DIR_AGAIN:
      return;
    case TP_DIR_DONE:
      if (s->dirs[0].done && s->dirs[1].done) tp__session_end(s, TP_PUMP_EOF, 0, -1);
      return;
    case TP_DIR_LIMIT:
      tp__session_end(s, TP_PUMP_LIMIT_BYTES, 0, -1);
      return;
    case TP_DIR_NO_CARRIER:
      tp__wait_push(s->engine, d);
      return;
    default:
      tp__session_end(s, tp__classify(r), r, d->failed_dst ? 1 - i : i);
      return;
  }
}

static void tp__session_on_poll(uv_poll_t* handle, int status, int events) {
  tp_session_t* s = static_cast<tp_session_t*>(handle->data);
  int i = handle == &s->polls[0] ? 0 : 1;
  if (s->ending) return;
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF and stops the handle; the socket's own error says what happened.
    int err = tp_socket_error(s->fds[i]);
    if (err == 0) err = status;
    tp__session_end(s, tp__classify(err), err, i);
    return;
  }
  if (events & UV_READABLE) tp__session_run(s, i);
  if (events & UV_WRITABLE) tp__session_run(s, 1 - i);
  tp__session_update(s);
}

// Registers the poll interest each socket needs now: readable when its outgoing direction wants to read,
// writable when its incoming direction has bytes or a head waiting for room.
static void tp__session_update(tp_session_t* s) {
  for (int i = 0; i < 2 && !s->ending; i++) {
    int ev = (s->dirs[i].want_read ? UV_READABLE : 0) | (s->dirs[1 - i].want_write ? UV_WRITABLE : 0);
    if (ev == s->poll_events[i]) continue;
    int err = ev != 0 ? uv_poll_start(&s->polls[i], ev, tp__session_on_poll) : uv_poll_stop(&s->polls[i]);
    if (err != 0) {
      tp__session_end(s, TP_PUMP_ERROR, err, i);
      return;
    }
    s->poll_events[i] = ev;
  }
}

static void tp__session_on_timer(uv_timer_t* timer) {
  tp__session_end(static_cast<tp_session_t*>(timer->data), TP_PUMP_LIMIT_DURATION, 0, -1);
}

static void tp__session_begin(tp_pump_engine_t* e, tp_session_t* s) {
  uv_timer_init(&e->loop, &s->timer);
  s->timer.data = s;
  s->handles = 1;
  s->started_at = uv_now(&e->loop);
  int err = 0;
  for (int i = 0; i < 2 && err == 0; i++) {
    err = uv_poll_init(&e->loop, &s->polls[i], s->fds[i]);
    if (err != 0) break;
    s->polls[i].data = s;
    s->poll_open[i] = 1;
    s->handles++;
  }
  if (err == 0) {
    try {
      e->sessions[s->id] = s;
    } catch (const std::bad_alloc&) {
      err = -ENOMEM;
    }
  }
  if (err != 0) {
    tp__session_end(s, TP_PUMP_ERROR, err, -1);
    return;
  }
  if (s->max_duration_ms > 0) uv_timer_start(&s->timer, tp__session_on_timer, s->max_duration_ms, 0);
  tp__session_run(s, 0);
  tp__session_run(s, 1);
  tp__session_update(s);
}

/* ---- the engine (I/O thread) ---- */

// Runs directions that wait for a carrier while carriers are free; bounded by the list's length so that a
// direction that cannot get one even now (out of memory) does not spin.
static void tp__wake_waiters(tp_pump_engine_t* e) {
  size_t n = e->waiting;
  while (n-- > 0 && e->wait_head != NULL) {
    tp_dir_t* d = e->wait_head;
    if (!tp_pool_can_take(&e->pool, 0) && !(d->use_splice && tp_pool_can_take(&e->pool, 1))) return;
    tp__wait_remove(e, d);
    tp_session_t* s = static_cast<tp_session_t*>(d->owner);
    tp__session_run(s, d->index);
    tp__session_update(s);
  }
}

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
      tp__session_begin(e, cmd->session);
    } else if (cmd->type == TP_CMD_STOP) {
      auto it = e->sessions.find(cmd->id);
      if (it != e->sessions.end()) tp__session_end(it->second, cmd->reason, 0, -1);
    } else {
      tp_pool_config_t* c = &e->pool.config;
      c->max_pipes = cmd->config.max_pipes;
      c->pipe_size = cmd->config.pipe_size;
      c->max_buffers = cmd->config.max_buffers;
      c->buffer_size = cmd->config.buffer_size;
      c->max_idle = cmd->config.max_idle;
      tp_pool_trim(&e->pool, c->max_idle);
    }
    free(cmd);
    cmd = next;
  }

  if (shutdown && !e->closing) {
    e->closing = 1;
    std::vector<tp_session_t*> all;
    all.reserve(e->sessions.size());
    for (auto& entry : e->sessions) all.push_back(entry.second);
    for (tp_session_t* s : all) tp__session_end(s, TP_PUMP_STOPPED, 0, -1);
    // With the async handle closed the loop ends once the sessions' handles have closed.
    uv_close(reinterpret_cast<uv_handle_t*>(&e->async), NULL);
    return;
  }
  tp__wake_waiters(e);
}

static void tp__engine_thread(void* arg) {
  tp_pump_engine_t* e = static_cast<tp_pump_engine_t*>(arg);
  e->running = 1;
  uv_run(&e->loop, UV_RUN_DEFAULT);
  e->running = 0;
}

/* ---- the JS-thread side ---- */

void tp_pump_config_default(tp_pump_config_t* c) {
#ifdef __linux__
  c->max_pipes = TP_POOL_DEFAULT_MAX_PIPES;
#else
  c->max_pipes = 0;
#endif
  c->pipe_size = TP_POOL_DEFAULT_PIPE_SIZE;
  c->max_buffers = TP_POOL_DEFAULT_MAX_BUFFERS;
  c->buffer_size = TP_POOL_DEFAULT_BUFFER_SIZE;
  c->max_idle = TP_POOL_DEFAULT_MAX_IDLE;
}

int tp_pump_engine_new(tp_pump_engine_t** out) {
  tp_pump_engine_t* e = new (std::nothrow) tp_pump_engine_t();
  if (e == NULL) return -ENOMEM;
  tp_pool_init(&e->pool);
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
  if (err == 0) err = fa = tp__dup_socket(opts->fd_a);
  if (err >= 0) err = fb = tp__dup_socket(opts->fd_b);
  if (err >= 0) err = tp__copy_head(&s->dirs[1], opts->head_a, opts->head_a_len);  // B to A carries A's head
  if (err >= 0) err = tp__copy_head(&s->dirs[0], opts->head_b, opts->head_b_len);
  if (err >= 0 && !e->thread_started) {
    err = uv_thread_create(&e->thread, tp__engine_thread, e);
    if (err == 0) e->thread_started = 1;
  }
  if (err < 0) {
    if (fa >= 0) tp_socket_close(fa);
    if (fb >= 0) tp_socket_close(fb);
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
  cmd->type = TP_CMD_START;
  cmd->session = s;
  e->active++;
  e->started++;
  *id = s->id;
  tp__engine_post(e, cmd);
  uv_async_send(&e->async);
  return 0;
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
    tp_pool_config_t* c = &e->pool.config;
    c->max_pipes = cmd->config.max_pipes;
    c->pipe_size = cmd->config.pipe_size;
    c->max_buffers = cmd->config.max_buffers;
    c->buffer_size = cmd->config.buffer_size;
    c->max_idle = cmd->config.max_idle;
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
