/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A latency histogram of microseconds in powers of two, as QEMU 10.1 prints
 * postcopy fault latencies: bucket b counts [2^b, 2^(b+1)) us, bucket 0
 * everything under 2 us, the last everything above.  Each bucket is kept
 * as LAT_HIST_SUB equal slots, so that a percentile is known to within an
 * eighth of its bucket rather than a factor of two: the difference between
 * "p99 under 1024 us" and "p99 under 960 us" is whether a 1 ms goal is met.
 * Adding is one relaxed atomic increment, so several threads may count into
 * one histogram; a percentile is read once the counting is over.
 */
#ifndef KVMMIG_LAT_HIST_H
#define KVMMIG_LAT_HIST_H

#include <stdint.h>

#define LAT_HIST_BUCKETS	24	/* powers of two, as printed */
#define LAT_HIST_SUB		8	/* slots per bucket */
#define LAT_HIST_SLOTS		(LAT_HIST_BUCKETS * LAT_HIST_SUB)

/* Bucket @b spans [lat_hist_lo(b), 2^(b+1)) us. */
static inline uint64_t lat_hist_lo(unsigned int b)
{
	return b ? 1ULL << b : 0;
}

static inline void lat_hist_add(uint64_t *hist, uint64_t us)
{
	unsigned int b = 0, sub;
	uint64_t v = us;

	while (v >= 2 && b < LAT_HIST_BUCKETS - 1) {
		v >>= 1;
		b++;
	}
	if (us >= 2ULL << b)	/* beyond the last bucket's span */
		sub = LAT_HIST_SUB - 1;
	else
		sub = (us - lat_hist_lo(b)) * LAT_HIST_SUB / ((2ULL << b) - lat_hist_lo(b));
	__atomic_add_fetch(&hist[b * LAT_HIST_SUB + sub], 1, __ATOMIC_RELAXED);
}

/* What bucket @b (a power of two) counts. */
static inline uint64_t lat_hist_bucket(const uint64_t *hist, unsigned int b)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < LAT_HIST_SUB; i++)
		n += hist[b * LAT_HIST_SUB + i];
	return n;
}

static inline uint64_t lat_hist_count(const uint64_t *hist)
{
	uint64_t total = 0;
	unsigned int i;

	for (i = 0; i < LAT_HIST_SLOTS; i++)
		total += hist[i];
	return total;
}

/* Slot @i spans [lat_hist_slot_lo(i), lat_hist_slot_hi(i)) us, rounded up. */
static inline uint64_t lat_hist_slot_hi(unsigned int i)
{
	unsigned int b = i / LAT_HIST_SUB, sub = i % LAT_HIST_SUB;
	uint64_t width = (2ULL << b) - lat_hist_lo(b);

	return lat_hist_lo(b) + (width * (sub + 1) + LAT_HIST_SUB - 1) / LAT_HIST_SUB;
}

static inline uint64_t lat_hist_slot_lo(unsigned int i)
{
	return i % LAT_HIST_SUB ? lat_hist_slot_hi(i - 1) : lat_hist_lo(i / LAT_HIST_SUB);
}

/* The slot percentile @p (0-100) falls in, or -1 when empty. */
static inline int lat_hist_percentile_slot(const uint64_t *hist, double p)
{
	uint64_t total = lat_hist_count(hist), seen = 0;
	unsigned int i;

	for (i = 0; i < LAT_HIST_SLOTS && total; i++) {
		seen += hist[i];
		if (seen * 100.0 >= p * total)
			return i;
	}
	return -1;
}

/* Percentile @p (0-100) in us: the upper bound of its slot (0: empty). */
static inline uint64_t lat_hist_percentile_us(const uint64_t *hist, double p)
{
	int i = lat_hist_percentile_slot(hist, p);

	return i < 0 ? 0 : lat_hist_slot_hi(i);
}

/* The lower bound of that slot: the percentile is at least this. */
static inline uint64_t lat_hist_percentile_floor_us(const uint64_t *hist, double p)
{
	int i = lat_hist_percentile_slot(hist, p);

	return i < 0 ? 0 : lat_hist_slot_lo(i);
}

#endif /* KVMMIG_LAT_HIST_H */
