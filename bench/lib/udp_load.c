// udp_load: the UDP benchmark's load generator and echo backend (bench/scenarios/udp.sh).
//
//   udp_load echo PORT
//       An echo server on 127.0.0.1:PORT: recvmmsg, then sendmmsg of the same datagrams back
//       to their senders, until SIGTERM.
//   udp_load rr PORT SESSIONS SIZE SECONDS
//       Request/response (DNS-like): SESSIONS client sockets, each with one datagram of SIZE
//       bytes outstanding; the answer sends the next. A request unanswered for 200 ms is lost
//       and the socket sends a new one.
//   udp_load stun PORT SESSIONS SECONDS
//       STUN (RFC 8489) against a STUN server: as rr, each of SESSIONS sockets with one 20-byte
//       Binding request outstanding (no attributes, a random transaction id); an answer counts
//       when it is a Binding success response with the outstanding request's transaction id.
//       Error responses are counted apart ("errors") and the request is sent again.
//   udp_load stream PORT SESSIONS SIZE RATE SECONDS
//       Streaming: SESSIONS sockets together send RATE datagrams/s of SIZE bytes (paced each
//       millisecond, sendmmsg) and read the echoes (recvmmsg); after SECONDS, 300 ms more to
//       drain, then what did not come back is lost.
//
// The client modes print one JSON line: mode, sessions, size, seconds, sent, received, lost,
// per_s (answers a second), rtt_p50_us, rtt_p99_us (stun: errors too). Each datagram starts
// with its session's sequence number and its send time (stun: each request has a new
// transaction id), so that a late answer is not counted twice.
// Build: cc -O2 -o udp_load udp_load.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_DGRAM 65536
#define HIST_US 200000

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static int udp_socket(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  return fd;
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static int echo(int port) {
  int fd = udp_socket();
  struct sockaddr_in a = loopback(port);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) die("bind");
  static char buf[BATCH][MAX_DGRAM];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  while (!stop) {
    struct epoll_event got;
    if (epoll_wait(ep, &got, 1, 200) <= 0) continue;
    for (;;) {
      for (int i = 0; i < BATCH; ++i) {
        iov[i].iov_base = buf[i];
        iov[i].iov_len = MAX_DGRAM;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) iov[i].iov_len = msgs[i].msg_len;
      for (int done = 0; done < n;) {
        int s = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
        if (s <= 0) break;  // a full buffer: the rest are lost, as on a real server
        done += s;
      }
    }
  }
  return 0;
}

struct session {
  int fd;
  uint64_t seq;      // the next sequence number to send
  uint64_t waiting;  // rr: the sequence number outstanding
  uint64_t sent_at;  // rr: when it was sent
  uint8_t txid[12];  // stun: the transaction id outstanding
};

static uint32_t hist[HIST_US + 1];
static uint64_t sent, received, lost, stalls, errors;

static void record_rtt(uint64_t ns) {
  uint64_t us = ns / 1000;
  hist[us > HIST_US ? HIST_US : us]++;
}

static uint64_t percentile(double p) {
  uint64_t total = 0, seen = 0;
  for (int i = 0; i <= HIST_US; ++i) total += hist[i];
  if (total == 0) return 0;
  for (int i = 0; i <= HIST_US; ++i) {
    seen += hist[i];
    if ((double)seen >= p * (double)total) return (uint64_t)i;
  }
  return HIST_US;
}

static void fill(char* buf, int size, uint64_t seq, uint64_t t) {
  memset(buf, 'x', (size_t)size);
  memcpy(buf, &seq, 8);
  memcpy(buf + 8, &t, 8);
}

static struct session* open_sessions(int n, int port, int ep) {
  struct session* s = calloc((size_t)n, sizeof *s);
  struct sockaddr_in a = loopback(port);
  for (int i = 0; i < n; ++i) {
    s[i].fd = udp_socket();
    if (connect(s[i].fd, (struct sockaddr*)&a, sizeof a) != 0) die("connect");
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &ev);
  }
  return s;
}

static void rr_send(struct session* s, int size) {
  char buf[MAX_DGRAM];
  s->waiting = s->seq++;
  s->sent_at = now_ns();
  fill(buf, size, s->waiting, s->sent_at);
  if (send(s->fd, buf, (size_t)size, 0) == size) ++sent;
}

// stun: a Binding request (type 0x0001, length 0, the magic cookie, a new transaction id).
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) {  // xorshift64*
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1dull;
}

static void stun_send(struct session* s) {
  uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
  uint64_t a = next_random(), b = next_random();
  memcpy(s->txid, &a, 8);
  memcpy(s->txid + 8, &b, 4);
  memcpy(req + 8, s->txid, 12);
  s->sent_at = now_ns();
  if (send(s->fd, req, sizeof req, 0) == (ssize_t)sizeof req) ++sent;
}

// 1: the Binding success answer to x's request; 0: not an answer to it; -1: an error answer to it.
static int stun_answer(const struct session* x, const uint8_t* buf, ssize_t len) {
  if (len < 20 || memcmp(buf + 8, x->txid, 12) != 0) return 0;
  if (buf[0] == 0x01 && buf[1] == 0x01) return 1;
  return buf[0] == 0x01 && buf[1] == 0x11 ? -1 : 0;
}

static void send_next(struct session* s, int size, int is_stun) {
  if (is_stun)
    stun_send(s);
  else
    rr_send(s, size);
}

// rr and stun: SESSIONS sockets, one request outstanding each (size is rr's).
static int rr(int port, int n, int size, double seconds, int is_stun) {
  int ep = epoll_create1(0);
  struct session* s = open_sessions(n, port, ep);
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
  rng = (start * 0x9e3779b97f4a7c15ull) | 1;  // a new sequence each run, never 0
  for (int i = 0; i < n; ++i) send_next(&s[i], size, is_stun);
  struct epoll_event evs[256];
  char buf[MAX_DGRAM];
  uint64_t last_scan = start;
  while (!stop) {
    uint64_t t = now_ns();
    if (t >= end) break;
    int k = epoll_wait(ep, evs, 256, 10);
    for (int e = 0; e < k; ++e) {
      struct session* x = &s[evs[e].data.u32];
      for (;;) {
        ssize_t r = recv(x->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0) break;
        if (is_stun) {
          int a = stun_answer(x, (const uint8_t*)buf, r);
          if (a == 0) continue;  // a late answer to a request counted lost, or not STUN
          if (a < 0) {
            ++errors;
            if (now_ns() < end) stun_send(x);
            continue;
          }
        } else {
          if (r < 16) continue;
          uint64_t seq;
          memcpy(&seq, buf, 8);
          if (seq != x->waiting) continue;  // a late answer to a request counted lost
        }
        ++received;
        record_rtt(now_ns() - x->sent_at);
        if (now_ns() < end) send_next(x, size, is_stun);
      }
    }
    t = now_ns();
    if (t - last_scan > 10000000ull) {
      last_scan = t;
      for (int i = 0; i < n; ++i) {
        if (t - s[i].sent_at > 200000000ull) {
          ++lost;
          send_next(&s[i], size, is_stun);
        }
      }
    }
  }
  double took = (double)(now_ns() - start) / 1e9;
  printf("{\"mode\":\"%s\",\"sessions\":%d,\"size\":%d,\"seconds\":%.3f,\"sent\":%llu,"
         "\"received\":%llu,\"lost\":%llu,\"errors\":%llu,\"per_s\":%.0f,\"rtt_p50_us\":%llu,"
         "\"rtt_p99_us\":%llu}\n",
         is_stun ? "stun" : "rr", n, is_stun ? 20 : size, took, (unsigned long long)sent,
         (unsigned long long)received,
         (unsigned long long)lost, (unsigned long long)errors, (double)received / took,
         (unsigned long long)percentile(0.5), (unsigned long long)percentile(0.99));
  return 0;
}

static void drain(struct session* x) {
  static char buf[BATCH][MAX_DGRAM];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; ++i) {
      iov[i].iov_base = buf[i];
      iov[i].iov_len = MAX_DGRAM;
      memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(x->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    uint64_t t = now_ns();
    for (int i = 0; i < n; ++i) {
      if (msgs[i].msg_len < 16) continue;
      uint64_t at;
      memcpy(&at, buf[i] + 8, 8);
      ++received;
      record_rtt(t - at);
    }
  }
}

static int stream(int port, int n, int size, double rate, double seconds) {
  int ep = epoll_create1(0);
  struct session* s = open_sessions(n, port, ep);
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
  static char out[BATCH][MAX_DGRAM];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct epoll_event evs[256];
  uint64_t drain_until = end + 300000000ull;
  int next = 0;  // the session whose turn it is
  while (!stop) {
    uint64_t t = now_ns();
    if (t >= drain_until) break;
    if (t < end) {
      // Datagrams due by now, spread over the sessions in turn, BATCH at most per call.
      uint64_t due = (uint64_t)(rate * (double)(t - start) / 1e9);
      while (sent < due) {
        struct session* x = &s[next];
        next = (next + 1) % n;
        int b = (int)(due - sent < BATCH ? due - sent : BATCH);
        for (int i = 0; i < b; ++i) {
          fill(out[i], size, x->seq++, t);
          iov[i].iov_base = out[i];
          iov[i].iov_len = (size_t)size;
          memset(&msgs[i], 0, sizeof msgs[i]);
          msgs[i].msg_hdr.msg_iov = &iov[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int w = sendmmsg(x->fd, msgs, (unsigned)b, MSG_DONTWAIT);
        if (w > 0) sent += (uint64_t)w;
        // A full socket buffer here: the offered rate is not reached (per_s shows it).
        if (w < b) {
          ++stalls;
          break;
        }
      }
    }
    int k = epoll_wait(ep, evs, 256, 1);
    for (int e = 0; e < k; ++e) drain(&s[evs[e].data.u32]);
  }
  for (int i = 0; i < n; ++i) drain(&s[i]);
  double took = seconds;  // the sending time; the drain after it is not counted
  uint64_t missing = sent > received ? sent - received : 0;
  printf("{\"mode\":\"stream\",\"sessions\":%d,\"size\":%d,\"seconds\":%.3f,\"sent\":%llu,"
         "\"received\":%llu,\"lost\":%llu,\"per_s\":%.0f,\"rtt_p50_us\":%llu,\"rtt_p99_us\":%llu}\n",
         n, size, took, (unsigned long long)sent, (unsigned long long)received,
         (unsigned long long)missing, (double)received / took,
         (unsigned long long)percentile(0.5), (unsigned long long)percentile(0.99));
  if (stalls) fprintf(stderr, "udp_load: the send buffer was full %llu times\n",
                      (unsigned long long)stalls);
  return 0;
}

int main(int argc, char** argv) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  if (argc == 3 && strcmp(argv[1], "echo") == 0) return echo(atoi(argv[2]));
  if (argc == 6 && strcmp(argv[1], "rr") == 0) {
    int size = atoi(argv[4]);
    return rr(atoi(argv[2]), atoi(argv[3]), size < 16 ? 16 : size, atof(argv[5]), 0);
  }
  if (argc == 5 && strcmp(argv[1], "stun") == 0)
    return rr(atoi(argv[2]), atoi(argv[3]), 20, atof(argv[4]), 1);
  if (argc == 7 && strcmp(argv[1], "stream") == 0) {
    int size = atoi(argv[4]);
    return stream(atoi(argv[2]), atoi(argv[3]), size < 16 ? 16 : size, atof(argv[5]),
                  atof(argv[6]));
  }
  fprintf(stderr,
          "usage: udp_load echo PORT | rr PORT SESSIONS SIZE SECONDS |"
          " stun PORT SESSIONS SECONDS | stream PORT SESSIONS SIZE RATE SECONDS\n");
  return 2;
}
