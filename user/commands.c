// SPDX-License-Identifier: GPL-2.0-only
/*
 * The table of kvmmig subcommands, in the order `kvmmig -h` lists them.
 */
#include <stddef.h>

#include "commands.h"

const struct kvmmig_cmd kvmmig_cmds[] = {
	{ "demo", cmd_demo, "run a busy built-in guest and show live per-vCPU dirty rates" },
	{ "run", cmd_run, "run a built-in guest under dirty tracking (workload, RAM, vCPUs)" },
	{ NULL, NULL, NULL },
};
