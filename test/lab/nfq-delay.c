/*
 * nfq-delay: add delay, jitter and loss to packets in an NFQUEUE.
 *
 * This kernel has no sch_netem, so the NAT lab steers the packets of a link
 * into an NFQUEUE (iptables -j NFQUEUE --queue-num N) and this program holds
 * each one, then issues its verdict (NF_ACCEPT) once its delay has passed.
 * Packets stay in the kernel: only their first 40 bytes are copied here (to
 * read the IP length), and only the packet id and size are kept.
 *
 *   nfq-delay --queue N [--delay MS] [--jitter MS] [--loss PCT] [--seed S]
 *             [--max PACKETS] [--max-bytes BYTES] [--reorder]
 *
 * delay   fixed delay added to every packet (milliseconds, may be fractional)
 * jitter  each packet's delay is delay + uniform(-jitter, +jitter), never < 0
 * loss    percentage of packets dropped (NF_DROP), decided at arrival
 * seed    seed of the PRNG (xorshift64*), so runs are repeatable
 * max     bound on packets held at once (also the kernel queue length)
 * max-bytes bound on the IP bytes held at once (default 32 MiB; a GSO packet
 *         counts with its full length); a packet that would exceed either
 *         bound is dropped (tail drop), so memory stays bounded
 * reorder by default a packet is never released before the one queued ahead
 *         of it (release time = max(own time, previous release time)), so
 *         jitter does not reorder; --reorder lets each packet go at its own time
 *
 * Prints "ready queue=N" on stdout once the queue is bound. On SIGTERM/SIGINT
 * it accepts what it still holds, prints counters on stderr and exits 0.
 * It asks for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a crashed
 * test run does not leave it behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netfilter.h> /* after arpa/inet.h: it pulls in linux/in.h */
#include <libnetfilter_queue/libnetfilter_queue.h>

typedef struct {
  uint64_t release_ns;
  uint64_t seq;
  uint32_t id;
  uint32_t bytes;
} held_t;

static held_t *heap;
static size_t heap_len, heap_cap;
static uint64_t seq_counter, last_release_ns, held_bytes, max_bytes;
static uint64_t delay_ns, jitter_ns;
static double loss_frac;
static int ordered = 1;
static uint64_t rng_state;
static struct nfq_q_handle *qh;
static volatile sig_atomic_t stop_flag;
static uint64_t n_seen, n_lost, n_overflow, n_accepted, max_depth, max_held_bytes;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(void) { /* xorshift64* */
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static double rng_unit(void) { /* [0, 1) */
  return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static int held_less(const held_t *a, const held_t *b) {
  if (a->release_ns != b->release_ns) return a->release_ns < b->release_ns;
  return a->seq < b->seq;
}

static void heap_push(held_t v) {
  size_t i = heap_len++;
  heap[i] = v;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!held_less(&heap[i], &heap[p])) break;
    held_t t = heap[i]; heap[i] = heap[p]; heap[p] = t;
    i = p;
  }
}

static held_t heap_pop(void) {
  held_t top = heap[0];
  heap[0] = heap[--heap_len];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_len && held_less(&heap[l], &heap[m])) m = l;
    if (r < heap_len && held_less(&heap[r], &heap[m])) m = r;
    if (m == i) break;
    held_t t = heap[i]; heap[i] = heap[m]; heap[m] = t;
    i = m;
  }
  return top;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg; (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  n_seen++;
  unsigned char *p = NULL;
  int n = nfq_get_payload(nfa, &p);
  uint32_t bytes = 65536; /* unknown, or a >64 KiB GSO packet whose length field is 0 */
  if (n >= 20 && (p[0] >> 4) == 4) {
    uint32_t l = ((uint32_t)p[2] << 8) | p[3];
    if (l) bytes = l;
  } else if (n >= 40 && (p[0] >> 4) == 6) {
    uint32_t l = ((uint32_t)p[4] << 8) | p[5];
    if (l) bytes = l + 40;
  }
  if (loss_frac > 0 && rng_unit() < loss_frac) {
    n_lost++;
    return nfq_set_verdict(q, id, NF_DROP, 0, NULL);
  }
  if (heap_len >= heap_cap || held_bytes + bytes > max_bytes) {
    n_overflow++;
    return nfq_set_verdict(q, id, NF_DROP, 0, NULL);
  }
  int64_t d = (int64_t)delay_ns;
  if (jitter_ns > 0) d += (int64_t)((rng_unit() * 2.0 - 1.0) * (double)jitter_ns);
  if (d < 0) d = 0;
  uint64_t rel = now_ns() + (uint64_t)d;
  if (ordered && rel < last_release_ns) rel = last_release_ns;
  last_release_ns = rel;
  heap_push((held_t){ rel, seq_counter++, id, bytes });
  held_bytes += bytes;
  if (heap_len > max_depth) max_depth = heap_len;
  if (held_bytes > max_held_bytes) max_held_bytes = held_bytes;
  return 0;
}

static void release_due(uint64_t now, int all) {
  while (heap_len > 0 && (all || heap[0].release_ns <= now)) {
    held_t h = heap_pop();
    held_bytes -= h.bytes;
    nfq_set_verdict(qh, h.id, NF_ACCEPT, 0, NULL);
    n_accepted++;
  }
}

static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(void) {
  fprintf(stderr, "usage: nfq-delay --queue N [--delay MS] [--jitter MS] [--loss PCT] [--seed S] [--max PACKETS]\n"
                  "                 [--max-bytes BYTES] [--reorder]\n");
  exit(2);
}

int main(int argc, char **argv) {
  long queue = -1;
  double delay_ms = 0, jitter_ms = 0, loss_pct = 0;
  unsigned long long seed = 1;
  long maxq = 4096;
  double maxb = 32.0 * 1024 * 1024;
  static const struct option opts[] = {
    { "queue", required_argument, 0, 'q' }, { "delay", required_argument, 0, 'd' },
    { "jitter", required_argument, 0, 'j' }, { "loss", required_argument, 0, 'l' },
    { "seed", required_argument, 0, 's' },  { "max", required_argument, 0, 'm' },
    { "max-bytes", required_argument, 0, 'b' }, { "reorder", no_argument, 0, 'r' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
  };
  int c;
  while ((c = getopt_long(argc, argv, "q:d:j:l:s:m:b:rh", opts, NULL)) != -1) {
    switch (c) {
      case 'q': queue = strtol(optarg, NULL, 10); break;
      case 'd': delay_ms = strtod(optarg, NULL); break;
      case 'j': jitter_ms = strtod(optarg, NULL); break;
      case 'l': loss_pct = strtod(optarg, NULL); break;
      case 's': seed = strtoull(optarg, NULL, 10); break;
      case 'm': maxq = strtol(optarg, NULL, 10); break;
      case 'b': maxb = strtod(optarg, NULL); break;
      case 'r': ordered = 0; break;
      default: usage();
    }
  }
  if (queue < 0 || queue > 65535 || delay_ms < 0 || jitter_ms < 0 || loss_pct < 0 || loss_pct > 100 ||
      maxq < 1 || maxq > 1000000 || maxb < 65536)
    usage();
  delay_ns = (uint64_t)(delay_ms * 1e6);
  jitter_ns = (uint64_t)(jitter_ms * 1e6);
  loss_frac = loss_pct / 100.0;
  rng_state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  if (rng_state == 0) rng_state = 1;
  heap_cap = (size_t)maxq;
  max_bytes = (uint64_t)maxb;
  heap = calloc(heap_cap, sizeof *heap);
  if (!heap) { perror("calloc"); return 1; }

  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) return 0; /* parent already gone */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct nfq_handle *h = nfq_open();
  if (!h) { perror("nfq_open"); return 1; }
  qh = nfq_create_queue(h, (uint16_t)queue, &on_packet, NULL);
  if (!qh) { fprintf(stderr, "nfq_create_queue(%ld): %s\n", queue, strerror(errno)); return 1; }
  if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 40) < 0) { perror("nfq_set_mode"); return 1; }
  if (nfq_set_queue_maxlen(qh, (uint32_t)maxq) < 0) perror("nfq_set_queue_maxlen");
  /* let GSO packets through whole: only the IP header is looked at */
  nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);

  int fd = nfq_fd(h);
  int one = 1, rcvbuf = 4 << 20;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  printf("ready queue=%ld\n", queue);
  fflush(stdout);

  static char buf[65536 + 4096];
  while (!stop_flag) {
    uint64_t now = now_ns();
    release_due(now, 0);
    struct timespec ts, *tsp = NULL;
    if (heap_len > 0) {
      uint64_t wait = heap[0].release_ns > now ? heap[0].release_ns - now : 0;
      ts.tv_sec = (time_t)(wait / 1000000000ull);
      ts.tv_nsec = (long)(wait % 1000000000ull);
      tsp = &ts;
    }
    struct pollfd pfd = { fd, POLLIN, 0 };
    int r = ppoll(&pfd, 1, tsp, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("ppoll");
      break;
    }
    if (r > 0) {
      for (int i = 0; i < 256; i++) { /* bounded batch, then release what is due */
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          if (errno == ENOBUFS) continue;
          perror("recv");
          stop_flag = 1;
          break;
        }
        if (n == 0) break;
        nfq_handle_packet(h, buf, (int)n);
      }
    }
  }
  release_due(0, 1);
  fprintf(stderr, "nfq-delay queue=%ld seen=%llu lost=%llu overflow=%llu accepted=%llu max_depth=%llu max_bytes=%llu\n", queue,
          (unsigned long long)n_seen, (unsigned long long)n_lost, (unsigned long long)n_overflow,
          (unsigned long long)n_accepted, (unsigned long long)max_depth, (unsigned long long)max_held_bytes);
  nfq_destroy_queue(qh);
  nfq_close(h);
  free(heap);
  return 0;
}
