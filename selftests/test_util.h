/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers shared by the selftests: capability checks that turn into a SKIP
 * with the reason, and the guest-memory walk used to verify workloads.
 */
#ifndef KVMMIG_TEST_UTIL_H
#define KVMMIG_TEST_UTIL_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "vm.h"

static inline int kvm_cap(long cap)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), ret;

	if (fd < 0)
		return -1;
	ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);
	close(fd);
	return ret;
}

/* Writes (iterations for compute) of every vCPU of a built-in guest so far. */
static inline uint64_t guest_loops(struct vm *vm)
{
	return vm_loops(vm);
}

/* Host pointer to page @i of the workload range. */
static inline void *workload_page(struct vm *vm, uint64_t i)
{
	return vm_gpa_to_hva(vm, vm->shared->mem_gpa + i * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
}

/* Which slot and page-in-slot hold workload page @i. */
static inline void workload_slot_page(struct vm *vm, uint64_t i, unsigned int *slot,
				      uint64_t *off)
{
	uint64_t gpa = vm->shared->mem_gpa + i * GUEST_PAGE_SIZE;
	unsigned int s;

	for (s = 0; s < vm->nr_slots; s++)
		if (gpa >= vm->slots[s].gpa && gpa < vm->slots[s].gpa + vm->slots[s].size)
			break;
	*slot = s;
	*off = (gpa - vm->slots[s].gpa) / GUEST_PAGE_SIZE;
}

/*
 * Is @addr in a mapping whose VmFlags say "um" (registered for userfaultfd
 * MISSING faults)?  1 or 0; -1 when smaps cannot tell.
 */
static inline int uffd_missing_flag(void *addr)
{
	char line[512];
	uintptr_t a = (uintptr_t)addr, lo, hi;
	bool in = false;
	int found = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			found = strstr(line, " um") != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

#endif /* KVMMIG_TEST_UTIL_H */
