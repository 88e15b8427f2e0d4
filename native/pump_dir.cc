#include "pump_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: the pump sets SO_NOSIGPIPE on its sockets instead (and Node ignores SIGPIPE)
#endif

#ifdef __linux__
#define TP_SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
#endif

static int tp__would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

// Borrows a carrier: a pipe when this direction splices and one is free, else a buffer. Running out of pipes
// only costs a copy; running out of both makes the direction wait (TP_DIR_NO_CARRIER).
static tp_carrier_t* tp__dir_borrow(tp_dir_t* d, tp_pool_t* pool) {
  tp_carrier_t* c = d->use_splice ? tp_pool_take_pipe(pool) : NULL;
  if (c == NULL) c = tp_pool_take_buffer(pool);
  return c;
}

static void tp__dir_give_back(tp_dir_t* d, tp_pool_t* pool) {
  if (d->carrier == NULL) return;
  tp_pool_give(pool, d->carrier, d->pending == 0);
  d->carrier = NULL;
  d->pending = 0;
  d->off = 0;
}

// Reads up to `max` bytes from src into the (empty) carrier: > 0 bytes read, 0 at EOF, or a negative errno.
static ssize_t tp__dir_fill(tp_dir_t* d, size_t max) {
  tp_carrier_t* c = d->carrier;
  if (max > c->size) max = c->size;
  for (;;) {
    ssize_t n;
#ifdef __linux__
    if (c->kind == TP_CARRIER_PIPE)
      n = splice(d->src, NULL, c->wfd, NULL, max, TP_SPLICE_FLAGS);
    else
#endif
      n = recv(d->src, c->buf, max, 0);
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

// Writes pending bytes to dst: > 0 bytes written, or a negative errno (-EAGAIN when dst is full).
static ssize_t tp__dir_flush(tp_dir_t* d) {
  tp_carrier_t* c = d->carrier;
  for (;;) {
    ssize_t n;
#ifdef __linux__
    if (c->kind == TP_CARRIER_PIPE)
      n = splice(c->rfd, NULL, d->dst, NULL, d->pending, TP_SPLICE_FLAGS);
    else
#endif
      n = send(d->dst, c->buf + d->off, d->pending, MSG_NOSIGNAL);
    if (n > 0) return n;
    if (n == 0) return -EAGAIN;  // not expected from a socket with room; treat as full rather than spin
    if (errno != EINTR) return -errno;
  }
}

// With the allowance spent, looks at src without consuming: more bytes mean the limit is hit, EOF means the
// session simply ended on the limit exactly.
static int tp__dir_peek(tp_dir_t* d) {
  char c;
  for (;;) {
    ssize_t n = recv(d->src, &c, 1, MSG_PEEK);
    if (n > 0) return TP_DIR_LIMIT;
    if (n == 0) return TP_DIR_DONE;  // EOF
    if (errno != EINTR) return -errno;
  }
}

// The pool is dry: moves bytes without holding any. Peeks at src, sends what dst takes, then consumes exactly
// that much from src. It copies twice, but a direction whose dst is full then holds no carrier between calls, so
// peers that stop reading cannot starve every other session of pipes and buffers. Returns bytes moved, 0 at
// EOF, or a negative errno (failed_dst tells which side).
static ssize_t tp__dir_copy_through(tp_dir_t* d, char* scratch, size_t max) {
  ssize_t n;
  do n = recv(d->src, scratch, max, MSG_PEEK);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return n < 0 ? -errno : 0;
  ssize_t w;
  do w = send(d->dst, scratch, static_cast<size_t>(n), MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  if (w <= 0) {
    d->failed_dst = 1;
    return w < 0 ? -errno : -EAGAIN;
  }
#ifdef MSG_TRUNC
  // Linux TCP discards with MSG_TRUNC instead of copying the bytes out a second time.
  const int consume = MSG_TRUNC;
#else
  const int consume = 0;
#endif
  for (size_t left = static_cast<size_t>(w); left > 0;) {
    ssize_t r = recv(d->src, scratch, left, consume);
    if (r < 0 && errno == EINTR) continue;
    // The peeked bytes are in src's queue and this thread is their only reader: anything else would duplicate
    // bytes already sent, so the session ends instead.
    if (r <= 0) return r < 0 ? -errno : -EIO;
    left -= static_cast<size_t>(r) < left ? static_cast<size_t>(r) : left;
  }
  return w;
}

static int tp__dir_write_head(tp_dir_t* d) {
  while (d->head_off < d->head_len) {
    ssize_t n = send(d->dst, d->head + d->head_off, d->head_len - d->head_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    d->head_off += static_cast<size_t>(n);
  }
  free(d->head);
  d->head = NULL;
  return 0;
}

int tp_dir_run(tp_dir_t* d, tp_pool_t* pool, uint64_t* allowance, size_t budget) {
  d->want_read = 0;
  d->want_write = 0;
  d->failed_dst = 0;
  if (d->done) return TP_DIR_DONE;

  if (d->head != NULL) {
    int err = tp__dir_write_head(d);
    if (err != 0) {
      if (tp__would_block(-err)) {
        d->want_write = 1;
        return TP_DIR_AGAIN;
      }
      d->failed_dst = 1;
      return err;
    }
  }

  for (;;) {
    if (d->pending > 0) {
      ssize_t n = tp__dir_flush(d);
      if (n < 0) {
        if (tp__would_block(static_cast<int>(-n))) {
          d->want_write = 1;
          return TP_DIR_AGAIN;
        }
        d->failed_dst = 1;
        return static_cast<int>(n);
      }
      d->pending -= static_cast<size_t>(n);
      d->off += static_cast<size_t>(n);
      d->bytes += static_cast<uint64_t>(n);
      if (d->pending == 0) tp__dir_give_back(d, pool);
      continue;
    }

    if (d->eof) {
      // Half-close: the reader at the other end sees EOF, and may keep sending the other way.
      if (shutdown(d->dst, SHUT_WR) != 0 && errno != ENOTCONN) {
        d->failed_dst = 1;
        return -errno;
      }
      d->done = 1;
      return TP_DIR_DONE;
    }

    if (budget == 0) {
      d->want_read = 1;
      return TP_DIR_AGAIN;
    }

    if (*allowance == 0) {
      int r = tp__dir_peek(d);
      if (r == TP_DIR_DONE) {
        d->eof = 1;
        continue;
      }
      if (r < 0 && tp__would_block(-r)) {
        d->want_read = 1;
        return TP_DIR_AGAIN;
      }
      return r;  // TP_DIR_LIMIT, or an error on src
    }

    size_t max = budget;
    if (*allowance < max) max = static_cast<size_t>(*allowance);
    d->carrier = tp__dir_borrow(d, pool);
    if (d->carrier == NULL) {
      size_t scratch_size;
      char* scratch = tp_pool_scratch(pool, &scratch_size);
      if (scratch == NULL) return TP_DIR_NO_CARRIER;
      ssize_t n = tp__dir_copy_through(d, scratch, max < scratch_size ? max : scratch_size);
      if (n == 0) {
        d->eof = 1;
        continue;
      }
      if (n < 0) {
        if (tp__would_block(static_cast<int>(-n))) {
          if (d->failed_dst) d->want_write = 1;
          else d->want_read = 1;
          d->failed_dst = 0;
          return TP_DIR_AGAIN;
        }
        return static_cast<int>(n);
      }
      d->bytes += static_cast<uint64_t>(n);
      *allowance -= static_cast<uint64_t>(n);
      budget -= static_cast<size_t>(n) < budget ? static_cast<size_t>(n) : budget;
      continue;
    }
    int was_pipe = d->carrier->kind == TP_CARRIER_PIPE;
    ssize_t n = tp__dir_fill(d, max);
    if (n <= 0) {
      tp__dir_give_back(d, pool);  // empty: it goes back to the idle list
      if (n == 0) {
        d->eof = 1;
        continue;
      }
      if (tp__would_block(static_cast<int>(-n))) {
        d->want_read = 1;
        return TP_DIR_AGAIN;
      }
      if (n == -EINVAL && was_pipe) {
        // This pair of fds cannot splice (not a TCP socket, say): copy from now on.
        d->use_splice = 0;
        continue;
      }
      return static_cast<int>(n);
    }
    d->pending = static_cast<size_t>(n);
    d->off = 0;
    *allowance -= static_cast<uint64_t>(n);
    budget -= static_cast<size_t>(n) < budget ? static_cast<size_t>(n) : budget;
  }
}

void tp_dir_release(tp_dir_t* d, tp_pool_t* pool) {
  tp__dir_give_back(d, pool);
  free(d->head);
  d->head = NULL;
}
