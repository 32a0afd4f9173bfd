// A diagnostic for the processor's peak RSS, loaded with LD_PRELOAD into
// klarna-processor (under processor_bench) — not built by CMake, not part of
// any product binary. Every 20 ms it writes one line to $RSS_PROBE_OUT.<pid>:
// the process's VmRSS (and its anonymous, file and shared parts, VmHWM),
// jemalloc's stats.allocated / active / resident / retained / mapped /
// metadata and dirty pages of all arenas, and from librdkafka's statistics
// (every 100 ms, turned on by this probe) the consumer queue's bytes and
// messages and the producer queue's bytes. Used for docs/performance/processor.md,
// "Peak RSS run to run".
//
//   gcc -O2 -shared -fPIC -o /tmp/rss_probe.so bench/processor/rss_probe.c -lrdkafka -ldl -lpthread
//   RSS_PROBE_OUT=/tmp/rss LD_PRELOAD=/tmp/rss_probe.so build/bench/processor/processor_bench
//       --events 200000 --dir /tmp --max-rss-mib 2048      (one command line)
//
// With RSS_PROBE_DUMP=<prefix> and MALLOC_CONF=prof:true,lg_prof_sample:17 it
// also writes a jemalloc heap profile (<prefix>.<ms>.<n>.heap, at most 40)
// whenever live bytes rose by 8 MiB or more since the previous sample: what a
// burst allocated is `jeprof --text --base=<dump before> <binary> <dump>`.
//
// Only a process whose executable path contains "klarna-processor" is probed
// (the bench itself is not). jemalloc's "mallctl" is found at run time: the
// processor links jemalloc, a sanitizer build does not (its columns are 0).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);
typedef rd_kafka_t* (*rd_kafka_new_fn)(rd_kafka_type_t, rd_kafka_conf_t*, char*, size_t);

static FILE* out;
// Written by librdkafka's statistics callback (on the polling thread), read
// by the sampler: plain words, a torn read only blurs one sample.
static volatile long long consumer_queue_bytes, consumer_queue_msgs, producer_queue_bytes;

static int is_processor(void) {
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = 0;
  return strstr(exe, "klarna-processor") != NULL;
}

// The largest value of "key": in the statistics JSON. With the high-level
// consumer every partition's fetch queue forwards to the one consumer queue,
// and each partition reports that queue's size: the largest is the queue.
static long long largest(const char* json, const char* key) {
  long long most = 0;
  size_t len = strlen(key);
  for (const char* p = strstr(json, key); p != NULL; p = strstr(p + len, key)) {
    long long v = atoll(p + len);
    if (v > most) most = v;
  }
  return most;
}

static int stats_cb(rd_kafka_t* rk, char* json, size_t len, void* opaque) {
  (void)len;
  (void)opaque;
  if (rd_kafka_type(rk) == RD_KAFKA_CONSUMER) {
    consumer_queue_bytes = largest(json, "\"fetchq_size\":");
    consumer_queue_msgs = largest(json, "\"fetchq_cnt\":");
  } else {
    const char* p = strstr(json, "\"msg_size\":");
    if (p != NULL) producer_queue_bytes = atoll(p + strlen("\"msg_size\":"));
  }
  return 0;  // librdkafka frees the JSON
}

// Interposed: turns librdkafka's statistics on for every client the
// processor creates, then creates it.
rd_kafka_t* rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t* conf, char* errstr, size_t size) {
  static rd_kafka_new_fn real;
  if (real == NULL) real = (rd_kafka_new_fn)dlsym(RTLD_NEXT, "rd_kafka_new");
  if (conf != NULL && out != NULL) {
    char err[256];
    rd_kafka_conf_set(conf, "statistics.interval.ms", "100", err, sizeof err);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
  }
  return real(type, conf, errstr, size);
}

static size_t ctl(mallctl_fn m, const char* name) {
  size_t v = 0, l = sizeof v;
  if (m == NULL || m(name, &v, &l, NULL, 0) != 0) return 0;
  return v;
}

struct status {
  long rss, anon, file, shmem, hwm;  // KiB
};

static struct status read_status(void) {
  struct status s = {0, 0, 0, 0, 0};
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  if (f == NULL) return s;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) s.rss = atol(line + 6);
    if (strncmp(line, "VmHWM:", 6) == 0) s.hwm = atol(line + 6);
    if (strncmp(line, "RssAnon:", 8) == 0) s.anon = atol(line + 8);
    if (strncmp(line, "RssFile:", 8) == 0) s.file = atol(line + 8);
    if (strncmp(line, "RssShmem:", 9) == 0) s.shmem = atol(line + 9);
  }
  fclose(f);
  return s;
}

// A heap profile when live bytes jumped (RSS_PROBE_DUMP set; needs prof:true).
static void dump_on_burst(mallctl_fn m, long ms, size_t allocated, size_t before) {
  static int dumps;
  const char* prefix = getenv("RSS_PROBE_DUMP");
  if (m == NULL || prefix == NULL || before == 0 || dumps >= 40) return;
  if (allocated < before + ((size_t)8 << 20)) return;
  char name[512];
  snprintf(name, sizeof name, "%s.%ld.%d.heap", prefix, ms, dumps++);
  const char* file = name;
  m("prof.dump", NULL, NULL, (void*)&file, sizeof file);
  fprintf(out, "# heap profile %s (allocated %zu, before %zu)\n", name, allocated, before);
}

static void* sampler(void* arg) {
  (void)arg;
  mallctl_fn m = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fprintf(out,
          "t_ms rss_kib anon_kib file_kib shmem_kib hwm_kib allocated active resident retained "
          "mapped metadata dirty consumer_queue_bytes consumer_queue_msgs producer_queue_bytes\n");
  size_t before = 0;
  for (;;) {
    uint64_t epoch = 1;
    size_t l = sizeof epoch;
    if (m != NULL) m("epoch", &epoch, &l, &epoch, l);  // refresh jemalloc's stats
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    struct status s = read_status();
    // 4096 = MALLCTL_ARENAS_ALL: the dirty pages of every arena.
    size_t dirty = ctl(m, "stats.arenas.4096.pdirty") * (size_t)sysconf(_SC_PAGESIZE);
    fprintf(out, "%ld %ld %ld %ld %ld %ld %zu %zu %zu %zu %zu %zu %zu %lld %lld %lld\n", ms, s.rss,
            s.anon, s.file, s.shmem, s.hwm, ctl(m, "stats.allocated"), ctl(m, "stats.active"),
            ctl(m, "stats.resident"), ctl(m, "stats.retained"), ctl(m, "stats.mapped"),
            ctl(m, "stats.metadata"), dirty, consumer_queue_bytes, consumer_queue_msgs,
            producer_queue_bytes);
    size_t allocated = ctl(m, "stats.allocated");
    dump_on_burst(m, ms, allocated, before);
    before = allocated;
    fflush(out);
    usleep(20000);
  }
  return NULL;
}

__attribute__((constructor)) static void start(void) {
  const char* prefix = getenv("RSS_PROBE_OUT");
  if (prefix == NULL || !is_processor()) return;
  char path[512];
  snprintf(path, sizeof path, "%s.%d", prefix, (int)getpid());
  out = fopen(path, "w");
  if (out == NULL) return;
  pthread_t thread;
  if (pthread_create(&thread, NULL, sampler, NULL) == 0) pthread_detach(thread);
}
