/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Finding this user's running kvmmig commands through /proc, for the
 * commands that signal them (`kvmmig cancel`, `kvmmig
 * migrate-start-postcopy`): what a process runs is read from its command
 * line (argv[0] ends in "kvmmig", argv[1] is the subcommand), and a demo's
 * destination, the child of another kvmmig command, is left to its parent.
 */
#ifndef KVMMIG_PROCS_H
#define KVMMIG_PROCS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * What `kvmmig migrate-start-postcopy` sends a migration.  Not SIGUSR1: the
 * built-in VMM kicks its vCPU threads with SIGUSR1 and installs its own
 * handler for it when the guest starts.
 */
#define KVMMIG_START_POSTCOPY_SIGNAL	SIGUSR2

enum kvmmig_proc {
	KVMMIG_PROC_NONE,	/* not a kvmmig command (or gone) */
	KVMMIG_PROC_MIGRATION,	/* `kvmmig migrate` or `kvmmig demo` */
	KVMMIG_PROC_SNAPSHOT,	/* `kvmmig snapshot` */
};

enum kvmmig_proc kvmmig_proc_kind(pid_t pid);
/* The kvmmig command @pid is a child of (a demo's destination), or 0. */
pid_t kvmmig_proc_parent(pid_t pid);
/* @pid's command line holds @arg as an option of its own (before any "--"). */
bool kvmmig_proc_has_arg(pid_t pid, const char *arg);
/*
 * Call @fn for each running kvmmig command, but this process and the
 * children of kvmmig commands; returns how many calls returned 0, or
 * -errno if /proc cannot be read.
 */
int kvmmig_procs_each(int (*fn)(pid_t pid, enum kvmmig_proc kind, void *opaque),
		      void *opaque);

/*
 * The options of such a command, `kvmmig @argv[0] [--pid PID] [-h]`:
 * -1 with *@pid (0: none given) to go on, else the exit status: 0 after
 * @usage on stdout for -h, 2 after saying what was wrong.
 */
int kvmmig_procs_opts(int argc, char **argv, void (*usage)(FILE *f), uint64_t *pid);

#endif /* KVMMIG_PROCS_H */
