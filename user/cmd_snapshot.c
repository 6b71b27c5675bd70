// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig snapshot`: run a built-in guest and take a background snapshot of
 * it while it runs (Documentation/snapshot.rst), then let it run on.  With
 * --increments N it goes on with N live increments, --interval-ms apart,
 * each holding the pages written since the one before (FILE.1 on FILE,
 * FILE.2 on FILE.1, ...): the built-in guest lives only inside this
 * process, so a series is taken in one command.  SIGINT and SIGTERM cancel
 * it within a tick: the snapshot under way leaves no file and the guest
 * runs on unprotected.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cancel.h"
#include "commands.h"
#include "guest_check.h"
#include "json.h"
#include "log.h"
#include "mig_opts.h"
#include "opts.h"
#include "snapshot.h"


static void snap_print(const char *path, const struct snap_report *r, bool json)
{
	struct json_writer w;

	if (!json) {
		printf("snapshot %s: guest paused %.1f ms, %.2f s in all; %llu pages saved by the walk, %llu first because the guest wrote them, %llu zero (holes); %s\n",
		       path, r->pause_ms, r->total_s, (unsigned long long)r->pages_walk,
		       (unsigned long long)r->pages_fault, (unsigned long long)r->zero_pages,
		       r->wp_unpopulated ? "no pre-faulting (WP_UNPOPULATED)" : "RAM pre-faulted");
		if (r->direct)
			printf("written with O_DIRECT\n");
		if (r->incremental)
			printf("increment on %s: %llu of %llu pages, %llu bytes written, tracker %s\n",
			       r->base_path, (unsigned long long)r->pages_saved,
			       (unsigned long long)r->pages_total,
			       (unsigned long long)r->bytes_written, r->tracker);
		if (r->handover_ms)
			printf("tracker handover (WP_ASYNC on): guest paused %.1f ms more\n",
			       r->handover_ms);
		if (r->pages_fault)
			printf("write-fault service: p50 %llu us, p99 %llu us\n",
			       (unsigned long long)snap_fault_percentile_us(r, 50),
			       (unsigned long long)snap_fault_percentile_us(r, 99));
		return;
	}
	json_event_begin(&w, stdout, "snapshot");
	json_key_str(&w, "file", path);
	json_key(&w, "incremental");
	json_bool(&w, r->incremental);
	if (r->incremental)
		json_key_str(&w, "base", r->base_path);
	if (r->tracker)
		json_key_str(&w, "tracker", r->tracker);
	json_key_u64(&w, "pages_total", r->pages_total);
	json_key_u64(&w, "pages_saved", r->pages_saved);
	json_key_double(&w, "pause_ms", r->pause_ms, 3);
	json_key_double(&w, "handover_ms", r->handover_ms, 3);
	json_key_double(&w, "total_s", r->total_s, 3);
	json_key_u64(&w, "pages_walk", r->pages_walk);
	json_key_u64(&w, "pages_fault", r->pages_fault);
	json_key_u64(&w, "zero_pages", r->zero_pages);
	json_key_u64(&w, "bytes_written", r->bytes_written);
	json_key(&w, "wp_unpopulated");
	json_bool(&w, r->wp_unpopulated);
	json_key(&w, "direct");
	json_bool(&w, r->direct);
	json_key_u64(&w, "fault_p50_us", snap_fault_percentile_us(r, 50));
	json_key_u64(&w, "fault_p99_us", snap_fault_percentile_us(r, 99));
	json_line_end(&w);
}

struct snap_env {
	struct guest_opts guest;
	struct snap_opts o;
	uint64_t warmup_ms, run_seconds;
	uint64_t increments, interval_ms;
	int tracker;
	bool json;
};

/* FILE, then FILE.1, FILE.2, ... */
static int snap_one(struct snap_env *env, struct vm *vm, unsigned int i)
{
	char path[PATH_MAX];
	struct snap_report r;
	struct snap_opts o = env->o;
	int ret;

	if (i && !kvmmig_sleep_ms(env->interval_ms, &cmd_cancel_flag)) {
		fprintf(stderr, "kvmmig: interrupted before increment %u\n", i);
		return -ECANCELED;
	}
	snprintf(path, sizeof(path), i ? "%s.%u" : "%s", env->o.path, i);
	o.path = path;
	ret = snapshot_save(vm->kv, &o, &r);
	/* The library said why; this says what it means. */
	if (ret)
		fprintf(stderr, "kvmmig: %s was not taken; the guest runs on, unprotected, and no file was left for it\n",
			path);
	else
		snap_print(path, &r, env->json);
	return ret;
}

/* The snapshot, or the series of a full one and its increments. */
static int snap_take(struct snap_env *env, struct vm *vm)
{
	struct dirty_options dopts = {
		.backend = env->guest.backend, .reap_interval_us = env->guest.reap_us,
	};
	unsigned int i;
	int ret = 0;

	env->o.cancel = &cmd_cancel_flag;
	if (env->increments) {
		ret = snap_series_new(vm->kv, env->tracker, &dopts, &env->o.series);
		if (ret)
			return ret;
		if (snap_series_fallback(env->o.series))
			fprintf(stderr, "kvmmig: no pagemap tracker: %s\n",
				snap_series_fallback(env->o.series));
	}
	for (i = 0; !ret && i <= env->increments; i++)
		ret = snap_one(env, vm, i);
	snap_series_free(env->o.series);
	env->o.series = NULL;
	return ret;
}

static int snap_run(struct snap_env *env)
{
	struct vm *vm;
	int ret;

	/*
	 * A series' dirty tracker needs the VM made for its dirty source (the
	 * pagemap tracker too, where it falls back to it).
	 */
	if (env->increments) {
		ret = dirty_prepare_config(env->guest.backend, &env->guest.cfg);
		if (ret < 0)
			return 1;
		env->guest.backend = ret;
	}
	if (vm_create(&env->guest.cfg, &vm))
		return 1;
	cmd_catch_cancel_signals();
	ret = vm_start(vm);
	if (!ret && !kvmmig_sleep_ms(env->warmup_ms, &cmd_cancel_flag)) {
		fprintf(stderr, "kvmmig: interrupted before the snapshot started\n");
		ret = -ECANCELED;
	}
	if (!ret)
		ret = snap_take(env, vm);
	/* The guest runs on after its snapshot, as it would in production. */
	if (!ret && env->run_seconds && !env->json)
		printf("guest runs on for %llu s\n", (unsigned long long)env->run_seconds);
	if (!ret)
		kvmmig_sleep_ms(env->run_seconds * 1000, &cmd_cancel_flag);
	if (!ret && vm_failure(vm)) {
		fprintf(stderr, "kvmmig: the guest failed: %s\n", vm_failure(vm));
		ret = -EIO;
	}
	vm_destroy(vm);
	return ret ? 1 : 0;
}

static const struct option snap_options[] = {
	GUEST_OPTS_LONG,
	{ "to", required_argument, NULL, 'o' },
	{ "channels", required_argument, NULL, 'W' + 0x100 },
	{ "writers", required_argument, NULL, 'W' + 0x101 },	/* the older name */
	{ "direct", no_argument, NULL, 'D' + 0x100 },
	TLS_OPTS_LONG,
	{ "warmup-ms", required_argument, NULL, 'u' },
	{ "run-seconds", required_argument, NULL, 'r' },
	{ "prefault", no_argument, NULL, 'P' },
	{ "increments", required_argument, NULL, 'I' + 0x100 },
	{ "interval-ms", required_argument, NULL, 'i' + 0x100 },
	{ "tracker", required_argument, NULL, 'T' + 0x100 },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void snap_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig snapshot --to FILE|tcp:HOST:PORT [OPTIONS]\n\n"
		"Run a built-in guest and save a background snapshot of it while it runs: the\n"
		"guest stops only to save its vCPUs and write-protect its memory; FILE then holds\n"
		"memory exactly as it was at that instant (Documentation/snapshot.rst).\n\n"
		"  --to FILE            the snapshot (written as FILE.partial until complete)\n"
		"  --to tcp:HOST:PORT   send it to `kvmmig snapshot-receive` there instead\n"
		"  --channels N         writer threads, 1-%u (default 1; --writers is the same)\n"
		"  --direct             write FILE with O_DIRECT where the filesystem allows it\n"
		"  --warmup-ms N        let the guest run this long first (default 1000)\n"
		"  --run-seconds N      let it run on this long afterwards (default 1)\n"
		"  --prefault           pre-fault RAM even where the kernel need not (older kernels' path)\n"
		"  --increments N       then N live increments, FILE.1 on FILE, FILE.2 on FILE.1, ...\n"
		"                       (0-%u, default 0), each with the pages written since the last\n"
		"  --interval-ms N      between two snapshots of a series (default 1000)\n"
		"  --tracker T          how a series finds written pages: dirty (the VM's dirty\n"
		"                       source, see --dirty) or pagemap (PAGEMAP_SCAN with\n"
		"                       UFFD_FEATURE_WP_ASYNC, Linux 6.7; else dirty) (default dirty)\n"
		"  --json               one JSON event with the report\n"
		"TLS for --to tcp: (the receiver takes the same credentials):\n"
		TLS_OPTS_HELP
		GUEST_OPTS_HELP "\n"
		"examples:\n"
		"  kvmmig snapshot --to /var/tmp/guest.snap --ram 2G --workload random\n"
		"  kvmmig snapshot --to g.snap --channels 4 --json\n"
		"  kvmmig snapshot --to tcp:backup.example:4500 --ram 1G\n"
		"  kvmmig snapshot --to g.snap --increments 2 --interval-ms 500 --tracker pagemap\n"
		"  kvmmig restore g.snap.2\n", SNAP_MAX_WRITERS, SNAP_CHAIN_MAX - 1);
}

int cmd_snapshot(int argc, char **argv)
{
	struct snap_env env = { .warmup_ms = 1000, .run_seconds = 1, .interval_ms = 1000 };
	uint64_t v;
	int c, r;

	guest_opts_init(&env.guest);
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", snap_options, NULL)) != -1) {
		r = guest_opts_parse(&env.guest, c, optarg);
		if (!r)
			r = tls_opts_parse(&env.o.tls, c, optarg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (c) {
		case 'o':
			env.o.path = optarg;
			break;
		case 'W' + 0x100:
		case 'W' + 0x101:
			if (parse_uint(c == 'W' + 0x100 ? "--channels" : "--writers", optarg, 1,
				       SNAP_MAX_WRITERS, &v))
				return 2;
			env.o.writers = v;
			break;
		case 'D' + 0x100:
			env.o.direct = true;
			break;
		case 'u':
			if (parse_uint("--warmup-ms", optarg, 0, 3600000, &env.warmup_ms))
				return 2;
			break;
		case 'r':
			if (parse_uint("--run-seconds", optarg, 0, 86400, &env.run_seconds))
				return 2;
			break;
		case 'P':
			env.o.prefault = true;
			break;
		case 'I' + 0x100:
			if (parse_uint("--increments", optarg, 0, SNAP_CHAIN_MAX - 1, &env.increments))
				return 2;
			break;
		case 'i' + 0x100:
			if (parse_uint("--interval-ms", optarg, 0, 3600000, &env.interval_ms))
				return 2;
			break;
		case 'T' + 0x100:
			env.tracker = snap_tracker_parse(optarg);
			if (env.tracker < 0) {
				opt_bad("--tracker", optarg, "expected dirty or pagemap");
				return 2;
			}
			break;
		case 'j':
			env.json = true;
			break;
		case 'v':
			kvmmig_set_log_level(KVMMIG_LOG_INFO);
			break;
		case 'h':
			snap_usage(stdout);
			return 0;
		default:
			snap_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		opt_bad("snapshot", argv[optind], "an unexpected argument; options only");
		return 2;
	}
	if (!env.o.path) {
		fprintf(stderr, "kvmmig snapshot: --to FILE is required (where the snapshot goes)\n");
		return 2;
	}
	if (guest_opts_check(&env.guest) || tls_opts_check(&env.o.tls, "snapshot"))
		return 2;
	if (tls_opts_enabled(&env.o.tls) && strncmp(env.o.path, "tcp:", 4)) {
		fprintf(stderr, "kvmmig snapshot: --tls-* options secure --to tcp:HOST:PORT, not a file\n");
		return 2;
	}
	if (env.increments && !strncmp(env.o.path, "tcp:", 4)) {
		fprintf(stderr, "kvmmig snapshot: --increments writes files (an increment names its base by file name), not --to tcp:\n");
		return 2;
	}
	if (env.o.tls.authz) {
		fprintf(stderr, "kvmmig snapshot: --tls-authz is the receiver's check: give it to kvmmig snapshot-receive\n");
		return 2;
	}
	return snap_run(&env);
}
