// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig restore`: make the built-in guest again from a snapshot file
 * (Documentation/snapshot.rst), resume it, let it run and check its memory
 * as `kvmmig receive` does.  SIGINT and SIGTERM end it within a tick.
 */
#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "guest_check.h"
#include "log.h"
#include "opts.h"
#include "snapshot.h"

static const struct option restore_options[] = {
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
		"  --run-seconds N      how long the guest runs before the check, 0-86400 (default 2)\n"
		"  --json               JSON events\n\n"
		"examples:\n"
		"  kvmmig restore /var/tmp/guest.snap\n"
		"  kvmmig restore g.snap --run-seconds 10 --json\n");
}

int cmd_restore(int argc, char **argv)
{
	struct guest_check_opts chk = {
		.run_seconds = 2, .who = "", .where = "after the restore", .cancel = &cmd_cancel_flag,
	};
	struct kvmmig_vm *kv;
	struct vm *vm = NULL;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", restore_options, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_uint("--run-seconds", optarg, 0, 86400, &chk.run_seconds))
				return 2;
			break;
		case 'j':
			chk.json = true;
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
	cmd_catch_cancel_signals();
	ret = snapshot_load(argv[optind], vm_create_for_stream, vm_release_for_stream, &vm, &kv);
	if (ret) {
		/* The library said why. */
		fprintf(stderr, "kvmmig: %s was not restored\n", argv[optind]);
		return 1;
	}
	ret = kvmmig_vm_resume(kv);
	if (!ret)
		ret = guest_run_and_check(vm, &chk);
	vm_release_for_stream(&vm, kv, !ret);
	return ret ? 1 : 0;
}
