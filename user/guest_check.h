/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What `kvmmig receive` and `kvmmig restore` do with a built-in guest that
 * has just been resumed from elsewhere: let it run, pause it, and check
 * that it ran and that its memory is what its workload promises (the incr
 * workload: QEMU migration-test's one value per vCPU slice, one edge at
 * most).  Guest memory is untrusted: its parameter page is checked first.
 */
#ifndef KVMMIG_GUEST_CHECK_H
#define KVMMIG_GUEST_CHECK_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

struct guest_check_opts {
	uint64_t run_seconds;		/* how long the guest runs before the check */
	bool json;			/* a "verified" event instead of a line */
	const char *who;		/* prefix of every line ("destination: "), or "" */
	const char *where;		/* "on the destination", "after the restore" */
	const volatile sig_atomic_t *cancel;	/* ends the run early, unchecked */
};

/*
 * Run, pause, check, stop.  0 when the check passed (or the workload has
 * none); -ECANCELED, -EIO (failed, or no progress) or -EBADMSG (memory or
 * parameters wrong), each said on stderr.  The guest is stopped on return.
 */
int guest_run_and_check(struct vm *vm, const struct guest_check_opts *o);

#endif /* KVMMIG_GUEST_CHECK_H */
