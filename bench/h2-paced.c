/*
 * h2-paced: a gRPC load generator over cleartext HTTP/2, on nghttp2 (the
 * library under h2load), whose request kinds take turns by weight on the same
 * connections, as Envoy multiplexes every request over a few.
 *
 * At a fixed rate, request n is due at n / rate seconds after the start and is
 * sent at that moment (ppoll with a nanosecond timeout), on connection
 * n % connections. Closed loop (RATE `max/S`), each connection keeps S
 * requests in flight for SECONDS, and requests finished by then count.
 *
 * Why not h2load --rps: its timer fires at most every 10 ms
 * (`std::max(0.01, 1. / config.rps)` in nghttp2's src/h2load.cc), so at
 * 2,000 rps it sends 20 requests at once every 10 ms and the p99 it reports is
 * the last of 20 queued behind the other 19. BENCHMARKS.md has the figures.
 *
 * Latency runs from the request's hand-off to nghttp2 to its stream's close
 * (trailers read). A request is done when it answered :status 200 and
 * grpc-status 0; anything else, or no answer within 5 s of the last request
 * due, is failed. Prints one line: H2_PACED_JSON {...}.
 *
 * Usage: h2-paced HOST PORT PATH CONNECTIONS RATE|max/S SECONDS BODY:WEIGHT...
 * Build: cc -O2 -o h2-paced h2-paced.c -lnghttp2   (Debian: libnghttp2-dev)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>

#define MAX_CONNECTIONS 64
#define MAX_KINDS 32
#define DRAIN_US 5e6

struct request {
  double started_us;
  int connection;
  int kind;
  int http_status;
  int grpc_status;
  size_t body_offset;
};

struct kind {
  unsigned char *body;
  size_t length;
  int weight;
  long done;
};

static struct kind kinds[MAX_KINDS];
static int kind_count;
static double *latencies_us;
static long done_count, settled_count, late_count;
/* Closed loop: requests each connection may start now (one per stream closed); the end of the run. */
static int to_start[MAX_CONNECTIONS];
static int closed_loop;
static double end_us;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "h2-paced: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

static unsigned char *read_file(const char *path, size_t *length) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *bytes = malloc(size > 0 ? size : 1);
  if (size > 0 && fread(bytes, 1, size, f) != (size_t)size) die(path);
  fclose(f);
  *length = size;
  return bytes;
}

static ssize_t on_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags, void *user) {
  (void)session; (void)flags;
  ssize_t n = write(*(int *)user, data, length);
  if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
  return n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
  (void)flags; (void)user;
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  struct request *r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!r) return 0;
  char text[16] = {0};
  memcpy(text, value, valuelen < 15 ? valuelen : 15);
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) r->http_status = atoi(text);
  else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) r->grpc_status = atoi(text);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user) {
  (void)user;
  struct request *r = nghttp2_session_get_stream_user_data(session, stream_id);
  if (!r) return 0;
  double now = now_us();
  if (error_code == 0 && r->http_status == 200 && r->grpc_status == 0) {
    if (closed_loop && now > end_us) {
      late_count++;
    } else {
      latencies_us[done_count++] = now - r->started_us;
      kinds[r->kind].done++;
    }
  }
  settled_count++;
  if (closed_loop) to_start[r->connection]++;
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t f, int32_t id, const uint8_t *d, size_t l, void *u) {
  (void)s; (void)f; (void)id; (void)d; (void)l; (void)u;
  return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  (void)session; (void)stream_id; (void)user;
  struct request *r = source->ptr;
  struct kind *k = &kinds[r->kind];
  size_t n = k->length - r->body_offset;
  if (n > length) n = length;
  memcpy(buf, k->body + r->body_offset, n);
  r->body_offset += n;
  if (r->body_offset == k->length) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* Hands request r to connection c's session; the main loop flushes every session before it waits. */
static void start_request(struct request *r, int c, int kind, nghttp2_session *session, const nghttp2_nv *headers, size_t header_count) {
  r->connection = c;
  r->kind = kind;
  r->http_status = r->grpc_status = -1;
  r->started_us = now_us();
  nghttp2_data_provider body = {.source.ptr = r, .read_callback = read_body};
  if (nghttp2_submit_request(session, NULL, headers, header_count, &body, r) < 0) die("submit");
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(double *sorted, long n, double p) {
  if (n == 0) return -1;
  long rank = (long)(p / 100 * n + 0.999999) - 1;
  if (rank < 0) rank = 0;
  if (rank >= n) rank = n - 1;
  return sorted[rank];
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: h2-paced HOST PORT PATH CONNECTIONS RATE|max/S SECONDS BODY:WEIGHT...\n");
    return 2;
  }
  const char *host = argv[1], *port = argv[2], *path = argv[3];
  int connections = atoi(argv[4]), streams = 0;
  double rate = 0, seconds = atof(argv[6]);
  if (strncmp(argv[5], "max/", 4) == 0) {
    closed_loop = 1;
    streams = atoi(argv[5] + 4);
  } else rate = atof(argv[5]);
  if (connections < 1 || connections > MAX_CONNECTIONS || seconds <= 0 || (closed_loop ? streams < 1 || streams > 1000 : rate <= 0)) {
    fprintf(stderr, "h2-paced: connections must be 1-%d, seconds positive, and RATE positive or max/S with S 1-1000\n", MAX_CONNECTIONS);
    return 2;
  }
  int total_weight = 0;
  for (int i = 7; i < argc && kind_count < MAX_KINDS; i++) {
    char *colon = strrchr(argv[i], ':');
    if (!colon) { fprintf(stderr, "h2-paced: body `%s` needs :WEIGHT\n", argv[i]); return 2; }
    *colon = 0;
    struct kind *k = &kinds[kind_count++];
    k->weight = atoi(colon + 1);
    if (k->weight < 1) { fprintf(stderr, "h2-paced: weight of `%s` must be a positive integer\n", argv[i]); return 2; }
    k->body = read_file(argv[i], &k->length);
    total_weight += k->weight;
  }
  /* Smooth weighted round-robin: one cycle of total_weight turns, each kind evenly spread. */
  int *cycle = malloc(sizeof(int) * total_weight), current[MAX_KINDS] = {0};
  for (int n = 0; n < total_weight; n++) {
    int best = 0;
    for (int i = 0; i < kind_count; i++) {
      current[i] += kinds[i].weight;
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total_weight;
    cycle[n] = best;
  }

  nghttp2_session_callbacks *callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_send_callback(callbacks, on_send);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);

  int fds[MAX_CONNECTIONS];
  nghttp2_session *sessions[MAX_CONNECTIONS];
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) { fprintf(stderr, "h2-paced: HOST must be an IPv4 address\n"); return 2; }
  for (int c = 0; c < connections; c++) {
    fds[c] = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fds[c] < 0 || connect(fds[c], (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    setsockopt(fds[c], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fds[c], F_SETFL, fcntl(fds[c], F_GETFL) | O_NONBLOCK);
    nghttp2_session_client_new(&sessions[c], callbacks, &fds[c]);
    /* Windows of 256 MiB, Envoy's defaults (and about h2load's): no WINDOW_UPDATE every few answers. */
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 28}};
    nghttp2_submit_settings(sessions[c], NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(sessions[c], NGHTTP2_FLAG_NONE, 0, 1 << 28);
    nghttp2_session_send(sessions[c]);
  }

  char authority[300];
  snprintf(authority, sizeof authority, "%s:%s", host, port);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
  nghttp2_nv headers[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", authority), NV(":path", path),
                          NV("content-type", "application/grpc"), NV("te", "trailers")};
  const size_t header_count = sizeof headers / sizeof headers[0];

  /* Closed loop: room for 500,000 requests a second, far beyond what one core serves. */
  long total = closed_loop ? (long)(seconds * 500000) + (long)connections * streams : (long)(rate * seconds + 0.5);
  if (total < 1) total = 1;
  struct request *requests = calloc(total, sizeof *requests);
  latencies_us = calloc(total, sizeof(double));
  double *lateness_us = calloc(total, sizeof(double));
  long sent = 0;
  double start = now_us() + 10e3, last_due = closed_loop ? start + seconds * 1e6 : start + (total - 1) * 1e6 / rate;
  end_us = last_due;
  for (int c = 0; c < connections; c++) to_start[c] = streams;
  unsigned char buffer[65536];
  struct pollfd polls[MAX_CONNECTIONS];

  for (;;) {
    double now = now_us();
    if (closed_loop) {
      if (now >= start && now < end_us)
        for (int c = 0; c < connections; c++)
          for (; to_start[c] > 0 && sent < total; to_start[c]--, sent++)
            start_request(&requests[sent], c, cycle[sent % total_weight], sessions[c], headers, header_count);
      if (now >= end_us && settled_count == sent) break;
    } else {
      for (; sent < total && start + sent * 1e6 / rate <= now; sent++) {
        int c = sent % connections;
        start_request(&requests[sent], c, cycle[sent % total_weight], sessions[c], headers, header_count);
        lateness_us[sent] = requests[sent].started_us - (start + sent * 1e6 / rate);
      }
      if (settled_count == total) break;
    }
    if (now > last_due + DRAIN_US) break;
    for (int c = 0; c < connections; c++) nghttp2_session_send(sessions[c]);
    double next_us = closed_loop ? (now < start ? start : end_us) : (sent < total ? start + sent * 1e6 / rate : last_due + DRAIN_US);
    if (closed_loop && now >= end_us) next_us = last_due + DRAIN_US;
    double wait_us = next_us - now_us();
    if (wait_us < 0) wait_us = 0;
    struct timespec timeout = {(time_t)(wait_us / 1e6), (long)((wait_us - (time_t)(wait_us / 1e6) * 1e6) * 1e3)};
    for (int c = 0; c < connections; c++) {
      polls[c].fd = fds[c];
      polls[c].events = POLLIN | (nghttp2_session_want_write(sessions[c]) ? POLLOUT : 0);
    }
    if (ppoll(polls, connections, &timeout, NULL) < 0 && errno != EINTR) die("ppoll");
    for (int c = 0; c < connections; c++) {
      if (polls[c].revents & (POLLIN | POLLHUP | POLLERR)) {
        for (;;) {
          ssize_t n = read(fds[c], buffer, sizeof buffer);
          if (n > 0) {
            if (nghttp2_session_mem_recv(sessions[c], buffer, n) < 0) die("HTTP/2 from the server");
            continue;
          }
          if (n == 0) { errno = 0; die("the server closed a connection"); }
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          die("read");
        }
      }
      nghttp2_session_send(sessions[c]);
    }
  }

  qsort(latencies_us, done_count, sizeof(double), compare);
  qsort(lateness_us, sent, sizeof(double), compare);
  /* Closed loop, requests still in flight at the end are neither done nor failed: they were cut off, not refused. */
  long failed = closed_loop ? sent - done_count - late_count : sent - done_count;
  printf("H2_PACED_JSON {\"sent\":%ld,\"done\":%ld,\"failed\":%ld,\"seconds\":%.6f,\"p50Us\":%.1f,\"p99Us\":%.1f,"
         "\"sendLatenessP99Us\":%.1f,\"donePerKind\":[",
         sent, done_count, failed, closed_loop ? seconds : (total - 1) / rate, percentile(latencies_us, done_count, 50),
         percentile(latencies_us, done_count, 99), percentile(lateness_us, sent, 99));
  for (int i = 0; i < kind_count; i++) printf("%s%ld", i ? "," : "", kinds[i].done);
  printf("]}\n");
  return 0;
}
