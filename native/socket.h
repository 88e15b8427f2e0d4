// Reusable TCP sockets and address helpers for tcp-punch.
//
// Every function returns a non-negative value on success and a negative errno on failure, the way libuv's
// src/unix/tcp.c does, so callers can hand the result straight to uv_err_name().
#ifndef TCP_PUNCH_SOCKET_H
#define TCP_PUNCH_SOCKET_H

#ifdef _WIN32
#error "tcp-punch: Windows is not supported yet: Node cannot adopt a raw SOCKET as a net.Socket fd (see README)"
#endif

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#define TP_IP_MAX 64  // enough for any IPv6 text form plus a scope id

// Parses a numeric IPv4/IPv6 address (no DNS) and port into `out`; returns the sockaddr length or -EINVAL.
int tp_sockaddr_parse(const char* ip, int port, struct sockaddr_storage* out);

// Writes the numeric address of `sa` into `ip` (TP_IP_MAX bytes) and its port into `port`.
int tp_sockaddr_format(const struct sockaddr* sa, char* ip, int* port);

// 1 when both name the same endpoint; an IPv4-mapped IPv6 address equals its IPv4 form.
int tp_sockaddr_equal(const struct sockaddr* a, const struct sockaddr* b);
// Same address (IPv4-mapped IPv6 unmapped), any port.
int tp_sockaddr_equal_host(const struct sockaddr* a, const struct sockaddr* b);

socklen_t tp_sockaddr_len(const struct sockaddr* sa);

// A nonblocking, close-on-exec TCP socket with SO_REUSEADDR and SO_REUSEPORT, bound to `addr`.
// Returns the fd.
int tp_socket_reusable(const struct sockaddr* addr);

int tp_socket_listen(int fd, int backlog);

// A nonblocking, close-on-exec listening TCP socket on `addr` with SO_REUSEADDR only (as Node's net.Server: no
// SO_REUSEPORT, so no other process can share the port), dual-stack when `addr` is the IPv6 any-address.
// Returns the fd.
int tp_socket_listener(const struct sockaddr* addr, int backlog);

// Starts a nonblocking connect. Returns 0 when already connected, -EINPROGRESS while the handshake runs.
int tp_socket_connect(int fd, const struct sockaddr* addr);

// A nonblocking, close-on-exec TCP socket towards `remote` whose first write rides in the SYN (TCP Fast Open,
// Linux's TCP_FASTOPEN_CONNECT), bound to `local` first when it is not NULL. Returns the fd; the connect itself
// is deferred to that write, or (no cookie for `remote` yet) runs as an ordinary handshake that also fetches one.
// -ENOTSUP where the platform has no TCP_FASTOPEN_CONNECT.
int tp_socket_fast_open_connect(const struct sockaddr* remote, const struct sockaddr* local);

// Lets a listening socket accept data in SYNs (TCP_FASTOPEN) with at most `qlen` such connections not yet
// accepted. -ENOTSUP where the platform has no server-side Fast Open.
int tp_socket_set_fast_open(int fd, int qlen);

// The pending error of a socket (SO_ERROR) as a negative errno, 0 when there is none.
int tp_socket_error(int fd);

// Accepts one connection as a nonblocking, close-on-exec fd and stores the peer address.
int tp_socket_accept(int fd, struct sockaddr_storage* peer);

int tp_socket_local(int fd, struct sockaddr_storage* out);
int tp_socket_peer(int fd, struct sockaddr_storage* out);

// 1 while a connecting socket is still in SYN_SENT, 0 when it is not, a negative errno when the platform cannot
// tell (only Linux can: TCP_INFO).
int tp_socket_is_connecting(int fd);

// The kernel's round-trip estimate of a connected socket in microseconds (its windowed minimum where the kernel
// keeps one), -ENOTSUP where the platform has none (only Linux: TCP_INFO).
int tp_socket_rtt(int fd, unsigned* us);

// Hop limit of outgoing unicast packets (IP_TTL or IPV6_UNICAST_HOPS, per the socket's family).
int tp_socket_get_ttl(int fd, int family, int* ttl);
int tp_socket_set_ttl(int fd, int family, int ttl);

// Blocks or unblocks nonblocking mode.
int tp_socket_set_nonblock(int fd, int on);

// A close that never retries on EINTR: on Linux and macOS the fd is gone even when close() reports EINTR, and a
// retry could close an fd another thread has just been given.
void tp_socket_close(int fd);

#endif
