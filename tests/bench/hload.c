/* A small keep-alive HTTP/1.1 load generator for tests/bench/run.py, compiled there with cc.
 *
 * wrk 4.1.0 hangs on HEAD responses that carry Content-Length, so GET and HEAD are both
 * measured with this one tool (the same client for every server). Each thread runs an epoll
 * loop over its share of the connections; each connection sends one request, reads the whole
 * response (headers, then Content-Length bytes unless HEAD), records the latency, and sends the
 * next. Latencies are kept whole and sorted at the end, so p50/p99 are exact.
 *
 *   hload -p PORT -m GET|HEAD -c CONNS -t THREADS -d SECONDS [-H "Name: value"] PATH|@FILE
 *
 * @FILE names a file of paths, one a line, used round-robin. Prints one JSON line.
 * Loopback only: the host is always 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

static int port, conns = 1, threads = 1, head_only;
static double seconds = 5;
static const char *method = "GET", *header = "";
static char **paths;
static size_t npaths;

struct conn {
  int fd;
  size_t path_i;
  char req[2048];
  size_t req_len, req_off;
  char hdr[8192];
  size_t hdr_len;
  int in_body;
  long long body_left;
  double started;
};

struct worker {
  pthread_t tid;
  int first, count;
  double *lat;
  size_t nlat, cap;
  long long errors, non2xx, bytes, reconnects;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_conn(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void prepare(struct conn *c) {
  const char *p = paths[c->path_i++ % npaths];
  c->req_len = (size_t)snprintf(c->req, sizeof c->req,
                                "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s\r\n", method, p,
                                port, header, *header ? "\r\n" : "");
  c->req_off = 0;
  c->hdr_len = 0;
  c->in_body = 0;
  c->started = now();
}

/* Parses a complete header block; returns body length, or -1 when unusable. */
static long long parse_head(struct worker *w, const char *h) {
  int status = 0;
  if (sscanf(h, "HTTP/1.%*d %d", &status) != 1) return -1;
  if (status < 200 || status >= 400) w->non2xx++;
  if (head_only || status == 204 || status == 304) return 0;
  const char *p = h;
  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (strncasecmp(p, "Content-Length:", 15) == 0) return atoll(p + 15);
  }
  return -1;
}

static void *run(void *arg) {
  struct worker *w = arg;
  int ep = epoll_create1(0);
  struct conn *cs = calloc((size_t)w->count, sizeof *cs);
  char *buf = malloc(BUF);
  for (int i = 0; i < w->count; i++) {
    cs[i].fd = open_conn();
    cs[i].path_i = (size_t)(w->first + i);
    if (cs[i].fd < 0) {
      w->errors++;
      continue;
    }
    prepare(&cs[i]);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  double end = now() + seconds;
  struct epoll_event evs[256];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->req_off < c->req_len) {
        ssize_t k = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
        if (k > 0) c->req_off += (size_t)k;
        if (c->req_off == c->req_len) {
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        continue;
      }
      ssize_t k = read(c->fd, buf, BUF);
      if (k <= 0) {
        if (k < 0 && errno == EAGAIN) continue;
        /* Closed by the server: count it and reconnect. */
        w->errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = open_conn();
        if (c->fd < 0) goto out;
        w->reconnects++;
        prepare(c);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        continue;
      }
      w->bytes += k;
      size_t off = 0;
      if (!c->in_body) {
        size_t room = sizeof c->hdr - 1 - c->hdr_len;
        size_t take = (size_t)k < room ? (size_t)k : room;
        memcpy(c->hdr + c->hdr_len, buf, take);
        c->hdr_len += take;
        c->hdr[c->hdr_len] = 0;
        char *eoh = strstr(c->hdr, "\r\n\r\n");
        if (!eoh) continue;
        size_t head_len = (size_t)(eoh + 4 - c->hdr);
        c->body_left = parse_head(w, c->hdr);
        if (c->body_left < 0) {
          fprintf(stderr, "hload: response without Content-Length:\n%s\n", c->hdr);
          exit(1);
        }
        c->in_body = 1;
        off = head_len - (c->hdr_len - take);
      }
      c->body_left -= (long long)((size_t)k - off);
      if (c->body_left > 0) continue;
      if (w->nlat == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 65536;
        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
      }
      w->lat[w->nlat++] = now() - c->started;
      prepare(c);
      k = write(c->fd, c->req, c->req_len);
      if (k > 0) c->req_off = (size_t)k;
      if (c->req_off < c->req_len) {
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      }
    }
  }
out:
  for (int i = 0; i < w->count; i++) {
    if (cs[i].fd >= 0) close(cs[i].fd);
  }
  free(cs);
  free(buf);
  close(ep);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void load_paths(const char *arg) {
  if (arg[0] != '@') {
    paths = malloc(sizeof *paths);
    paths[0] = strdup(arg);
    npaths = 1;
    return;
  }
  FILE *f = fopen(arg + 1, "r");
  if (!f) {
    perror(arg + 1);
    exit(2);
  }
  char line[1024];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!*line) continue;
    if (npaths == cap) {
      cap = cap ? cap * 2 : 1024;
      paths = realloc(paths, cap * sizeof *paths);
    }
    paths[npaths++] = strdup(line);
  }
  fclose(f);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "p:m:c:t:d:H:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'm': method = optarg; break;
      case 'c': conns = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      case 'd': seconds = atof(optarg); break;
      case 'H': header = optarg; break;
      default: return 2;
    }
  }
  if (optind >= argc || port <= 0) {
    fprintf(stderr, "usage: hload -p PORT [-m GET|HEAD] [-c N] [-t N] [-d S] [-H H] PATH|@FILE\n");
    return 2;
  }
  head_only = strcmp(method, "HEAD") == 0;
  load_paths(argv[optind]);
  if (threads > conns) threads = conns;
  struct worker *ws = calloc((size_t)threads, sizeof *ws);
  double t0 = now();
  for (int i = 0, first = 0; i < threads; i++) {
    ws[i].first = first;
    ws[i].count = conns / threads + (i < conns % threads);
    first += ws[i].count;
    pthread_create(&ws[i].tid, NULL, run, &ws[i]);
  }
  size_t total = 0;
  long long errors = 0, non2xx = 0, bytes = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ws[i].tid, NULL);
    total += ws[i].nlat;
    errors += ws[i].errors;
    non2xx += ws[i].non2xx;
    bytes += ws[i].bytes;
  }
  double elapsed = now() - t0;
  double *all = malloc((total ? total : 1) * sizeof *all);
  for (int i = 0, at = 0; i < threads; i++) {
    memcpy(all + at, ws[i].lat, ws[i].nlat * sizeof *all);
    at += (int)ws[i].nlat;
  }
  qsort(all, total, sizeof *all, cmp);
  double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)(total * 0.99)] : 0;
  printf("{\"requests\": %zu, \"rps\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, "
         "\"errors\": %lld, \"non2xx\": %lld, \"bytes\": %lld}\n",
         total, total / elapsed, p50 * 1e3, p99 * 1e3, errors, non2xx, bytes);
  return 0;
}
