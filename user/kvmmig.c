// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvmmig: the command.  Dispatches to the subcommands listed in
 * user/commands.c; `kvmmig -h` lists them, `kvmmig CMD -h` shows each one's
 * options and examples.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static void usage(FILE *f)
{
	const struct kvmmig_cmd *c;
	int width = 0;

	/* One column for the summaries, as wide as the longest name. */
	for (c = kvmmig_cmds; c->name; c++)
		if ((int)strlen(c->name) > width)
			width = strlen(c->name);
	fprintf(f, "usage: kvmmig COMMAND [OPTIONS]   (kvmmig COMMAND -h for its options)\n\n"
		   "Make KVM live migration converge for large, busy guests.\n\ncommands:\n");
	for (c = kvmmig_cmds; c->name; c++)
		fprintf(f, "  %-*s %s\n", width, c->name, c->summary);
	fprintf(f, "\nexamples:\n"
		   "  kvmmig demo                       # busy guest, live per-vCPU dirty rates\n"
		   "  kvmmig run --workload incr --ram 1G --vcpus 2 --dirty ring --seconds 5\n");
}

int main(int argc, char **argv)
{
	const struct kvmmig_cmd *c;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (c = kvmmig_cmds; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "kvmmig: unknown command '%s'; expected one of:", argv[1]);
	for (c = kvmmig_cmds; c->name; c++)
		fprintf(stderr, " %s", c->name);
	fprintf(stderr, " (kvmmig -h for help)\n");
	return 2;
}
