// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig top`: a live per-VM, per-vCPU table of dirty rates and run time
 * for every KVM guest on the host, whatever its VMM, refreshed every second
 * like kvm_stat.  The numbers come from the dirtyrate BPF programs
 * (user/lib/bpf_rates.c), so no kernel module is needed; the throttle
 * column is filled in when kvmmig.ko manages the VM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpf_rates.h"
#include "commands.h"
#include "json.h"
#include "module_client.h"
#include "log.h"
#include "opts.h"

#define PAGE_BYTES	4096.0
#define MIB		1048576.0

struct top_env {
	pid_t pid;
	uint64_t delay_ms;
	uint64_t iterations;	/* 0: until interrupted */
	bool once;
	bool json;
	bool hist;
	bool verbose;
	bool clear;
	bool no_fentry;
};

/*
 * SIGINT, SIGTERM or SIGHUP ends the refresh loop.  The process has one
 * thread, the handler runs on it: volatile sig_atomic_t is the correct C for
 * that flag, no atomics needed (cmd_run.c has vCPU threads, and needs them).
 */
static volatile sig_atomic_t top_stop;

static void top_sigint(int sig)
{
	top_stop = 1;
}

static void top_usage(FILE *f)
{
	fprintf(f,
		"usage: kvmmig top [-d SECS] [--pid PID] [--once] [--json] [-n N] [--hist]\n"
		"                  [--no-fentry] [-v]\n\n"
		"Live dirty rates and run time of every vCPU of every KVM guest on this host,\n"
		"whatever runs it (QEMU, Cloud Hypervisor, Firecracker, kvmmig), from eBPF on\n"
		"KVM tracepoints: no kernel module needed.  Refreshed like kvm_stat; Ctrl-C quits.\n\n"
		"options:\n"
		"  -d, --delay SECS     refresh interval in seconds, 0.1 to 60 (default 1)\n"
		"  -p, --pid PID        only the VMM process PID\n"
		"  -1, --once           measure one interval, print once, exit\n"
		"  -j, --json           JSON: one object per refresh, one per line\n"
		"  -n, --iterations N   stop after N refreshes\n"
		"      --hist           with each vCPU, its histogram of dirty pages per 100 ms\n"
		"      --no-fentry      do not trace mark_page_dirty_in_slot (dirty-bitmap VMs\n"
		"                       then go uncounted; ring VMs are counted from tracepoints)\n"
		"  -v, --verbose        libbpf debug output\n"
		"  -h, --help           this text\n\n"
		"columns:\n"
		"  PID COMM   the VMM process          VM    the VM's fd in that process\n"
		"  VCPU TID   vCPU index and thread    DIRTY MB/s, PAGES/s   pages first written\n"
		"  RUN%%       time inside KVM_RUN      GUEST%%   time in guest mode (kvm_entry/exit)\n"
		"  THROTTLE   what kvmmig.ko applies: CPU throttle %%, dirty limit MB/s, or none;\n"
		"             '-' when the module does not manage the VM\n"
		"  (MB = 2^20 bytes, as in QEMU's dirty rate; '-' = not measurable on this kernel)\n\n"
		"While top runs, its maps are pinned with their BTF for bpftool:\n"
		"  bpftool map dump pinned /sys/fs/bpf/kvmmig/vcpu_stats\n"
		"  bpftool map dump pinned /sys/fs/bpf/kvmmig/dirty_hist\n\n"
		"examples:\n"
		"  kvmmig top                                   # every VM, every second\n"
		"  kvmmig top --pid $(pidof qemu-system-x86_64) -d 2\n"
		"  kvmmig top --once --json > rates.json        # one sample for scripts\n"
		"  kvmmig run --workload rate --pages-per-sec 20000 --seconds 30 &\n"
		"  kvmmig top -n 5                              # five refreshes of it\n");
}

/*
 * The throttles kvmmig.ko applies, read over its generic netlink family at
 * each refresh: sessions give the VM's pid, statistics each vCPU's limits.
 * A session names no VM fd, so a VMM with two attached VMs is left out.
 */
#define TOP_MAX_SESSIONS	64
#define TOP_MAX_THROTTLED	1024

struct top_throttle {
	uint32_t pid, vcpu;
	uint32_t cpu_pct;		/* CPU throttle, percent */
	uint64_t dirty_limit;		/* pages per second */
};

struct top_throttles {
	unsigned int nr_sessions, nr;
	uint32_t session[TOP_MAX_SESSIONS], pid[TOP_MAX_SESSIONS];
	struct top_throttle t[TOP_MAX_THROTTLED];
};

static struct top_throttles top_thr;

static int top_thr_session(const struct kmod_nl_session *s, void *arg)
{
	struct top_throttles *tt = arg;

	if (s->state == KVMMIG_STATE_ATTACHED && tt->nr_sessions < TOP_MAX_SESSIONS) {
		tt->session[tt->nr_sessions] = s->id;
		tt->pid[tt->nr_sessions++] = s->vm_pid;
	}
	return 0;
}

static int top_thr_stats(uint32_t session, const struct kvmmig_vcpu_stats *st, void *arg)
{
	struct top_throttles *tt = arg;
	unsigned int i, same = 0;
	uint32_t pid = 0;

	for (i = 0; i < tt->nr_sessions; i++)
		if (tt->session[i] == session)
			pid = tt->pid[i];
	for (i = 0; i < tt->nr_sessions; i++)
		same += pid && tt->pid[i] == pid;
	if (same != 1 || tt->nr == TOP_MAX_THROTTLED)
		return 0;
	tt->t[tt->nr++] = (struct top_throttle){ pid, st->vcpu, st->cpu_throttle,
						 st->dirty_limit };
	return 0;
}

static void top_throttles_read(void)
{
	top_thr.nr_sessions = top_thr.nr = 0;
	if (!kmod_present(NULL))
		return;
	if (kmod_nl_sessions(top_thr_session, &top_thr) || !top_thr.nr_sessions)
		return;
	if (kmod_nl_stats(0, top_thr_stats, &top_thr))
		top_thr.nr = 0;
}

/* "20%", "64MB/s" (dirty limit), "" when kvmmig.ko does not manage the vCPU. */
static void top_throttle_fmt(uint32_t pid, unsigned int vcpu, char *buf, size_t len)
{
	const struct top_throttle *t;
	unsigned int i;

	buf[0] = '\0';
	for (i = 0; i < top_thr.nr; i++) {
		t = &top_thr.t[i];
		if (t->pid != pid || t->vcpu != vcpu)
			continue;
		if (t->cpu_pct)
			snprintf(buf, len, "%u%%", t->cpu_pct);
		else if (t->dirty_limit)
			snprintf(buf, len, "%.0fMB/s", t->dirty_limit * PAGE_BYTES / MIB);
		else
			snprintf(buf, len, "none");
	}
}

static void top_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, len, f))
		snprintf(buf, len, "?");
	if (f)
		fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

static void fmt_pct(char *buf, size_t len, double pct)
{
	if (pct < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1f", pct);
}

static bool guest_seen(const struct bpf_rates *br)
{
	size_t i;

	for (i = 0; i < bpf_rates_count(br); i++)
		if (bpf_rates_get(br, i)->exits)
			return true;
	return false;
}

static void top_print_sources(const struct bpf_rates *br)
{
	const struct bpf_rates_source_info *s;
	int i;

	for (i = 0; i < NR_BPF_RATES_SOURCES; i++) {
		s = bpf_rates_source(br, i);
		if (!s->attached)
			printf("  %-7s unavailable: %s\n", s->name, s->why);
		else if (i == BPF_RATES_GUEST && !guest_seen(br))
			printf("  %-7s %s, no events yet (KVM emulating guests fires none)\n",
			       s->name, s->attached);
		else
			printf("  %-7s %s\n", s->name, s->attached);
	}
}

static void top_print_hist(const struct bpf_rates *br, const struct bpf_rates_vcpu *v)
{
	struct bpf_rates_hist h;
	int i, last = 0;

	if (bpf_rates_hist(br, v->pid, v->vm_fd, v->vcpu, &h))
		return;
	for (i = 0; i < BPF_RATES_HIST_SLOTS; i++)
		if (h.slots[i])
			last = i;
	printf("%38s pages per %llu ms:", "",
	       (unsigned long long)(h.interval_ns / 1000000));
	for (i = 0; i <= last; i++)
		if (h.slots[i])
			printf(" %s%llu:%llu", i ? "<" : "=",
			       i ? 1ULL << i : 0ULL, (unsigned long long)h.slots[i]);
	printf("\n");
}

static void top_print_row(const char *vcpu, const char *tid, double pages, double run,
			  double guest, const char *throttle)
{
	char r[16], g[16];

	fmt_pct(r, sizeof(r), run);
	fmt_pct(g, sizeof(g), guest);
	printf(" %5s %7s %10.1f %10.0f %6s %7s %8s\n", vcpu, tid, pages * PAGE_BYTES / MIB,
	       pages, r, g, throttle[0] ? throttle : "-");
}

static void top_print_table(const struct top_env *env, const struct bpf_rates *br)
{
	const struct bpf_rates_vcpu *v, *first;
	size_t i, j, n = bpf_rates_count(br);
	double pages, run;
	char comm[32], buf[16], tid[16], thr[16];
	time_t now = time(NULL);

	if (env->clear)
		printf("\033[H\033[J");
	printf("kvmmig top - %.24s, every %.1f s%s\n", ctime(&now), bpf_rates_interval(br),
	       env->pid ? "" : ", all VMMs");
	top_print_sources(br);
	printf("\n%7s %-15s %5s %5s %7s %10s %10s %6s %7s %8s\n", "PID", "COMM", "VM", "VCPU",
	       "TID", "DIRTY MB/s", "PAGES/s", "RUN%", "GUEST%", "THROTTLE");
	if (!n)
		printf("  (no vCPU activity seen yet%s)\n", env->pid ? " for this pid" : "");
	for (i = 0; i < n; i = j) {
		first = bpf_rates_get(br, i);
		pages = run = 0;
		for (j = i; j < n; j++) {
			v = bpf_rates_get(br, j);
			if (v->pid != first->pid || v->vm_fd != first->vm_fd)
				break;
			pages += v->pages_per_sec;
			run += v->run_pct;
		}
		top_comm(first->pid, comm, sizeof(comm));
		snprintf(buf, sizeof(buf), "%d", first->vm_fd);
		printf("%7u %-15.15s %5s", first->pid, comm, first->vm_fd < 0 ? "?" : buf);
		top_print_row("all", "", pages, run / (j - i), -1, "");
		for (; i < j; i++) {
			v = bpf_rates_get(br, i);
			snprintf(buf, sizeof(buf), "%u", v->vcpu);
			snprintf(tid, sizeof(tid), "%u", v->tid);
			printf("%7s %-15s %5s", "", "", "");
			top_throttle_fmt(v->pid, v->vcpu, thr, sizeof(thr));
			top_print_row(buf, tid, v->pages_per_sec, v->run_pct, v->guest_pct, thr);
			if (env->hist)
				top_print_hist(br, v);
		}
	}
	if (bpf_rates_dropped(br))
		printf("\n%llu events lost: more than 1024 vCPUs\n",
		       (unsigned long long)bpf_rates_dropped(br));
	fflush(stdout);
}

/* A percentage, or null for one not measured (below 0). */
static void top_json_pct(struct json_writer *w, const char *name, double pct)
{
	json_key(w, name);
	if (pct < 0)
		json_null(w);
	else
		json_double(w, pct, 2);
}

static void top_json_sources(struct json_writer *w, const struct bpf_rates *br)
{
	const struct bpf_rates_source_info *s;
	int k;

	json_key(w, "sources");
	json_object_begin(w);
	for (k = 0; k < NR_BPF_RATES_SOURCES; k++) {
		s = bpf_rates_source(br, k);
		json_key(w, s->name);
		json_object_begin(w);
		json_key_str(w, "attached", s->attached);
		if (!s->attached)
			json_key_str(w, "why", s->why);
		json_object_end(w);
	}
	json_object_end(w);
}

static void top_json_vcpu(struct json_writer *w, const struct bpf_rates_vcpu *v)
{
	char thr[16];

	json_object_begin(w);
	json_key_u64(w, "vcpu", v->vcpu);
	json_key_u64(w, "tid", v->tid);
	json_key_double(w, "dirty_pages_per_sec", v->pages_per_sec, 1);
	json_key_double(w, "dirty_mb_per_sec", v->pages_per_sec * PAGE_BYTES / MIB, 3);
	top_json_pct(w, "run_pct", v->run_pct);
	top_json_pct(w, "guest_pct", v->guest_pct);
	top_throttle_fmt(v->pid, v->vcpu, thr, sizeof(thr));
	json_key_str(w, "throttle", thr[0] ? thr : NULL);
	json_key_u64(w, "dirty_pages", v->dirty_pages);
	json_key_u64(w, "run_ns", v->run_ns);
	json_key_u64(w, "exits", v->exits);
	json_object_end(w);
}

/* One line: the sources, then per VM (the rows come sorted by pid, VM fd) its vCPUs. */
static void top_print_json(const struct top_env *env, const struct bpf_rates *br)
{
	const struct bpf_rates_vcpu *v, *prev = NULL;
	size_t i, n = bpf_rates_count(br);
	struct json_writer w;
	char comm[32];

	json_line_begin(&w, stdout);
	json_key_i64(&w, "time", time(NULL));
	json_key_double(&w, "interval", bpf_rates_interval(br), 3);
	json_key_u64(&w, "interval_end_ns", bpf_rates_interval_end_ns(br));
	top_json_sources(&w, br);
	json_key(&w, "vms");
	json_array_begin(&w);
	for (i = 0; i < n; i++, prev = v) {
		v = bpf_rates_get(br, i);
		if (!prev || v->pid != prev->pid || v->vm_fd != prev->vm_fd) {
			if (prev) {
				json_array_end(&w);
				json_object_end(&w);
			}
			top_comm(v->pid, comm, sizeof(comm));
			json_object_begin(&w);
			json_key_u64(&w, "pid", v->pid);
			json_key_str(&w, "comm", comm);
			json_key_i64(&w, "vm_fd", v->vm_fd);
			json_key(&w, "vcpus");
			json_array_begin(&w);
		}
		top_json_vcpu(&w, v);
	}
	if (prev) {
		json_array_end(&w);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_line_end(&w);
}

static int top_parse(int argc, char **argv, struct top_env *env)
{
	static const struct option longopts[] = {
		{ "delay", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "once", no_argument, NULL, '1' },
		{ "json", no_argument, NULL, 'j' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "hist", no_argument, NULL, 'H' },
		{ "no-fentry", no_argument, NULL, 'F' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	double secs;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "d:p:1jn:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			secs = strtod(optarg, &end);
			/* Written so that NaN fails too. */
			if (end == optarg || *end || !(secs >= 0.1 && secs <= 60)) {
				fprintf(stderr, "kvmmig top: --delay '%s': expected seconds from 0.1 to 60\n",
					optarg);
				return -1;
			}
			env->delay_ms = secs * 1000;
			break;
		case 'p':
			if (parse_uint("--pid", optarg, 1, 4194304, &v))
				return -1;
			env->pid = v;
			break;
		case '1':
			env->once = true;
			break;
		case 'j':
			env->json = true;
			break;
		case 'n':
			if (parse_uint("--iterations", optarg, 1, ~0U, &env->iterations))
				return -1;
			break;
		case 'H':
			env->hist = true;
			break;
		case 'F':
			env->no_fentry = true;
			break;
		case 'v':
			env->verbose = true;
			break;
		case 'h':
			top_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "kvmmig top -h for help\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmmig top: unexpected argument '%s' (kvmmig top -h for help)\n",
			argv[optind]);
		return -1;
	}
	if (env->pid && kill(env->pid, 0) && errno == ESRCH) {
		fprintf(stderr, "kvmmig top: --pid %d: no such process\n", env->pid);
		return -1;
	}
	if (env->once)
		env->iterations = 1;
	env->clear = !env->json && !env->once && env->iterations != 1 && isatty(STDOUT_FILENO);
	return 0;
}

static void top_sleep(uint64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	/* A signal ends the sleep early; top_stop says why. */
	nanosleep(&ts, NULL);
}

int cmd_top(int argc, char **argv)
{
	struct top_env env = { .delay_ms = 1000 };
	struct bpf_rates_opts opts = { 0 };
	struct sigaction sa = { .sa_handler = top_sigint };
	struct bpf_rates *br;
	uint64_t n;
	int err;

	err = top_parse(argc, argv, &env);
	if (err)
		return err > 0 ? 0 : 2;
	if (geteuid()) {
		fprintf(stderr, "kvmmig top: needs root (CAP_BPF and CAP_PERFMON) to load BPF programs\n");
		return 1;
	}
	opts.pid = env.pid;
	opts.verbose = env.verbose;
	if (env.no_fentry)
		opts.skip = 1U << BPF_RATES_BITMAP;
	/* On failure libkvmmig has said why on stderr. */
	if (bpf_rates_open(&opts, &br))
		return 1;
	if (bpf_rates_stale_pins(br))
		fprintf(stderr, "kvmmig top: replaced stale pins in %s left by a kvmmig top that did not exit cleanly (killed?)\n",
			bpf_rates_pin_dir(br));
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (n = 0; !top_stop && (!env.iterations || n < env.iterations); n++) {
		top_sleep(env.delay_ms);
		if (top_stop && n)
			break;
		bpf_rates_update(br);
		top_throttles_read();
		if (env.json)
			top_print_json(&env, br);
		else
			top_print_table(&env, br);
	}
	bpf_rates_close(br);
	return 0;
}
