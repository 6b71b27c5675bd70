// SPDX-License-Identifier: GPL-2.0-only
/*
 * The table of kvmmig subcommands, in the order `kvmmig -h` lists them.
 */
#include <stddef.h>

#include "commands.h"

const struct kvmmig_cmd kvmmig_cmds[] = {
	{ "attach", cmd_attach, "open a kvmmig.ko session on a running VMM's VM (--pid) and watch it" },
	{ "converge", cmd_converge, "make another VMM's migration converge: per-vCPU dirty limits via kvmmig.ko" },
	{ "demo", cmd_demo, "live-migrate a busy built-in guest over loopback and report" },
	{ "migrate", cmd_migrate, "run a built-in guest and live-migrate it to a destination" },
	{ "migrate-start-postcopy", cmd_migrate_start_postcopy, "switch a running --postcopy migration to postcopy now" },
	{ "cancel", cmd_cancel, "cancel a running migration or snapshot; the guest keeps running" },
	{ "receive", cmd_receive, "receive a migrating guest, resume it and check its memory" },
	{ "snapshot", cmd_snapshot, "run a built-in guest and save a background snapshot of it" },
	{ "snapshot-receive", cmd_snapshot_receive, "receive a snapshot sent over TCP into a file" },
	{ "restore", cmd_restore, "make a guest again from a snapshot, resume it, check its memory" },
	{ "run", cmd_run, "run a built-in guest under dirty tracking, show per-vCPU dirty rates" },
	{ "stats", cmd_stats, "per-vCPU statistics of every kvmmig.ko session (netlink)" },
	{ "throttle", cmd_throttle, "dirty limit, CPU throttle or ring quota on a VM via kvmmig.ko" },
	{ "top", cmd_top, "live per-VM, per-vCPU dirty rates of every KVM guest (eBPF, no module)" },
	{ NULL, NULL, NULL },
};
