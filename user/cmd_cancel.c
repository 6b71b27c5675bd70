// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig cancel`: cancel a running `kvmmig migrate` (or `demo`), like
 * QEMU's migrate_cancel, or a running `kvmmig snapshot`.  It sends the
 * process SIGINT, which the engine turns into an orderly cancel: for a
 * migration the destination is told, throttles and dirty tracking are
 * removed; a snapshot lifts its write protection and leaves no file; the
 * guest keeps running either way; a migration in postcopy refuses (the
 * guest runs on the destination).  Without --pid it cancels every running
 * migration and snapshot of this user.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kvmmig_procs.h"
#include "opts.h"

static const char *const proc_what[] = {
	[KVMMIG_PROC_MIGRATION] = "migration",
	[KVMMIG_PROC_SNAPSHOT] = "snapshot",
};

/*
 * Only a request: the process cancels in its own time, and a migration in
 * postcopy refuses (the guest runs on the destination and needs its pages)
 * and says so in its own output.
 */
static int cancel_pid(pid_t pid, enum kvmmig_proc kind, void *opaque)
{
	if (kind == KVMMIG_PROC_NONE) {
		fprintf(stderr, "kvmmig cancel: process %d is not a running kvmmig migrate, demo or snapshot\n",
			pid);
		return -1;
	}
	if (kill(pid, SIGINT)) {
		fprintf(stderr, "kvmmig cancel: cannot signal process %d: %s\n", pid,
			strerror(errno));
		return -1;
	}
	printf("asked process %d to cancel its %s%s\n", pid, proc_what[kind],
	       kind == KVMMIG_PROC_MIGRATION && kvmmig_proc_has_arg(pid, "--postcopy") ?
	       " (in postcopy it refuses and says why in its own output)" : "");
	return 0;
}

static void cancel_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig cancel [--pid PID]\n\n"
		"Cancel a running live migration or snapshot; the guest keeps running.\n\n"
		"examples:\n"
		"  kvmmig cancel               # every running kvmmig migrate and snapshot\n"
		"  kvmmig cancel --pid 4242\n");
}

int cmd_cancel(int argc, char **argv)
{
	uint64_t pid;
	int ret, found;

	ret = kvmmig_procs_opts(argc, argv, cancel_usage, &pid);
	if (ret >= 0)
		return ret;
	if (pid)
		return cancel_pid(pid, kvmmig_proc_kind(pid), NULL) ? 1 : 0;
	/* A demo's destination is its child: cancelling the source is enough. */
	found = kvmmig_procs_each(cancel_pid, NULL);
	if (found < 0) {
		fprintf(stderr, "kvmmig cancel: cannot list the processes in /proc: %s\n",
			strerror(-found));
		return 1;
	}
	if (!found) {
		fprintf(stderr, "kvmmig cancel: no running migration or snapshot found\n");
		return 1;
	}
	return 0;
}
