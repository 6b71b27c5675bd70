// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig migrate-start-postcopy`: switch a running `kvmmig migrate --postcopy`
 * (or `demo --postcopy`) to postcopy now, like QEMU's command of that name
 * (Documentation/postcopy.rst).  It sends the process SIGUSR2, on which the
 * migration switches at its next batch boundary.  A migration started
 * without --postcopy cannot switch: it is refused here, from its command
 * line, and the migrate process ignores the signal too, saying why.
 * Without --pid it asks every running migration of this user.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kvmmig_procs.h"
#include "opts.h"

#define CMD	"kvmmig migrate-start-postcopy"

struct start_postcopy {
	bool all;			/* no --pid: each kvmmig command in /proc */
	unsigned int migrations;	/* the migrations among them */
};

static int start_postcopy_pid(pid_t pid, enum kvmmig_proc kind, void *opaque)
{
	struct start_postcopy *sp = opaque;
	pid_t parent = kvmmig_proc_parent(pid);

	if (kind != KVMMIG_PROC_MIGRATION) {
		if (!sp->all)
			fprintf(stderr, CMD ": process %d is not a running kvmmig migrate or demo\n",
				pid);
		return -1;
	}
	sp->migrations++;
	if (parent) {
		fprintf(stderr, CMD ": process %d is the destination of kvmmig process %d: give --pid %d\n",
			pid, parent, parent);
		return -1;
	}
	if (!kvmmig_proc_has_arg(pid, "--postcopy")) {
		fprintf(stderr, CMD ": the migration of process %d was started without --postcopy: it cannot switch to postcopy\n",
			pid);
		return -1;
	}
	if (kill(pid, KVMMIG_START_POSTCOPY_SIGNAL)) {
		fprintf(stderr, CMD ": cannot signal process %d: %s\n", pid, strerror(errno));
		return -1;
	}
	printf("asked process %d to switch its migration to postcopy\n", pid);
	return 0;
}

static void start_postcopy_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig migrate-start-postcopy [--pid PID]\n\n"
		"Switch a running migration started with --postcopy to postcopy now: the guest\n"
		"moves to the destination, which fetches the pages it still misses (QEMU's\n"
		"migrate-start-postcopy).  From then on the migration cannot be cancelled.\n"
		"Without --pid: every running kvmmig migrate and demo of this user.\n\n"
		"  --pid PID    only this kvmmig migrate or demo process\n\n"
		"examples:\n"
		"  kvmmig migrate --to tcp:10.0.0.2:4444 --postcopy --x-postcopy-start manual &\n"
		"  kvmmig migrate-start-postcopy\n"
		"  kvmmig migrate-start-postcopy --pid 4242\n");
}

int cmd_migrate_start_postcopy(int argc, char **argv)
{
	struct start_postcopy sp = { 0 };
	uint64_t pid;
	int ret, found;

	ret = kvmmig_procs_opts(argc, argv, start_postcopy_usage, &pid);
	if (ret >= 0)
		return ret;
	if (pid)
		return start_postcopy_pid(pid, kvmmig_proc_kind(pid), &sp) ? 1 : 0;
	sp.all = true;
	found = kvmmig_procs_each(start_postcopy_pid, &sp);
	if (found < 0) {
		fprintf(stderr, CMD ": cannot list the processes in /proc: %s\n", strerror(-found));
		return 1;
	}
	if (!sp.migrations)
		fprintf(stderr, CMD ": no running kvmmig migrate or demo found\n");
	/* Each one that could not switch said why. */
	return found ? 0 : 1;
}
