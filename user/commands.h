/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kvmmig command's subcommands.  Each user/cmd_*.c file implements one
 * group and lists its entries in user/commands.c; main() in user/kvmmig.c
 * dispatches on argv[1].  A subcommand returns the process exit status and
 * prints its own errors (what was wrong and what was expected).
 */
#ifndef KVMMIG_COMMANDS_H
#define KVMMIG_COMMANDS_H

struct kvmmig_cmd {
	const char *name;
	int (*run)(int argc, char **argv);	/* argv[0] is the subcommand */
	const char *summary;			/* one line for `kvmmig -h` */
};

extern const struct kvmmig_cmd kvmmig_cmds[];

int cmd_attach(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_converge(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_migrate_start_postcopy(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_snapshot_receive(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_throttle(int argc, char **argv);
int cmd_top(int argc, char **argv);

#endif /* KVMMIG_COMMANDS_H */
