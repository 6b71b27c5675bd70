// SPDX-License-Identifier: GPL-2.0-only
/*
 * Postcopy benchmarks (Documentation/postcopy.rst), the compared
 * configurations taking turns within each round (the machine drifts),
 * medians and ranges over the rounds:
 *
 *  1. Remote faults: latency (p50, p99, the histogram) and blocktime of
 *     vanilla postcopy, postcopy-preempt, and preempt with the hint, for a
 *     guest writing its memory in order (seq) and one writing it at random
 *     (rand), over loopback and over a 1 Gbit/s link between two network
 *     namespaces (netns_util.h).  The switch comes after the first pass,
 *     so the background stream saturates the link while the vCPUs fault.
 *     preempt-nice is preempt with the threads a waiting vCPU depends on
 *     held to nice -5 (thread_nice.h), which also stops the fault thread
 *     waiting on its core for the pages it asked for: what real-time
 *     scheduling buys.
 *  2. Page-request throughput: requests per second of postcopy with 1, 4
 *     and 16 vCPUs faulting at once.
 *  3. A guest dirtying faster than a capped link: total time and downtime
 *     of postcopy against precopy with auto-converge and with rate-driven.
 *
 * Each migration's source and destination are children forked from this
 * program, which holds no guest, and each sends its struct mig_report back
 * over a socket (a fork of the same image: its string pointers stay valid).
 *
 *   postcopy_perf [--quick] [--rounds N] [--only latency|throughput|converge]
 *                 [--no-netns] [--json FILE]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lat_hist.h"
#include "mig_test_util.h"
#include "net.h"
#include "netns_util.h"
#include "perf_util.h"
#include "thread_nice.h"

#define PC_DEFAULT_ROUNDS	3
#define PC_WARMUP_MS		500	/* the guest writes before it migrates */
#define PC_LISTEN_MS		30000	/* a destination names its port */
#define PC_RUN_MS		300000	/* a migration ends */
#define PC_DEST_MS		60000	/* the destination reports after the source */
#define PC_MAX_PASSES		100	/* precopy that never converges fails here */
#define PC_FORCE_DOWNTIME_MS	1	/* below any pass's leftovers */
#define PC_LAT_RAM		(256ULL << 20)
#define PC_LAT_VCPUS		2
#define PC_LAT_WSS		(64ULL << 20)	/* per vCPU, half its slice: all dirty
						   at the switch, the rest clean */
#define PC_TPUT_RAM		(64ULL << 20)
#define PC_TPUT_BANDWIDTH	(32ULL << 20)	/* bytes/s of background pages */
#define PC_CONV_RAM		(32ULL << 20)
#define PC_CONV_VCPUS		2
#define PC_CONV_BANDWIDTH	(32ULL << 20)	/* bytes/s: below the guest's dirty rate */

/* One way to migrate: postcopy's options or a precopy policy. */
struct pc_mode {
	const char *name;
	bool postcopy, preempt, hint;
	enum mig_policy policy;
	enum kvmmig_urgency urgency;	/* at most, on both sides (0: real time) */
};

static const struct pc_mode lat_modes[] = {
	{ "vanilla", .postcopy = true },
	{ "preempt", .postcopy = true, .preempt = true },
	{ "preempt+hint", .postcopy = true, .preempt = true, .hint = true },
	{ "preempt-nice", .postcopy = true, .preempt = true, .urgency = KVMMIG_URGENCY_NICE },
};

#define NR_LAT_MODES	(sizeof(lat_modes) / sizeof(lat_modes[0]))
#define MODE_PREEMPT	1
#define MODE_HINT	2

/* One migration. */
struct pc_spec {
	const struct pc_mode *mode;
	const struct netns_hosts *hosts;	/* NULL: loopback */
	enum guest_workload workload;
	enum dirty_backend backend;
	uint64_t ram, max_bandwidth;
	uint64_t wss;				/* each vCPU's working set, 0: its slice */
	unsigned int vcpus;
	enum mig_postcopy_start start;		/* PASSES: after the first */
	bool force_switch;			/* downtime-limit so small that
						   precopy never finishes first */
};

/* What a side sends back. */
struct pc_side_result {
	int ret;
	struct mig_report rep;		/* its timeline freed */
};

struct pc_run {
	int ret;			/* 0: both sides completed */
	char error[sizeof(((struct mig_report *)0)->error) + 64];
	struct mig_report src, dst;
};

struct pc_bench {
	unsigned int rounds;
	bool quick, netns;
	struct perf_json json;
};

static void quiet(int level, const char *msg)
{
}

/* ---- the two sides, forked children ---- */

/* Exactly @len bytes from a side within @timeout_ms of silence: 0 or -errno. */
static int side_read(int fd, void *buf, size_t len, int timeout_ms)
{
	struct net_wait w = { .timeout_ms = timeout_ms, .what = "a side's result" };

	return net_read_all(fd, buf, len, &w);
}

/* In a side: its result to the benchmark, then exit. */
static void __attribute__((noreturn)) side_finish(int fd, struct pc_side_result *r)
{
	mig_report_free(&r->rep);
	r->rep.samples = NULL;
	r->rep.nr_samples = r->rep.cap_samples = 0;
	_exit(net_write_all(fd, r, sizeof(*r), NULL) ? 1 : 0);
}

/* A side dies with the benchmark and lives in its host's namespace. */
static void side_enter(const char *netns)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	kvmmig_set_log(quiet, KVMMIG_LOG_ERR);
	if (netns && dest_enter_netns(netns)) {
		fprintf(stderr, "postcopy_perf: cannot enter network namespace %s: %s\n", netns,
			strerror(errno));
		_exit(1);
	}
}

static void dest_listening(void *opaque, int port)
{
	if (net_write_all(*(int *)opaque, &port, sizeof(port), NULL))
		_exit(1);
}

/*
 * Fork a side with a socket back to the benchmark: in the child 0 and its
 * end in *@fd, in the parent the pid and the other end; -1.
 */
static pid_t side_fork(int *fd)
{
	int pfd[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	close(pfd[pid ? 1 : 0]);
	*fd = pfd[pid ? 0 : 1];
	return pid;
}

/*
 * Fork a destination listening on its host; its address into @addr, the
 * socket its result comes on into *@fd.  The pid, or -1.
 */
static pid_t dest_start(const struct pc_spec *s, char *addr, size_t len, int *fd)
{
	const char *host = s->hosts ? NETNS_DST_ADDR : "127.0.0.1";
	pid_t pid = side_fork(fd);
	int port;

	if (pid == 0) {
		struct pc_side_result r = { 0 };
		char listen[64];
		struct mig_dest_opts o = {
			.listen = listen,
			.listening = dest_listening,
			.resumed = dest_child_resumed,
			.opaque = fd,
			DEST_CHILD_VMM,
		};

		side_enter(s->hosts ? s->hosts->dst : NULL);
		kvmmig_thread_urgent_limit(s->mode->urgency);
		snprintf(listen, sizeof(listen), "tcp:%s:0", host);
		r.ret = mig_dest_run(&o, &r.rep);
		side_finish(*fd, &r);
	}
	if (pid < 0)
		return -1;
	if (side_read(*fd, &port, sizeof(port), PC_LISTEN_MS)) {
		close(*fd);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	snprintf(addr, len, "tcp:%s:%d", host, port);
	return pid;
}

/* The source's guest: every page written once, the workload running. */
static struct vm *source_guest_for(const struct pc_spec *s)
{
	struct vm_config cfg = {
		.nr_vcpus = s->vcpus,
		.ram_bytes = s->ram,
		.nr_slots = 1,
		.guest.workload = s->workload,
		.guest.wss_pages = s->wss / GUEST_PAGE_SIZE,
	};
	struct kvmmig_slot *slot;
	struct vm *vm;

	if (dirty_prepare_config(s->backend, &cfg) < 0 || vm_create(&cfg, &vm))
		return NULL;
	/* No page stays zero: every one crosses in the first pass. */
	slot = &vm->slots[vm_first_ram_slot()];
	memset((void *)slot->hva, 0x5a, slot->size);
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	usleep(PC_WARMUP_MS * 1000);
	return vm;
}

static void source_params(const struct pc_spec *s, struct mig_params *p)
{
	mig_params_init(p);
	p->max_bandwidth = s->max_bandwidth;
	p->policy = s->mode->policy;
	p->max_passes = PC_MAX_PASSES;
	p->postcopy_ram = s->mode->postcopy;
	p->postcopy_preempt = s->mode->preempt;
	p->postcopy_hint = s->mode->hint;
	p->postcopy_start = s->start;
	p->postcopy_after_passes = 1;
	if (s->force_switch)
		p->downtime_limit_ms = PC_FORCE_DOWNTIME_MS;
}

/* Fork a source migrating its new guest to @to; the result comes on *@fd. */
static pid_t source_start(const struct pc_spec *s, const char *to, int *fd)
{
	pid_t pid = side_fork(fd);

	if (pid == 0) {
		struct pc_side_result r = { 0 };
		struct mig_source_opts o = { .to = to };
		struct vm *vm;

		side_enter(s->hosts ? s->hosts->src : NULL);
		kvmmig_thread_urgent_limit(s->mode->urgency);
		source_params(s, &o.params);
		vm = source_guest_for(s);
		if (!vm) {
			r.ret = -ENODEV;
			snprintf(r.rep.error, sizeof(r.rep.error), "cannot run the source guest: %s",
				 kvmmig_last_error());
			side_finish(*fd, &r);
		}
		r.ret = mig_source_run(vm->kv, &o, &r.rep);
		vm_destroy(vm);
		side_finish(*fd, &r);
	}
	return pid;
}

/* A side's result within @timeout_ms into @r (said in @run on failure), and its end. */
static int side_collect(pid_t pid, int fd, int timeout_ms, const char *who,
			struct pc_side_result *r, struct pc_run *run)
{
	int ret = side_read(fd, r, sizeof(*r), timeout_ms);

	close(fd);
	if (ret) {
		kill(pid, SIGKILL);
		snprintf(run->error, sizeof(run->error), "the %s %s", who,
			 ret == -ETIMEDOUT ? "did not finish in time" : "died without a report");
	}
	waitpid(pid, NULL, 0);
	return ret;
}

/* Migrate once as @s says; both sides' reports into @run. */
static void run_once(const struct pc_spec *s, struct pc_run *run)
{
	struct pc_side_result src = { 0 }, dst = { 0 };
	int sfd, dfd;
	pid_t spid, dpid;
	char addr[64];

	memset(run, 0, sizeof(*run));
	run->ret = -ECHILD;
	dpid = dest_start(s, addr, sizeof(addr), &dfd);
	if (dpid < 0) {
		snprintf(run->error, sizeof(run->error), "the destination did not listen");
		return;
	}
	spid = source_start(s, addr, &sfd);
	if (spid < 0) {
		snprintf(run->error, sizeof(run->error), "cannot fork the source: %s",
			 strerror(errno));
		kill(dpid, SIGKILL);
		waitpid(dpid, NULL, 0);
		close(dfd);
		return;
	}
	if (side_collect(spid, sfd, PC_RUN_MS, "source", &src, run)) {
		kill(dpid, SIGKILL);
		close(dfd);
		waitpid(dpid, NULL, 0);
		return;
	}
	if (side_collect(dpid, dfd, PC_DEST_MS, "destination", &dst, run))
		return;
	run->src = src.rep;
	run->dst = dst.rep;
	if (src.ret || src.rep.state != MIG_COMPLETED)
		snprintf(run->error, sizeof(run->error), "source %s: %s",
			 mig_state_name(src.rep.state), src.rep.error[0] ? src.rep.error : "?");
	else if (dst.ret)
		snprintf(run->error, sizeof(run->error), "destination %s: %s",
			 mig_state_name(dst.rep.state), dst.rep.error[0] ? dst.rep.error :
			 dst.ret == -DEST_NO_PROGRESS ? "the guest made no progress there" :
			 dst.ret == -DEST_CHECK_FAILED ? "the guest's parameters were overwritten" :
			 strerror(-dst.ret));
	else
		run->ret = 0;
}

/*
 * The fault figures: the destination's own (it measures them), else what
 * the source learnt from POSTCOPY_DONE.
 */
static const struct mig_report *fault_report(const struct pc_run *run)
{
	if (run->dst.postcopy || !run->src.postcopy)
		return &run->dst;
	return &run->src;
}

/* One migration's line, as it ends: what it was, and how it went. */
static void print_run(unsigned int round, const char *what, const struct pc_run *run)
{
	const struct mig_report *f = fault_report(run);

	if (run->ret) {
		printf("   round %u %-30s failed: %s\n", round + 1, what, run->error);
	} else {
		printf("   round %u %-30s %6.2f s, downtime %6.1f ms, %3llu passes", round + 1, what,
		       run->src.total_s, run->src.downtime_ms, (unsigned long long)run->src.passes);
		if (run->src.max_throttle_pct)
			printf(", throttle up to %u%%", run->src.max_throttle_pct);
		if (run->src.postcopy)
			printf(", postcopy %.2f s, %llu requests, %llu faults, blocktime %.1f ms",
			       f->postcopy_s, (unsigned long long)f->postcopy_requests,
			       (unsigned long long)f->postcopy_remote_faults,
			       f->postcopy_blocktime_ns / 1e6);
		/* A percentile of no faults is none. */
		if (lat_hist_count(f->postcopy_fault_us_hist))
			printf(", p50 < %llu us, p99 < %llu us",
			       (unsigned long long)lat_hist_percentile_us(f->postcopy_fault_us_hist, 50),
			       (unsigned long long)lat_hist_percentile_us(f->postcopy_fault_us_hist, 99));
		printf("\n");
	}
	fflush(stdout);
}

/* ---- figures over rounds ---- */

struct pc_stats {
	unsigned int n, failed, switched;
	unsigned int nlat;		/* rounds with remote faults: p50, p99 */
	char error[sizeof(((struct mig_report *)0)->error) + 64];	/* the last failure's */
	double p50[PERF_MAX_ROUNDS], p99[PERF_MAX_ROUNDS], blocktime_ms[PERF_MAX_ROUNDS];
	double faults[PERF_MAX_ROUNDS], requests[PERF_MAX_ROUNDS], dropped[PERF_MAX_ROUNDS];
	double postcopy_s[PERF_MAX_ROUNDS], req_per_s[PERF_MAX_ROUNDS];
	double total_s[PERF_MAX_ROUNDS], downtime_ms[PERF_MAX_ROUNDS];
	double passes[PERF_MAX_ROUNDS], throttle[PERF_MAX_ROUNDS];
	uint64_t hist[LAT_HIST_SLOTS];	/* every round's faults */
};

static void stats_add(struct pc_stats *st, const struct pc_run *run)
{
	const struct mig_report *f = fault_report(run);
	unsigned int n = st->n, b;

	if (run->ret) {
		st->failed++;
		snprintf(st->error, sizeof(st->error), "%s", run->error);
		return;
	}
	if (n >= PERF_MAX_ROUNDS)
		return;
	st->switched += run->src.postcopy;
	/* A round without remote faults has no percentile (not 0 us). */
	if (lat_hist_count(f->postcopy_fault_us_hist)) {
		st->p50[st->nlat] = lat_hist_percentile_us(f->postcopy_fault_us_hist, 50);
		st->p99[st->nlat++] = lat_hist_percentile_us(f->postcopy_fault_us_hist, 99);
	}
	st->blocktime_ms[n] = f->postcopy_blocktime_ns / 1e6;
	st->faults[n] = f->postcopy_remote_faults;
	st->requests[n] = f->postcopy_requests;
	st->dropped[n] = f->postcopy_dropped;
	st->postcopy_s[n] = f->postcopy_s;
	st->req_per_s[n] = f->postcopy_s > 0 ? f->postcopy_requests / f->postcopy_s : 0;
	st->total_s[n] = run->src.total_s;
	st->downtime_ms[n] = run->src.downtime_ms;
	st->passes[n] = run->src.passes;
	st->throttle[n] = run->src.max_throttle_pct;
	for (b = 0; b < LAT_HIST_SLOTS; b++)
		st->hist[b] += f->postcopy_fault_us_hist[b];
	st->n++;
}

/*
 * Percentiles over rounds: each is a slot's upper bound, and so is their
 * median (the upper one of an even count, not the mean of two bounds).
 */
static struct perf_range bucket_range(double *v, unsigned int n)
{
	struct perf_range r = perf_range(v, n);

	if (n && !(n % 2))
		r.median = v[n / 2];
	return r;
}

static struct perf_range med(double *v, const struct pc_stats *st)
{
	return perf_range(v, st->n);
}

/* "median (min-max)" of @v, @decimals after the point, into @buf. */
static const char *fmt_range(char *buf, size_t len, struct perf_range r, int decimals)
{
	if (r.median < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f (%.*f-%.*f)", decimals, r.median, decimals, r.min,
			 decimals, r.max);
	return buf;
}

/* The median alone, or "-" when no round counted. */
static const char *fmt_med(char *buf, size_t len, struct perf_range r, int decimals)
{
	if (r.median < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", decimals, r.median);
	return buf;
}

static void json_range(struct pc_bench *b, const char *key, struct perf_range r)
{
	char k[64];

	snprintf(k, sizeof(k), "%s_median", key);
	perf_json_num(&b->json, k, r.median);
	snprintf(k, sizeof(k), "%s_min", key);
	perf_json_num(&b->json, k, r.min);
	snprintf(k, sizeof(k), "%s_max", key);
	perf_json_num(&b->json, k, r.max);
}

static void json_hist(struct pc_bench *b, const uint64_t *hist)
{
	unsigned int i;

	if (!b->json.f)
		return;
	json_key(&b->json.w, "fault_us_hist");
	json_array_begin(&b->json.w);
	for (i = 0; i < LAT_HIST_BUCKETS; i++)
		json_u64(&b->json.w, lat_hist_bucket(hist, i));
	json_array_end(&b->json.w);
}

/*
 * A configuration's row in the JSON, begun with what every row carries:
 * the benchmark and its rounds; the last failure is printed under the
 * table's line.
 */
static void row_begin(struct pc_bench *b, const char *bench, const struct pc_stats *x)
{
	if (x->failed)
		printf("          last failure: %s\n", x->error);
	perf_json_begin(&b->json);
	perf_json_str(&b->json, "bench", bench);
	perf_json_num(&b->json, "rounds_ok", x->n);
	perf_json_num(&b->json, "rounds_failed", x->failed);
	perf_json_num(&b->json, "rounds_switched", x->switched);
	perf_json_num(&b->json, "rounds_faulted", x->nlat);
}

/* The non-empty stretch of @hist as "[lo,hi):count" items; bucket 0 is "<2". */
static void print_hist(const char *indent, const uint64_t *hist)
{
	int first = -1, last = -1, i;

	for (i = 0; i < LAT_HIST_BUCKETS; i++)
		if (lat_hist_bucket(hist, i)) {
			if (first < 0)
				first = i;
			last = i;
		}
	printf("%s", indent);
	if (first < 0) {
		printf("(no remote faults)\n");
		return;
	}
	for (i = first; i <= last; i++) {
		unsigned long long n = lat_hist_bucket(hist, i);

		if (!i)
			printf(" <2:%llu", n);
		else if (i == LAT_HIST_BUCKETS - 1)
			printf(" >=%llu:%llu", 1ULL << i, n);
		else
			printf(" [%llu,%llu):%llu", 1ULL << i, 2ULL << i, n);
	}
	printf("\n");
}

/*
 * A percentile is known to a slot of its histogram (an eighth of a power
 * of two): the slot's upper bound is what the report gives.  Against
 * @goal_us it is met (bound <= goal), not met (the slot starts at or above
 * the goal), or inside the slot.
 */
static const char *goal_verdict(double upper_us, double goal_us)
{
	unsigned int i;

	if (upper_us < 0)
		return "not measured";
	if (upper_us <= goal_us)
		return "met";
	for (i = 0; i < LAT_HIST_SLOTS; i++)
		if (lat_hist_slot_hi(i) == upper_us && lat_hist_slot_lo(i) >= goal_us)
			return "not met";
	return "undecided (the goal lies inside the slot)";
}

/* The loopback goal for preempt: p50 <= 100 us, p99 <= 1 ms. */
static void print_latency_goal(const char *workload, struct pc_stats *st)
{
	double p50, p99;

	if (!st->nlat) {
		printf("   goal, %s, preempt: p50 <= 100 us, p99 <= 1 ms: not measured (no remote faults)\n",
		       workload);
		return;
	}
	p50 = bucket_range(st->p50, st->nlat).median;
	p99 = bucket_range(st->p99, st->nlat).median;
	printf("   goal, %s, preempt: p50 <= 100 us: %s (median p50 under %.0f us); p99 <= 1 ms: %s (under %.0f us)\n",
	       workload, goal_verdict(p50, 100), p50, goal_verdict(p99, 1000), p99);
}

/* Sequential blocktime with the hint against preempt alone, or -1. */
static double hint_ratio(struct pc_stats *preempt, struct pc_stats *hint)
{
	double without, with;

	if (!preempt->switched || !hint->switched)
		return -1;
	without = perf_range(preempt->blocktime_ms, preempt->n).median;
	with = perf_range(hint->blocktime_ms, hint->n).median;
	return without > 0 ? with / without : -1;
}

/*
 * @b->rounds rounds of the @n migrations @specs (named @names), taking
 * turns: each round starts one further on, so none always goes first.
 * Each one's figures into @st[i].
 */
static void run_rounds(const struct pc_bench *b, const struct pc_spec *specs,
		       const char *const *names, unsigned int n, struct pc_stats *st)
{
	unsigned int round, k, i;
	struct pc_run run;

	memset(st, 0, n * sizeof(*st));
	for (round = 0; round < b->rounds; round++)
		for (k = 0; k < n; k++) {
			i = (k + round) % n;
			run_once(&specs[i], &run);
			print_run(round, names[i], &run);
			stats_add(&st[i], &run);
		}
}

/* ---- 1: remote-fault latency ---- */

static const char *const workload_names[] = { "seq", "rand" };
static const enum guest_workload lat_workloads[] = { WORKLOAD_SEQ, WORKLOAD_RAND };

static void latency_link(struct pc_bench *b, const char *link, const struct netns_hosts *hosts)
{
	static struct pc_stats st[2][NR_LAT_MODES];
	uint64_t ram = b->quick ? PC_LAT_RAM / 2 : PC_LAT_RAM;
	uint64_t wss = b->quick ? PC_LAT_WSS / 2 : PC_LAT_WSS;
	struct pc_spec specs[2 * NR_LAT_MODES];
	const char *names[2 * NR_LAT_MODES];
	char what[2 * NR_LAT_MODES][32];
	char r1[48], r2[48], r3[48], m1[24], m2[24];
	unsigned int w, m;
	double ratio;

	for (w = 0; w < 2; w++)
		for (m = 0; m < NR_LAT_MODES; m++) {
			struct pc_spec *sp = &specs[w * NR_LAT_MODES + m];

			*sp = (struct pc_spec) {
				.mode = &lat_modes[m],
				.hosts = hosts,
				.workload = lat_workloads[w],
				.backend = DIRTY_AUTO,
				.ram = ram,
				.wss = wss,
				.vcpus = PC_LAT_VCPUS,
				.start = MIG_POSTCOPY_START_PASSES,
				.force_switch = true,
			};
			snprintf(what[w * NR_LAT_MODES + m], sizeof(what[0]), "%s %s",
				 workload_names[w], lat_modes[m].name);
			names[w * NR_LAT_MODES + m] = what[w * NR_LAT_MODES + m];
		}
	printf("\n1. Remote faults, %s: %llu MiB guest, %u vCPUs each writing %llu MiB, switch after\n"
	       "   pass 1 (%u rounds)\n", link, (unsigned long long)(ram >> 20), PC_LAT_VCPUS,
	       (unsigned long long)(wss >> 20), b->rounds);
	fflush(stdout);
	/* Both workloads and every mode take turns, in one sequence. */
	run_rounds(b, specs, names, 2 * NR_LAT_MODES, &st[0][0]);
	printf("   %-5s %-13s %5s %8s %7s %9s %-18s %-20s %-24s %10s\n", "load", "mode", "ok",
	       "switched", "faulted", "faults", "p50 us (range)", "p99 us (range)",
	       "blocktime ms (range)", "postcopy s");
	for (w = 0; w < 2; w++)
		for (m = 0; m < NR_LAT_MODES; m++) {
			struct pc_stats *x = &st[w][m];
			struct perf_range p50 = bucket_range(x->p50, x->nlat);
			struct perf_range p99 = bucket_range(x->p99, x->nlat);
			struct perf_range bt = med(x->blocktime_ms, x), faults = med(x->faults, x);
			struct perf_range pcs = med(x->postcopy_s, x);

			printf("   %-5s %-13s %2u/%-2u %8u %7u %9s %-18s %-20s %-24s %10s\n",
			       workload_names[w], lat_modes[m].name, x->n, x->n + x->failed,
			       x->switched, x->nlat, fmt_med(m1, sizeof(m1), faults, 0),
			       fmt_range(r1, sizeof(r1), p50, 0), fmt_range(r2, sizeof(r2), p99, 0),
			       fmt_range(r3, sizeof(r3), bt, 1), fmt_med(m2, sizeof(m2), pcs, 3));
			row_begin(b, "fault_latency", x);
			perf_json_str(&b->json, "link", link);
			perf_json_str(&b->json, "workload", workload_names[w]);
			perf_json_str(&b->json, "mode", lat_modes[m].name);
			perf_json_num(&b->json, "ram_mib", ram >> 20);
			json_range(b, "p50_us", p50);
			json_range(b, "p99_us", p99);
			json_range(b, "blocktime_ms", bt);
			json_range(b, "remote_faults", faults);
			json_range(b, "requests", med(x->requests, x));
			json_range(b, "dropped", med(x->dropped, x));
			json_range(b, "postcopy_s", pcs);
			json_hist(b, x->hist);
			perf_json_end(&b->json);
		}
	printf("   fault latency histogram, all rounds ([lo,hi) us: faults), and its p50 and p99:\n");
	for (w = 0; w < 2; w++)
		for (m = 0; m < NR_LAT_MODES; m++) {
			const uint64_t *h = st[w][m].hist;

			printf("   %-5s %-13s", workload_names[w], lat_modes[m].name);
			print_hist("", h);
			if (lat_hist_count(h))
				printf("   %-19s all rounds: p50 < %llu us, p99 < %llu us\n", "",
				       (unsigned long long)lat_hist_percentile_us(h, 50),
				       (unsigned long long)lat_hist_percentile_us(h, 99));
		}
	if (!hosts)
		for (w = 0; w < 2; w++)
			print_latency_goal(workload_names[w], &st[w][MODE_PREEMPT]);
	ratio = hint_ratio(&st[0][MODE_PREEMPT], &st[0][MODE_HINT]);
	if (ratio < 0)
		printf("   goal, seq: the hint halves blocktime against preempt: not measured\n");
	else
		printf("   goal, seq: the hint halves blocktime against preempt: %.2fx, %s\n", ratio,
		       ratio <= 0.5 ? "met" : "not met");
	perf_json_begin(&b->json);
	perf_json_str(&b->json, "bench", "hint_blocktime_ratio");
	perf_json_str(&b->json, "link", link);
	perf_json_num(&b->json, "seq_hint_vs_preempt", ratio);
	perf_json_end(&b->json);
	fflush(stdout);
}

static void bench_latency(struct pc_bench *b)
{
	struct netns_hosts hosts;
	char skip[320];
	int ret;

	latency_link(b, "loopback", NULL);
	if (!b->netns) {
		printf("\n1. (the 1 Gbit/s link: skipped, --no-netns)\n");
		return;
	}
	ret = netns_hosts_setup(&hosts, skip, sizeof(skip));
	if (ret > 0)
		printf("\n1. (the 1 Gbit/s link: skipped, %s)\n", skip);
	else if (ret < 0)
		printf("\n1. (the 1 Gbit/s link: skipped, setting up the namespaces failed; see above)\n");
	else
		latency_link(b, "1gbit-netns", &hosts);
	netns_hosts_remove(&hosts);
}

/* ---- 2: page-request throughput ---- */

static void bench_throughput(struct pc_bench *b)
{
	static const unsigned int vcpus[] = { 1, 4, 16 };
	static struct pc_stats st[3];
	uint64_t ram = b->quick ? PC_TPUT_RAM / 2 : PC_TPUT_RAM;
	struct pc_spec specs[3];
	const char *names[3];
	char what[3][16];
	char r1[64], r2[48], m1[24], m2[24];
	unsigned int i;

	for (i = 0; i < 3; i++) {
		specs[i] = (struct pc_spec) {
			.mode = &lat_modes[MODE_HINT],
			.workload = WORKLOAD_RAND,
			.backend = DIRTY_AUTO,
			.ram = ram,
			.vcpus = vcpus[i],
			.max_bandwidth = PC_TPUT_BANDWIDTH,
			.start = MIG_POSTCOPY_START_PASSES,
			.force_switch = true,
		};
		snprintf(what[i], sizeof(what[i]), "%u vCPUs", vcpus[i]);
		names[i] = what[i];
	}
	printf("\n2. Page requests with 1, 4, 16 vCPUs faulting at once: %llu MiB guest writing at\n"
	       "   random, loopback, preempt+hint, switch after pass 1, max-bandwidth %llu MiB/s\n"
	       "   (background pages only: requested ones are not paced) (%u rounds);\n"
	       "   requests per second of postcopy (the destination's requests / postcopy_s)\n",
	       (unsigned long long)(ram >> 20), (unsigned long long)(PC_TPUT_BANDWIDTH >> 20),
	       b->rounds);
	fflush(stdout);
	run_rounds(b, specs, names, 3, st);
	printf("   %-6s %5s %9s %10s %-28s %-18s\n", "vCPUs", "ok", "requests", "postcopy s",
	       "requests/s (range)", "p50 us (range)");
	for (i = 0; i < 3; i++) {
		struct pc_stats *x = &st[i];
		struct perf_range rps = med(x->req_per_s, x), p50 = bucket_range(x->p50, x->nlat);
		struct perf_range req = med(x->requests, x), pcs = med(x->postcopy_s, x);

		printf("   %-6u %2u/%-2u %9s %10s %-28s %-18s\n", vcpus[i], x->n, x->n + x->failed,
		       fmt_med(m1, sizeof(m1), req, 0), fmt_med(m2, sizeof(m2), pcs, 3),
		       fmt_range(r1, sizeof(r1), rps, 0), fmt_range(r2, sizeof(r2), p50, 0));
		row_begin(b, "request_throughput", x);
		perf_json_num(&b->json, "vcpus", vcpus[i]);
		perf_json_num(&b->json, "ram_mib", ram >> 20);
		json_range(b, "requests_per_s", rps);
		json_range(b, "requests", req);
		json_range(b, "postcopy_s", pcs);
		json_range(b, "p50_us", p50);
		perf_json_end(&b->json);
	}
	fflush(stdout);
}

/* ---- 3: the guest precopy cannot finish ---- */

static void bench_converge(struct pc_bench *b)
{
	static const struct pc_mode modes[] = {
		{ "postcopy (auto start)", .postcopy = true, .preempt = true, .hint = true },
		{ "precopy auto-converge", .policy = MIG_POLICY_AUTO_CONVERGE },
		{ "precopy rate-driven", .policy = MIG_POLICY_RATE_DRIVEN },
	};
	static struct pc_stats st[3];
	struct pc_spec specs[3];
	const char *names[3];
	char r1[48], r2[48], m1[24], m2[24], m3[24], m4[24];
	unsigned int i;
	double base;

	for (i = 0; i < 3; i++) {
		specs[i] = (struct pc_spec) {
			.mode = &modes[i],
			.workload = WORKLOAD_SEQ,
			.backend = DIRTY_RING,
			.ram = PC_CONV_RAM,
			.vcpus = PC_CONV_VCPUS,
			.max_bandwidth = PC_CONV_BANDWIDTH,
			.start = MIG_POSTCOPY_START_AUTO,
		};
		names[i] = modes[i].name;
	}
	printf("\n3. A guest dirtying faster than the link: %llu MiB, %u vCPUs writing in order,\n"
	       "   max-bandwidth %llu MiB/s, loopback, dirty ring (%u rounds)\n",
	       (unsigned long long)(PC_CONV_RAM >> 20), PC_CONV_VCPUS,
	       (unsigned long long)(PC_CONV_BANDWIDTH >> 20), b->rounds);
	fflush(stdout);
	run_rounds(b, specs, names, 3, st);
	printf("   %-22s %5s %-22s %-24s %7s %9s %13s %12s\n", "way", "ok", "total s (range)",
	       "downtime ms (range)", "passes", "max thr%", "blocktime ms", "vs postcopy");
	base = st[0].n ? perf_range(st[0].total_s, st[0].n).median : -1;
	for (i = 0; i < 3; i++) {
		struct pc_stats *x = &st[i];
		struct perf_range tot = med(x->total_s, x), dt = med(x->downtime_ms, x);
		struct perf_range passes = med(x->passes, x), thr = med(x->throttle, x);
		struct perf_range bt = med(x->blocktime_ms, x);

		snprintf(m3, sizeof(m3), "-");
		if (base > 0 && x->n)
			snprintf(m3, sizeof(m3), "%.2fx", tot.median / base);
		printf("   %-22s %2u/%-2u %-22s %-24s %7s %9s %13s %12s\n", modes[i].name, x->n,
		       x->n + x->failed, fmt_range(r1, sizeof(r1), tot, 2),
		       fmt_range(r2, sizeof(r2), dt, 1), fmt_med(m1, sizeof(m1), passes, 0),
		       fmt_med(m2, sizeof(m2), thr, 0), fmt_med(m4, sizeof(m4), bt, 1), m3);
		row_begin(b, "non_converging", x);
		perf_json_str(&b->json, "way", modes[i].name);
		json_range(b, "total_s", tot);
		json_range(b, "downtime_ms", dt);
		json_range(b, "passes", passes);
		json_range(b, "max_throttle_pct", thr);
		json_range(b, "blocktime_ms", bt);
		perf_json_end(&b->json);
	}
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: postcopy_perf [--quick] [--rounds N] [--only latency|throughput|converge] [--no-netns] [--json FILE]\n");
}

int main(int argc, char **argv)
{
	struct pc_bench b = { .rounds = PC_DEFAULT_ROUNDS, .netns = true };
	bool rounds_given = false;
	const char *only = NULL;
	char *end;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			b.quick = true;
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			b.rounds = strtoul(argv[++i], &end, 10);
			if (*end || !b.rounds || b.rounds > PERF_MAX_ROUNDS) {
				fprintf(stderr, "postcopy_perf: --rounds '%s': expected 1 to %u\n",
					argv[i], PERF_MAX_ROUNDS);
				return 2;
			}
			rounds_given = true;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i];
		} else if (!strcmp(argv[i], "--no-netns")) {
			b.netns = false;
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			i++;
		} else {
			usage();
			return 2;
		}
	}
	if (only && strcmp(only, "latency") && strcmp(only, "throughput") &&
	    strcmp(only, "converge")) {
		fprintf(stderr, "postcopy_perf: --only '%s': expected latency, throughput or converge\n",
			only);
		return 2;
	}
	if (b.quick && !rounds_given)
		b.rounds = 1;
	if (perf_json_open(&b.json, argc, argv, "postcopy"))
		return 2;
	kvmmig_set_log(quiet, KVMMIG_LOG_ERR);
	printf("Postcopy benchmarks (guests in this host's KVM):");
	for (i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	if (!only || !strcmp(only, "latency"))
		bench_latency(&b);
	if (!only || !strcmp(only, "throughput"))
		bench_throughput(&b);
	if (!only || !strcmp(only, "converge"))
		bench_converge(&b);
	return perf_json_close(&b.json) ? 1 : 0;
}
