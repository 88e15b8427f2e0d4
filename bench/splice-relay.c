// The limit of a relay on Linux, as the throughput benchmark's reference: one thread, epoll (edge-triggered),
// two pipes per connection, splice(2) socket -> pipe -> socket, nothing else. No limits, no protocol, no pool.
//
//   cc -O2 -o splice-relay splice-relay.c && ./splice-relay <listen-port> <upstream-port> [pipe-bytes]
//
// Listens on 127.0.0.1:<listen-port> and relays every connection to 127.0.0.1:<upstream-port>; prints
// "listening" once ready. EOF one way becomes shutdown(SHUT_WR) the other way; any error closes both sockets.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  int src, dst;
  int pipe[2];
  size_t pending;  // bytes in the pipe
  int eof, done;
} dir_t;

typedef struct conn {
  int fd[2];  // client, upstream
  dir_t dir[2];
  int closed;
  struct conn* next_dead;
} conn_t;

// Both fds of a connection may be in one epoll batch: a closed one is freed only after the batch.
static conn_t* dead = NULL;

static int pipe_bytes = 1024 * 1024;

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// 0: blocked (EAGAIN), 1: done (EOF propagated), -1: error.
static int dir_run(dir_t* d) {
  if (d->done) return 1;
  for (;;) {
    while (d->pending > 0) {
      ssize_t n = splice(d->pipe[0], NULL, d->dst, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      d->pending -= (size_t)n;
    }
    if (d->eof) {
      shutdown(d->dst, SHUT_WR);
      d->done = 1;
      return 1;
    }
    ssize_t n = splice(d->src, NULL, d->pipe[1], NULL, (size_t)pipe_bytes, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) d->eof = 1;
    else if (n < 0) return errno == EAGAIN ? 0 : -1;
    else d->pending = (size_t)n;
  }
}

static void conn_close(conn_t* c) {
  for (int i = 0; i < 2; i++) {
    close(c->fd[i]);
    close(c->dir[i].pipe[0]);
    close(c->dir[i].pipe[1]);
  }
  c->closed = 1;
  c->next_dead = dead;
  dead = c;
}

static void conn_run(conn_t* c) {
  if (c->closed) return;
  int a = dir_run(&c->dir[0]);
  int b = dir_run(&c->dir[1]);
  if (a < 0 || b < 0 || (a == 1 && b == 1)) conn_close(c);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <listen-port> <upstream-port> [pipe-bytes]\n", argv[0]);
    return 2;
  }
  int upstream = atoi(argv[2]);
  if (argc > 3) pipe_bytes = atoi(argv[3]);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in la = loopback(atoi(argv[1]));
  if (bind(lfd, (struct sockaddr*)&la, sizeof(la)) != 0 || listen(lfd, 1024) != 0) {
    perror("listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  printf("listening\n");
  fflush(stdout);

  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    for (int i = 0; i < n; i++) {
      conn_t* c = (conn_t*)events[i].data.ptr;
      if (c != NULL) {
        conn_run(c);
        continue;
      }
      for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) break;
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in ua = loopback(upstream);
        if (connect(ufd, (struct sockaddr*)&ua, sizeof(ua)) != 0 && errno != EINPROGRESS) {
          close(cfd);
          close(ufd);
          continue;
        }
        c = calloc(1, sizeof(*c));
        c->fd[0] = cfd;
        c->fd[1] = ufd;
        for (int k = 0; k < 2; k++) {
          setsockopt(c->fd[k], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          pipe2(c->dir[k].pipe, O_NONBLOCK | O_CLOEXEC);
          fcntl(c->dir[k].pipe[1], F_SETPIPE_SZ, pipe_bytes);
          c->dir[k].src = c->fd[k];
          c->dir[k].dst = c->fd[1 - k];
          struct epoll_event ce = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[k], &ce);
        }
      }
    }
    while (dead != NULL) {
      conn_t* next = dead->next_dead;
      free(dead);
      dead = next;
    }
  }
}
