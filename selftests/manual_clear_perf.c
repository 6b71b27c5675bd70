// SPDX-License-Identifier: GPL-2.0-only
/*
 * bitmap-manual benchmark: what re-protecting a page just before sending it
 * saves over re-protecting it at each sync (get-and-clear, the previous
 * behaviour).  A 1-vCPU guest rewrites a hot set at a steady rate (the rate
 * workload over --wss) while it migrates over a capped loopback link; a
 * page rewritten between the sync that found it and its sending is sent
 * once when cleared late, twice when cleared at the sync.  Both ways run in
 * the same process, alternating round by round; the table gives medians of
 * pages sent again after the first pass (with their range), passes, total
 * time and downtime, and the late clear's ratio of pages resent to
 * get-and-clear's (the JSON has every range).  The hot
 * set sits at the top of RAM, so the first pass reaches it last, as it
 * reaches most of a large guest's working set long after the sync.
 *
 *   manual_clear_perf [--quick] [--json FILE]
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mig_test_util.h"
#include "perf_util.h"
#include "test_util.h"

#define BENCH_RAM	(128ULL << 20)
#define BENCH_WSS_PAGES	4096		/* the hot set: 16 MiB at the top of RAM */
#define BENCH_PPS	4000		/* it is rewritten about once a second */
#define BENCH_LINK	(32ULL << 20)	/* bytes/s: the first pass takes 4 s */
#define MAX_ROUNDS	10

static bool quick;

static void quiet(int level, const char *msg)
{
}

struct round {
	int ret;
	double resent, passes, total_s, downtime_ms;
};

static struct vm *hot_set_guest(void)
{
	struct vm_config cfg = {
		.nr_vcpus = 1,
		.ram_bytes = BENCH_RAM,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_RATE,
		.guest.mem_gpa = GUEST_RAM_GPA + BENCH_RAM - BENCH_WSS_PAGES * GUEST_PAGE_SIZE,
		.guest.mem_pages = BENCH_WSS_PAGES,
		.guest.pages_per_sec = BENCH_PPS,
	};
	struct vm *vm;

	if (dirty_prepare_config(DIRTY_BITMAP_MANUAL, &cfg) < 0 || vm_create(&cfg, &vm))
		return NULL;
	/* Data everywhere: the first pass sends pages, not zero records. */
	memset(vm->slots[1].hva, 0x5a, BENCH_RAM);
	return vm;
}

static uint64_t vm_pages(const struct vm *vm)
{
	uint64_t n = 0;
	unsigned int s;

	for (s = 0; s < vm->nr_slots; s++)
		n += vm->slots[s].size / GUEST_PAGE_SIZE;
	return n;
}

static void migrate_round(bool clear_on_send, struct round *r)
{
	struct mig_source_opts o = { 0 };
	struct dest_child dest;
	struct mig_report rep;
	struct vm *vm = hot_set_guest();

	memset(r, 0, sizeof(*r));
	if (!vm) {
		r->ret = -ENOMEM;
		return;
	}
	mig_params_init(&o.params);
	o.params.dirty_backend = DIRTY_BITMAP_MANUAL;
	o.params.dirty_clear_on_send = clear_on_send;
	o.params.max_bandwidth = BENCH_LINK;
	o.params.downtime_limit_ms = 50;
	o.params.max_passes = 100;
	if (vm_start(vm) || dest_child_start(&dest, "127.0.0.1", NULL)) {
		r->ret = -ECHILD;
		vm_destroy(vm);
		return;
	}
	usleep(300000);		/* the hot set is being rewritten */
	o.to = dest.addr;
	r->ret = mig_source_run(vm->kv, &o, &rep);
	if (r->ret)
		kill(dest.pid, SIGKILL);
	if (dest_child_wait(&dest) != DEST_OK && !r->ret)
		r->ret = -EIO;
	/* The first pass sends every page once; the rest are sent again. */
	r->resent = rep.pages_sent + rep.zero_pages - vm_pages(vm);
	r->passes = rep.passes;
	r->total_s = rep.total_s;
	r->downtime_ms = rep.downtime_ms;
	mig_report_free(&rep);
	vm_destroy(vm);
}

/* Median and range of field @off of the successful rounds in @r; -1 if none. */
static struct perf_range field_range(const struct round *r, unsigned int n, size_t off)
{
	return perf_field_range(r, n, sizeof(*r), off, offsetof(struct round, ret));
}

int main(int argc, char **argv)
{
	static const char *const names[2] = { "get-and-clear", "clear-on-send" };
	unsigned int rounds, i, m, ok[2] = { 0 };
	static const size_t fields[4] = {
		offsetof(struct round, resent), offsetof(struct round, passes),
		offsetof(struct round, total_s), offsetof(struct round, downtime_ms),
	};
	static const char *const keys[4] = { "pages_resent", "passes", "total_s", "downtime_ms" };
	struct round r[2][MAX_ROUNDS];
	struct perf_range g[2][4];
	char key[32], resent[32];
	struct perf_json j;
	unsigned int f;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--json") && i + 1 < (unsigned int)argc) {
			i++;
		} else {
			fprintf(stderr, "usage: manual_clear_perf [--quick] [--json FILE]\n");
			return 2;
		}
	}
	if (kvm_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0) {
		printf("manual_clear_perf: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 missing, nothing to measure\n");
		return 0;
	}
	if (perf_json_open(&j, argc, argv, "manual_clear"))
		return 2;
	kvmmig_set_log(quiet, KVMMIG_LOG_ERR);
	rounds = quick ? 2 : 5;
	for (i = 0; i < rounds; i++)
		for (m = 0; m < 2; m++) {
			migrate_round(m, &r[m][i]);
			ok[m] += !r[m][i].ret;
		}
	for (m = 0; m < 2; m++)
		for (f = 0; f < 4; f++)
			g[m][f] = field_range(r[m], rounds, fields[f]);
	printf("bitmap-manual: a %llu MiB guest rewriting a %llu MiB hot set at %u pages/s,\n"
	       "max-bandwidth %llu MiB/s, downtime limit 50 ms; medians of %u alternating rounds\n"
	       "(resent: median [min-max])\n",
	       (unsigned long long)(BENCH_RAM >> 20),
	       (unsigned long long)(BENCH_WSS_PAGES * GUEST_PAGE_SIZE >> 20), BENCH_PPS,
	       (unsigned long long)(BENCH_LINK >> 20), rounds);
	printf("   %-14s %4s %19s %7s %8s %12s %9s\n", "re-protect", "ok", "resent", "passes",
	       "total s", "downtime ms", "resent vs");
	for (m = 0; m < 2; m++) {
		snprintf(resent, sizeof(resent), "%.0f [%.0f-%.0f]", g[m][0].median, g[m][0].min,
			 g[m][0].max);
		printf("   %-14s %2u/%u %19s %7.1f %8.2f %12.1f %8.2fx\n", names[m], ok[m], rounds,
		       resent, g[m][1].median, g[m][2].median, g[m][3].median,
		       g[m][0].median / g[0][0].median);
		perf_json_begin(&j);
		perf_json_str(&j, "bench", "bitmap_manual_hot_set");
		perf_json_str(&j, "reprotect", names[m]);
		perf_json_num(&j, "rounds", rounds);
		perf_json_num(&j, "ok", ok[m]);
		for (f = 0; f < 4; f++) {
			perf_json_num(&j, keys[f], g[m][f].median);
			snprintf(key, sizeof(key), "%s_min", keys[f]);
			perf_json_num(&j, key, g[m][f].min);
			snprintf(key, sizeof(key), "%s_max", keys[f]);
			perf_json_num(&j, key, g[m][f].max);
		}
		perf_json_num(&j, "resent_vs_get_and_clear", g[m][0].median / g[0][0].median);
		perf_json_end(&j);
	}
	perf_json_close(&j);
	return ok[0] == rounds && ok[1] == rounds ? 0 : 1;
}
