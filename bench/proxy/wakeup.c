// The machine's floor under a proxied request's latency: a proxy on its own CPU adds four
// wake-ups across CPUs to every request (client -> proxy -> origin -> proxy -> client, the
// client and the origin on the other CPU), where a direct request has two on one CPU. This
// passes one byte around that loop between two processes over pipes, one request at a time
// with a pause between (as at a fixed rate, so each wake-up finds the other CPU idle), and
// prints the loop's latency percentiles as one JSON line, in microseconds.
//
//   wakeup CPU_A CPU_B SAMPLES PAUSE_US HOPS      e.g. wakeup 1 0 5000 1000 4
//
// HOPS (even) is how many times the byte crosses between the two processes per sample.
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    perror("sched_setaffinity");
    exit(1);
  }
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void pass(int from, int to, char* byte) {
  if (read(from, byte, 1) != 1 || write(to, byte, 1) != 1) exit(1);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: wakeup CPU_A CPU_B SAMPLES PAUSE_US HOPS\n");
    return 2;
  }
  const int cpu_a = atoi(argv[1]), cpu_b = atoi(argv[2]), samples = atoi(argv[3]);
  const int pause_us = atoi(argv[4]), hops = atoi(argv[5]), round_trips = hops / 2;
  if (samples <= 0 || hops <= 0 || hops % 2 != 0) {
    fprintf(stderr, "wakeup: SAMPLES must be positive and HOPS positive and even\n");
    return 2;
  }
  int there[2], back[2];
  if (pipe(there) != 0 || pipe(back) != 0) return 1;
  char byte = 'x';
  if (fork() == 0) {  // B: echoes every byte; A's end closing (A failed) ends it too
    close(there[1]);
    close(back[0]);
    pin(cpu_b);
    for (long i = 0; i < (long)samples * round_trips; ++i) pass(there[0], back[1], &byte);
    return 0;
  }
  close(there[0]);
  close(back[1]);
  pin(cpu_a);
  double* latency = malloc(samples * sizeof(double));
  for (int i = 0; i < samples; ++i) {
    usleep(pause_us);
    const double start = now_us();
    for (int trip = 0; trip < round_trips; ++trip) {
      if (write(there[1], &byte, 1) != 1 || read(back[0], &byte, 1) != 1) return 1;
    }
    latency[i] = now_us() - start;
  }
  wait(NULL);
  qsort(latency, samples, sizeof(double), by_value);
  printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f}\n", latency[samples / 2],
         latency[samples * 99 / 100], latency[samples * 999 / 1000]);
  return 0;
}
