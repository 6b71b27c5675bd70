// SPDX-License-Identifier: GPL-2.0-only
/*
 * buffer_is_zero(), the sender's zero-page test.  Every vector variant has
 * the same shape.  It first asks for the start of the next page (see
 * zero_prefetch_next()).  An aligned buffer of whole rounds (a page) is
 * read four aligned vectors at a time, ORed and tested once per round, so
 * a data page, rarely zero at its start, is done after the first round.
 * Any other buffer: test the first 64 bytes with unaligned loads and return
 * at once if they are not zero, then the rounds, then OR the last few
 * aligned vectors with an unaligned load of the final vector, which may
 * overlap bytes already seen and stands in for the last aligned one.  Every
 * load lies inside [p, p + len), so a buffer that ends at a guard page is
 * safe.  The variant is chosen on the first call and kept in a function
 * pointer.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "zero.h"

/* The head every vector variant tests first; shorter buffers use words. */
#define ZERO_HEAD	64

bool buffer_is_zero_words(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t w;

	for (; len >= sizeof(w); b += sizeof(w), len -= sizeof(w)) {
		memcpy(&w, b, sizeof(w));
		if (w)
			return false;
	}
	for (; len; b++, len--)
		if (*b)
			return false;
	return true;
}

/*
 * Start the next page on its way from DRAM: callers scan pages in address
 * order, and the hardware prefetchers stop at every 4 KiB boundary, so each
 * page would otherwise begin with a run of full-latency misses.  A
 * prefetch never faults, so reading past the buffer is safe; when the next
 * page is not scanned, ZERO_PREFETCH bytes of bandwidth are wasted.
 */
#define ZERO_PREFETCH	512

static inline void zero_prefetch_next(const void *end)
{
	size_t off;

	for (off = 0; off < ZERO_PREFETCH; off += 64)
		_mm_prefetch((const char *)end + off, _MM_HINT_T0);
}

/* The first aligned vector at or below @p + ZERO_HEAD: past the head, at most re-reading it. */
static inline const void *zero_body(const void *p, size_t align)
{
	return (const void *)(((uintptr_t)p + ZERO_HEAD) & ~(uintptr_t)(align - 1));
}

static inline size_t zero_left(const void *from, const void *end)
{
	return (const char *)end - (const char *)from;
}

__attribute__((target("avx512f")))
static bool zero_avx512(const void *p, size_t len)
{
	const void *end = (const char *)p + len;
	const __m512i *v;
	__m512i t;
	size_t n;

	if (len < ZERO_HEAD)
		return buffer_is_zero_words(p, len);
	zero_prefetch_next(end);
	/* A page: whole aligned rounds, no head and no tail to handle. */
	if (!(((uintptr_t)p | len) & (4 * sizeof(*v) - 1))) {
		for (v = p; v != end; v += 4) {
			t = _mm512_or_si512(_mm512_or_si512(v[0], v[1]), _mm512_or_si512(v[2], v[3]));
			if (_mm512_test_epi64_mask(t, t))
				return false;
		}
		return true;
	}
	t = _mm512_loadu_si512(p);
	if (_mm512_test_epi64_mask(t, t))
		return false;
	v = zero_body(p, sizeof(*v));
	for (n = zero_left(v, end); n >= 4 * sizeof(*v); n -= 4 * sizeof(*v), v += 4) {
		t = _mm512_or_si512(_mm512_or_si512(v[0], v[1]), _mm512_or_si512(v[2], v[3]));
		if (_mm512_test_epi64_mask(t, t))
			return false;
	}
	t = _mm512_loadu_si512((const char *)end - sizeof(*v));
	for (; n > sizeof(*v); n -= sizeof(*v), v++)
		t = _mm512_or_si512(t, *v);
	return !_mm512_test_epi64_mask(t, t);
}

__attribute__((target("avx2")))
static bool zero_avx2(const void *p, size_t len)
{
	const void *end = (const char *)p + len;
	const __m256i *v;
	__m256i t;
	size_t n;

	if (len < ZERO_HEAD)
		return buffer_is_zero_words(p, len);
	zero_prefetch_next(end);
	if (!(((uintptr_t)p | len) & (4 * sizeof(*v) - 1))) {
		for (v = p; v != end; v += 4) {
			t = _mm256_or_si256(_mm256_or_si256(v[0], v[1]), _mm256_or_si256(v[2], v[3]));
			if (!_mm256_testz_si256(t, t))
				return false;
		}
		return true;
	}
	t = _mm256_or_si256(_mm256_loadu_si256(p), _mm256_loadu_si256((const __m256i *)p + 1));
	if (!_mm256_testz_si256(t, t))
		return false;
	v = zero_body(p, sizeof(*v));
	for (n = zero_left(v, end); n >= 4 * sizeof(*v); n -= 4 * sizeof(*v), v += 4) {
		t = _mm256_or_si256(_mm256_or_si256(v[0], v[1]), _mm256_or_si256(v[2], v[3]));
		if (!_mm256_testz_si256(t, t))
			return false;
	}
	t = _mm256_loadu_si256((const __m256i *)end - 1);
	for (; n > sizeof(*v); n -= sizeof(*v), v++)
		t = _mm256_or_si256(t, *v);
	return _mm256_testz_si256(t, t);
}

/* SSE2 has no ptest: compare with zero and check all 16 byte lanes matched. */
static inline bool zero_sse2_test(__m128i t)
{
	return _mm_movemask_epi8(_mm_cmpeq_epi8(t, _mm_setzero_si128())) == 0xffff;
}

static bool zero_sse2(const void *p, size_t len)
{
	const void *end = (const char *)p + len;
	const __m128i *v = p;
	__m128i t;
	size_t n;

	if (len < ZERO_HEAD)
		return buffer_is_zero_words(p, len);
	zero_prefetch_next(end);
	if (!(((uintptr_t)p | len) & (4 * sizeof(*v) - 1))) {
		for (; v != end; v += 4) {
			t = _mm_or_si128(_mm_or_si128(v[0], v[1]), _mm_or_si128(v[2], v[3]));
			if (!zero_sse2_test(t))
				return false;
		}
		return true;
	}
	t = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v), _mm_loadu_si128(v + 1)),
			 _mm_or_si128(_mm_loadu_si128(v + 2), _mm_loadu_si128(v + 3)));
	if (!zero_sse2_test(t))
		return false;
	v = zero_body(p, sizeof(*v));
	for (n = zero_left(v, end); n >= 4 * sizeof(*v); n -= 4 * sizeof(*v), v += 4) {
		t = _mm_or_si128(_mm_or_si128(v[0], v[1]), _mm_or_si128(v[2], v[3]));
		if (!zero_sse2_test(t))
			return false;
	}
	t = _mm_loadu_si128((const __m128i *)end - 1);
	for (; n > sizeof(*v); n -= sizeof(*v), v++)
		t = _mm_or_si128(t, *v);
	return zero_sse2_test(t);
}

/* __builtin_cpu_supports() wants a literal, hence one helper per feature. */
static bool zero_cpu_avx512(void)
{
	return __builtin_cpu_supports("avx512f");
}

static bool zero_cpu_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}

static bool zero_cpu_any(void)
{
	return true;
}

/* Best first; "words" is for tests only, x86-64 always has SSE2. */
static const struct zero_impl {
	const char *name;
	buffer_is_zero_fn fn;
	bool (*usable)(void);
} zero_impls[] = {
	{ "avx512", zero_avx512, zero_cpu_avx512 },
	{ "avx2", zero_avx2, zero_cpu_avx2 },
	{ "sse2", zero_sse2, zero_cpu_any },
	{ "words", buffer_is_zero_words, zero_cpu_any },
};

static const struct zero_impl *zero_best(void)
{
	const struct zero_impl *z = zero_impls;

	/* The CPU model may not be known yet if we run before constructors. */
	__builtin_cpu_init();
	while (!z->usable())
		z++;
	return z;
}

static bool zero_resolve(const void *p, size_t len);

static buffer_is_zero_fn zero_fn = zero_resolve;

/*
 * Threads racing through here all store the same pointer, and the
 * variants have no state to publish, so relaxed atomics are enough.
 */
static bool zero_resolve(const void *p, size_t len)
{
	buffer_is_zero_fn fn = zero_best()->fn;

	__atomic_store_n(&zero_fn, fn, __ATOMIC_RELAXED);
	return fn(p, len);
}

bool buffer_is_zero(const void *p, size_t len)
{
	return __atomic_load_n(&zero_fn, __ATOMIC_RELAXED)(p, len);
}

const char *buffer_is_zero_impl(void)
{
	return zero_best()->name;
}

buffer_is_zero_fn buffer_is_zero_lookup(const char *impl)
{
	size_t i;

	__builtin_cpu_init();
	for (i = 0; i < sizeof(zero_impls) / sizeof(zero_impls[0]); i++)
		if (!strcmp(zero_impls[i].name, impl))
			return zero_impls[i].usable() ? zero_impls[i].fn : NULL;
	return NULL;
}
