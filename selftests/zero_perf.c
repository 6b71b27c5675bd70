// SPDX-License-Identifier: GPL-2.0-only
/*
 * Zero-page and checksum benchmark.  Over a 1 GiB buffer laid out three
 * ways (every page zero; every page zero but its last byte, the worst case
 * for an early exit; a random half of the pages zero and the rest random
 * data), the GB/s at which buffer_is_zero() classifies it one 4 KiB page
 * per call, for the dispatched and every variant this CPU runs, the word
 * loop and memcmp() against a zero page.  The baseline is a plain AVX2 scan
 * of the same buffer in one call, OR-ing every vector without an early exit
 * (goal: buffer_is_zero() at least 0.9x of it); every row carries its ratio
 * to it.  The same runs over a 256 KiB window read 4096 times show the
 * cost in cache, where the code rather than DRAM sets the pace.  Then
 * crc32c() per variant against zlib's crc32(), in one call over the buffer
 * and per 4 KiB record, from DRAM and from L2.  Times are the thread's CPU
 * time, the contenders take turns and each figure is the best of several
 * runs, so a busy machine disturbs the numbers less.  Every scanner's
 * count of zero pages is checked against the layout, and every CRC32C
 * variant must give the same CRC.
 *
 *   zero_perf [--quick] [--json FILE]
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <zlib.h>

#include "clock.h"
#include "csum.h"
#include "perf_util.h"
#include "zero.h"

#define PAGE		4096
#define BUF_SIZE	(1ULL << 30)
#define QUICK_SIZE	(128ULL << 20)
#define HOT_SIZE	(256ULL << 10)	/* fits any L2 this runs on */
#define MAX_ROWS	8

enum layout { LAYOUT_ZERO, LAYOUT_LAST_BYTE, LAYOUT_HALF, NR_LAYOUTS };

static const char *const layout_names[] = { "zero", "last-byte", "half-zero" };

struct bench {
	unsigned char *buf;
	size_t size;		/* bytes each measurement covers */
	unsigned int reps;	/* runs per figure, the best one counts */
	struct perf_json json;
};

static const unsigned char zero_page[PAGE];

static uint64_t rnd_state = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dULL;
}

/* Lays the buffer out; returns how many of its pages are zero. */
static uint64_t layout_fill(unsigned char *buf, size_t size, enum layout l)
{
	uint64_t zero = 0, i, w;

	memset(buf, 0, size);
	for (i = 0; i < size / PAGE; i++) {
		unsigned char *p = buf + i * PAGE;

		if (l == LAYOUT_LAST_BYTE) {
			p[PAGE - 1] = 1;
		} else if (l == LAYOUT_HALF && rnd() & 1) {
			for (w = 0; w < PAGE; w += sizeof(uint64_t)) {
				uint64_t v = rnd();

				memcpy(p + w, &v, sizeof(v));
			}
			p[0] |= 1;
		} else {
			zero++;
		}
	}
	return zero;
}

/* The baseline: every byte ORed together, four vectors at a time, no exit. */
__attribute__((target("avx2")))
static bool avx2_scan(const void *buf, size_t len)
{
	const __m256i *v = buf, *end = v + len / sizeof(*v);
	__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;

	for (; v < end; v += 4) {
		a = _mm256_or_si256(a, v[0]);
		b = _mm256_or_si256(b, v[1]);
		c = _mm256_or_si256(c, v[2]);
		d = _mm256_or_si256(d, v[3]);
	}
	a = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
	return _mm256_testz_si256(a, a);
}

static bool memcmp_zero(const void *p, size_t len)
{
	return !memcmp(p, zero_page, len);
}

struct scanner {
	const char *name;
	buffer_is_zero_fn fn;
	bool whole;		/* one call over the window, else one per page */
};

/* Zero pages (or zero windows, for a whole scan) seen in @size bytes. */
static uint64_t scan(const struct scanner *s, const unsigned char *buf, size_t window,
		     size_t size)
{
	uint64_t zero = 0, off, i;

	for (off = 0; off < size; off += window) {
		if (s->whole) {
			zero += s->fn(buf, window);
			continue;
		}
		for (i = 0; i < window; i += PAGE)
			zero += s->fn(buf + i, PAGE);
	}
	return zero;
}

/* Thread CPU time: other load on this small machine does not count. */
static uint64_t cpu_ns(void)
{
	return clock_now_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* @calls: "4K" for one call per 4 KiB, "whole" for one over the window. */
static void json_row(struct bench *b, const char *section, const char *impl,
		     const char *layout, const char *where, const char *calls, double gbps,
		     double ratio)
{
	perf_json_begin(&b->json);
	perf_json_str(&b->json, "section", section);
	perf_json_str(&b->json, "impl", impl);
	perf_json_str(&b->json, "layout", layout);
	perf_json_str(&b->json, "where", where);
	perf_json_str(&b->json, "calls", calls);
	perf_json_num(&b->json, "gbps", gbps);
	perf_json_num(&b->json, "ratio", ratio);
	perf_json_end(&b->json);
}

/*
 * One layout, in DRAM or in L2: the scanners take turns, @b->reps rounds,
 * so that a noisy moment hurts one run of each rather than all runs of one;
 * the best run of each counts.
 */
static int bench_zero_case(struct bench *b, const struct scanner *s, unsigned int nr,
			   enum layout l, bool hot, uint64_t zero_pages)
{
	size_t window = hot ? HOT_SIZE : b->size;
	const char *where = hot ? "L2" : "DRAM";
	double best[MAX_ROWS] = { 0 };
	unsigned int r, i;

	for (r = 0; r < b->reps; r++) {
		for (i = 0; i < nr; i++) {
			uint64_t want = s[i].whole ? (zero_pages == window / PAGE) : zero_pages;
			uint64_t t0 = cpu_ns(), zero = scan(&s[i], b->buf, window, b->size);
			double gbps = b->size / (double)(cpu_ns() - t0);

			want *= b->size / window;
			if (zero != want) {
				fprintf(stderr, "zero_perf: %s counted %llu zero, want %llu\n",
					s[i].name, (unsigned long long)zero,
					(unsigned long long)want);
				return -1;
			}
			if (gbps > best[i])
				best[i] = gbps;
		}
	}
	for (i = 0; i < nr; i++) {
		printf("%-10s %-6s %-16s %9.2f %8.2fx\n", layout_names[l], where, s[i].name,
		       best[i], best[i] / best[0]);
		json_row(b, "zero", s[i].name, layout_names[l], where,
			 s[i].whole ? "whole" : "4K", best[i], best[i] / best[0]);
	}
	fflush(stdout);
	return 0;
}

static int bench_zero(struct bench *b)
{
	static const char *const impls[] = { "avx512", "avx2", "sse2" };
	struct scanner s[MAX_ROWS] = {
		{ "avx2 scan", avx2_scan, true },
		{ "buffer_is_zero", buffer_is_zero, false },
	};
	unsigned int nr = 2, i, l;
	int ret = 0;

	if (!__builtin_cpu_supports("avx2")) {
		printf("no AVX2: the baseline cannot run\n");
		return 0;
	}
	for (i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
		s[nr] = (struct scanner){ impls[i], buffer_is_zero_lookup(impls[i]), false };
		if (s[nr].fn)
			nr++;
	}
	s[nr++] = (struct scanner){ "words", buffer_is_zero_words, false };
	s[nr++] = (struct scanner){ "memcmp", memcmp_zero, false };

	printf("buffer_is_zero() uses %s; GB/s of buffer classified, one call per 4 KiB page\n",
	       buffer_is_zero_impl());
	printf("(baseline: \"avx2 scan\", one call over the same bytes, no early exit;\n"
	       " goal: buffer_is_zero at least 0.9x of it)\n\n");
	printf("%-10s %-6s %-16s %9s %9s\n", "layout", "where", "scanner", "GB/s", "vs avx2");
	for (l = 0; !ret && l < NR_LAYOUTS; l++) {
		uint64_t zero_pages = layout_fill(b->buf, b->size, l), hot_pages = 0;

		for (i = 0; i < HOT_SIZE / PAGE; i++)
			hot_pages += buffer_is_zero_words(b->buf + i * PAGE, PAGE);
		ret = bench_zero_case(b, s, nr, l, false, zero_pages);
		if (!ret)
			ret = bench_zero_case(b, s, nr, l, true, hot_pages);
	}
	return ret;
}

struct crc_runner {
	const char *name;
	crc32c_fn fn;
};

static uint32_t zlib_crc32(uint32_t crc, const void *buf, size_t len)
{
	return crc32_z(crc, buf, len);
}

/* Checksums @size bytes in @chunk-byte calls, chained, going round @window. */
static uint32_t crc_run(struct bench *b, crc32c_fn fn, size_t chunk, size_t window)
{
	uint32_t crc = 0;
	size_t off;

	for (off = 0; off < b->size; off += chunk)
		crc = fn(crc, b->buf + off % window, chunk);
	return crc;
}

struct crc_mode {
	const char *name, *where;
	size_t chunk, window;	/* 0: the whole buffer */
};

/* As bench_zero_case(): the runners take turns, the best run counts. */
static int bench_crc_case(struct bench *b, const struct crc_runner *c, unsigned int nr,
			  const struct crc_mode *m, uint32_t *want)
{
	size_t chunk = m->chunk ? m->chunk : b->size;
	size_t window = m->window ? m->window : b->size;
	double best[MAX_ROWS] = { 0 };
	unsigned int r, i;

	for (r = 0; r < b->reps; r++) {
		for (i = 0; i < nr; i++) {
			uint64_t t0 = cpu_ns();
			uint32_t crc = crc_run(b, c[i].fn, chunk, window);
			double gbps = b->size / (double)(cpu_ns() - t0);

			/*
			 * The CRC32C variants agree, and over the whole buffer
			 * per-record chaining gives the one-call CRC.
			 */
			if (i == 1 && !*want)
				*want = crc;
			if (i && crc != *want) {
				fprintf(stderr, "zero_perf: %s gives %#x, %s %#x\n", c[i].name, crc,
					c[1].name, *want);
				return -1;
			}
			if (gbps > best[i])
				best[i] = gbps;
		}
	}
	for (i = 0; i < nr; i++) {
		printf("%-12s %-9s %-6s %9.2f %8.2fx\n", c[i].name, m->name, m->where, best[i],
		       best[i] / best[0]);
		json_row(b, "crc", c[i].name, "half-zero", m->where, m->chunk ? "4K" : "whole",
			 best[i], best[i] / best[0]);
	}
	fflush(stdout);
	return 0;
}

static int bench_crc(struct bench *b)
{
	static const char *const impls[] = { "sse4.2-3way", "sse4.2", "table" };
	static const struct crc_mode modes[] = {
		{ "1 call", "DRAM", 0, 0 },
		{ "4K calls", "DRAM", PAGE, 0 },
		{ "4K calls", "L2", PAGE, HOT_SIZE },
	};
	struct crc_runner c[MAX_ROWS] = { { "zlib crc32", zlib_crc32 } };
	uint32_t want_whole = 0, want_hot = 0;
	unsigned int nr = 1, i, m;
	int ret = 0;

	for (i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
		c[nr] = (struct crc_runner){ impls[i], crc32c_lookup(impls[i]) };
		if (c[nr].fn)
			nr++;
	}
	layout_fill(b->buf, b->size, LAYOUT_HALF);
	printf("\ncrc32c() uses %s; GB/s over the half-zero buffer\n", crc32c_impl());
	printf("(baseline: zlib %s crc32(), a different polynomial at the same job)\n\n",
	       zlibVersion());
	printf("%-12s %-9s %-6s %9s %9s\n", "crc", "mode", "where", "GB/s", "vs zlib");
	for (m = 0; !ret && m < sizeof(modes) / sizeof(modes[0]); m++)
		ret = bench_crc_case(b, c, nr, &modes[m],
				     modes[m].window ? &want_hot : &want_whole);
	return ret;
}

int main(int argc, char **argv)
{
	struct bench b = { .size = BUF_SIZE, .reps = 5 };
	int i, ret;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			b.size = QUICK_SIZE;
			b.reps = 2;
		}
	}
	if (perf_json_open(&b.json, argc, argv, "zero"))
		return 2;
	b.buf = mmap(NULL, b.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b.buf == MAP_FAILED) {
		perror("zero_perf: mmap");
		return 1;
	}
	printf("Zero-page scan and CRC32C, %zu MiB buffer, best of %u runs\n", b.size >> 20,
	       b.reps);
	ret = bench_zero(&b);
	if (!ret)
		ret = bench_crc(&b);
	perf_json_close(&b.json);
	munmap(b.buf, b.size);
	return ret ? 1 : 0;
}
