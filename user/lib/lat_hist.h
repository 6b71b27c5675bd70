/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A latency histogram in powers of two of microseconds, as QEMU 10.1 prints
 * postcopy fault latencies: bucket i counts [2^i, 2^(i+1)) us, bucket 0
 * everything under 2 us, the last everything above.  Adding is one relaxed
 * atomic increment, so several threads may count into one histogram; a
 * percentile is read once the counting is over.
 */
#ifndef KVMMIG_LAT_HIST_H
#define KVMMIG_LAT_HIST_H

#include <stdint.h>

#define LAT_HIST_BUCKETS	24

static inline void lat_hist_add(uint64_t *hist, uint64_t us)
{
	unsigned int b = 0;

	while (us >= 2 && b < LAT_HIST_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	__atomic_add_fetch(&hist[b], 1, __ATOMIC_RELAXED);
}

static inline uint64_t lat_hist_count(const uint64_t *hist)
{
	uint64_t total = 0;
	unsigned int b;

	for (b = 0; b < LAT_HIST_BUCKETS; b++)
		total += hist[b];
	return total;
}

/* Percentile @p (0-100) in us: the upper bound of its bucket (0: empty). */
static inline uint64_t lat_hist_percentile_us(const uint64_t *hist, double p)
{
	uint64_t total = lat_hist_count(hist), seen = 0;
	unsigned int b;

	for (b = 0; b < LAT_HIST_BUCKETS && total; b++) {
		seen += hist[b];
		if (seen * 100.0 >= p * total)
			return 2ULL << b;
	}
	return 0;
}

#endif /* KVMMIG_LAT_HIST_H */
