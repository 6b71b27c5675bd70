// SPDX-License-Identifier: GPL-2.0-only
/*
 * A resumed built-in guest run and checked (see guest_check.h), shared by
 * `kvmmig receive` and `kvmmig restore` so that both say the same thing in
 * the same words.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "cancel.h"
#include "guest_check.h"
#include "json.h"
#include "log.h"

static void guest_verified_json(uint64_t ops, const char *memory_check)
{
	struct json_writer w;

	json_event_begin(&w, stdout, "verified");
	json_key_u64(&w, "guest_ops_since_resume", ops);
	json_key_str(&w, "memory_check", memory_check);
	json_line_end(&w);
}

int guest_run_and_check(struct vm *vm, const struct guest_check_opts *o)
{
	uint64_t before = vm_loops(vm), after, edges = 0;
	const char *check;
	struct guest_shared g;
	int ret;

	if (!o->json)
		printf("%sguest resumed; letting it run %llu s\n", o->who,
		       (unsigned long long)o->run_seconds);
	fflush(stdout);
	if (!kvmmig_sleep_ms(o->run_seconds * 1000, o->cancel)) {
		fprintf(stderr, "kvmmig: interrupted while the guest ran %s; it is stopped unchecked\n",
			o->where);
		vm_stop(vm);
		return -ECANCELED;
	}
	vm_pause(vm);
	after = vm_loops(vm);
	if (vm_failure(vm)) {
		fprintf(stderr, "kvmmig: the guest failed %s: %s\n", o->where, vm_failure(vm));
		vm_stop(vm);
		return -EIO;
	}
	/* Guest memory, perhaps rewritten on the way: checked before it is used. */
	if (vm_guest_params(vm, &g)) {
		fprintf(stderr, "kvmmig: the guest is broken %s: %s\n", o->where,
			kvmmig_last_error());
		vm_stop(vm);
		return -EBADMSG;
	}
	if (after == before && g.workload != WORKLOAD_IDLE) {
		fprintf(stderr, "kvmmig: the guest made no progress %s\n", o->where);
		vm_stop(vm);
		return -EIO;
	}
	ret = g.workload == WORKLOAD_INCR ? workload_check_incr(vm, &edges) : 0;
	check = g.workload != WORKLOAD_INCR ? "skipped" : ret ? "failed" : "passed";
	if (o->json)
		guest_verified_json(after - before, check);
	else
		printf("%sguest did %llu writes since resume; memory check %s\n", o->who,
		       (unsigned long long)(after - before),
		       g.workload != WORKLOAD_INCR ? "skipped (not incr)" :
		       ret ? "FAILED" : "passed (incr: one value per vCPU, one edge at most)");
	vm_stop(vm);
	return ret;
}
