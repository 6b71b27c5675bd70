// SPDX-License-Identifier: GPL-2.0-only
/*
 * Host-side verification of guest memory written by the `incr` workload,
 * QEMU migration-test's method: each vCPU bumps byte 0 of every page of its
 * slice in order, pass after pass, so at any instant its pages hold the
 * same value except at one edge where the pages not yet bumped in this
 * pass hold one less.  A page lost or stale after migration breaks that.
 * Call it with the guest paused.  The guest's parameters are checked
 * against the VM's own configuration first (vm_guest_params()).
 */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "vm.h"

int workload_check_incr(struct vm *vm, uint64_t *edges_out)
{
	struct guest_shared g;
	uint64_t per, edges = 0, i;
	unsigned int v;
	int ret;

	/* Checked against this VM: nr_vcpus >= 1, the pages inside its RAM. */
	ret = vm_guest_params(vm, &g);
	if (ret)
		return ret;
	if (g.workload != WORKLOAD_INCR) {
		kvmmig_err("the guest runs the %s workload, not incr", workload_name(g.workload));
		return -EINVAL;
	}
	per = g.mem_pages / g.nr_vcpus;
	for (v = 0; v < g.nr_vcpus; v++) {
		uint64_t first = v * per, n = v == g.nr_vcpus - 1 ? g.mem_pages - first : per;
		const uint8_t *prev = NULL;
		bool edge = false;

		for (i = 0; i < n; i++) {
			const uint8_t *p = vm_gpa_to_hva(vm, g.mem_gpa + (first + i) * GUEST_PAGE_SIZE,
							 1);

			if (!p) {
				kvmmig_err("incr check: page %llu is outside guest memory",
					   (unsigned long long)(first + i));
				return -EFAULT;
			}
			if (prev && *p != *prev) {
				if (edge || (uint8_t)(*prev - 1) != *p) {
					kvmmig_err("incr check: vCPU %u page %llu holds %u after %u (expected %u%s)",
						   v, (unsigned long long)i, *p, *prev, *prev,
						   edge ? "" : " or one less, once");
					return -EIO;
				}
				edge = true;
				edges++;
			}
			prev = p;
		}
	}
	if (edges_out)
		*edges_out = edges;
	return 0;
}
