// One relayed session on the pump's I/O thread: two sockets, each with a uv_poll handle, two directions
// (pump_dir.cc), a duration timer, and the carrier wait list they share with every other session.
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <new>

#include "pump_internal.h"
#include "socket.h"

// Bytes one direction may move per wakeup before yielding to the other sessions.
#define TP_PUMP_BUDGET (1024 * 1024)

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

void tp_session_end(tp_session_t* s, tp_pump_reason_t reason, int err, int side) {
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
  uint64_t before = d->bytes;
  int r = tp_dir_run(d, &s->engine->pool, &s->allowance, TP_PUMP_BUDGET);
  if (d->bytes != before) s->last_active = uv_now(&s->engine->loop);
  switch (r) {
    case TP_DIR_AGAIN:
      return;
    case TP_DIR_DONE:
      if (s->dirs[0].done && s->dirs[1].done) tp_session_end(s, TP_PUMP_EOF, 0, -1);
      return;
    case TP_DIR_LIMIT:
      tp_session_end(s, TP_PUMP_LIMIT_BYTES, 0, -1);
      return;
    case TP_DIR_NO_CARRIER:
      tp__wait_push(s->engine, d);
      return;
    default:
      tp_session_end(s, tp__classify(r), r, d->failed_dst ? 1 - i : i);
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
    tp_session_end(s, tp__classify(err), err, i);
    tp_wake_waiters(s->engine);
    return;
  }
  if (events & UV_READABLE) tp__session_run(s, i);
  if (events & UV_WRITABLE) tp__session_run(s, 1 - i);
  tp__session_update(s);
  // Every callback that may have given a carrier back (a flush that emptied one, a session that ended) hands
  // it on at once: a waiting direction has no poll interest left that could wake it.
  tp_wake_waiters(s->engine);
}

// Registers the poll interest each socket needs now: readable when its outgoing direction wants to read,
// writable when its incoming direction has bytes or a head waiting for room.
static void tp__session_update(tp_session_t* s) {
  for (int i = 0; i < 2 && !s->ending; i++) {
    int ev = (s->dirs[i].want_read ? UV_READABLE : 0) | (s->dirs[1 - i].want_write ? UV_WRITABLE : 0);
    if (ev == s->poll_events[i]) continue;
    int err = ev != 0 ? uv_poll_start(&s->polls[i], ev, tp__session_on_poll) : uv_poll_stop(&s->polls[i]);
    if (err != 0) {
      tp_session_end(s, TP_PUMP_ERROR, err, i);
      return;
    }
    s->poll_events[i] = ev;
  }
}

// One timer serves both limits: it is armed for whichever comes first, the duration limit or idle_ms after the
// last byte moved (a busy session pushes that back without touching the timer on every write).
static void tp__session_arm(tp_session_t* s);

static void tp__session_on_timer(uv_timer_t* timer) {
  tp_session_t* s = static_cast<tp_session_t*>(timer->data);
  uint64_t now = uv_now(&s->engine->loop);
  if (s->max_duration_ms > 0 && now - s->started_at >= s->max_duration_ms) {
    tp_session_end(s, TP_PUMP_LIMIT_DURATION, 0, -1);
  } else if (s->idle_ms > 0 && now - s->last_active >= s->idle_ms) {
    tp_session_end(s, TP_PUMP_LIMIT_IDLE, 0, -1);
  } else {
    tp__session_arm(s);
    return;
  }
  tp_wake_waiters(s->engine);
}

static void tp__session_arm(tp_session_t* s) {
  uint64_t now = uv_now(&s->engine->loop);
  uint64_t due = UINT64_MAX;
  if (s->max_duration_ms > 0) due = s->started_at + s->max_duration_ms;
  if (s->idle_ms > 0 && s->last_active + s->idle_ms < due) due = s->last_active + s->idle_ms;
  if (due == UINT64_MAX) return;
  uv_timer_start(&s->timer, tp__session_on_timer, due > now ? due - now : 0, 0);
}

void tp_session_begin(tp_pump_engine_t* e, tp_session_t* s) {
  uv_timer_init(&e->loop, &s->timer);
  s->timer.data = s;
  s->handles = 1;
  s->started_at = uv_now(&e->loop);
  s->last_active = s->started_at;
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
    tp_session_end(s, TP_PUMP_ERROR, err, -1);
    return;
  }
  tp__session_arm(s);
  tp__session_run(s, 0);
  tp__session_run(s, 1);
  tp__session_update(s);
}

// Runs directions that wait for a carrier while carriers are free; bounded by the list's length so that a
// direction that cannot get one even now (out of memory) does not spin.
void tp_wake_waiters(tp_pump_engine_t* e) {
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
