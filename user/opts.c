// SPDX-License-Identifier: GPL-2.0-only
/*
 * Option parsing shared by the kvmmig subcommands (see opts.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "opts.h"

void opt_bad(const char *opt, const char *arg, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvmmig: %s '%s': ", opt, arg);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Digits only, decimal or 0x hex: strtoull() alone would take " 5", "+5"
 * and "-5" (as 2^64 - 5) and read "010" as octal.
 */
static int parse_digits(const char *arg, uint64_t *v, char **end)
{
	int base = arg[0] == '0' && (arg[1] == 'x' || arg[1] == 'X') ? 16 : 10;

	if (!isdigit((unsigned char)arg[0]))
		return -EINVAL;
	errno = 0;
	*v = strtoull(arg, end, base);
	if (errno)
		return -errno;
	return *end == arg + (base == 16 ? 1 : 0) ? -EINVAL : 0;
}

int parse_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	char *end;

	if (parse_digits(arg, &v, &end) || *end || v < min || v > max) {
		opt_bad(opt, arg, "expected a whole number from %llu to %llu",
			(unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int size_value(const char *arg, uint64_t *out)
{
	static const char units[] = "KMGTP";
	const char *u = NULL;
	uint64_t v;
	char *end;
	int shift, ret;

	ret = parse_digits(arg, &v, &end);
	if (ret)
		return ret;
	if (*end) {
		/* Not strchr(units, c) alone: it finds the terminator for c = 0. */
		if (isalpha((unsigned char)*end))
			u = strchr(units, toupper((unsigned char)*end));
		if (!u || (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B")))
			return -EINVAL;
		shift = 10 * (u - units + 1);
		if (v > (~0ULL >> shift))
			return -ERANGE;
		v <<= shift;
	}
	*out = v;
	return 0;
}

/* @v in the largest unit that divides it: "1M", "24093M", "4097". */
void size_str(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "KMGTP";
	int i;

	for (i = 4; i >= 0; i--) {
		if (v && !(v & ((1ULL << (10 * (i + 1))) - 1))) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(v >> (10 * (i + 1))),
				 units[i]);
			return;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)v);
}

int parse_size(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	char lo[32], hi[32];
	uint64_t v = 0;

	if (!size_value(arg, &v) && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	size_str(lo, sizeof(lo), min);
	size_str(hi, sizeof(hi), max);
	if (max == ~0ULL)
		opt_bad(opt, arg, "expected a size of at least %s bytes, such as 512M or 4G", lo);
	else
		opt_bad(opt, arg, "expected a size from %s to %s bytes, such as 512M or 4G", lo, hi);
	return -1;
}

/* At least 1M, a whole number of pages, no more than this host has. */
static int parse_ram(const char *arg, uint64_t *out)
{
	uint64_t v, host = vm_host_ram_bytes() & ~(VM_MIN_RAM - 1);
	int ret = size_value(arg, &v);

	if (!ret && host && v > host) {
		opt_bad("--ram", arg, "more than this host has (%lluM of RAM and swap): expected a size from 1M to %lluM",
			(unsigned long long)(host >> 20), (unsigned long long)(host >> 20));
		return -1;
	}
	if (ret || v < VM_MIN_RAM || v % GUEST_PAGE_SIZE) {
		opt_bad("--ram", arg, "expected a size from 1M to %lluM (this host's RAM and swap) in whole 4K pages, such as 512M or 4G",
			(unsigned long long)(host >> 20));
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

int parse_backing(const char *arg, enum vm_backing *b)
{
	if (!strcmp(arg, "anon"))
		*b = VM_BACKING_ANON;
	else if (!strcmp(arg, "memfd"))
		*b = VM_BACKING_MEMFD;
	else if (!strcmp(arg, "hugetlb"))
		*b = VM_BACKING_HUGETLB;
	else if (!strcmp(arg, "thp"))
		*b = VM_BACKING_THP;
	else {
		opt_bad("--backing", arg, "unknown backing; expected anon, memfd, hugetlb or thp");
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
		if (parse_uint("--vcpus", arg, 1, VM_MAX_VCPUS, &v))
			return -1;
		g->cfg.nr_vcpus = v;
		return 1;
	case 'm':
		return parse_ram(arg, &g->cfg.ram_bytes) ? -1 : 1;
	case 'S':
		if (parse_uint("--slots", arg, 1, VM_MAX_SLOTS - 1, &v))
			return -1;
		g->cfg.nr_slots = v;
		return 1;
	case 'w':
		w = workload_parse(arg);
		if (w < 0 || w == WORKLOAD_ASSERT) {
			opt_bad("--workload", arg,
				"unknown workload; expected incr, random, rate, compute, seq, rand or idle");
			return -1;
		}
		g->cfg.guest.workload = w;
		return 1;
	case 'B':
		return parse_backing(arg, &g->cfg.backing) ? -1 : 1;
	case 'd':
		w = dirty_backend_parse(arg);
		if (w < 0) {
			opt_bad("--dirty", arg,
				"unknown dirty backend; expected auto, bitmap, bitmap-manual, ring or module");
			return -1;
		}
		g->backend = w;
		return 1;
	case 'R':
		if (parse_uint("--ring-entries", arg, 256, 1 << 20, &v))
			return -1;
		if (v & (v - 1)) {
			opt_bad("--ring-entries", arg, "expected a power of two from 256 to %u",
				1 << 20);
			return -1;
		}
		g->cfg.ring_entries = v;
		return 1;
	case 'p':
		if (parse_uint("--pages-per-sec", arg, 1, 100000000, &v))
			return -1;
		g->cfg.guest.pages_per_sec = v;
		return 1;
	case 'W':
		/* Its upper bound, the guest's RAM, is checked in guest_opts_check(). */
		if (parse_size("--wss", arg, GUEST_PAGE_SIZE, ~0ULL, &v))
			return -1;
		g->wss_arg = arg;
		g->cfg.guest.wss_pages = v / GUEST_PAGE_SIZE;
		return 1;
	case 'K':
		if (parse_uint("--compute-vcpus", arg, 0, ~0ULL, &v))
			return -1;
		g->mask_arg = arg;
		g->cfg.guest.compute_mask = v;
		return 1;
	}
	return 0;
}

int guest_opts_check(const struct guest_opts *g)
{
	const struct vm_config *cfg = &g->cfg;
	char ram[32];

	if (g->wss_arg && cfg->guest.wss_pages > cfg->ram_bytes / GUEST_PAGE_SIZE) {
		size_str(ram, sizeof(ram), cfg->ram_bytes);
		opt_bad("--wss", g->wss_arg, "expected a size from 4K to the guest's RAM (--ram %s)",
			ram);
		return -1;
	}
	if (g->mask_arg && cfg->guest.compute_mask >> cfg->nr_vcpus) {
		opt_bad("--compute-vcpus", g->mask_arg,
			"expected a mask of the guest's vCPUs (--vcpus %u): from 0 to %#llx",
			cfg->nr_vcpus, (unsigned long long)((1ULL << cfg->nr_vcpus) - 1));
		return -1;
	}
	return 0;
}

volatile sig_atomic_t cmd_cancel_flag;

static void cmd_on_cancel_signal(int sig)
{
	kvmmig_cancel_set(&cmd_cancel_flag, sig);
}

void cmd_catch_cancel_signals(void)
{
	signal(SIGINT, cmd_on_cancel_signal);
	signal(SIGTERM, cmd_on_cancel_signal);
}
