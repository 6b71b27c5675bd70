/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one clock helper of libkvmmig, its command and its tests: now on
 * CLOCK_MONOTONIC in ns, ms or seconds (what every interval, rate and
 * deadline of the engine is measured in; bpf_ktime_get_ns() reads the same
 * clock), and the absolute time a pthread_cond_timedwait() wants, on the
 * clock its condition variable was set to.
 */
#ifndef KVMMIG_CLOCK_H
#define KVMMIG_CLOCK_H

#include <stdint.h>
#include <time.h>

#define NSEC_PER_SEC	1000000000ULL
#define NSEC_PER_MSEC	1000000ULL
#define NSEC_PER_USEC	1000ULL

/* @clk in ns: CLOCK_MONOTONIC, or a CPU-time clock for benchmarks. */
static inline uint64_t clock_now_ns(clockid_t clk)
{
	struct timespec ts;

	/* Cannot fail for these clocks, which every supported kernel has. */
	clock_gettime(clk, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	return clock_now_ns(CLOCK_MONOTONIC);
}

static inline int64_t now_ms(void)
{
	return now_ns() / NSEC_PER_MSEC;
}

static inline double now_s(void)
{
	return now_ns() / 1e9;
}

/* @ns from now on @clk, as pthread_cond_timedwait() takes a deadline. */
static inline struct timespec deadline_in_ns(clockid_t clk, uint64_t ns)
{
	uint64_t t = clock_now_ns(clk) + ns;

	return (struct timespec){
		.tv_sec = t / NSEC_PER_SEC,
		.tv_nsec = t % NSEC_PER_SEC,
	};
}

#endif /* KVMMIG_CLOCK_H */
