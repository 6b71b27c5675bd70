// SPDX-License-Identifier: GPL-2.0-only
/*
 * dirty-limit benchmark: how closely the dirty-limit policy holds a vCPU at
 * vcpu-dirty-limit when kvmmig.ko is the throttle backend, set as the
 * module's exact per-vCPU dirty limit (its token bucket, now) against
 * CPU-throttle percentages recomputed every period (the previous behaviour,
 * mig_params.dirty_limit_cpu_throttle).  A 2-vCPU guest: vCPU 0 writes its
 * slice page after page as fast as it can, vCPU 1 only computes.  Each round
 * measures both vCPUs' free dirty rates, sets the limit to a third of vCPU
 * 0's, arms the policy as a migration's trigger would and runs the policy's
 * rate loop (the module dirty source's per-vCPU counts every
 * x-vcpu-dirty-limit-period, and a collection) for a few seconds; the two
 * ways take turns round after round in one process.  Per way: vCPU 0's dirty
 * rate over the limit in each period after the first second (median over the
 * periods, then median and range over the rounds), the mean distance from
 * the limit, the share of periods above 1.2x the limit, the time until a
 * period first came within 25% of it, the share of the run the compute vCPU
 * slept under a throttle (its wall-clock speed under TCG follows the host's
 * load, not the throttle), and the mechanism the report names for each vCPU.
 * Needs /dev/kvmmig: inside the QEMU-hosted kernels, e.g.
 * `selftests/vm/run.sh -k 6.1 -x build/selftests/dirty_limit_perf -c
 * 'build/selftests/dirty_limit_perf'`; elsewhere it says why it measured
 * nothing.
 *
 *   dirty_limit_perf [--quick] [--json FILE]
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dirty.h"
#include "log.h"
#include "mig_throttle.h"
#include "module_client.h"
#include "perf_util.h"
#include "test_util.h"

#define BENCH_RAM	(256ULL << 20)	/* vCPU 0 writes its 128 MiB slice */
#define PERIOD_MS	200
#define SETTLE_S	1.0		/* periods before this are not scored */
#define FREE_S		0.6		/* the free rate is measured this long */
#define NEAR		0.25		/* "within 25% of the limit" */
#define OVER		1.2		/* "above the limit" beyond noise */
#define START_S		20
#define MAX_ROUNDS	8
#define MAX_PERIODS	64

enum { WAY_CPU, WAY_BUCKET, NR_WAYS };

static const char *const way_names[NR_WAYS] = { "cpu-throttle", "dirty-limit" };

struct round {
	int ret;
	double free_mbs[2];	/* each vCPU's dirty rate before the policy, MB/s */
	double limit_mbs;	/* the limit set: a third of vCPU 0's free rate */
	double track;		/* median of rate / limit over the scored periods */
	double dev_pct;		/* mean |rate - limit| / limit over them, % */
	double over_pct;	/* share of them above OVER x the limit, % */
	double settle_s;	/* first period within NEAR of the limit, s after arming */
	double run_s;		/* the policy's run */
	double slept_pct;	/* share of it vCPU 1 slept under a throttle, % */
	char mech[2][32];	/* what the report names for vCPU 0 and 1 */
};

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

static uint64_t compute_loops(struct vm *vm)
{
	return __atomic_load_n(&vm->vcpus[1].area->loops, __ATOMIC_RELAXED);
}

/* Both vCPUs under way: the guest under TCG takes its time to start. */
static int wait_started(struct vm *vm)
{
	double t0 = now_s();

	while (!__atomic_load_n(&vm->vcpus[0].area->loops, __ATOMIC_RELAXED) ||
	       !compute_loops(vm)) {
		if (now_s() - t0 > START_S) {
			fprintf(stderr, "dirty_limit_perf: the guest did not start in %d s\n",
				START_S);
			return -ETIMEDOUT;
		}
		sleep_s(0.01);
	}
	return 0;
}

/* Free rates: each vCPU's dirty bytes/s. */
static int free_rates(struct vm *vm, struct dirty_source *ds, struct round *r)
{
	uint64_t p0[VM_MAX_VCPUS], p1[VM_MAX_VCPUS];
	unsigned int i;
	double t0, t1;
	int ret;

	ret = wait_started(vm);
	if (!ret)
		ret = dirty_source_vcpu_counts(ds, p0);
	t0 = now_s();
	sleep_s(FREE_S);
	if (!ret)
		ret = dirty_source_vcpu_counts(ds, p1);
	t1 = now_s();
	if (ret)
		return ret;
	for (i = 0; i < 2; i++)
		r->free_mbs[i] = (p1[i] - p0[i]) * GUEST_PAGE_SIZE / (t1 - t0) / 1e6;
	return 0;
}

/* The policy's rate loop, as mig_between_batches() runs it, for @secs. */
static int policy_loop(struct dirty_source *ds, struct dirty_set *set, struct mig_throttle *t,
		       double secs, double limit_pps, struct round *r)
{
	double rates[MAX_PERIODS], t0 = now_s(), t_prev = t0, now = t0, x, dev = 0;
	uint64_t pages[VM_MAX_VCPUS], prev0;
	unsigned int n = 0, over = 0;
	int ret;

	ret = dirty_source_vcpu_counts(ds, pages);
	if (!ret)
		ret = mig_throttle_on_rates(t, pages, t0, 0);
	prev0 = pages[0];
	r->settle_s = -1;
	while (!ret && now - t0 < secs) {
		sleep_s(PERIOD_MS / 1000.0);
		/* A migration collects too: the accumulated bitmap stays small. */
		ret = dirty_source_collect(ds, set);
		dirty_set_clear(set);
		if (ret >= 0)
			ret = dirty_source_vcpu_counts(ds, pages);
		if (ret)
			break;
		now = now_s();
		ret = mig_throttle_on_rates(t, pages, now, 0);
		x = (pages[0] - prev0) / (now - t_prev) / limit_pps;
		prev0 = pages[0];
		t_prev = now;
		if (r->settle_s < 0 && fabs(x - 1) <= NEAR)
			r->settle_s = now - t0;
		if (now - t0 >= SETTLE_S && n < MAX_PERIODS) {
			rates[n++] = x;
			dev += fabs(x - 1);
			over += x > OVER;
		}
	}
	if (ret)
		return ret;
	if (!n)
		return -EIO;
	if (r->settle_s < 0)
		r->settle_s = secs;
	r->run_s = now - t0;
	r->dev_pct = dev / n * 100;
	r->over_pct = (double)over / n * 100;
	r->track = perf_range(rates, n).median;
	return 0;
}

/*
 * One round of @way for @secs.  The limit follows this round's free rate:
 * under TCG on a shared host it swings several times between rounds, and a
 * limit above what the vCPU can reach would measure the host, not the limit.
 */
static void run_round(unsigned int way, double secs, struct round *r)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = BENCH_RAM,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_SEQ,
		.guest.mem_gpa = GUEST_RAM_GPA,
		.guest.mem_pages = BENCH_RAM / GUEST_PAGE_SIZE,
		.guest.compute_mask = 1 << 1,
	};
	struct dirty_options opts = { .backend = DIRTY_MODULE };
	struct mig_report rep = { 0 };
	struct dirty_source *ds = NULL;
	struct mig_throttle t;
	struct mig_params p;
	struct dirty_set set = { 0 };
	struct vm *vm = NULL;
	unsigned int i;

	memset(r, 0, sizeof(*r));
	r->ret = dirty_prepare_config(DIRTY_MODULE, &cfg);
	if (r->ret >= 0)
		r->ret = vm_create(&cfg, &vm);
	if (!r->ret)
		r->ret = dirty_source_open(vm->kv, &opts, &ds);
	if (!r->ret)
		r->ret = dirty_set_alloc(vm->kv, &set);
	if (!r->ret)
		r->ret = vm_start(vm);
	if (r->ret)
		goto out;
	r->ret = free_rates(vm, ds, r);
	if (r->ret)
		goto out;
	r->limit_mbs = floor(r->free_mbs[0] / 3) >= 1 ? floor(r->free_mbs[0] / 3) : 1;
	mig_params_init(&p);
	p.policy = MIG_POLICY_DIRTY_LIMIT;
	p.dirty_limit_period_ms = PERIOD_MS;
	p.dirty_limit_cpu_throttle = way == WAY_CPU;
	p.vcpu_dirty_limit = r->limit_mbs;
	mig_throttle_init(&t, vm->kv, &p);
	r->ret = mig_throttle_use_module(&t, dirty_module_session(ds));
	/* The trigger: dirtied more than threshold x sent, twice. */
	for (i = 0; !r->ret && i < 2; i++)
		r->ret = mig_throttle_on_sync(&t, 2, 1);
	if (!r->ret && !t.active)
		r->ret = -EIO;
	if (!r->ret)
		r->ret = policy_loop(ds, &set, &t, secs,
				     p.vcpu_dirty_limit * 1e6 / GUEST_PAGE_SIZE, r);
	if (!r->ret)
		r->ret = mig_throttle_report(&t, &rep);
	if (!r->ret)
		r->slept_pct = rep.vcpu_throttle[1].slept_ms / (r->run_s * 1000) * 100;
	for (i = 0; i < 2; i++)
		snprintf(r->mech[i], sizeof(r->mech[i]), "%s",
			 mig_throttle_mech_name(rep.vcpu_throttle[i].mech));
	if (mig_throttle_off(&t) && !r->ret)
		r->ret = -EIO;
out:
	if (vm)
		vm_stop(vm);
	dirty_set_free(&set);
	dirty_source_close(ds);
	vm_destroy(vm);
}

/* Median and range of one field over the successful rounds. */
static struct perf_range field_range(const struct round *r, unsigned int n, size_t off)
{
	return perf_field_range(r, n, sizeof(*r), off, offsetof(struct round, ret));
}

/* The mechanisms the report named for @vcpu over the rounds, each once. */
static void mechs(const struct round *r, unsigned int n, unsigned int vcpu, char *buf,
		  size_t size)
{
	unsigned int i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n && len < size; i++)
		if (!r[i].ret && !strstr(buf, r[i].mech[vcpu]))
			len += snprintf(buf + len, size - len, "%s%s", len ? "|" : "",
					r[i].mech[vcpu]);
}

static const struct {
	const char *name, *json;
	size_t off;
	const char *fmt;
	bool json_only;
} columns[] = {
	{ "limit MB/s", "limit_mbs", offsetof(struct round, limit_mbs), "%.0f", false },
	{ "rate/limit", "rate_over_limit", offsetof(struct round, track), "%.2f", false },
	{ "off limit %", "mean_deviation_pct", offsetof(struct round, dev_pct), "%.0f", false },
	{ "over 1.2x %", "periods_over_pct", offsetof(struct round, over_pct), "%.0f", false },
	{ "settle s", "settle_s", offsetof(struct round, settle_s), "%.1f", false },
	{ "vCPU1 slept %", "vcpu1_slept_pct", offsetof(struct round, slept_pct), "%.1f", false },
	{ "", "vcpu0_free_mbs", offsetof(struct round, free_mbs[0]), "%.1f", true },
	{ "", "vcpu1_free_mbs", offsetof(struct round, free_mbs[1]), "%.1f", true },
};
#define NR_COLUMNS	(sizeof(columns) / sizeof(columns[0]))

static void report(struct round r[NR_WAYS][MAX_ROUNDS], unsigned int rounds, double secs,
		   struct perf_json *j)
{
	char json[64], mech[2][128];
	unsigned int w, c, ok;
	struct perf_range g;

	printf("dirty-limit through kvmmig.ko: vCPU 0 writes as fast as it can, vCPU 1 computes\n"
	       "(its counter page, dirtied again after each reap, is its dirty rate); the limit,\n"
	       "per vCPU, is a third of vCPU 0's free rate in the round; %.0f s per round, periods\n"
	       "of %d ms scored after %.0f s; median [min-max] of %u alternating rounds.\n"
	       "rate/limit: vCPU 0's dirty rate over the limit (median of the periods); off limit:\n"
	       "mean distance from it; over: periods above %.1fx the limit; settle: first period\n"
	       "within %.0f%% of it (the round's length if none); vCPU 1 slept: the share of the\n"
	       "run the compute vCPU slept under a throttle\n",
	       secs, PERIOD_MS, SETTLE_S, rounds, OVER, NEAR * 100);
	printf("   %-13s %3s", "way", "ok");
	for (c = 0; c < NR_COLUMNS; c++)
		if (!columns[c].json_only)
			printf(" %16s", columns[c].name);
	printf("   %s\n", "vCPU 0 / vCPU 1 mechanism");
	for (w = 0; w < NR_WAYS; w++) {
		for (ok = 0, c = 0; c < rounds; c++)
			ok += !r[w][c].ret;
		printf("   %-13s %u/%u", way_names[w], ok, rounds);
		perf_json_begin(j);
		perf_json_str(j, "bench", "dirty_limit_module");
		perf_json_str(j, "way", way_names[w]);
		perf_json_num(j, "rounds", rounds);
		perf_json_num(j, "ok", ok);
		for (c = 0; c < NR_COLUMNS; c++) {
			char cell[64], a[16], b[16], m[16];

			g = field_range(r[w], rounds, columns[c].off);
			snprintf(m, sizeof(m), columns[c].fmt, g.median);
			snprintf(a, sizeof(a), columns[c].fmt, g.min);
			snprintf(b, sizeof(b), columns[c].fmt, g.max);
			snprintf(cell, sizeof(cell), "%s [%s-%s]", m, a, b);
			if (!columns[c].json_only)
				printf(" %16s", cell);
			perf_json_num(j, columns[c].json, g.median);
			snprintf(json, sizeof(json), "%s_min", columns[c].json);
			perf_json_num(j, json, g.min);
			snprintf(json, sizeof(json), "%s_max", columns[c].json);
			perf_json_num(j, json, g.max);
		}
		mechs(r[w], rounds, 0, mech[0], sizeof(mech[0]));
		mechs(r[w], rounds, 1, mech[1], sizeof(mech[1]));
		printf("   %s / %s\n", mech[0], mech[1]);
		perf_json_str(j, "vcpu0_mechanism", mech[0]);
		perf_json_str(j, "vcpu1_mechanism", mech[1]);
		perf_json_end(j);
	}
}

int main(int argc, char **argv)
{
	static struct round r[NR_WAYS][MAX_ROUNDS];
	unsigned int rounds = 5, i, w, failed = 0;
	const char *why = NULL;
	double secs = 4;
	struct perf_json j;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			rounds = 3;
			secs = 3;
		} else if (!strcmp(argv[i], "--json") && i + 1 < (unsigned int)argc) {
			i++;
		} else {
			fprintf(stderr, "usage: dirty_limit_perf [--quick] [--json FILE]\n");
			return 2;
		}
	}
	if (perf_json_open(&j, argc, argv, "dirty_limit"))
		return 2;
	if (!kmod_present(&why) || kmod_check_extension(KVMMIG_CAP_DIRTY_LIMIT) <= 0) {
		printf("dirty_limit_perf: nothing to measure: %s\n",
		       why ? why : "kvmmig.ko has no dirty limit here (its probes)");
		perf_json_close(&j);
		return 0;
	}
	kvmmig_set_log_level(KVMMIG_LOG_ERR);
	for (i = 0; i < rounds; i++)
		for (w = 0; w < NR_WAYS; w++) {
			run_round(w, secs, &r[w][i]);
			if (r[w][i].ret)
				fprintf(stderr, "dirty_limit_perf: %s round %u: %s\n", way_names[w],
					i, strerror(-r[w][i].ret));
			failed += !!r[w][i].ret;
		}
	report(r, rounds, secs, &j);
	perf_json_close(&j);
	return failed ? 1 : 0;
}
