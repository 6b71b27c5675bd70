// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig restore`: make the built-in guest again from a snapshot file
 * (Documentation/snapshot.rst), resume it, let it run and check its memory
 * as `kvmmig receive` does.  Eagerly (all memory read, with --readers
 * threads, before the guest runs) or with --lazy (the guest runs at once
 * and its pages are filled on demand while readers load the rest).
 * SIGINT and SIGTERM end it within a tick.
 */
#include <stdio.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "guest_check.h"
#include "json.h"
#include "log.h"
#include "opts.h"
#include "snapshot.h"

/* How long a lazy restore may take to place every page. */
#define RESTORE_LOAD_TIMEOUT_MS	(3600 * 1000)

static const struct option restore_options[] = {
	{ "lazy", no_argument, NULL, 'l' },
	{ "readers", required_argument, NULL, 'R' },
	{ "run-seconds", required_argument, NULL, 'r' },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void restore_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig restore FILE [OPTIONS]\n\n"
		"Make a built-in guest again from a snapshot, resume it, let it run, then check its\n"
		"memory as `kvmmig receive` does.  A file that is truncated, corrupted, incomplete\n"
		"or of another version is refused with what is wrong.\n\n"
		"  --lazy               run the guest at once and fill its memory on demand\n"
		"                       (userfaultfd) while readers load the rest\n"
		"  --readers N          reader threads, 1-64 (default 1)\n"
		"  --run-seconds N      how long the guest runs before the check, 0-86400 (default 2)\n"
		"  --json               JSON events\n\n"
		"examples:\n"
		"  kvmmig restore /var/tmp/guest.snap\n"
		"  kvmmig restore g.snap --lazy --readers 4\n"
		"  kvmmig restore g.snap --run-seconds 10 --json\n");
}

struct restore_env {
	const char *path;
	bool lazy;
	bool json;
	struct snap_restore_opts o;
};

static void restore_print(const struct restore_env *env, double running_ms, double loaded_s,
			  const struct page_fill_stats *st)
{
	uint64_t p50 = lat_hist_percentile_us(st->fault_us_hist, 50);
	uint64_t p99 = lat_hist_percentile_us(st->fault_us_hist, 99);
	struct json_writer w;

	if (!env->json) {
		printf("restore %s: guest running after %.1f ms, memory loaded after %.2f s (%s, %u reader%s)\n",
		       env->path, running_ms, loaded_s, env->lazy ? "lazy" : "eager",
		       env->o.readers, env->o.readers == 1 ? "" : "s");
		if (env->lazy)
			printf("demand faults: %llu, %llu pages asked for, %llu placed in the background; fault latency p50 %llu us, p99 %llu us; vCPUs blocked %.1f ms\n",
			       (unsigned long long)st->faults, (unsigned long long)st->pages_demand,
			       (unsigned long long)st->pages_background,
			       (unsigned long long)p50, (unsigned long long)p99,
			       st->blocktime_ns / 1e6);
		return;
	}
	json_event_begin(&w, stdout, "restored");
	json_key_str(&w, "file", env->path);
	json_key_str(&w, "mode", env->lazy ? "lazy" : "eager");
	json_key_u64(&w, "readers", env->o.readers);
	json_key_double(&w, "running_ms", running_ms, 3);
	json_key_double(&w, "loaded_s", loaded_s, 3);
	json_key_u64(&w, "faults", st->faults);
	json_key_u64(&w, "pages_demand", st->pages_demand);
	json_key_u64(&w, "pages_background", st->pages_background);
	json_key_u64(&w, "zero_pages", st->zero_pages);
	json_key_u64(&w, "fault_p50_us", p50);
	json_key_u64(&w, "fault_p99_us", p99);
	json_key_double(&w, "blocktime_ms", st->blocktime_ns / 1e6, 3);
	json_line_end(&w);
}

/* The guest made from the file and running: 0, or 1 with the library's reason said. */
static int restore_start(const struct restore_env *env, struct vm **vm, struct kvmmig_vm **kv)
{
	struct snap_lazy_report r = { 0 };
	struct snap_lazy *z;
	uint64_t t0 = now_ns();
	double running_ms;
	int ret;

	if (env->lazy) {
		ret = snapshot_lazy_start(env->path, vm_create_for_stream, vm_release_for_stream, vm,
					  &env->o, &z, kv);
		if (!ret)
			ret = snapshot_lazy_finish(z, RESTORE_LOAD_TIMEOUT_MS, &r);
		if (!ret)
			restore_print(env, r.running_ms, r.loaded_s, &r.fill);
		return ret ? 1 : 0;
	}
	ret = snapshot_load_with(env->path, vm_create_for_stream, vm_release_for_stream, vm,
				 &env->o, kv);
	if (!ret)
		ret = kvmmig_vm_resume(*kv);
	running_ms = (now_ns() - t0) / 1e6;
	if (!ret)
		restore_print(env, running_ms, running_ms / 1e3, &r.fill);
	else if (*vm)
		vm_release_for_stream(vm, *kv, false);
	return ret ? 1 : 0;
}

int cmd_restore(int argc, char **argv)
{
	struct guest_check_opts chk = {
		.run_seconds = 2, .who = "", .where = "after the restore", .cancel = &cmd_cancel_flag,
	};
	struct restore_env env = { .o = { .readers = 1, .cancel = &cmd_cancel_flag } };
	struct kvmmig_vm *kv;
	struct vm *vm = NULL;
	uint64_t readers;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", restore_options, NULL)) != -1) {
		switch (c) {
		case 'l':
			env.lazy = true;
			break;
		case 'R':
			if (parse_uint("--readers", optarg, 1, SNAP_MAX_READERS, &readers))
				return 2;
			env.o.readers = readers;
			break;
		case 'r':
			if (parse_uint("--run-seconds", optarg, 0, 86400, &chk.run_seconds))
				return 2;
			break;
		case 'j':
			chk.json = env.json = true;
			break;
		case 'v':
			kvmmig_set_log_level(KVMMIG_LOG_INFO);
			break;
		case 'h':
			restore_usage(stdout);
			return 0;
		default:
			restore_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "kvmmig restore: expected one snapshot FILE, got %d arguments\n",
			argc - optind);
		return 2;
	}
	env.path = argv[optind];
	cmd_catch_cancel_signals();
	if (restore_start(&env, &vm, &kv)) {
		/* The library said why. */
		fprintf(stderr, "kvmmig: %s was not restored\n", env.path);
		return 1;
	}
	ret = guest_run_and_check(vm, &chk);
	vm_release_for_stream(&vm, kv, !ret);
	return ret ? 1 : 0;
}
