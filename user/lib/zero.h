/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Zero-page detection for the migration sender (multifd sender threads
 * classify each page as zero or data, QEMU's zero-page-detection=multifd).
 * The scan is vectorised (AVX-512, AVX2, SSE2, picked once at run time) and
 * stops at the first non-zero 64..256-byte block, testing the first 64
 * bytes before anything else since that is where most data pages already
 * differ from zero; a plain word loop is the reference.  Host code only:
 * guest code (user/lib/guest) must not use SSE or AVX.
 */
#ifndef KVMMIG_ZERO_H
#define KVMMIG_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True if the @len bytes at @p are all zero.  Any @len and alignment work
 * (a @len of 0 is true) and nothing outside [@p, @p + @len) is read; the
 * vector paths start at 64 bytes, so page-sized calls are the fast case.
 * Safe to call from any thread, also the first time.
 */
bool buffer_is_zero(const void *p, size_t len);

/* The word-at-a-time reference implementation (tests, benchmark baseline). */
bool buffer_is_zero_words(const void *p, size_t len);

/* Which implementation buffer_is_zero() uses: "avx512", "avx2", "sse2". */
const char *buffer_is_zero_impl(void);

/*
 * For tests and benchmarks only: the implementation called @impl
 * ("avx512", "avx2", "sse2" or "words"), or NULL if there is none by that
 * name or this CPU cannot run it.
 */
typedef bool (*buffer_is_zero_fn)(const void *p, size_t len);
buffer_is_zero_fn buffer_is_zero_lookup(const char *impl);

#endif /* KVMMIG_ZERO_H */
