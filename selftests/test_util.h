/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers shared by the selftests: capability checks that turn into a SKIP
 * with the reason, and the guest-memory walk used to verify workloads.
 */
#ifndef KVMMIG_TEST_UTIL_H
#define KVMMIG_TEST_UTIL_H

#include <fcntl.h>
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

#endif /* KVMMIG_TEST_UTIL_H */
