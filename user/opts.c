// SPDX-License-Identifier: GPL-2.0-only
/*
 * Option parsing shared by the kvmmig subcommands (see opts.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

int parse_size(const char *opt, const char *arg, uint64_t *out)
{
	static const char units[] = "KMGTP";
	char *end;
	unsigned long long v;
	const char *u;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || end == arg)
		goto bad;
	if (*end) {
		u = strchr(units, *end & ~0x20);
		if (!u || (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B")))
			goto bad;
		if (v > (~0ULL >> (10 * (u - units + 1))))
			goto bad;
		v <<= 10 * (u - units + 1);
	}
	*out = v;
	return 0;
bad:
	fprintf(stderr, "kvmmig: %s '%s': expected a size such as 4096, 512M or 4G\n", opt, arg);
	return -1;
}

int parse_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
		fprintf(stderr, "kvmmig: %s '%s': expected a whole number from %llu to %llu\n",
			opt, arg, (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

void guest_opts_init(struct guest_opts *g)
{
	memset(g, 0, sizeof(*g));
	g->cfg.nr_vcpus = 2;
	g->cfg.ram_bytes = 1ULL << 30;
	g->cfg.nr_slots = 1;
	g->cfg.guest.workload = WORKLOAD_INCR;
	g->cfg.guest.pages_per_sec = 10000;
	g->backend = DIRTY_AUTO;
}

static int parse_backing(const char *arg, enum vm_backing *b)
{
	if (!strcmp(arg, "anon"))
		*b = VM_BACKING_ANON;
	else if (!strcmp(arg, "memfd"))
		*b = VM_BACKING_MEMFD;
	else if (!strcmp(arg, "hugetlb"))
		*b = VM_BACKING_HUGETLB;
	else {
		fprintf(stderr, "kvmmig: unknown --backing '%s'; expected anon, memfd or hugetlb\n",
			arg);
		return -1;
	}
	return 0;
}

int guest_opts_parse(struct guest_opts *g, int c, const char *arg)
{
	uint64_t v;
	int w;

	switch (c) {
	case 'c':
		/* Range checked by vm_create(), which says what it expects. */
		if (parse_uint("--vcpus", arg, 0, 1 << 20, &v))
			return -1;
		g->cfg.nr_vcpus = v;
		return 1;
	case 'm':
		return parse_size("--ram", arg, &g->cfg.ram_bytes) ? -1 : 1;
	case 'S':
		if (parse_uint("--slots", arg, 1, VM_MAX_SLOTS - 1, &v))
			return -1;
		g->cfg.nr_slots = v;
		return 1;
	case 'w':
		w = workload_parse(arg);
		if (w < 0 || w == WORKLOAD_ASSERT) {
			fprintf(stderr, "kvmmig: unknown workload '%s'; expected incr, random, rate, compute, seq, rand or idle\n",
				arg);
			return -1;
		}
		g->cfg.guest.workload = w;
		return 1;
	case 'B':
		return parse_backing(arg, &g->cfg.backing) ? -1 : 1;
	case 'd':
		w = dirty_backend_parse(arg);
		if (w < 0) {
			fprintf(stderr, "kvmmig: unknown dirty backend '%s'; expected auto, bitmap, bitmap-manual, ring or module\n",
				arg);
			return -1;
		}
		g->backend = w;
		return 1;
	case 'R':
		if (parse_uint("--ring-entries", arg, 256, 1 << 20, &v))
			return -1;
		g->cfg.ring_entries = v;
		return 1;
	case 'p':
		if (parse_uint("--pages-per-sec", arg, 1, 100000000, &v))
			return -1;
		g->cfg.guest.pages_per_sec = v;
		return 1;
	case 'W':
		if (parse_size("--wss", arg, &v))
			return -1;
		g->cfg.guest.wss_pages = v / GUEST_PAGE_SIZE;
		return 1;
	case 'K':
		if (parse_uint("--compute-vcpus", arg, 0, ~0ULL, &v))
			return -1;
		g->cfg.guest.compute_mask = v;
		return 1;
	}
	return 0;
}
