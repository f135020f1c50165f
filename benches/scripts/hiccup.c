// hiccup: how late does this machine run a thread that asks to wake every
// millisecond? A jHiccup-style meter for the tail-latency benchmarks.
//
// A thread sleeps 1 ms (clock_nanosleep, relative), then measures how much
// later than asked it woke. Whatever it sees is a delay that any request on
// the same machine could also see: the scheduler running something else
// first, or (run under `chrt -f 99`, where no other thread of the guest can
// delay it for long) the hypervisor not running this vCPU at all. Each second
// it prints one line: the largest delay, how many wake-ups were late by more
// than 1, 5, 20 and 50 ms, and the steal ticks that second from /proc/stat
// (time the hypervisor gave this guest's vCPUs to someone else).
//
// Build: cc -O2 -o hiccup hiccup.c
// Run:   ./hiccup SECONDS            (prints one line per second, then a summary)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Sum of the steal column of the "cpu" line of /proc/stat, in ticks.
static long long steal_ticks(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    long long v[10] = {0};
    if (fgets(line, sizeof line, f)) {
        sscanf(line, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]);
    }
    fclose(f);
    return v[7];
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 60;
    if (seconds <= 0) {
        fprintf(stderr, "usage: hiccup SECONDS\n");
        return 2;
    }
    const long long period = 1000000LL;  // 1 ms
    long long start = now_ns();
    long long second_end = start + 1000000000LL;
    long long steal_before = steal_ticks();
    long long max_ns = 0, over1 = 0, over5 = 0, over20 = 0, over50 = 0, wakeups = 0;
    long long all_max = 0, all_over1 = 0, all_over5 = 0, all_over20 = 0, all_over50 = 0;
    long long all_wakeups = 0, all_steal = 0, seconds_over5 = 0, seconds_over20 = 0,
              seconds_over50 = 0;
    printf("second max_ms over1ms over5ms over20ms over50ms steal_ticks\n");
    for (int s = 1; s <= seconds;) {
        struct timespec req = {0, period};
        long long before = now_ns();
        clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
        long long late = now_ns() - before - period;
        if (late < 0) late = 0;
        wakeups++;
        if (late > max_ns) max_ns = late;
        if (late > 1000000LL) over1++;
        if (late > 5000000LL) over5++;
        if (late > 20000000LL) over20++;
        if (late > 50000000LL) over50++;
        if (now_ns() >= second_end) {
            long long steal = steal_ticks();
            long long ds = steal - steal_before;
            steal_before = steal;
            printf("%d %.3f %lld %lld %lld %lld %lld\n", s, max_ns / 1e6, over1, over5, over20,
                   over50, ds);
            fflush(stdout);
            if (max_ns > all_max) all_max = max_ns;
            all_over1 += over1;
            all_over5 += over5;
            all_over20 += over20;
            all_over50 += over50;
            all_wakeups += wakeups;
            all_steal += ds;
            seconds_over5 += max_ns > 5000000LL;
            seconds_over20 += max_ns > 20000000LL;
            seconds_over50 += max_ns > 50000000LL;
            max_ns = over1 = over5 = over20 = over50 = wakeups = 0;
            second_end += 1000000000LL;
            s++;
        }
    }
    printf("summary: seconds=%d wakeups=%lld max_ms=%.3f late_over_1ms=%lld over_5ms=%lld "
           "over_20ms=%lld over_50ms=%lld seconds_max_over_5ms=%lld over_20ms=%lld "
           "over_50ms=%lld steal_ticks=%lld\n",
           seconds, all_wakeups, all_max / 1e6, all_over1, all_over5, all_over20, all_over50,
           seconds_over5, seconds_over20, seconds_over50, all_steal);
    return 0;
}
