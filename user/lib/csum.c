// SPDX-License-Identifier: GPL-2.0-only
/*
 * crc32c(), the migration stream's record checksum.  The crc32 instruction
 * has a latency of three cycles but can start one per cycle, so buffers run
 * three independent streams over three adjacent blocks and merge them with
 * carry-less multiplies (the method of Intel's "Fast CRC Computation for
 * iSCSI Polynomial Using CRC32 Instruction"), leaving fewer than 24 bytes
 * to a single stream.  Without PCLMULQDQ the single stream does all of it,
 * without SSE4.2 a slice-by-8 table does.  The variant is chosen on the
 * first call and kept in a function pointer.
 *
 * Internally the CRC register is kept un-inverted ("raw"), in the bit
 * reflected order of the crc32 instruction: bit 31 - i holds the
 * coefficient of x^i.
 */
#include <endian.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "csum.h"

#define CRC32C_POLY	0x82f63b78	/* x^32 + ... + 1, reflected, x^32 implied */

/*
 * Bytes per stream in one three-stream round.  A round ends with a merge of
 * about 15 cycles that the next round overlaps, so short rounds cost
 * little; the long one is for big buffers, the short one for page-sized
 * records (4 KiB = five short rounds and one of 80 bytes a stream, see
 * crc32c_sse42_3way()).
 */
#define CRC32C_LONG	4096
#define CRC32C_SHORT	256
#define CRC32C_3WAY_MIN	96	/* bytes; shorter buffers take one stream */

/* Multipliers that shift a raw CRC over one, two and three blocks. */
struct crc32c_shift {
	uint64_t k1, k2, k3;
};

static struct {
	uint32_t table[8][256];
	struct crc32c_shift lng, shrt;
	struct crc32c_shift tail[CRC32C_SHORT / 8];	/* by block / 8 */
} crc32c_data;

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static inline uint64_t crc32c_load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* x^n mod P, one multiplication by x per step: for init only. */
static uint32_t crc32c_xpow(uint64_t n)
{
	uint32_t r = 0x80000000;	/* x^0 */

	while (n--)
		r = (r >> 1) ^ (r & 1 ? CRC32C_POLY : 0);
	return r;
}

/*
 * A 32 x 32 carry-less product lands one bit lower than the reflected
 * 64-bit value it stands for, i.e. multiplied by x, and crc32q of that
 * value multiplies by x^32 on the way to reducing it mod P: hence the 33.
 */
static void crc32c_shift_init(struct crc32c_shift *s, uint64_t block)
{
	s->k1 = crc32c_xpow(8 * block - 33);
	s->k2 = crc32c_xpow(2 * 8 * block - 33);
	s->k3 = crc32c_xpow(3 * 8 * block - 33);
}

static void crc32c_init(void)
{
	uint32_t (*t)[256] = crc32c_data.table;
	unsigned int i, k;

	for (i = 0; i < 256; i++) {
		uint32_t c = i;

		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? CRC32C_POLY : 0);
		t[0][i] = c;
	}
	for (k = 1; k < 8; k++)
		for (i = 0; i < 256; i++)
			t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
	crc32c_shift_init(&crc32c_data.lng, CRC32C_LONG);
	crc32c_shift_init(&crc32c_data.shrt, CRC32C_SHORT);
	for (i = 1; i < CRC32C_SHORT / 8; i++)
		crc32c_shift_init(&crc32c_data.tail[i], 8 * i);
}

static uint32_t crc32c_table(uint32_t crc, const void *buf, size_t len)
{
	const uint32_t (*t)[256] = (const uint32_t (*)[256])crc32c_data.table;
	const unsigned char *p = buf;

	crc = ~crc;
	for (; len && ((uintptr_t)p & 7); len--)
		crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v = crc32c_load64(p) ^ crc;

		crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^
		      t[5][(v >> 16) & 0xff] ^ t[4][(v >> 24) & 0xff] ^
		      t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
		      t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
	}
	for (; len; len--)
		crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* The low three bits of @len worth of bytes, in at most three steps. */
__attribute__((target("sse4.2")))
static inline uint32_t crc32c_hw_bytes(uint32_t crc, const unsigned char *p, size_t len)
{
	uint32_t v32;
	uint16_t v16;

	if (len & 4) {
		memcpy(&v32, p, sizeof(v32));
		crc = _mm_crc32_u32(crc, le32toh(v32));
		p += 4;
	}
	if (len & 2) {
		memcpy(&v16, p, sizeof(v16));
		crc = _mm_crc32_u16(crc, le16toh(v16));
		p += 2;
	}
	if (len & 1)
		crc = _mm_crc32_u8(crc, *p);
	return crc;
}

/* Bytes up to the next multiple of 8 in memory, so that the 8-byte loads are aligned. */
static inline size_t crc32c_head(const unsigned char *p, size_t len)
{
	size_t n = -(uintptr_t)p & 7;

	return n < len ? n : len;
}

/* One stream over @len bytes; raw CRC in and out. */
__attribute__((target("sse4.2")))
static inline uint32_t crc32c_hw_stream(uint32_t crc, const unsigned char *p, size_t len)
{
	size_t head = crc32c_head(p, len);
	uint64_t c;

	c = crc32c_hw_bytes(crc, p, head);
	p += head;
	len -= head;
	for (; len >= 8; p += 8, len -= 8)
		c = _mm_crc32_u64(c, crc32c_load64(p));
	return crc32c_hw_bytes(c, p, len);
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_hw_stream(~crc, buf, len);
}

/* @c * x^33 * @k mod P, see crc32c_shift_init(). */
__attribute__((target("sse4.2,pclmul")))
static inline __m128i crc32c_clmul(uint64_t c, uint64_t k)
{
	return _mm_clmulepi64_si128(_mm_cvtsi64_si128(c), _mm_cvtsi64_si128(k), 0);
}

/*
 * One round over three adjacent blocks of @block bytes at @p; returns the
 * raw CRC after them given @acc, the raw CRC before them.  All three
 * streams start from zero, so @acc is only needed for the merge at the end
 * and the next round need not wait for this merge.
 */
__attribute__((target("sse4.2,pclmul"), always_inline))
static inline uint32_t crc32c_round(uint32_t acc, const unsigned char *p, size_t block,
				    const struct crc32c_shift *s)
{
	uint64_t c0 = 0, c1 = 0, c2 = 0;
	__m128i m;
	size_t i;

	for (i = 0; i < block; i += 8) {
		c0 = _mm_crc32_u64(c0, crc32c_load64(p + i));
		c1 = _mm_crc32_u64(c1, crc32c_load64(p + block + i));
		c2 = _mm_crc32_u64(c2, crc32c_load64(p + 2 * block + i));
	}
	m = _mm_xor_si128(crc32c_clmul(acc, s->k3), crc32c_clmul(c0, s->k2));
	m = _mm_xor_si128(m, crc32c_clmul(c1, s->k1));
	return c2 ^ _mm_crc32_u64(0, _mm_cvtsi128_si64(m));
}

__attribute__((target("sse4.2,pclmul")))
static uint32_t crc32c_sse42_3way(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t head;

	/* Below this a merge costs more than the three streams save. */
	if (len < CRC32C_3WAY_MIN)
		return ~crc32c_hw_stream(~crc, p, len);
	head = crc32c_head(p, len);
	crc = crc32c_hw_bytes(~crc, p, head);
	p += head;
	len -= head;
	for (; len >= 3 * CRC32C_LONG; p += 3 * CRC32C_LONG, len -= 3 * CRC32C_LONG)
		crc = crc32c_round(crc, p, CRC32C_LONG, &crc32c_data.lng);
	for (; len >= 3 * CRC32C_SHORT; p += 3 * CRC32C_SHORT, len -= 3 * CRC32C_SHORT)
		crc = crc32c_round(crc, p, CRC32C_SHORT, &crc32c_data.shrt);
	/* A last, shorter round leaves less than 24 bytes to the single stream. */
	if (len >= 3 * 8) {
		size_t block = len / (3 * 8) * 8;

		crc = crc32c_round(crc, p, block, &crc32c_data.tail[block / 8]);
		p += 3 * block;
		len -= 3 * block;
	}
	return ~crc32c_hw_stream(crc, p, len);
}

static bool crc32c_cpu_3way(void)
{
	return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
}

static bool crc32c_cpu_sse42(void)
{
	return __builtin_cpu_supports("sse4.2");
}

static bool crc32c_cpu_any(void)
{
	return true;
}

/* Best first. */
static const struct crc32c_impl {
	const char *name;
	crc32c_fn fn;
	bool (*usable)(void);
} crc32c_impls[] = {
	{ "sse4.2-3way", crc32c_sse42_3way, crc32c_cpu_3way },
	{ "sse4.2", crc32c_sse42, crc32c_cpu_sse42 },
	{ "table", crc32c_table, crc32c_cpu_any },
};

static const struct crc32c_impl *crc32c_best_impl(void)
{
	const struct crc32c_impl *c = crc32c_impls;

	/* The CPU model may not be known yet if we run before constructors. */
	__builtin_cpu_init();
	while (!c->usable())
		c++;
	return c;
}

static uint32_t crc32c_resolve(uint32_t crc, const void *buf, size_t len);

static crc32c_fn crc32c_fn_ptr = crc32c_resolve;

static uint32_t crc32c_resolve(uint32_t crc, const void *buf, size_t len)
{
	crc32c_fn fn = crc32c_best_impl()->fn;

	pthread_once(&crc32c_once, crc32c_init);
	/* Pairs with the acquire in crc32c(): the tables are filled in. */
	__atomic_store_n(&crc32c_fn_ptr, fn, __ATOMIC_RELEASE);
	return fn(crc, buf, len);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	return __atomic_load_n(&crc32c_fn_ptr, __ATOMIC_ACQUIRE)(crc, buf, len);
}

const char *crc32c_impl(void)
{
	return crc32c_best_impl()->name;
}

crc32c_fn crc32c_lookup(const char *impl)
{
	size_t i;

	pthread_once(&crc32c_once, crc32c_init);
	__builtin_cpu_init();
	for (i = 0; i < sizeof(crc32c_impls) / sizeof(crc32c_impls[0]); i++)
		if (!strcmp(crc32c_impls[i].name, impl))
			return crc32c_impls[i].usable() ? crc32c_impls[i].fn : NULL;
	return NULL;
}
