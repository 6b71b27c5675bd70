// SPDX-License-Identifier: GPL-2.0-only
/*
 * Running kvmmig commands, found through /proc (see kvmmig_procs.h).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmmig_procs.h"
#include "opts.h"

/* Enough for any kvmmig command line a person types; a longer one is cut. */
#define CMDLINE_MAX	8192

/* @pid's arguments, each ended by '\0'; their total length, or 0 if it is gone. */
static size_t proc_cmdline(pid_t pid, char *buf, size_t len)
{
	char path[64];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n;
}

/* The subcommand of a kvmmig command line (argv[1]), or NULL. */
static const char *kvmmig_subcommand(const char *args, size_t n)
{
	size_t i = strlen(args);

	if (i < 6 || strcmp(args + i - 6, "kvmmig") || i + 1 >= n)
		return NULL;
	return args + i + 1;
}

enum kvmmig_proc kvmmig_proc_kind(pid_t pid)
{
	char args[CMDLINE_MAX];
	size_t n = proc_cmdline(pid, args, sizeof(args));
	const char *cmd = n ? kvmmig_subcommand(args, n) : NULL;

	if (!cmd)
		return KVMMIG_PROC_NONE;
	if (!strcmp(cmd, "migrate") || !strcmp(cmd, "demo"))
		return KVMMIG_PROC_MIGRATION;
	return strcmp(cmd, "snapshot") ? KVMMIG_PROC_NONE : KVMMIG_PROC_SNAPSHOT;
}

bool kvmmig_proc_has_arg(pid_t pid, const char *arg)
{
	char args[CMDLINE_MAX];
	size_t n = proc_cmdline(pid, args, sizeof(args));
	const char *a = n ? kvmmig_subcommand(args, n) : NULL;

	for (; a && a < args + n; a += strlen(a) + 1) {
		if (!strcmp(a, "--"))
			return false;
		if (!strcmp(a, arg))
			return true;
	}
	return false;
}

pid_t kvmmig_proc_parent(pid_t pid)
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
	return ppid > 0 && kvmmig_proc_kind(ppid) != KVMMIG_PROC_NONE ? ppid : 0;
}

int kvmmig_procs_each(int (*fn)(pid_t pid, enum kvmmig_proc kind, void *opaque),
		      void *opaque)
{
	enum kvmmig_proc kind;
	struct dirent *de;
	int done = 0;
	DIR *d;

	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t p = atoi(de->d_name);

		if (p <= 0 || p == getpid())
			continue;
		kind = kvmmig_proc_kind(p);
		if (kind != KVMMIG_PROC_NONE && !kvmmig_proc_parent(p) && !fn(p, kind, opaque))
			done++;
	}
	closedir(d);
	return done;
}

int kvmmig_procs_opts(int argc, char **argv, void (*usage)(FILE *f), uint64_t *pid)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*pid = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_uint("--pid", optarg, 1, 1 << 30, pid))
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			/* getopt said which option. */
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmmig %s: unexpected argument '%s' (kvmmig %s -h for help)\n",
			argv[0], argv[optind], argv[0]);
		return 2;
	}
	return -1;
}
