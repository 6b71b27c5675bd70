/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the libFuzzer targets (the selftests/..._fuzz.c files) share: a reader that
 * turns the fuzzer's bytes into the values a target needs (zero once the
 * input is used up), and FUZZ_BUG_ON() for a broken promise, which aborts
 * so libFuzzer keeps the input as a crash.  A target defines FUZZ_NAME, the
 * prefix of its messages, before including this.
 */
#ifndef KVMMIG_FUZZ_UTIL_H
#define KVMMIG_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_BUG_ON(cond)							\
	do {									\
		if (cond) {							\
			fprintf(stderr, FUZZ_NAME ": %s:%d: %s\n", __FILE__,	\
				__LINE__, #cond);				\
			abort();						\
		}								\
	} while (0)

struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline const uint8_t *in_take(struct fuzz_in *in, size_t len)
{
	const uint8_t *p = in->p;

	if (in->n < len)
		return NULL;
	in->p += len;
	in->n -= len;
	return p;
}

/* One byte, or 0 once the input is used up. */
static inline uint8_t in_byte(struct fuzz_in *in)
{
	const uint8_t *p = in_take(in, 1);

	return p ? *p : 0;
}

static inline uint16_t in_u16(struct fuzz_in *in)
{
	return in_byte(in) | in_byte(in) << 8;
}

/* Up to @len input bytes into @dst, the rest zero. */
static inline void in_fill(struct fuzz_in *in, void *dst, size_t len)
{
	size_t n = in->n < len ? in->n : len;

	memset(dst, 0, len);
	memcpy(dst, in_take(in, n), n);
}

#endif /* KVMMIG_FUZZ_UTIL_H */
