#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

int tp_sockaddr_parse(const char* ip, int port, struct sockaddr_storage* out) {
  if (port < 0 || port > 65535) return -EINVAL;
  memset(out, 0, sizeof(*out));

  struct sockaddr_in* in4 = reinterpret_cast<struct sockaddr_in*>(out);
  if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
#ifdef __APPLE__
    in4->sin_len = sizeof(*in4);
#endif
    return sizeof(*in4);
  }

  struct sockaddr_in6* in6 = reinterpret_cast<struct sockaddr_in6*>(out);
  char buf[TP_IP_MAX];
  const char* scope = strchr(ip, '%');
  size_t addr_len = scope ? static_cast<size_t>(scope - ip) : strlen(ip);
  if (addr_len >= sizeof(buf)) return -EINVAL;
  memcpy(buf, ip, addr_len);
  buf[addr_len] = '\0';
  if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) return -EINVAL;
  if (scope != NULL) {
    char* end = NULL;
    unsigned long id = strtoul(scope + 1, &end, 10);
    // Interface names would need if_nametoindex(); the TypeScript layer resolves them to numbers first.
    if (end == scope + 1 || *end != '\0' || id > 0xffffffffUL) return -EINVAL;
    in6->sin6_scope_id = static_cast<uint32_t>(id);
  }
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(static_cast<uint16_t>(port));
#ifdef __APPLE__
  in6->sin6_len = sizeof(*in6);
#endif
  return sizeof(*in6);
}

int tp_sockaddr_format(const struct sockaddr* sa, char* ip, int* port) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in* in4 = reinterpret_cast<const struct sockaddr_in*>(sa);
    if (inet_ntop(AF_INET, &in4->sin_addr, ip, TP_IP_MAX) == NULL) return -errno;
    *port = ntohs(in4->sin_port);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, TP_IP_MAX) == NULL) return -errno;
    if (in6->sin6_scope_id != 0) {
      size_t n = strlen(ip);
      snprintf(ip + n, TP_IP_MAX - n, "%%%u", static_cast<unsigned>(in6->sin6_scope_id));
    }
    *port = ntohs(in6->sin6_port);
    return 0;
  }
  return -EAFNOSUPPORT;
}

socklen_t tp_sockaddr_len(const struct sockaddr* sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

// Folds ::ffff:a.b.c.d into a.b.c.d so a dual-stack accept() matches an IPv4 target.
static void tp__unmap(const struct sockaddr* sa, struct sockaddr_storage* out) {
  memcpy(out, sa, tp_sockaddr_len(sa));
  if (sa->sa_family != AF_INET6) return;
  const struct sockaddr_in6* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
  if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return;
  struct sockaddr_in in4;
  memset(&in4, 0, sizeof(in4));
  in4.sin_family = AF_INET;
  in4.sin_port = in6->sin6_port;
  memcpy(&in4.sin_addr, &in6->sin6_addr.s6_addr[12], 4);
  memset(out, 0, sizeof(*out));
  memcpy(out, &in4, sizeof(in4));
}

int tp_sockaddr_equal_host(const struct sockaddr* a, const struct sockaddr* b) {
  struct sockaddr_storage ua, ub;
  tp__unmap(a, &ua);
  tp__unmap(b, &ub);
  if (ua.ss_family != ub.ss_family) return 0;
  if (ua.ss_family == AF_INET)
    return reinterpret_cast<const struct sockaddr_in*>(&ua)->sin_addr.s_addr ==
           reinterpret_cast<const struct sockaddr_in*>(&ub)->sin_addr.s_addr;
  return memcmp(&reinterpret_cast<const struct sockaddr_in6*>(&ua)->sin6_addr,
                &reinterpret_cast<const struct sockaddr_in6*>(&ub)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

int tp_sockaddr_equal(const struct sockaddr* a, const struct sockaddr* b) {
  struct sockaddr_storage ua, ub;
  tp__unmap(a, &ua);
  tp__unmap(b, &ub);
  if (ua.ss_family != ub.ss_family) return 0;
  if (ua.ss_family == AF_INET) {
    const struct sockaddr_in* x = reinterpret_cast<const struct sockaddr_in*>(&ua);
    const struct sockaddr_in* y = reinterpret_cast<const struct sockaddr_in*>(&ub);
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6* x = reinterpret_cast<const struct sockaddr_in6*>(&ua);
  const struct sockaddr_in6* y = reinterpret_cast<const struct sockaddr_in6*>(&ub);
  return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

int tp_socket_set_nonblock(int fd, int on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags == -1) return -errno;
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && fcntl(fd, F_SETFL, want) == -1) return -errno;
  return 0;
}

#ifndef SOCK_NONBLOCK
// Where socket() and accept4() cannot set them (macOS has no SOCK_NONBLOCK/SOCK_CLOEXEC): makes a new `fd`
// nonblocking and close-on-exec, or closes it. Returns `fd` or -errno. The window before fcntl() only matters to a
// concurrent fork+exec, which Node's child_process does with close-on-exec handling of its own.
static int tp__nonblock_cloexec(int fd) {
  int err = tp_socket_set_nonblock(fd, 1);
  if (err == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) err = -errno;
  if (err != 0) {
    tp_socket_close(fd);
    return err;
  }
  return fd;
}
#endif

static int tp__socket(int family) {
#ifdef SOCK_NONBLOCK
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd == -1 ? -errno : fd;
#else
  int fd = socket(family, SOCK_STREAM, 0);
  return fd == -1 ? -errno : tp__nonblock_cloexec(fd);
#endif
}

int tp_socket_reusable(const struct sockaddr* addr) {
  int fd = tp__socket(addr->sa_family);
  if (fd < 0) return fd;

  int on = 1;
  int err = 0;
  // Linux lets a connecting socket share a listener's port only when *both* carry SO_REUSEADDR and SO_REUSEPORT
  // (inet_bind_conflict); macOS and the BSDs need SO_REUSEPORT on every socket bound to the exact same address.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1) err = -errno;
  if (err == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1) err = -errno;
  // A dual-stack socket would also claim the IPv4 port and collide with the IPv4 sockets of a parallel punch.
  if (err == 0 && addr->sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
    err = -errno;
  // No TCP_NODELAY: the socket ends up as an ordinary net.Socket and keeps Node's defaults (Nagle on), so a
  // punched connection moves bulk data exactly like any other; callers opt in with socket.setNoDelay().
  if (err == 0 && bind(fd, addr, tp_sockaddr_len(addr)) == -1) err = -errno;
  if (err != 0) {
    tp_socket_close(fd);
    return err;
  }
  return fd;
}

int tp_socket_listener(const struct sockaddr* addr, int backlog) {
  int fd = tp__socket(addr->sa_family);
  if (fd < 0) return fd;
  int on = 1, off = 0;
  int err = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1) err = -errno;
  // Some distributions default net.ipv6.bindv6only to 1; `::` means both families here, as it does in Node.
  if (err == 0 && addr->sa_family == AF_INET6 &&
      IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const struct sockaddr_in6*>(addr)->sin6_addr) &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) == -1)
    err = -errno;
  if (err == 0 && bind(fd, addr, tp_sockaddr_len(addr)) == -1) err = -errno;
  if (err == 0) err = tp_socket_listen(fd, backlog);
  if (err != 0) {
    tp_socket_close(fd);
    return err;
  }
  return fd;
}

int tp_socket_fast_open_connect(const struct sockaddr* remote, const struct sockaddr* local) {
#if defined(TCP_FASTOPEN_CONNECT)
  if (local != NULL && local->sa_family != remote->sa_family) return -EAFNOSUPPORT;
  int fd = tp__socket(remote->sa_family);
  if (fd < 0) return fd;
  int on = 1;
  int err = 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on, sizeof(on)) == -1) err = -errno;
  if (err == 0 && local != NULL && bind(fd, local, tp_sockaddr_len(local)) == -1) err = -errno;
  // With a cookie for `remote` connect() only records the address and returns 0 (the SYN leaves with the first
  // write); without one it starts a plain handshake that asks for a cookie: EINPROGRESS, which is no failure.
  if (err == 0) err = tp_socket_connect(fd, remote);
  if (err == -EINPROGRESS) err = 0;
  if (err != 0) {
    tp_socket_close(fd);
    return err;
  }
  return fd;
#else
  (void)remote;
  (void)local;
  return -ENOTSUP;
#endif
}

int tp_socket_set_fast_open(int fd, int qlen) {
#if defined(TCP_FASTOPEN)
  return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) == -1 ? -errno : 0;
#else
  (void)fd;
  (void)qlen;
  return -ENOTSUP;
#endif
}

int tp_socket_listen(int fd, int backlog) {
  return listen(fd, backlog) == -1 ? -errno : 0;
}

int tp_socket_connect(int fd, const struct sockaddr* addr) {
  int r;
  do
    r = connect(fd, addr, tp_sockaddr_len(addr));
  while (r == -1 && errno == EINTR);
  return r == -1 ? -errno : 0;
}

int tp_socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) return -errno;
  return -err;
}

int tp_socket_accept(int fd, struct sockaddr_storage* peer) {
  socklen_t len = sizeof(*peer);
  int cfd;
#ifdef SOCK_NONBLOCK
  do
    cfd = accept4(fd, reinterpret_cast<struct sockaddr*>(peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (cfd == -1 && errno == EINTR);
  return cfd == -1 ? -errno : cfd;
#else
  do
    cfd = accept(fd, reinterpret_cast<struct sockaddr*>(peer), &len);
  while (cfd == -1 && errno == EINTR);
  return cfd == -1 ? -errno : tp__nonblock_cloexec(cfd);
#endif
}

int tp_socket_local(int fd, struct sockaddr_storage* out) {
  socklen_t len = sizeof(*out);
  return getsockname(fd, reinterpret_cast<struct sockaddr*>(out), &len) == -1 ? -errno : 0;
}

int tp_socket_peer(int fd, struct sockaddr_storage* out) {
  socklen_t len = sizeof(*out);
  return getpeername(fd, reinterpret_cast<struct sockaddr*>(out), &len) == -1 ? -errno : 0;
}

int tp_socket_is_connecting(int fd) {
#ifdef __linux__
  struct tcp_info info;
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == -1) return -errno;
  return info.tcpi_state == TCP_SYN_SENT;
#else
  (void)fd;
  return -ENOTSUP;
#endif
}

int tp_socket_get_ttl(int fd, int family, int* ttl) {
  socklen_t len = sizeof(*ttl);
  int r = family == AF_INET6 ? getsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl, &len)
                             : getsockopt(fd, IPPROTO_IP, IP_TTL, ttl, &len);
  return r == -1 ? -errno : 0;
}

int tp_socket_set_ttl(int fd, int family, int ttl) {
  int r = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl))
                             : setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
  return r == -1 ? -errno : 0;
}

void tp_socket_close(int fd) {
  if (fd >= 0) close(fd);
}
