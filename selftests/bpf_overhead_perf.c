// SPDX-License-Identifier: GPL-2.0-only
/*
 * What the dirtyrate BPF programs cost a busy guest: guest dirtying
 * throughput (writes per second, from the guest's own counters) with and
 * without the programs attached.  One VM per dirty backend runs the `seq`
 * workload (one write per page, as fast as it goes) under dirty tracking
 * with the reaper a migration uses; windows without and with the programs
 * alternate on the same running guest, so the baseline is measured in the
 * same run.  Each round's ratio is with/without; the median over the
 * rounds is reported, which other load on the machine disturbs least.
 * Goal: at most 5% loss.
 *
 *   bpf_overhead_perf [--quick] [--seconds S] [--rounds N] [--json FILE]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf_rates.h"
#include "dirty.h"
#include "log.h"
#include "perf_util.h"
#include "test_util.h"

#define NR_VCPUS	2
#define WSS_PAGES	4096		/* 16 MiB per vCPU */
#define GOAL_LOSS_PCT	5.0

#define MAX_ROUNDS	32

struct overhead {
	double base_wps, bpf_wps;	/* guest writes per second, means */
	double ratio, ratio_min, ratio_max;	/* median, range of per-round ratios */
	double bpf_events_ps;		/* dirty events the programs handled */
	double bpf_pages_ps;		/* ... counted as pages */
	unsigned int rounds;
	char sources[128];		/* what was attached */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void note_sources(struct bpf_rates *br, char *buf, size_t len)
{
	const struct bpf_rates_source_info *s;
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < NR_BPF_RATES_SOURCES && n < len; i++) {
		s = bpf_rates_source(br, i);
		if (s->attached)
			n += snprintf(buf + n, len - n, "%s%s", n ? " " : "", s->name);
	}
}

static uint64_t guest_writes(struct vm *vm)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		n += vm->vcpus[i].area->loops;
	return n;
}

/* Guest writes per second over one window; collects as a migration would. */
static int window(struct vm *vm, struct dirty_source *ds, struct dirty_set *set,
		  double seconds, double *wps)
{
	uint64_t t0, w0, t1;
	int ret;

	t0 = now_ns();
	w0 = guest_writes(vm);
	do {
		usleep(100000);
		dirty_set_clear(set);
		ret = dirty_source_collect(ds, set);
		if (ret < 0)
			return ret;
		if (vm_failure(vm))
			return -EIO;
	} while (now_ns() - t0 < seconds * 1e9);
	t1 = now_ns();
	*wps = (guest_writes(vm) - w0) / ((t1 - t0) / 1e9);
	return 0;
}

static uint64_t bpf_totals(struct bpf_rates *br, uint64_t *pages)
{
	uint64_t events = 0;
	size_t i;

	*pages = 0;
	bpf_rates_update(br);
	for (i = 0; i < bpf_rates_count(br); i++) {
		events += bpf_rates_get(br, i)->dirty_events;
		*pages += bpf_rates_get(br, i)->dirty_pages;
	}
	return events;
}

static int overhead_run(enum dirty_backend backend, double seconds, unsigned int rounds,
			struct overhead *o)
{
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = 2ULL * NR_VCPUS * WSS_PAGES * GUEST_PAGE_SIZE,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_SEQ,
		.guest.wss_pages = WSS_PAGES,
	};
	struct bpf_rates_opts bopts = { .pid = getpid() };
	struct dirty_options opts = { .backend = backend };
	struct dirty_source *ds = NULL;
	struct bpf_rates *br = NULL;
	uint64_t ev, pg, t0;
	struct dirty_set set = { 0 };
	struct vm *vm = NULL;
	double wps, base_wps, base = 0, with = 0, events = 0, pages = 0, secs;
	double ratios[MAX_ROUNDS];
	unsigned int r;
	int ret;

	memset(o, 0, sizeof(*o));
	ret = dirty_prepare_config(backend, &cfg);
	if (ret < 0)
		return ret;
	ret = vm_create(&cfg, &vm);
	if (!ret)
		ret = dirty_source_open(vm->kv, &opts, &ds);
	if (!ret)
		ret = dirty_set_alloc(vm->kv, &set);
	if (!ret)
		ret = vm_start(vm);
	/* Warm up: first touches of guest memory are not the steady state. */
	if (!ret)
		ret = window(vm, ds, &set, seconds / 2, &wps);
	for (r = 0; !ret && r < rounds; r++) {
		ret = window(vm, ds, &set, seconds, &wps);
		if (ret)
			break;
		base += wps;
		base_wps = wps;
		ret = bpf_rates_open(&bopts, &br);
		if (ret)
			break;
		note_sources(br, o->sources, sizeof(o->sources));
		/* Let the attach settle (the loader's probes are not measured). */
		usleep(200000);
		bpf_totals(br, &pg);
		t0 = now_ns();
		ret = window(vm, ds, &set, seconds, &wps);
		ev = bpf_totals(br, &pg);
		secs = (now_ns() - t0) / 1e9;
		bpf_rates_close(br);
		br = NULL;
		with += wps;
		ratios[r] = base_wps > 0 ? wps / base_wps : 0;
		events += ev / secs;
		pages += pg / secs;
	}
	if (!ret) {
		o->rounds = rounds;
		o->base_wps = base / rounds;
		o->bpf_wps = with / rounds;
		o->bpf_events_ps = events / rounds;
		o->bpf_pages_ps = pages / rounds;
		qsort(ratios, rounds, sizeof(ratios[0]), cmp_double);
		o->ratio_min = ratios[0];
		o->ratio_max = ratios[rounds - 1];
		o->ratio = rounds % 2 ? ratios[rounds / 2] :
			   (ratios[rounds / 2 - 1] + ratios[rounds / 2]) / 2;
	}
	bpf_rates_close(br);
	if (vm)
		vm_stop(vm);
	dirty_source_close(ds);
	dirty_set_free(&set);
	vm_destroy(vm);
	return ret;
}

int main(int argc, char **argv)
{
	static const enum dirty_backend backends[] = { DIRTY_RING, DIRTY_BITMAP };
	unsigned int rounds = 5, b;
	double seconds = 2, loss;
	struct perf_json json;
	int i, ret;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			rounds = 3;
			seconds = 1;
		} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
			if (rounds < 1 || rounds > MAX_ROUNDS)
				rounds = 5;
		} else if (!strcmp(argv[i], "--json")) {
			i++;
		} else {
			fprintf(stderr, "usage: bpf_overhead_perf [--quick] [--seconds S] [--rounds N] [--json FILE]\n");
			return 2;
		}
	}
	if (seconds <= 0)
		seconds = 2;
	if (perf_json_open(&json, argc, argv, "bpf_overhead"))
		return 2;
	printf("Guest dirtying throughput with and without the dirtyrate BPF programs attached\n"
	       "(%u vCPUs, seq workload over %u MiB per vCPU, dirty tracking with the reaper;\n"
	       " %u rounds of %.1f s without then %.1f s with, on the same running guest)\n\n",
	       NR_VCPUS, WSS_PAGES * 4096 >> 20, rounds, seconds, seconds);
	printf("%-8s %13s %13s %7s %15s %7s %13s %13s %6s\n", "backend", "baseline w/s",
	       "with BPF w/s", "ratio", "(range)", "loss", "BPF events/s", "BPF pages/s", "goal");
	for (b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		const char *name = dirty_backend_name(backends[b]);
		struct overhead o;

		ret = overhead_run(backends[b], seconds, rounds, &o);
		if (ret) {
			printf("%-8s failed: %s (%s)\n", name, strerror(-ret), kvmmig_last_error());
			perf_json_close(&json);
			return 1;
		}
		loss = 100.0 * (1 - o.ratio);
		printf("%-8s %13.0f %13.0f %7.3f (%5.3f-%5.3f) %6.1f%% %13.0f %13.0f %6s\n", name,
		       o.base_wps, o.bpf_wps, o.ratio, o.ratio_min, o.ratio_max, loss,
		       o.bpf_events_ps, o.bpf_pages_ps, loss <= GOAL_LOSS_PCT ? "met" : "MISSED");
		printf("%-8s   programs attached: %s\n", "", o.sources);
		fflush(stdout);
		perf_json_begin(&json);
		perf_json_str(&json, "backend", name);
		perf_json_num(&json, "vcpus", NR_VCPUS);
		perf_json_num(&json, "rounds", o.rounds);
		perf_json_num(&json, "seconds_per_window", seconds);
		perf_json_num(&json, "baseline_writes_per_sec", o.base_wps);
		perf_json_num(&json, "bpf_writes_per_sec", o.bpf_wps);
		perf_json_num(&json, "ratio_median", o.ratio);
		perf_json_num(&json, "ratio_min", o.ratio_min);
		perf_json_num(&json, "ratio_max", o.ratio_max);
		perf_json_num(&json, "loss_pct", loss);
		perf_json_num(&json, "bpf_events_per_sec", o.bpf_events_ps);
		perf_json_num(&json, "bpf_pages_per_sec", o.bpf_pages_ps);
		perf_json_num(&json, "goal_loss_pct", GOAL_LOSS_PCT);
		perf_json_end(&json);
	}
	return perf_json_close(&json) ? 1 : 0;
}
