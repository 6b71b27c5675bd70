// SPDX-License-Identifier: GPL-2.0-only
/*
 * The host's one way to read the built-in guest's parameter page (struct
 * guest_shared).  That page is guest memory: a buggy or hostile guest, or a
 * stream rewritten on the way (its CRC32C recomputed), can put anything in
 * it.  So it is copied once and every field the host uses is checked
 * against the VM's own configuration (vCPU count, RAM) before anything
 * divides, loops or indexes by it; a mismatch is the guest's failure,
 * named with the value found and the value expected.
 */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "vm.h"

/* [mem_gpa, mem_gpa + mem_pages pages) must lie inside the VM's RAM. */
static int guest_params_check_mem(const struct vm *vm, const struct guest_shared *g)
{
	uint64_t ram_pages = vm->cfg.ram_bytes / GUEST_PAGE_SIZE, first;

	if (g->mem_gpa < GUEST_RAM_GPA || g->mem_gpa % GUEST_PAGE_SIZE) {
		kvmmig_err("guest parameters: mem_gpa 0x%llx, expected a page-aligned address from 0x%llx",
			   (unsigned long long)g->mem_gpa, (unsigned long long)GUEST_RAM_GPA);
		return -EBADMSG;
	}
	first = (g->mem_gpa - GUEST_RAM_GPA) / GUEST_PAGE_SIZE;
	if (!g->mem_pages || first >= ram_pages || g->mem_pages > ram_pages - first) {
		kvmmig_err("guest parameters: %llu pages at 0x%llx, expected 1 to %llu pages inside the VM's %llu MiB of RAM",
			   (unsigned long long)g->mem_pages, (unsigned long long)g->mem_gpa,
			   (unsigned long long)(first < ram_pages ? ram_pages - first : 0),
			   (unsigned long long)(vm->cfg.ram_bytes >> 20));
		return -EBADMSG;
	}
	return 0;
}

int vm_guest_params(const struct vm *vm, struct guest_shared *out)
{
	/* One snapshot: the guest may go on writing the page meanwhile. */
	memcpy(out, (const void *)vm->shared, sizeof(*out));
	if (out->workload >= NR_WORKLOADS) {
		kvmmig_err("guest parameters: workload %llu, expected below %d",
			   (unsigned long long)out->workload, NR_WORKLOADS);
		return -EBADMSG;
	}
	if (out->nr_vcpus != vm->cfg.nr_vcpus) {
		kvmmig_err("guest parameters: nr_vcpus %llu, but this VM has %u vCPUs",
			   (unsigned long long)out->nr_vcpus, vm->cfg.nr_vcpus);
		return -EBADMSG;
	}
	return guest_params_check_mem(vm, out);
}
