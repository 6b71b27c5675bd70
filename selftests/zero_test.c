// SPDX-License-Identifier: GPL-2.0-only
/*
 * Correctness of buffer_is_zero() and crc32c(), run once for every variant
 * this CPU can execute and once through the run-time dispatch.  The zero
 * scan is held to the word loop over every length up to 1 KiB and every
 * multiple of 64 (and its neighbours) up to 64 KiB at 64 alignments, with a
 * single non-zero byte at every position of a 4 KiB page, and with buffers
 * that start or end at a PROT_NONE page and non-zero bytes just outside
 * them (no over-read).  The CRC is held to the RFC 3720 vectors and a
 * bit-at-a-time reference (every length up to 2 KiB, random ones around
 * the three-stream block sizes), must chain across any split, and its
 * variants must agree on random buffers of random lengths and alignments.
 * Last, threads race through the first calls of a fresh process.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "csum.h"
#include "kselftest_harness.h"
#include "zero.h"

#define PAGE		4096
#define ZERO_MAX_LEN	(64 << 10)
#define ZERO_DENSE_LEN	1024	/* every length up to here, then multiples of 64 */
#define CRC_MAX_LEN	(256 << 10)
#define CRC32C_POLY	0x82f63b78
#define NR_THREADS	8

/* xorshift64*: reproducible, so a failure can be replayed. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dULL;
}

static void rnd_fill(unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = rnd();
}

/* buffer_is_zero() variants: "avx512", "avx2", "sse2", "words", or NULL for the dispatch. */
FIXTURE(zero) {
	buffer_is_zero_fn fn;
	unsigned char *buf;	/* zeroed, slack on both sides of the test area */
	size_t size;
};

FIXTURE_VARIANT(zero) {
	const char *impl;
};

FIXTURE_VARIANT_ADD(zero, avx512) { "avx512" };
FIXTURE_VARIANT_ADD(zero, avx2) { "avx2" };
FIXTURE_VARIANT_ADD(zero, sse2) { "sse2" };
FIXTURE_VARIANT_ADD(zero, words) { "words" };
FIXTURE_VARIANT_ADD(zero, dispatched) { NULL };

FIXTURE_SETUP(zero)
{
	self->fn = variant->impl ? buffer_is_zero_lookup(variant->impl) : buffer_is_zero;
	self->size = ZERO_MAX_LEN + 2 * PAGE;
	self->buf = aligned_alloc(PAGE, self->size);
	ASSERT_NE(NULL, self->buf);
	memset(self->buf, 0, self->size);
}

FIXTURE_TEARDOWN(zero)
{
	free(self->buf);
}

/* The 6.1 harness runs the test even when setup skipped, so each test asks. */
#define ZERO_SKIP_UNSUPPORTED() do {						\
	if (!self->fn)								\
		SKIP(return, "this CPU cannot run %s", variant->impl);		\
} while (0)

/*
 * @p[0..len) is zero and the bytes either side are not: the scan must say
 * zero, must say non-zero after any of the first, last or one random byte
 * is set, and must agree with the word loop throughout.
 */
static void zero_check(struct __test_metadata *_metadata, buffer_is_zero_fn fn,
		       unsigned char *p, size_t len, size_t align)
{
	size_t pos[3] = { 0, len - 1, rnd() % (len ? len : 1) };
	unsigned int i;

	ASSERT_TRUE(fn(p, len)) TH_LOG("len %zu align %zu: zero buffer not zero", len, align);
	for (i = 0; len && i < 3; i++) {
		p[pos[i]] = i == 1 ? 0x80 : 1;
		ASSERT_FALSE(fn(p, len))
			TH_LOG("len %zu align %zu: byte %zu set, still zero", len, align, pos[i]);
		ASSERT_FALSE(buffer_is_zero_words(p, len));
		p[pos[i]] = 0;
	}
}

/* As zero_check(), with a non-zero byte also right after the buffer. */
static void zero_check_fenced(struct __test_metadata *_metadata, buffer_is_zero_fn fn,
			      unsigned char *p, size_t len, size_t align)
{
	p[len] = 0xff;
	zero_check(_metadata, fn, p, len, align);
	p[len] = 0;
}

TEST_F(zero, lengths_and_alignments)
{
	/* A cache-line-aligned start with a line of slack before it. */
	unsigned char *base = self->buf + 64;
	size_t align, len;

	ZERO_SKIP_UNSUPPORTED();
	for (align = 0; align < 64; align++) {
		unsigned char *p = base + align;

		p[-1] = 0xff;
		for (len = 0; len < ZERO_DENSE_LEN; len++)
			zero_check_fenced(_metadata, self->fn, p, len, align);
		for (len = ZERO_DENSE_LEN; len <= ZERO_MAX_LEN; len += 64) {
			zero_check_fenced(_metadata, self->fn, p, len - 1, align);
			zero_check_fenced(_metadata, self->fn, p, len, align);
			zero_check_fenced(_metadata, self->fn, p, len + 1, align);
		}
		p[-1] = 0;
	}
}

TEST_F(zero, every_byte_of_a_page)
{
	static const size_t aligns[] = { 0, 1, 8, 31, 32, 63 };
	unsigned int a, v;
	size_t pos;

	ZERO_SKIP_UNSUPPORTED();
	for (a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
		unsigned char *p = self->buf + PAGE + aligns[a];

		ASSERT_TRUE(self->fn(p, PAGE));
		for (pos = 0; pos < PAGE; pos++) {
			for (v = 0; v < 8; v++) {
				p[pos] = 1 << v;
				ASSERT_FALSE(self->fn(p, PAGE))
					TH_LOG("align %zu: byte %zu = %#x missed", aligns[a],
					       pos, p[pos]);
				p[pos] = 0;
			}
		}
	}
}

/*
 * Buffers that end exactly at a PROT_NONE page, or start right after one:
 * any read outside them faults and kills the test.
 */
TEST_F(zero, guard_pages)
{
	size_t pages = ZERO_MAX_LEN / PAGE + 1, area = pages * PAGE, len;
	unsigned char *map, *start, *end;

	ZERO_SKIP_UNSUPPORTED();
	map = mmap(NULL, area + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	start = map + PAGE;
	end = start + area;
	ASSERT_EQ(0, mprotect(start, area, PROT_READ | PROT_WRITE));
	for (len = 0; len <= area; len += len < 2 * PAGE ? 1 : 63) {
		ASSERT_TRUE(self->fn(end - len, len)) TH_LOG("len %zu at the end", len);
		ASSERT_TRUE(self->fn(start, len)) TH_LOG("len %zu at the start", len);
		if (!len)
			continue;
		end[-1] = 1;
		ASSERT_FALSE(self->fn(end - len, len)) TH_LOG("len %zu at the end", len);
		end[-1] = 0;
		start[0] = 1;
		ASSERT_FALSE(self->fn(start, len)) TH_LOG("len %zu at the start", len);
		start[0] = 0;
	}
	munmap(map, area + 2 * PAGE);
}

TEST_F(zero, random_against_words)
{
	unsigned int i, k, nr;

	ZERO_SKIP_UNSUPPORTED();
	for (i = 0; i < 20000; i++) {
		size_t len = rnd() % (i & 1 ? ZERO_MAX_LEN : 2 * PAGE);
		unsigned char *p = self->buf + PAGE + rnd() % PAGE;
		bool want;

		nr = rnd() % 4;
		for (k = 0; len && k < nr; k++)
			p[rnd() % len] = rnd() | 1;
		want = buffer_is_zero_words(p, len);
		ASSERT_EQ(want, self->fn(p, len)) TH_LOG("len %zu, %u bytes set", len, nr);
		ASSERT_EQ(!len || !nr, want);
		memset(p, 0, len);
	}
}

TEST(zero_dispatch)
{
	static const char *const best[] = { "avx512", "avx2", "sse2" };
	const char *impl = buffer_is_zero_impl();
	unsigned int i;

	ASSERT_NE(NULL, buffer_is_zero_lookup(impl));
	ASSERT_EQ(NULL, buffer_is_zero_lookup("mmx"));
	ASSERT_EQ(!!__builtin_cpu_supports("avx2"), !!buffer_is_zero_lookup("avx2"));
	ASSERT_EQ(!!__builtin_cpu_supports("avx512f"), !!buffer_is_zero_lookup("avx512"));
	/* The dispatch takes the first variant this CPU can run. */
	for (i = 0; !buffer_is_zero_lookup(best[i]); i++)
		;
	ASSERT_STREQ(best[i], impl);
	TH_LOG("buffer_is_zero uses %s, crc32c uses %s", impl, crc32c_impl());
}

/* Bit at a time, straight from the definition: the reference. */
static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	unsigned int k;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (CRC32C_POLY & -(crc & 1));
	}
	return ~crc;
}

/* crc32c() variants: "sse4.2-3way", "sse4.2", "table", or NULL for the dispatch. */
FIXTURE(crc) {
	crc32c_fn fn;
	unsigned char *buf;
};

FIXTURE_VARIANT(crc) {
	const char *impl;
};

FIXTURE_VARIANT_ADD(crc, sse42_3way) { "sse4.2-3way" };
FIXTURE_VARIANT_ADD(crc, sse42) { "sse4.2" };
FIXTURE_VARIANT_ADD(crc, table) { "table" };
FIXTURE_VARIANT_ADD(crc, dispatched) { NULL };

FIXTURE_SETUP(crc)
{
	self->fn = variant->impl ? crc32c_lookup(variant->impl) : crc32c;
	self->buf = malloc(CRC_MAX_LEN + 64);
	ASSERT_NE(NULL, self->buf);
	rnd_fill(self->buf, CRC_MAX_LEN + 64);
}

FIXTURE_TEARDOWN(crc)
{
	free(self->buf);
}

#define CRC_SKIP_UNSUPPORTED() do {						\
	if (!self->fn)								\
		SKIP(return, "this CPU cannot run %s", variant->impl);		\
} while (0)

TEST_F(crc, check_values)
{
	unsigned char v[32];
	unsigned int i;

	CRC_SKIP_UNSUPPORTED();
	ASSERT_EQ(0xe3069283, self->fn(0, "123456789", 9));
	memset(v, 0, sizeof(v));
	ASSERT_EQ(0U, self->fn(0, v, 0));
	ASSERT_EQ(0x12345678U, self->fn(0x12345678, v, 0));
	/* RFC 3720 appendix B.4. */
	ASSERT_EQ(0x8a9136aaU, self->fn(0, v, sizeof(v)));
	memset(v, 0xff, sizeof(v));
	ASSERT_EQ(0x62a8ab43U, self->fn(0, v, sizeof(v)));
	for (i = 0; i < sizeof(v); i++)
		v[i] = i;
	ASSERT_EQ(0x46dd794eU, self->fn(0, v, sizeof(v)));
	for (i = 0; i < sizeof(v); i++)
		v[i] = 31 - i;
	ASSERT_EQ(0x113fdb5cU, self->fn(0, v, sizeof(v)));
}

/* Lengths either side of every block boundary of the three-stream path. */
static size_t crc_len(unsigned int i)
{
	static const size_t blocks[] = { 3 * 256, 3 * 4096, 4096, 8192 };
	size_t b = blocks[rnd() % 4] * (1 + rnd() % 4);

	return i & 1 ? b + rnd() % 17 - 8 : rnd() % (64 << 10);
}

TEST_F(crc, against_bitwise)
{
	unsigned int i;

	CRC_SKIP_UNSUPPORTED();
	ASSERT_EQ(0xe3069283, crc32c_bitwise(0, (const unsigned char *)"123456789", 9));
	for (i = 0; i < 400; i++) {
		unsigned char *p = self->buf + rnd() % 64;
		size_t len = crc_len(i);
		uint32_t seed = i & 2 ? rnd() : 0;

		ASSERT_EQ(crc32c_bitwise(seed, p, len), self->fn(seed, p, len))
			TH_LOG("len %zu align %zu seed %#x", len, (size_t)(p - self->buf), seed);
	}
}

/* Short records take every path: bytes to align, tail rounds, last bytes. */
TEST_F(crc, every_short_length)
{
	size_t len, align;

	CRC_SKIP_UNSUPPORTED();
	for (len = 0; len <= 2048; len++) {
		align = len % 8;
		ASSERT_EQ(crc32c_bitwise(len, self->buf + align, len),
			  self->fn(len, self->buf + align, len)) TH_LOG("len %zu", len);
	}
}

TEST_F(crc, chaining)
{
	unsigned int i;

	CRC_SKIP_UNSUPPORTED();
	for (i = 0; i < 400; i++) {
		size_t len = crc_len(i), a = rnd() % (len + 1), b = a + rnd() % (len - a + 1);
		unsigned char *p = self->buf + rnd() % 64;
		uint32_t whole = self->fn(0, p, len), part;

		part = self->fn(self->fn(0, p, a), p + a, len - a);
		ASSERT_EQ(whole, part) TH_LOG("len %zu split at %zu", len, a);
		part = self->fn(self->fn(self->fn(0, p, a), p + a, b - a), p + b, len - b);
		ASSERT_EQ(whole, part) TH_LOG("len %zu split at %zu and %zu", len, a, b);
	}
}

TEST_F(crc, against_table)
{
	crc32c_fn table = crc32c_lookup("table");
	unsigned int i;

	CRC_SKIP_UNSUPPORTED();
	ASSERT_NE(NULL, table);
	for (i = 0; i < 300; i++) {
		size_t len = i & 1 ? crc_len(i) : rnd() % CRC_MAX_LEN;
		unsigned char *p = self->buf + rnd() % 64;
		uint32_t seed = rnd();

		ASSERT_EQ(table(seed, p, len), self->fn(seed, p, len)) TH_LOG("len %zu", len);
	}
}

TEST(crc_dispatch)
{
	static const char *const best[] = { "sse4.2-3way", "sse4.2", "table" };
	const char *impl = crc32c_impl();
	unsigned int i;

	ASSERT_NE(NULL, crc32c_lookup(impl));
	ASSERT_EQ(NULL, crc32c_lookup("crc32"));
	ASSERT_EQ(!!__builtin_cpu_supports("sse4.2"), !!crc32c_lookup("sse4.2"));
	for (i = 0; !crc32c_lookup(best[i]); i++)
		;
	ASSERT_STREQ(best[i], impl);
}

/* First calls race from several threads (each test is a fresh process). */
struct first_call {
	pthread_barrier_t *barrier;
	const unsigned char *data, *zeros;
	uint32_t crc;
	bool data_zero, zeros_zero;
};

static void *first_call_thread(void *arg)
{
	struct first_call *c = arg;

	pthread_barrier_wait(c->barrier);
	c->crc = crc32c(0, c->data, PAGE);
	c->data_zero = buffer_is_zero(c->data, PAGE);
	c->zeros_zero = buffer_is_zero(c->zeros, PAGE);
	return NULL;
}

TEST(first_call_from_threads)
{
	static unsigned char data[PAGE], zeros[PAGE];
	struct first_call calls[NR_THREADS];
	pthread_t threads[NR_THREADS];
	pthread_barrier_t barrier;
	unsigned int i;

	rnd_fill(data, sizeof(data));
	data[0] = 1;
	ASSERT_EQ(0, pthread_barrier_init(&barrier, NULL, NR_THREADS));
	for (i = 0; i < NR_THREADS; i++) {
		calls[i] = (struct first_call){ .barrier = &barrier, .data = data, .zeros = zeros };
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, first_call_thread, &calls[i]));
	}
	for (i = 0; i < NR_THREADS; i++) {
		ASSERT_EQ(0, pthread_join(threads[i], NULL));
		ASSERT_EQ(crc32c_bitwise(0, data, PAGE), calls[i].crc);
		ASSERT_FALSE(calls[i].data_zero);
		ASSERT_TRUE(calls[i].zeros_zero);
	}
	pthread_barrier_destroy(&barrier);
}

TEST_HARNESS_MAIN
