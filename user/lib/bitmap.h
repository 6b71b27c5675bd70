/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Page bitmaps, one bit per guest page in unsigned long words (the layout
 * KVM_GET_DIRTY_LOG uses on x86).  Walks go a word at a time and skip zero
 * words, so sparse bitmaps cost a load per 64 pages.
 */
#ifndef KVMMIG_BITMAP_H
#define KVMMIG_BITMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BITS_PER_LONG		64
#define BITMAP_WORDS(n)		(((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)
#define BITMAP_BYTES(n)		(BITMAP_WORDS(n) * sizeof(unsigned long))

static inline void bitmap_set_bit(unsigned long *map, uint64_t nr)
{
	map[nr / BITS_PER_LONG] |= 1UL << (nr % BITS_PER_LONG);
}

static inline bool bitmap_test_bit(const unsigned long *map, uint64_t nr)
{
	return map[nr / BITS_PER_LONG] >> (nr % BITS_PER_LONG) & 1;
}

static inline void bitmap_clear_bit(unsigned long *map, uint64_t nr)
{
	map[nr / BITS_PER_LONG] &= ~(1UL << (nr % BITS_PER_LONG));
}

static inline unsigned long *bitmap_alloc(uint64_t nbits)
{
	return calloc(BITMAP_WORDS(nbits) ? BITMAP_WORDS(nbits) : 1, sizeof(unsigned long));
}

static inline void bitmap_zero(unsigned long *map, uint64_t nbits)
{
	memset(map, 0, BITMAP_BYTES(nbits));
}

/* Set bits [0, nbits); the tail of the last word stays clear. */
static inline void bitmap_fill(unsigned long *map, uint64_t nbits)
{
	memset(map, 0xff, nbits / BITS_PER_LONG * sizeof(unsigned long));
	if (nbits % BITS_PER_LONG)
		map[nbits / BITS_PER_LONG] = (1UL << (nbits % BITS_PER_LONG)) - 1;
}

static inline uint64_t bitmap_weight(const unsigned long *map, uint64_t nbits)
{
	uint64_t i, w = 0;

	for (i = 0; i < BITMAP_WORDS(nbits); i++)
		w += __builtin_popcountl(map[i]);
	return w;
}

/* dst |= src; returns how many bits were newly set in dst. */
static inline uint64_t bitmap_or_count(unsigned long *dst, const unsigned long *src,
				       uint64_t nbits)
{
	uint64_t i, added = 0;

	for (i = 0; i < BITMAP_WORDS(nbits); i++) {
		unsigned long s = src[i];

		if (!s)
			continue;
		added += __builtin_popcountl(s & ~dst[i]);
		dst[i] |= s;
	}
	return added;
}

/* Next set bit at or after @start, or @nbits if none. */
static inline uint64_t bitmap_next_set(const unsigned long *map, uint64_t nbits, uint64_t start)
{
	uint64_t i = start / BITS_PER_LONG;
	unsigned long w;

	if (start >= nbits)
		return nbits;
	w = map[i] & (~0UL << (start % BITS_PER_LONG));
	while (!w) {
		if (++i >= BITMAP_WORDS(nbits))
			return nbits;
		w = map[i];
	}
	start = i * BITS_PER_LONG + __builtin_ctzl(w);
	return start < nbits ? start : nbits;
}

#define for_each_set_bit(bit, map, nbits)				\
	for ((bit) = bitmap_next_set(map, nbits, 0); (bit) < (nbits);	\
	     (bit) = bitmap_next_set(map, nbits, (bit) + 1))

#endif /* KVMMIG_BITMAP_H */
