// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig attach`, `kvmmig stats` and `kvmmig throttle`: kvmmig.ko for any
 * running VMM.  attach takes a VMM's VM fd by pid (pidfd_getfd), opens a
 * session on it and holds it, printing per-vCPU statistics, until
 * interrupted; stats and throttle reach any open session, held by attach or
 * by a VMM itself, by its id through the module's generic netlink family.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "json.h"
#include "module_client.h"
#include "log.h"
#include "opts.h"

#define PAGE_BYTES	4096ULL

/*
 * SIGINT or SIGTERM ends the attach loop.  The process has one thread, the
 * handler runs on it: volatile sig_atomic_t is the correct C for that flag,
 * no atomics needed.
 */
static volatile sig_atomic_t module_stop;

static void module_sigint(int sig)
{
	module_stop = 1;
}

static const char *module_state_name(uint32_t state)
{
	switch (state) {
	case KVMMIG_STATE_ATTACHED:
		return "attached";
	case KVMMIG_STATE_VM_GONE:
		return "vm-gone";
	case KVMMIG_STATE_DETACHED:
		return "detached";
	default:
		return "?";
	}
}

static bool module_check(void)
{
	const char *why = NULL;

	if (kmod_present(&why))
		return true;
	fprintf(stderr, "kvmmig: %s\n"
		"  load it with: insmod kmod/kvmmig.ko (after `make module`), or run\n"
		"  `make vmdemo` to see it inside a Debian kernel under QEMU\n", why);
	return false;
}

/* ---- per-vCPU statistics, shared by attach and stats ---- */

struct stats_env {
	bool json;
	bool header_done;
	uint32_t session;	/* 0: every session */
	unsigned int rows;
};

static void stats_header(void)
{
	printf("%7s %4s %12s %10s %10s %10s %8s %9s %10s %4s %6s %s\n",
	       "session", "vcpu", "dirty", "pages/s", "run ms", "slept ms", "sleeps",
	       "ringfull", "limit/s", "cpu%", "quota", "flags");
}

static void stats_print_json(uint32_t session, const struct kvmmig_vcpu_stats *st)
{
	struct json_writer w;

	json_line_begin(&w, stdout);
	json_key_u64(&w, "session", session);
	json_key_u64(&w, "vcpu", st->vcpu);
	json_key_u64(&w, "vcpu_id", st->vcpu_id);
	json_key_u64(&w, "dirty_pages", st->dirty_pages);
	json_key_u64(&w, "dirty_rate", st->dirty_rate);
	json_key_u64(&w, "run_ns", st->run_ns);
	json_key_u64(&w, "throttle_ns", st->throttle_ns);
	json_key_u64(&w, "throttle_sleeps", st->throttle_sleeps);
	json_key_u64(&w, "ring_full_exits", st->ring_full_exits);
	json_key_u64(&w, "exits", st->exits);
	json_key_u64(&w, "dirty_limit", st->dirty_limit);
	json_key_u64(&w, "cpu_throttle", st->cpu_throttle);
	json_key_u64(&w, "ring_quota", st->ring_quota);
	json_key_u64(&w, "flags", st->flags);
	json_line_end(&w);
}

static void stats_print(const struct stats_env *env, uint32_t session,
			const struct kvmmig_vcpu_stats *st)
{
	if (env->json) {
		stats_print_json(session, st);
		return;
	}
	printf("%7u %4u %12" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64
	       " %9" PRIu64 " %10" PRIu64 " %4u %6u %s%s%s\n",
	       session, st->vcpu, (uint64_t)st->dirty_pages, (uint64_t)st->dirty_rate,
	       (uint64_t)st->run_ns / 1000000, (uint64_t)st->throttle_ns / 1000000,
	       (uint64_t)st->throttle_sleeps, (uint64_t)st->ring_full_exits,
	       (uint64_t)st->dirty_limit, st->cpu_throttle, st->ring_quota,
	       st->flags & KVMMIG_VCPU_F_IN_GUEST ? "G" : "-",
	       st->flags & KVMMIG_VCPU_F_SLEEP_PENDING ? "S" : "-",
	       st->flags & KVMMIG_VCPU_F_OVER_LIMIT ? "L" : "-");
}

static int stats_row(uint32_t session, const struct kvmmig_vcpu_stats *st, void *arg)
{
	struct stats_env *env = arg;

	if (!env->json && !env->header_done) {
		stats_header();
		env->header_done = true;
	}
	stats_print(env, session, st);
	env->rows++;
	return 0;
}

static void session_print_json(const struct kmod_nl_session *s)
{
	struct json_writer w;

	json_line_begin(&w, stdout);
	json_key_u64(&w, "session", s->id);
	json_key_str(&w, "state", module_state_name(s->state));
	json_key_u64(&w, "pid", s->pid);
	json_key_u64(&w, "vm_pid", s->vm_pid);
	json_key_u64(&w, "vcpus", s->nr_vcpus);
	json_key_u64(&w, "ring_entries", s->ring_entries);
	json_key_u64(&w, "window_ns", s->window_ns);
	json_line_end(&w);
}

static int session_row(const struct kmod_nl_session *s, void *arg)
{
	struct stats_env *env = arg;

	if (env->session && s->id != env->session)
		return 0;
	if (env->json)
		session_print_json(s);
	else
		printf("session %u: %s, attached by pid %u, VM of pid %u, %u vCPUs, ring %u entries\n",
		       s->id, module_state_name(s->state), s->pid, s->vm_pid, s->nr_vcpus,
		       s->ring_entries);
	env->rows++;
	return 0;
}

/* ---- kvmmig attach ---- */

static void attach_usage(FILE *f)
{
	fprintf(f,
		"usage: kvmmig attach --pid PID [-d SECS] [-n N] [--json]\n\n"
		"Open a kvmmig.ko session on the KVM VM of a running VMM (QEMU, Cloud\n"
		"Hypervisor, Firecracker, kvmmig...) and hold it, printing per-vCPU dirty\n"
		"rates, run time and throttling every interval until Ctrl-C.  The VM fd is\n"
		"taken from /proc/PID/fd with pidfd_getfd() (root).  While it runs,\n"
		"`kvmmig stats` and `kvmmig throttle --session ID` reach the session.\n"
		"Closing it removes every throttle it set.\n\n"
		"options:\n"
		"  -p, --pid PID         the VMM process\n"
		"  -d, --delay SECS      print interval, 1-3600 (default 1)\n"
		"  -n, --iterations N    stop after N prints (default: until Ctrl-C)\n"
		"  -j, --json            one JSON object per line\n"
		"  -h, --help            this text\n\n"
		"examples:\n"
		"  kvmmig attach --pid $(pidof qemu-system-x86_64)\n"
		"  kvmmig attach --pid 4242 -n 5 --json\n");
}

static int attach_loop(struct kmod_session *ks, struct stats_env *env, uint64_t delay,
		       uint64_t iterations)
{
	struct kvmmig_vcpu_stats *st;
	uint64_t n = 0;
	uint32_t nr, i;
	int ret;

	signal(SIGINT, module_sigint);
	signal(SIGTERM, module_sigint);
	while (!module_stop && (!iterations || n < iterations)) {
		sleep(delay);
		if (module_stop)
			break;
		/* A VM that went is the normal end, not an error: say it once. */
		kvmmig_log_quiet(true);
		ret = kmod_vcpu_stats(ks, &st, &nr);
		kvmmig_log_quiet(false);
		if (ret == -ENODEV) {
			fprintf(stderr, "kvmmig: the VM is gone (its VMM closed it or exited)\n");
			return 0;
		}
		if (ret) {
			fprintf(stderr, "kvmmig: %s\n", kvmmig_last_error());
			return ret;
		}
		env->header_done = false;
		for (i = 0; i < nr; i++)
			stats_row(ks->id, &st[i], env);
		free(st);
		fflush(stdout);
		n++;
	}
	return 0;
}

static void attach_print_json(const struct kmod_session *ks, uint64_t pid)
{
	struct json_writer w;

	json_line_begin(&w, stdout);
	json_key_u64(&w, "session", ks->id);
	json_key_u64(&w, "pid", pid);
	json_key_u64(&w, "vcpus", ks->info.nr_vcpus);
	json_key_u64(&w, "slots", ks->info.nr_slots);
	json_key_u64(&w, "ring_entries", ks->info.ring_entries);
	json_line_end(&w);
}

int cmd_attach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct stats_env env = {};
	uint64_t pid = 0, delay = 1, iterations = 0;
	struct kmod_session *ks;
	int c, vm_fd, ret;

	while ((c = getopt_long(argc, argv, "p:d:n:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_uint("--pid", optarg, 1, INT32_MAX, &pid))
				return 2;
			break;
		case 'd':
			if (parse_uint("--delay", optarg, 1, 3600, &delay))
				return 2;
			break;
		case 'n':
			if (parse_uint("--iterations", optarg, 1, UINT32_MAX, &iterations))
				return 2;
			break;
		case 'j':
			env.json = true;
			break;
		case 'h':
			attach_usage(stdout);
			return 0;
		default:
			attach_usage(stderr);
			return 2;
		}
	}
	if (!pid || optind != argc) {
		fprintf(stderr, "kvmmig attach: expected --pid PID and no other argument\n");
		attach_usage(stderr);
		return 2;
	}
	if (!module_check())
		return 1;
	if (kmod_take_vm_fd(pid, &vm_fd))
		return 1;
	ret = kmod_attach(vm_fd, &ks);
	close(vm_fd);	/* the session holds the VM now */
	if (ret) {
		if (ret == -EBUSY)
			fprintf(stderr, "kvmmig: the VM already has a session (its VMM may use the module itself):\n"
				"  see `kvmmig stats` and use `kvmmig throttle --session ID`\n");
		return 1;
	}
	if (env.json)
		attach_print_json(ks, pid);
	else
		printf("session %u on the VM of pid %" PRIu64 ": %u vCPUs, %u memslots, dirty ring %u entries%s\n",
		       ks->id, pid, ks->info.nr_vcpus, ks->info.nr_slots, ks->info.ring_entries,
		       ks->info.ring_entries ? "" : kmod_check_extension(KVMMIG_CAP_BITMAP_DIRTY) > 0 ?
		       " (none: pages counted from the dirty bitmap)" :
		       " (none: no dirty counts or dirty limit)");
	fflush(stdout);
	ret = attach_loop(ks, &env, delay, iterations);
	kmod_close(ks);
	return ret ? 1 : 0;
}

/* ---- kvmmig stats ---- */

static void stats_usage(FILE *f)
{
	fprintf(f,
		"usage: kvmmig stats [--session ID] [--json]\n\n"
		"Every kvmmig.ko session (whoever holds it) and the statistics of each of\n"
		"its vCPUs: pages dirtied and dirty rate, time in guest mode, time slept by\n"
		"throttling, ring-full exits, and the limits in force.  Flags: G in guest\n"
		"now, S throttle sleep queued, L held at its dirty limit.\n\n"
		"options:\n"
		"  -s, --session ID     only this session\n"
		"  -j, --json           one JSON object per line (sessions, then vCPUs)\n"
		"  -h, --help           this text\n\n"
		"examples:\n"
		"  kvmmig stats\n"
		"  kvmmig stats --session 3 --json\n");
}

int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct stats_env env = {};
	uint64_t session = 0;
	int c, ret;

	while ((c = getopt_long(argc, argv, "s:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_uint("--session", optarg, 1, UINT32_MAX, &session))
				return 2;
			break;
		case 'j':
			env.json = true;
			break;
		case 'h':
			stats_usage(stdout);
			return 0;
		default:
			stats_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		stats_usage(stderr);
		return 2;
	}
	if (!module_check())
		return 1;
	env.session = session;
	ret = kmod_nl_sessions(session_row, &env);
	if (ret)
		return 1;
	if (!env.rows) {
		if (!env.json)
			printf("no kvmmig.ko session%s\n", session ? " with that id" : "s");
		return session ? 1 : 0;
	}
	env.rows = 0;
	ret = kmod_nl_stats(session, stats_row, &env);
	return ret ? 1 : 0;
}

/* ---- kvmmig throttle ---- */

static void throttle_usage(FILE *f)
{
	fprintf(f,
		"usage: kvmmig throttle [--session ID] [--vcpu N|all]\n"
		"                       (--dirty-limit RATE | --cpu-throttle PCT | --ring-quota PAGES)...\n"
		"       kvmmig throttle [--session ID] [--vcpu N|all] --off\n\n"
		"Slow vCPUs of a VM from inside KVM's run loop, with no help from its VMM.\n"
		"The session is one of `kvmmig stats` (the only one if there is one).\n"
		"Settings not named keep their value; 0 turns one off.  Prints what each\n"
		"vCPU has in force afterwards, as read back from the module.  A dirty\n"
		"limit works with or without a dirty ring, a ring quota only with one.\n\n"
		"options:\n"
		"  -s, --session ID          the session (default: the only one)\n"
		"  -c, --vcpu N|all          one vCPU index or every vCPU (default all)\n"
		"  -l, --dirty-limit RATE    dirty at most RATE: bytes per second with a\n"
		"                            K/M/G suffix and an optional /s (50MB/s), or\n"
		"                            pages per second (1000pages/s)\n"
		"  -t, --cpu-throttle PCT    sleep PCT/(100-PCT) x 10 ms per 10 ms of guest run,\n"
		"                            0-99 (QEMU's auto-converge throttle)\n"
		"  -q, --ring-quota PAGES    exit to the VMM (KVM_EXIT_DIRTY_RING_FULL) every\n"
		"                            PAGES dirtied pages\n"
		"  -o, --off                 remove every throttle\n"
		"  -j, --json                print the result as JSON\n"
		"  -h, --help                this text\n\n"
		"examples:\n"
		"  kvmmig throttle --vcpu 2 --dirty-limit 50MB/s\n"
		"  kvmmig throttle --session 3 --cpu-throttle 30\n"
		"  kvmmig throttle --off\n");
}

/* "50MB/s", "1.5G", "800K/s", "1000pages/s" -> pages per second. */
static int parse_dirty_limit(const char *arg, uint64_t *pages)
{
	char *end;
	double v = strtod(arg, &end);
	uint64_t mult = 1;

	/* Written so that NaN fails too; infinity fails the maximum below. */
	if (end == arg || !(v >= 0) || !isdigit((unsigned char)arg[0]))
		goto bad;
	if (!strncmp(end, "pages", 5)) {
		end += 5;
		mult = 0;
	} else if (*end == 'K' || *end == 'k') {
		mult = 1ULL << 10;
		end++;
	} else if (*end == 'M' || *end == 'm') {
		mult = 1ULL << 20;
		end++;
	} else if (*end == 'G' || *end == 'g') {
		mult = 1ULL << 30;
		end++;
	}
	if (mult > 1 && (*end == 'B' || *end == 'b'))
		end++;
	else if (mult > 1 && !strncmp(end, "iB", 2))
		end += 2;
	if (!strcmp(end, "/s"))
		end += 2;
	if (*end)
		goto bad;
	v = mult ? v * mult / PAGE_BYTES : v;
	if (v > KVMMIG_DIRTY_LIMIT_MAX)
		goto bad;
	*pages = v;
	if (!*pages && v > 0)
		*pages = 1;
	return 0;
bad:
	opt_bad("--dirty-limit", arg,
		"expected a rate from 0 (off) to %llupages/s (16T/s), such as 50MB/s, 800K/s or 1000pages/s",
		(unsigned long long)KVMMIG_DIRTY_LIMIT_MAX);
	return -1;
}

static int only_session(const struct kmod_nl_session *s, void *arg)
{
	uint64_t *id = arg;

	if (s->state != KVMMIG_STATE_ATTACHED)
		return 0;
	*id = *id ? UINT64_MAX : s->id;
	return 0;
}

/*
 * What a vCPU has in force once the request was applied, read back from the
 * module: a request names only some throttles, the others keep theirs.
 */
struct throttle_result {
	uint32_t vcpu;			/* the vCPU asked for, or KVMMIG_VCPU_ALL */
	bool json;
	unsigned int rows;
};

static int throttle_result_row(uint32_t session, const struct kvmmig_vcpu_stats *st, void *arg)
{
	struct throttle_result *r = arg;
	struct json_writer w;

	if (r->vcpu != KVMMIG_VCPU_ALL && st->vcpu != r->vcpu)
		return 0;
	r->rows++;
	if (!r->json) {
		printf("session %u, vCPU %u: dirty limit %" PRIu64 " pages/s, CPU throttle %u%%, ring quota %u (0: off)\n",
		       session, st->vcpu, (uint64_t)st->dirty_limit, st->cpu_throttle, st->ring_quota);
		return 0;
	}
	json_line_begin(&w, stdout);
	json_key_u64(&w, "session", session);
	json_key_u64(&w, "vcpu", st->vcpu);
	json_key_u64(&w, "dirty_limit", st->dirty_limit);
	json_key_u64(&w, "cpu_throttle", st->cpu_throttle);
	json_key_u64(&w, "ring_quota", st->ring_quota);
	json_line_end(&w);
	return 0;
}

static int throttle_print_result(uint64_t session, uint32_t vcpu, bool json)
{
	struct throttle_result r = { .vcpu = vcpu, .json = json };

	if (kmod_nl_stats(session, throttle_result_row, &r))
		return -1;
	if (!r.rows) {
		fprintf(stderr, "kvmmig throttle: session %" PRIu64 " was set but has no vCPU to read back (its VM is gone?)\n",
			session);
		return -1;
	}
	return 0;
}

int cmd_throttle(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "vcpu", required_argument, NULL, 'c' },
		{ "dirty-limit", required_argument, NULL, 'l' },
		{ "cpu-throttle", required_argument, NULL, 't' },
		{ "ring-quota", required_argument, NULL, 'q' },
		{ "off", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct kvmmig_throttle t = { .vcpu = KVMMIG_VCPU_ALL };
	uint64_t session = 0, v;
	bool json = false, off = false;
	int c;

	while ((c = getopt_long(argc, argv, "s:c:l:t:q:ojh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_uint("--session", optarg, 1, UINT32_MAX, &session))
				return 2;
			break;
		case 'c':
			if (!strcmp(optarg, "all")) {
				t.vcpu = KVMMIG_VCPU_ALL;
			} else {
				if (parse_uint("--vcpu", optarg, 0, UINT32_MAX - 1, &v))
					return 2;
				t.vcpu = v;
			}
			break;
		case 'l':
			if (parse_dirty_limit(optarg, &v))
				return 2;
			t.dirty_limit = v;
			t.set |= KVMMIG_THROTTLE_DIRTY_LIMIT;
			break;
		case 't':
			if (parse_uint("--cpu-throttle", optarg, 0, KVMMIG_CPU_THROTTLE_MAX, &v))
				return 2;
			t.cpu_throttle = v;
			t.set |= KVMMIG_THROTTLE_CPU;
			break;
		case 'q':
			if (parse_uint("--ring-quota", optarg, 0, UINT32_MAX, &v))
				return 2;
			t.ring_quota = v;
			t.set |= KVMMIG_THROTTLE_RING_QUOTA;
			break;
		case 'o':
			off = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			throttle_usage(stdout);
			return 0;
		default:
			throttle_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || off == !!t.set) {
		fprintf(stderr, "kvmmig throttle: expected --off, or at least one of --dirty-limit, --cpu-throttle, --ring-quota\n");
		throttle_usage(stderr);
		return 2;
	}
	if (off)
		t = (struct kvmmig_throttle){ .vcpu = t.vcpu, .set = KVMMIG_THROTTLE_ALL };
	if (!module_check())
		return 1;
	if (!session) {
		if (kmod_nl_sessions(only_session, &session))
			return 1;
		if (!session || session == UINT64_MAX) {
			fprintf(stderr, "kvmmig throttle: %s attached session: name one with --session (see `kvmmig stats`)\n",
				session ? "more than one" : "no");
			return 1;
		}
	}
	if (kmod_nl_set_throttle(session, &t))
		return 1;
	return throttle_print_result(session, t.vcpu, json) ? 1 : 0;
}
