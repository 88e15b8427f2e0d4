#include "pipe_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "socket.h"

// Bytes of the scratch buffer (tp_pool_scratch).
#define TP_POOL_SCRATCH_SIZE (64 * 1024)

void tp_pool_init(tp_pool_t* pool, const tp_pump_config_t* config) {
  pool->config = *config;
  pool->idle_pipes = NULL;
  pool->idle_buffers = NULL;
  pool->pipes_idle = 0;
  pool->pipes_lent = 0;
  pool->buffers_idle = 0;
  pool->buffers_lent = 0;
  pool->pipe_error = 0;
  pool->scratch = NULL;
  pool->scratch_size = 0;
}

#ifdef __linux__
static int tp__pipe_open(tp_carrier_t* c, size_t size) {
  int fds[2];
  // Nonblocking on both ends as well as SPLICE_F_NONBLOCK on every call: one session's full or empty pipe must
  // never put the I/O thread, which serves every session, to sleep.
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
  // Best effort: past the per-user quota the kernel refuses to grow a pipe (EPERM) and we keep the default size.
  int got = fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(size));
  if (got < 0) got = fcntl(fds[1], F_GETPIPE_SZ);
  c->rfd = fds[0];
  c->wfd = fds[1];
  c->size = got > 0 ? static_cast<size_t>(got) : 65536;
  return 0;
}
#endif

static void tp__carrier_free(tp_carrier_t* c) {
  if (c->kind == TP_CARRIER_PIPE) {
    tp_socket_close(c->rfd);
    tp_socket_close(c->wfd);
  } else {
    free(c->buf);
  }
  free(c);
}

tp_carrier_t* tp_pool_take_pipe(tp_pool_t* pool) {
  tp_carrier_t* c = pool->idle_pipes;
  if (c != NULL) {
    pool->idle_pipes = c->next;
    pool->pipes_idle--;
    pool->pipes_lent++;
    c->next = NULL;
    return c;
  }
#ifdef __linux__
  if (pool->pipes_lent >= pool->config.max_pipes) return NULL;
  c = static_cast<tp_carrier_t*>(calloc(1, sizeof(*c)));
  if (c == NULL) return NULL;
  c->kind = TP_CARRIER_PIPE;
  int err = tp__pipe_open(c, pool->config.pipe_size);
  if (err != 0) {
    pool->pipe_error = err;
    free(c);
    return NULL;
  }
  pool->pipes_lent++;
  return c;
#else
  return NULL;
#endif
}

tp_carrier_t* tp_pool_take_buffer(tp_pool_t* pool) {
  tp_carrier_t* c = pool->idle_buffers;
  if (c != NULL) {
    pool->idle_buffers = c->next;
    pool->buffers_idle--;
    pool->buffers_lent++;
    c->next = NULL;
    return c;
  }
  if (pool->buffers_lent >= pool->config.max_buffers) return NULL;
  c = static_cast<tp_carrier_t*>(calloc(1, sizeof(*c)));
  if (c == NULL) return NULL;
  c->kind = TP_CARRIER_BUFFER;
  c->rfd = -1;
  c->wfd = -1;
  c->size = pool->config.buffer_size;
  c->buf = static_cast<char*>(malloc(c->size));
  if (c->buf == NULL) {
    free(c);
    return NULL;
  }
  pool->buffers_lent++;
  return c;
}

int tp_pool_can_take(const tp_pool_t* pool, int pipe) {
  if (pipe) return pool->idle_pipes != NULL || pool->pipes_lent < pool->config.max_pipes;
  return pool->idle_buffers != NULL || pool->buffers_lent < pool->config.max_buffers;
}

void tp_pool_give(tp_pool_t* pool, tp_carrier_t* c, int empty) {
  if (c->kind == TP_CARRIER_PIPE) {
    pool->pipes_lent--;
    // A lowered cap (tp_pump_configure) also shrinks the pool as carriers come back.
    if (!empty || pool->pipes_idle >= pool->config.max_idle || pool->pipes_idle + pool->pipes_lent >= pool->config.max_pipes) {
      tp__carrier_free(c);
      return;
    }
    c->next = pool->idle_pipes;
    pool->idle_pipes = c;
    pool->pipes_idle++;
  } else {
    pool->buffers_lent--;
    if (pool->buffers_idle >= pool->config.max_idle || c->size != pool->config.buffer_size ||
        pool->buffers_idle + pool->buffers_lent >= pool->config.max_buffers) {
      tp__carrier_free(c);
      return;
    }
    c->next = pool->idle_buffers;
    pool->idle_buffers = c;
    pool->buffers_idle++;
  }
}

char* tp_pool_scratch(tp_pool_t* pool, size_t* size) {
  if (pool->scratch == NULL) {
    pool->scratch = static_cast<char*>(malloc(TP_POOL_SCRATCH_SIZE));
    pool->scratch_size = pool->scratch != NULL ? TP_POOL_SCRATCH_SIZE : 0;
  }
  *size = pool->scratch_size;
  return pool->scratch;
}

void tp_pool_trim(tp_pool_t* pool, size_t keep) {
  if (keep == 0) {
    free(pool->scratch);
    pool->scratch = NULL;
    pool->scratch_size = 0;
  }
  while (pool->pipes_idle > keep) {
    tp_carrier_t* c = pool->idle_pipes;
    pool->idle_pipes = c->next;
    pool->pipes_idle--;
    tp__carrier_free(c);
  }
  while (pool->buffers_idle > keep) {
    tp_carrier_t* c = pool->idle_buffers;
    pool->idle_buffers = c->next;
    pool->buffers_idle--;
    tp__carrier_free(c);
  }
}
