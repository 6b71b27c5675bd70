/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared by the *_perf benchmark programs: `--json FILE` handling and flat
 * records through the library's JSON writer (json.h), so every benchmark
 * prints a table for people and writes the same numbers for machines
 * ({"benchmark":NAME,"results":[{...},...]} on one line), and the median
 * and range of a set of rounds.
 */
#ifndef KVMMIG_PERF_UTIL_H
#define KVMMIG_PERF_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct perf_json {
	FILE *f;	/* NULL: no --json, every call does nothing */
	struct json_writer w;
};

/* Opens the file named after --json, if any; returns -1 on a bad argument. */
static inline int perf_json_open(struct perf_json *j, int argc, char **argv, const char *bench)
{
	int i;

	memset(j, 0, sizeof(*j));
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json"))
			continue;
		if (i + 1 >= argc) {
			fprintf(stderr, "%s: --json needs a file name\n", bench);
			return -1;
		}
		j->f = fopen(argv[i + 1], "w");
		if (!j->f) {
			perror(argv[i + 1]);
			return -1;
		}
		json_start(&j->w, j->f);
		json_object_begin(&j->w);
		json_key_str(&j->w, "benchmark", bench);
		json_key(&j->w, "results");
		json_array_begin(&j->w);
	}
	return 0;
}

static inline void perf_json_begin(struct perf_json *j)
{
	if (j->f)
		json_object_begin(&j->w);
}

static inline void perf_json_str(struct perf_json *j, const char *k, const char *v)
{
	if (j->f)
		json_key_str(&j->w, k, v);
}

static inline void perf_json_num(struct perf_json *j, const char *k, double v)
{
	if (j->f) {
		json_key(&j->w, k);
		json_double_sig(&j->w, v, 6);
	}
}

static inline void perf_json_end(struct perf_json *j)
{
	if (j->f)
		json_object_end(&j->w);
}

/* 0, or -1 if the file is not the whole JSON document (said). */
static inline int perf_json_close(struct perf_json *j)
{
	int ret;

	if (!j->f)
		return 0;
	json_array_end(&j->w);
	json_object_end(&j->w);
	ret = json_finish(&j->w);
	if (fclose(j->f) && !ret) {
		perror("--json");
		ret = -EIO;
	}
	return ret ? -1 : 0;
}

struct perf_range {
	double median, min, max;
};

static inline int perf_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median, least and greatest of @v[@n] (sorted in place); all -1 if n is 0. */
static inline struct perf_range perf_range(double *v, unsigned int n)
{
	struct perf_range r = { -1, -1, -1 };

	if (!n)
		return r;
	qsort(v, n, sizeof(*v), perf_cmp_double);
	r.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	r.min = v[0];
	r.max = v[n - 1];
	return r;
}

#define PERF_MAX_ROUNDS		64

/*
 * The same over rounds kept as records of @size bytes: the double at @off
 * of each record whose int at @ret_off (its result) is 0, of the first @n.
 */
static inline struct perf_range perf_field_range(const void *recs, unsigned int n, size_t size,
						 size_t off, size_t ret_off)
{
	double v[PERF_MAX_ROUNDS];
	const char *rec;
	unsigned int i, k = 0;

	for (i = 0; i < n && i < PERF_MAX_ROUNDS; i++) {
		rec = (const char *)recs + i * size;
		if (!*(const int *)(rec + ret_off))
			v[k++] = *(const double *)(rec + off);
	}
	return perf_range(v, k);
}

#endif /* KVMMIG_PERF_UTIL_H */
