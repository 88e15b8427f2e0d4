// The kernel's round-trip estimate of a connected TCP socket.
//
// A translation unit of its own: glibc's <netinet/tcp.h> (which socket.cc needs) stops its struct tcp_info before
// tcpi_min_rtt, and it cannot be included together with <linux/tcp.h>, which has the field.
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#ifdef __linux__
#include <linux/tcp.h>
#endif

#include "socket.h"

int tp_socket_rtt(int fd, unsigned* us) {
#ifdef __linux__
  struct tcp_info info = {};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == -1) return -errno;
  // The windowed minimum ignores delayed ACKs and queueing, so it is the path itself; kernels before 4.6 (or a
  // socket with no sample yet) leave it 0, and the smoothed estimate stands in.
  *us = len > offsetof(struct tcp_info, tcpi_min_rtt) && info.tcpi_min_rtt != 0 ? info.tcpi_min_rtt : info.tcpi_rtt;
  return 0;
#else
  (void)fd;
  (void)us;
  return -ENOTSUP;
#endif
}
