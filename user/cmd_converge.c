// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig converge`: make another VMM's migration converge.  It attaches to
 * the VM of the VMM process --pid through kvmmig.ko (or, without the
 * module, reads its per-vCPU dirty rates through BPF and says it cannot
 * throttle), follows the migration over QMP when --qmp is given (status,
 * ram remaining, bandwidth, dirty-sync-count) or else models the backlog
 * against the --bandwidth the user gives (from the guest's size, which only
 * the module knows, else from 0), and every tick asks the
 * controller of converge.h for per-vCPU dirty limits, which it sets
 * through the module (its dirty limit, or the CPU throttle of running
 * fraction limit / demand where the module keeps no dirty limit for this
 * VM).  Every limit is lifted when the migration completes, fails or is
 * cancelled, on SIGINT or SIGTERM, and on any error; closing the session
 * lifts whatever a failed lift left.  Output: a live line on a terminal,
 * --json events, and a final report (Documentation/converge.rst).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf_rates.h"
#include "clock.h"
#include "commands.h"
#include "converge.h"
#include "json.h"
#include "log.h"
#include "module_client.h"
#include "opts.h"
#include "qmp.h"

#define CV_PAGE		4096.0
#define CV_TICK_MS	500		/* the controller's period */
/*
 * QMP's deadline for one answer: QEMU answers under its big lock, which a
 * dirty sync holds, for seconds in a loaded nested guest.
 */
#define CV_QMP_MS	10000
/* QEMU's bandwidth: the lowest of its measures over the last few ticks. */
#define CV_BW_TICKS	4
#define MIB		(1024.0 * 1024.0)

struct cv_env {
	pid_t pid;
	const char *qmp_path;
	uint64_t bandwidth;		/* --bandwidth, bytes/s (0: QMP's) */
	uint64_t downtime_ms;		/* 0: QEMU's downtime-limit, or 300 */
	uint64_t idle_rate, min_limit;	/* bytes/s; 0: converge.h's defaults */
	unsigned int within_s;
	bool json, live;
};

struct cv_run {
	struct cv_env *env;
	struct kmod_session *ks;	/* NULL: BPF rates, no throttle */
	struct bpf_rates *br;
	struct qmp qmp;
	bool has_qmp;
	bool bucket;			/* the module's dirty limit, else its CPU throttle */
	unsigned int nr_vcpus;
	uint64_t guest_bytes;
	struct converge cv;
	struct converge_out out;
	enum converge_verdict verdict;
	uint64_t limit[CONVERGE_MAX_VCPUS];	/* in force */
	unsigned int pct[CONVERGE_MAX_VCPUS];	/* in force (CPU throttle backend) */
	uint64_t strongest[CONVERGE_MAX_VCPUS];
	uint64_t slept0[CONVERGE_MAX_VCPUS], slept[CONVERGE_MAX_VCPUS];
	double rate[CONVERGE_MAX_VCPUS];
	struct qmp_migration mig;
	double t0, last_t, converged_t;
	double end_t;			/* when the migration ended, -1: it did not */
	double backlog;			/* without QMP: the modelled backlog */
	double bw[CV_BW_TICKS];		/* QEMU's latest measures, bytes/s */
	unsigned int nr_bw;
	uint64_t sync_count;		/* QEMU's dirty-sync-count, and when it moved */
	double sync_t;
	unsigned int changes;
};

static void converge_usage(FILE *f)
{
	fprintf(f,
		"usage: kvmmig converge --pid PID [--qmp SOCKET] [--bandwidth RATE]\n"
		"                       [--downtime-limit MS] [--converge-within S]\n"
		"                       [--idle-rate RATE] [--min-limit RATE] [--json]\n"
		"Make the live migration of another VMM's VM converge: per-vCPU dirty limits\n"
		"through kvmmig.ko on the vCPUs that dirty, just enough for the remaining bytes\n"
		"to fit the downtime limit at the measured bandwidth (Documentation/converge.rst).\n"
		"  --pid PID              the VMM process (QEMU, ...) whose VM to attach to\n"
		"  --qmp SOCKET           follow its migration over QMP (a unix socket path, or\n"
		"                         @NAME for an abstract one); it ends with the migration\n"
		"  --bandwidth RATE       bytes/s of the migration link, e.g. 100M (required\n"
		"                         without --qmp; with it, instead of QEMU's measure)\n"
		"  --downtime-limit MS    1-2000000 (default: QEMU's over QMP, else 300)\n"
		"  --converge-within S    switch over within S seconds, 1-86400 (default: none)\n"
		"  --idle-rate RATE       bytes/s below which a vCPU is not dirtying and is never\n"
		"                         limited, 4K-1T (default 4M)\n"
		"  --min-limit RATE       the strongest limit, bytes/s, 4K-1T (default 1M)\n"
		"  --json                 one JSON event per line\n"
		"Without kvmmig.ko it reads the rates through BPF and only says what it would set.\n"
		"Every limit is lifted when the migration ends, on SIGINT/SIGTERM and on errors.\n");
}

static const struct option converge_options[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "qmp", required_argument, NULL, 'q' },
	{ "bandwidth", required_argument, NULL, 'b' },
	{ "downtime-limit", required_argument, NULL, 'd' },
	{ "converge-within", required_argument, NULL, 'w' },
	{ "idle-rate", required_argument, NULL, 'i' },
	{ "min-limit", required_argument, NULL, 'm' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int converge_parse(int argc, char **argv, struct cv_env *env)
{
	uint64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", converge_options, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_uint("--pid", optarg, 1, 0x7fffffff, &v))
				return 2;
			env->pid = v;
			break;
		case 'q':
			env->qmp_path = optarg;
			break;
		case 'b':
			if (parse_size("--bandwidth", optarg, 1024, 1ULL << 50, &env->bandwidth))
				return 2;
			break;
		case 'd':
			if (parse_uint("--downtime-limit", optarg, 1, 2000000, &env->downtime_ms))
				return 2;
			break;
		case 'w':
			if (parse_uint("--converge-within", optarg, 1, 86400, &v))
				return 2;
			env->within_s = v;
			break;
		case 'i':
			if (parse_size("--idle-rate", optarg, 4096, 1ULL << 40, &env->idle_rate))
				return 2;
			break;
		case 'm':
			if (parse_size("--min-limit", optarg, 4096, 1ULL << 40, &env->min_limit))
				return 2;
			break;
		case 'j':
			env->json = true;
			break;
		case 'h':
			converge_usage(stdout);
			return 0;
		default:
			converge_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmmig converge: unexpected argument '%s' (kvmmig converge -h)\n",
			argv[optind]);
		return 2;
	}
	if (!env->pid) {
		fprintf(stderr, "kvmmig converge: --pid PID is required: the VMM process whose VM to attach to\n");
		return 2;
	}
	if (!env->qmp_path && !env->bandwidth) {
		fprintf(stderr, "kvmmig converge: without --qmp SOCKET the bandwidth is unknown: give --bandwidth RATE (bytes/s of the migration link)\n");
		return 2;
	}
	return -1;
}

/* ---- rates and throttles ---- */

static int cv_attach(struct cv_run *r)
{
	int vm_fd, ret, i;

	ret = kmod_take_vm_fd(r->env->pid, &vm_fd);
	if (ret)
		return ret;
	ret = kmod_attach(vm_fd, &r->ks);
	close(vm_fd);	/* the session holds the VM now */
	if (ret)
		return ret;
	r->nr_vcpus = r->ks->info.nr_vcpus;
	for (i = 0; i < (int)r->ks->info.nr_slots; i++)
		r->guest_bytes += r->ks->slots[i].npages * CV_PAGE;
	/* A dirty limit from the VM's ring, or from its bitmap without one. */
	r->bucket = kmod_session_has_dirty_limit(r->ks);
	if (!r->bucket && kmod_check_extension(KVMMIG_CAP_CPU_THROTTLE) <= 0) {
		kvmmig_err("kvmmig.ko offers neither a dirty limit for this VM nor a CPU throttle");
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * Without the module, the vCPUs are the VMM's anon_inode:kvm-vcpu:N fds:
 * a vCPU halted since before BPF attached shows in no BPF map.
 */
static int cv_count_vcpus(struct cv_run *r)
{
	char dir[64], path[PATH_MAX], link[64];
	struct dirent *de;
	unsigned int n;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", r->env->pid);
	d = opendir(dir);
	if (!d) {
		kvmmig_err("cannot read %s: %s (is %d a running VMM, and are we root?)", dir,
			   strerror(errno), r->env->pid);
		return -ESRCH;
	}
	while ((de = readdir(d))) {
		ssize_t len;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = 0;
		if (sscanf(link, "anon_inode:kvm-vcpu:%u", &n) == 1 && n < CONVERGE_MAX_VCPUS &&
		    n + 1 > r->nr_vcpus)
			r->nr_vcpus = n + 1;
	}
	closedir(d);
	return 0;
}

/* Without the module: the VMM's vCPUs' rates as the BPF programs see them. */
static int cv_open_bpf(struct cv_run *r)
{
	struct bpf_rates_opts bo = { .pid = r->env->pid, .pin_dir = "" };
	int ret;

	ret = cv_count_vcpus(r);
	if (!ret)
		ret = bpf_rates_open(&bo, &r->br);
	return ret;
}

/* This tick's per-vCPU dirty rates into @v, and the module's sleep counts. */
static int cv_read_rates(struct cv_run *r, struct converge_vcpu *v)
{
	struct kvmmig_vcpu_stats *st;
	uint32_t i, nr;
	int ret;

	memset(v, 0, r->nr_vcpus * sizeof(*v));
	if (!r->ks) {
		ret = bpf_rates_update(r->br);
		for (i = 0; !ret && i < bpf_rates_count(r->br); i++) {
			const struct bpf_rates_vcpu *b = bpf_rates_get(r->br, i);

			if (b->pid == (uint32_t)r->env->pid && b->vcpu < r->nr_vcpus)
				v[b->vcpu].rate += b->pages_per_sec * CV_PAGE;
		}
		for (i = 0; i < r->nr_vcpus; i++)
			r->rate[i] = v[i].rate;
		return ret;
	}
	ret = kmod_vcpu_stats(r->ks, &st, &nr);
	if (ret)
		return ret;
	for (i = 0; i < nr; i++) {
		unsigned int k = st[i].vcpu;

		if (k >= r->nr_vcpus)
			continue;
		r->rate[k] = st[i].dirty_rate * CV_PAGE;
		r->slept[k] = st[i].throttle_ns;
		v[k].can_limit = true;
		if (r->bucket) {
			v[k].rate = r->rate[k];
			v[k].held = st[i].flags & KVMMIG_VCPU_F_OVER_LIMIT;
		} else {
			v[k].rate = converge_demand_under_cpu(r->rate[k], r->pct[k]);
		}
	}
	free(st);
	return 0;
}

/*
 * One vCPU's limit through the module (a CPU throttle follows the demand
 * under a kept limit too); nothing to do without the module.
 */
static int cv_apply(struct cv_run *r, unsigned int i, uint64_t limit, double demand)
{
	struct kvmmig_throttle th = { .vcpu = i };
	int ret;

	if (!r->ks)
		return 0;
	if (r->bucket) {
		if (limit == r->limit[i])
			return 0;
		th.set = KVMMIG_THROTTLE_DIRTY_LIMIT;
		th.dirty_limit = limit ? (limit / 4096 ? limit / 4096 : 1) : 0;
	} else {
		th.set = KVMMIG_THROTTLE_CPU;
		th.cpu_throttle = converge_cpu_pct(demand, limit);
		if (th.cpu_throttle == r->pct[i])
			return 0;
	}
	ret = kmod_set_throttle(r->ks, &th);
	if (ret)
		return ret;
	r->pct[i] = th.cpu_throttle;
	r->changes++;
	return 0;
}

/* Every limit this run set, lifted; the others' throttles are theirs. */
static int cv_lift_all(struct cv_run *r)
{
	struct kvmmig_throttle th = {
		.vcpu = KVMMIG_VCPU_ALL,
		.set = r->bucket ? KVMMIG_THROTTLE_DIRTY_LIMIT : KVMMIG_THROTTLE_CPU,
	};
	int ret;

	if (!r->ks)
		return 0;
	ret = kmod_set_throttle(r->ks, &th);
	if (!ret) {
		memset(r->limit, 0, sizeof(r->limit));
		memset(r->pct, 0, sizeof(r->pct));
	}
	return ret;
}

/* ---- output ---- */

static void cv_event_limits(struct cv_run *r, double t)
{
	struct json_writer w;
	unsigned int i;

	json_event_begin(&w, stdout, "limits");
	json_key_double(&w, "t", t, 2);
	json_key_str(&w, "verdict", converge_verdict_name(r->out.verdict));
	json_key(&w, "vcpus");
	json_array_begin(&w);
	for (i = 0; i < r->nr_vcpus; i++) {
		json_object_begin(&w);
		json_key_u64(&w, "vcpu", i);
		json_key_u64(&w, "dirty_rate", r->rate[i]);
		json_key_u64(&w, "limit", r->limit[i]);
		if (!r->bucket && r->ks)
			json_key_u64(&w, "cpu_throttle", r->pct[i]);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_key_double(&w, "allowed", r->out.allowed, 0);
	json_key_double(&w, "eta_s", r->out.eta_s, 1);
	if (r->out.verdict == CONVERGE_INFEASIBLE)
		json_key_str(&w, "why", r->out.why);
	json_line_end(&w);
}

static void cv_event_status(const struct cv_run *r, double t)
{
	struct json_writer w;

	json_event_begin(&w, stdout, "migration");
	json_key_double(&w, "t", t, 2);
	json_key_str(&w, "status", r->mig.status);
	if (r->mig.error[0])
		json_key_str(&w, "error", r->mig.error);
	json_line_end(&w);
}

static void cv_live(const struct cv_run *r, double t, uint64_t remaining, double bw)
{
	double total = 0;
	unsigned int i, n = 0;

	for (i = 0; i < r->nr_vcpus; i++) {
		total += r->rate[i];
		n += !!r->limit[i];
	}
	printf("\r%6.1f s %-10s left %8.1f MiB  bw %7.1f MiB/s  dirty %7.1f MiB/s  limited %u/%u  %-10s\033[K",
	       t, r->has_qmp ? r->mig.status : "-", remaining / MIB, bw / MIB, total / MIB, n,
	       r->nr_vcpus, converge_verdict_name(r->out.verdict));
	fflush(stdout);
}

/*
 * Said plainly on stderr, --json or not, once each time the verdict turns
 * infeasible: what cannot be done, and why.
 */
static void cv_say_infeasible(const struct cv_run *r)
{
	const char *nl = r->env->live ? "\n" : "";

	if (r->env->within_s)
		fprintf(stderr, "%skvmmig converge: the deadline of %u s cannot be met: %s\n", nl,
			r->env->within_s, r->out.why);
	else
		fprintf(stderr, "%skvmmig converge: the migration cannot converge: %s\n", nl,
			r->out.why);
}

/* The limits changed, or the verdict: said once, not every tick. */
static void cv_say_change(struct cv_run *r, double t, bool changed)
{
	unsigned int i;
	char buf[24];

	if (!changed && r->out.verdict == r->verdict)
		return;
	if (r->out.verdict == CONVERGE_INFEASIBLE && r->verdict != CONVERGE_INFEASIBLE)
		cv_say_infeasible(r);
	r->verdict = r->out.verdict;
	if (r->env->json) {
		cv_event_limits(r, t);
		return;
	}
	if (r->env->live)
		return;
	printf("%.1f s: %s:", t, converge_verdict_name(r->out.verdict));
	for (i = 0; i < r->nr_vcpus; i++)
		if (r->limit[i])
			printf(" vCPU %u %s/s", i, converge_fmt(buf, sizeof(buf), r->limit[i]));
		else
			printf(" vCPU %u free", i);
	printf("\n");
}

/* With --converge-within: the migration completed in time. */
static bool cv_deadline_met(const struct cv_run *r, const char *end)
{
	return !strcmp(end, "completed") && r->end_t >= 0 && r->end_t <= r->env->within_s;
}

/*
 * @lifted: every limit this run set is gone (or it set none through the
 * module: without it nothing was throttled).
 */
static void cv_report(const struct cv_run *r, const char *end, double t, bool lifted)
{
	struct json_writer w;
	unsigned int i;
	char buf[24];

	if (r->env->json) {
		json_event_begin(&w, stdout, "end");
		json_key_str(&w, "end", end);
		json_key_double(&w, "t", t, 2);
		if (r->converged_t >= 0)
			json_key_double(&w, "converged_s", r->converged_t, 2);
		else
			json_key_null(&w, "converged_s");
		json_key_bool(&w, "throttled", !!r->ks);
		json_key_bool(&w, "lifted", lifted);
		if (r->env->within_s) {
			json_key_u64(&w, "converge_within_s", r->env->within_s);
			json_key_bool(&w, "deadline_met", cv_deadline_met(r, end));
		}
		json_key(&w, "vcpus");
		json_array_begin(&w);
		for (i = 0; i < r->nr_vcpus; i++) {
			json_object_begin(&w);
			json_key_u64(&w, "vcpu", i);
			json_key_u64(&w, "strongest_limit", r->strongest[i]);
			json_key_double(&w, "slept_ms", (r->slept[i] - r->slept0[i]) / 1e6, 1);
			json_object_end(&w);
		}
		json_array_end(&w);
		json_line_end(&w);
		return;
	}
	if (r->env->live)
		printf("\n");
	printf("kvmmig converge: %s after %.1f s", end, t);
	if (r->converged_t >= 0)
		printf("; converged in %.1f s", r->converged_t);
	printf("%s\n", r->ks ? "" : " (rates only: nothing was throttled)");
	if (r->env->within_s)
		printf("  deadline of %u s %s\n", r->env->within_s,
		       cv_deadline_met(r, end) ? "met" : "missed");
	if (r->ks)
		printf("  %s\n", lifted ? "every limit lifted" :
		       "lifting the limits failed: closing the session lifts them");
	for (i = 0; i < r->nr_vcpus; i++) {
		double slept = (r->slept[i] - r->slept0[i]) / 1e6;

		if (r->strongest[i])
			printf("  vCPU %u: limited, down to %s/s; slept %.0f ms (%.1f%% of the run)\n",
			       i, converge_fmt(buf, sizeof(buf), r->strongest[i]), slept, t > 0 ? slept / 10 / t : 0);
		else
			printf("  vCPU %u: never limited; slowdown %.1f%% (slept %.0f ms under a throttle)\n",
			       i, t > 0 ? slept / 10 / t : 0, slept);
	}
}

/* ---- the loop ---- */

/*
 * QEMU switches over when what is left fits its downtime limit at the
 * bandwidth it measured over its latest 100 ms, which a busy host makes
 * jump by ten times from one window to the next: the lowest of its
 * measures over the last CV_BW_TICKS ticks is what it may well decide
 * with, so the controller plans with that.
 */
static double cv_qemu_bandwidth(struct cv_run *r)
{
	double low;
	unsigned int i;

	r->bw[r->nr_bw++ % CV_BW_TICKS] = r->mig.mbps * 1e6 / 8;
	low = r->bw[0];
	for (i = 1; i < CV_BW_TICKS && i < r->nr_bw; i++)
		if (r->bw[i] < low)
			low = r->bw[i];
	return low;
}

/*
 * This tick's backlog and bandwidth: QEMU's over QMP, else the backlog
 * modelled from the guest's size, moved by the dirty rate less the
 * bandwidth.  *over when the migration ended.
 */
static int cv_migration(struct cv_run *r, double dt, uint64_t *remaining, double *bw,
			bool *over)
{
	char status[sizeof(r->mig.status)];
	double dirty = 0;
	unsigned int i;
	int ret;

	*over = false;
	if (!r->has_qmp) {
		for (i = 0; i < r->nr_vcpus; i++)
			dirty += r->rate[i];
		r->backlog += (dirty - r->env->bandwidth) * dt;
		if (r->backlog < 0)
			r->backlog = 0;
		if (r->guest_bytes && r->backlog > r->guest_bytes)
			r->backlog = r->guest_bytes;
		*remaining = r->backlog;
		*bw = r->env->bandwidth;
		return 0;
	}
	memcpy(status, r->mig.status, sizeof(status));
	ret = qmp_query_migrate(&r->qmp, &r->mig, CV_QMP_MS);
	if (ret)
		return ret;
	if (strcmp(status, r->mig.status) && r->env->json)
		cv_event_status(r, now_s() - r->t0);
	*over = qmp_migration_ended(&r->mig);
	if (r->mig.dirty_sync_count != r->sync_count) {
		r->sync_count = r->mig.dirty_sync_count;
		r->sync_t = now_s();
	}
	/*
	 * ram.remaining is this pass's; what the guest dirtied since QEMU's
	 * latest sync comes on top (at its rate, at most the guest).
	 */
	for (i = 0; i < r->nr_vcpus; i++)
		dirty += r->rate[i];
	dirty = r->mig.remaining + dirty * (now_s() - r->sync_t);
	*remaining = dirty < r->mig.total ? dirty : r->mig.total;
	*bw = r->env->bandwidth ? r->env->bandwidth : cv_qemu_bandwidth(r);
	/* No migration yet, or not past its setup: nothing to decide on. */
	if (strcmp(r->mig.status, "active") && strcmp(r->mig.status, "pre-switchover") &&
	    strcmp(r->mig.status, "device"))
		*bw = 0;
	return 0;
}

/* The controller's limits, each moved only as converge_limit_changed() says. */
static int cv_apply_all(struct cv_run *r, bool *changed)
{
	unsigned int i;
	int ret;

	for (i = 0; i < r->nr_vcpus; i++) {
		uint64_t l = r->out.limit[i];

		if (!converge_limit_changed(r->limit[i], l))
			l = r->limit[i];
		ret = cv_apply(r, i, l, r->cv.demand[i]);
		if (ret)
			return ret;
		if (l == r->limit[i])
			continue;
		r->limit[i] = l;
		if (l && (!r->strongest[i] || l < r->strongest[i]))
			r->strongest[i] = l;
		*changed = true;
	}
	return 0;
}

static int cv_tick(struct cv_run *r, bool *over)
{
	struct converge_vcpu v[CONVERGE_MAX_VCPUS];
	struct converge_tick in = { .vcpu = v };
	double now = now_s(), bw;
	bool changed = false;
	unsigned int i;
	int ret;

	ret = cv_read_rates(r, v);
	if (!ret)
		ret = cv_migration(r, now - r->last_t, &in.remaining, &bw, over);
	r->last_t = now;
	if (ret || *over)
		return ret;
	in.t = now - r->t0;
	in.bandwidth = bw;
	if (!r->ks)
		for (i = 0; i < r->nr_vcpus; i++)
			v[i].can_limit = true;	/* what it would set */
	converge_tick(&r->cv, &in, &r->out);
	if (r->converged_t < 0 && bw > 0 && in.remaining <= bw * r->env->downtime_ms / 1000.0)
		r->converged_t = in.t;
	ret = cv_apply_all(r, &changed);
	cv_say_change(r, in.t, changed);
	if (r->env->live)
		cv_live(r, in.t, in.remaining, bw);
	return ret;
}

/* Sleep until the next tick, waking for a cancel. */
static void cv_wait(double until)
{
	while (!kvmmig_cancelled(&cmd_cancel_flag) && now_s() < until)
		usleep(20000);
}

static int cv_setup(struct cv_run *r)
{
	struct cv_env *env = r->env;
	struct converge_params cp = {
		.deadline_s = env->within_s,
		.idle_rate = env->idle_rate,
		.min_limit = env->min_limit,
	};
	const char *why = NULL;
	int64_t dl;
	int ret;

	if (kmod_present(&why)) {
		ret = cv_attach(r);
	} else {
		fprintf(stderr, "kvmmig converge: %s: reading dirty rates through BPF; without kvmmig.ko converge cannot throttle: it only says what limits it would set\n",
			why);
		ret = cv_open_bpf(r);
	}
	if (ret)
		return ret;
	if (!r->nr_vcpus) {
		kvmmig_err("process %d runs no vCPU that kvmmig can see", env->pid);
		return -ESRCH;
	}
	if (env->qmp_path) {
		ret = qmp_connect(&r->qmp, env->qmp_path, CV_QMP_MS);
		if (ret == -ECONNREFUSED || ret == -ENOENT)
			kvmmig_err("cannot connect to QMP socket %s: %s (is QEMU running with -qmp unix:%s,server=on,wait=off?)",
				   env->qmp_path, strerror(-ret), env->qmp_path);
		if (ret)
			return ret;
		r->has_qmp = true;
		r->qmp.cancel = &cmd_cancel_flag;
		if (!env->downtime_ms && !qmp_migrate_parameter(&r->qmp, "downtime-limit", &dl,
								CV_QMP_MS))
			env->downtime_ms = dl;
	}
	if (!env->downtime_ms)
		env->downtime_ms = 300;
	cp.nr_vcpus = r->nr_vcpus;
	cp.downtime_s = env->downtime_ms / 1000.0;
	r->backlog = r->guest_bytes;
	return converge_init(&r->cv, &cp);
}

static int cv_loop(struct cv_run *r, const char **end)
{
	struct converge_vcpu v[CONVERGE_MAX_VCPUS];
	bool over = false;
	int ret;

	r->t0 = r->last_t = now_s();
	ret = cv_read_rates(r, v);
	memcpy(r->slept0, r->slept, sizeof(r->slept));
	while (!ret) {
		cv_wait(r->last_t + CV_TICK_MS / 1000.0);
		if (kvmmig_cancelled(&cmd_cancel_flag)) {
			*end = cmd_cancel_flag == SIGTERM ? "stopped by SIGTERM" : "stopped by SIGINT";
			return 0;
		}
		ret = cv_tick(r, &over);
		if (over) {
			*end = r->mig.status;
			r->end_t = r->last_t - r->t0;
			if (r->converged_t < 0 && !strcmp(*end, "completed"))
				r->converged_t = r->last_t - r->t0;
			return 0;
		}
	}
	*end = "failed";
	return ret;
}

static void cv_event_start(const struct cv_run *r)
{
	struct json_writer w;
	char v[48];

	json_event_begin(&w, stdout, "start");
	json_key_u64(&w, "pid", r->env->pid);
	json_key_u64(&w, "vcpus", r->nr_vcpus);
	json_key_str(&w, "throttle", !r->ks ? "none" : r->bucket ? "module-dirty-limit" :
		     "module-cpu-throttle");
	json_key_u64(&w, "downtime_limit_ms", r->env->downtime_ms);
	json_key_u64(&w, "converge_within_s", r->env->within_s);
	if (r->has_qmp) {
		snprintf(v, sizeof(v), "%u.%u.%u", r->qmp.major, r->qmp.minor, r->qmp.micro);
		json_key_str(&w, "qemu", v);
	}
	json_line_end(&w);
}

int cmd_converge(int argc, char **argv)
{
	struct cv_env env = { 0 };
	struct cv_run r = { .env = &env, .converged_t = -1, .end_t = -1 };
	const char *end = "failed";
	char why[256] = "";
	int ret, lift;

	ret = converge_parse(argc, argv, &env);
	if (ret >= 0)
		return ret;
	env.live = !env.json && isatty(STDOUT_FILENO);
	cmd_catch_cancel_signals();
	ret = cv_setup(&r);
	if (!ret && env.json)
		cv_event_start(&r);
	if (!ret)
		ret = cv_loop(&r, &end);
	if (ret)
		snprintf(why, sizeof(why), "%s", kvmmig_last_error());
	/* Whatever happened, nothing of ours stays in force. */
	lift = cv_lift_all(&r);
	if (lift)
		fprintf(stderr, "kvmmig converge: lifting the limits failed (%s); closing the session lifts them\n",
			kvmmig_last_error());
	if (r.t0 > 0)
		cv_report(&r, end, now_s() - r.t0, !lift);
	if (ret)
		fprintf(stderr, "kvmmig converge: %s%s\n", why,
			r.ks && !lift ? "; every limit lifted" : "");
	if (r.has_qmp)
		qmp_close(&r.qmp);
	kmod_close(r.ks);
	bpf_rates_close(r.br);
	if (ret)
		return 1;
	return !strcmp(end, "failed") || !strcmp(end, "cancelled") ? 1 : 0;
}
