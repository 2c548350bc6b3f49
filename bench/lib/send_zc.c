/* Does io_uring's send_zc beat send() here? One loopback TCP connection, a sender that sends
 * BENCH_ZC_TOTAL bytes (2 GiB) in CHUNK pieces with send(2) or IORING_OP_SEND_ZC, a receiver
 * thread that drains them; prints throughput, the sender's CPU per GiB, and how many of the
 * zero-copy sends the kernel reported as copied anyway (IORING_NOTIF_USAGE_ZC_COPIED).
 * Built and run by bench/send_zc.sh. Usage: send_zc send|zc CHUNK_BYTES */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Linux 6.2 uapi, newer than liburing 2.3's headers. */
#define ZC_REPORT_USAGE (1U << 3)
#define ZC_USAGE_COPIED (1U << 31)

static size_t total = 2ul << 30;

static void* drain(void* arg) {
  int fd = *(int*)arg;
  char* b = malloc(1 << 20);
  size_t got = 0;
  while (got < total) {
    ssize_t n = recv(fd, b, 1 << 20, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  free(b);
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double thread_cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_THREAD, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: send_zc send|zc CHUNK_BYTES\n");
    return 2;
  }
  int zc = strcmp(argv[1], "zc") == 0;
  size_t chunk = strtoul(argv[2], NULL, 10);
  if (getenv("BENCH_ZC_TOTAL")) total = strtoul(getenv("BENCH_ZC_TOTAL"), NULL, 10);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, (struct sockaddr*)&a, sizeof a) || listen(l, 1) ||
      getsockname(l, (struct sockaddr*)&a, &len)) {
    perror("listen");
    return 1;
  }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr*)&a, sizeof a)) {
    perror("connect");
    return 1;
  }
  int s = accept(l, NULL, NULL);
  pthread_t t;
  pthread_create(&t, NULL, drain, &s);
  char* buf = malloc(chunk);
  memset(buf, 'x', chunk);
  struct io_uring ring;
  if (io_uring_queue_init(64, &ring, 0) < 0) {
    fprintf(stderr, "io_uring unavailable\n");
    return 1;
  }
  double t0 = now(), c0 = thread_cpu();
  size_t sent = 0;
  int notifications = 0, copied = 0;
  while (sent < total) {
    if (!zc) {
      ssize_t n = send(c, buf, chunk, 0);
      if (n <= 0) return 1;
      sent += (size_t)n;
      continue;
    }
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_send_zc(sqe, c, buf, chunk, 0, ZC_REPORT_USAGE);
    io_uring_submit(&ring);
    /* The buffer may be reused only after the notification that follows the result. */
    int pending = 1;
    while (pending > 0) {
      struct io_uring_cqe* cqe;
      io_uring_wait_cqe(&ring, &cqe);
      if (cqe->flags & IORING_CQE_F_NOTIF) {
        ++notifications;
        if ((unsigned)cqe->res & ZC_USAGE_COPIED) ++copied;
      } else {
        if (cqe->res < 0) {
          fprintf(stderr, "send_zc: %s\n", strerror(-cqe->res));
          return 1;
        }
        sent += (size_t)cqe->res;
        if (cqe->flags & IORING_CQE_F_MORE) ++pending;
      }
      --pending;
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  double dt = now() - t0, dc = thread_cpu() - c0;
  pthread_join(t, NULL);
  printf("%-7s chunk=%-8zu %.2f GiB/s  sender CPU %.3f s/GiB  zero-copy notifications %d, copied %d\n",
         zc ? "send_zc" : "send", chunk, (double)total / dt / (1 << 30),
         dc / ((double)total / (1 << 30)), notifications, copied);
  return 0;
}
