// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig cancel`: cancel a running `kvmmig migrate` (or `demo`), like
 * QEMU's migrate_cancel, or a running `kvmmig snapshot`.  It sends the
 * process SIGINT, which the engine turns into an orderly cancel: for a
 * migration the destination is told, throttles and dirty tracking are
 * removed; a snapshot lifts its write protection and leaves no file; the
 * guest keeps running either way.  Without --pid it cancels every running
 * migration and snapshot of this user.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "opts.h"

/*
 * What @pid runs that a cancel ends: "migration" for `kvmmig migrate` or
 * `kvmmig demo`, "snapshot" for `kvmmig snapshot`, else NULL.
 */
static const char *cancellable(pid_t pid)
{
	char path[64], args[256];
	size_t n, i;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = fread(args, 1, sizeof(args) - 1, f);
	fclose(f);
	args[n] = '\0';
	/* argv[0] ends in "kvmmig", argv[1] is the subcommand. */
	i = strlen(args);
	if (i < 6 || strcmp(args + i - 6, "kvmmig") || i + 1 >= n)
		return NULL;
	if (!strcmp(args + i + 1, "migrate") || !strcmp(args + i + 1, "demo"))
		return "migration";
	return strcmp(args + i + 1, "snapshot") ? NULL : "snapshot";
}

static pid_t parent_of(pid_t pid)
{
	char path[64];
	int ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* pid (comm) state ppid: comm is "kvmmig", no spaces or parentheses. */
	if (fscanf(f, "%*d %*s %*c %d", &ppid) != 1)
		ppid = 0;
	fclose(f);
	return ppid;
}

static int cancel_pid(pid_t pid)
{
	const char *what = cancellable(pid);

	if (!what) {
		fprintf(stderr, "kvmmig cancel: process %d is not a running kvmmig migrate, demo or snapshot\n",
			pid);
		return -1;
	}
	if (kill(pid, SIGINT)) {
		fprintf(stderr, "kvmmig cancel: cannot signal process %d: %s\n", pid,
			strerror(errno));
		return -1;
	}
	printf("cancelling the %s of process %d\n", what, pid);
	return 0;
}

int cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dirent *de;
	unsigned int found = 0;
	uint64_t pid = 0;
	DIR *d;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_uint("--pid", optarg, 1, 1 << 30, &pid))
				return 2;
			break;
		case 'h':
			printf("usage: kvmmig cancel [--pid PID]\n\n"
			       "Cancel a running live migration or snapshot; the guest keeps running.\n\n"
			       "examples:\n"
			       "  kvmmig cancel               # every running kvmmig migrate and snapshot\n"
			       "  kvmmig cancel --pid 4242\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmmig cancel: unexpected argument '%s' (kvmmig cancel -h for help)\n",
			argv[optind]);
		return 2;
	}
	if (pid)
		return cancel_pid(pid) ? 1 : 0;
	d = opendir("/proc");
	if (!d)
		return 1;
	while ((de = readdir(d))) {
		pid_t p = atoi(de->d_name);

		/* A demo's destination is its child: cancelling the source is enough. */
		if (p > 0 && p != getpid() && cancellable(p) && !cancellable(parent_of(p)) &&
		    !cancel_pid(p))
			found++;
	}
	closedir(d);
	if (!found) {
		fprintf(stderr, "kvmmig cancel: no running migration or snapshot found\n");
		return 1;
	}
	return 0;
}
