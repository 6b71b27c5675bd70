// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest memory of the built-in VMM: the system slot at GPA 0 and the RAM
 * slots at GUEST_RAM_GPA, their backing (anonymous, shared memfd or
 * hugetlb) and registration with KVM (dirty logging is libkvmmig's to turn
 * on and off).  RAM is mapped with MAP_NORESERVE so a large
 * sparse guest costs only the pages it touches.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "vm.h"
#include "vm_internal.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB	(21 << MAP_HUGE_SHIFT)
#endif

/*
 * Anonymous memory for transparent huge pages: 2 MiB aligned (a huge page
 * needs an aligned 2 MiB of the mapping) and marked MADV_HUGEPAGE, which
 * the default "madvise" THP mode waits for.
 */
static void *vm_mem_map_thp(uint64_t size)
{
	uint64_t huge = 2ULL << 20, head;
	uint8_t *p;

	p = mmap(NULL, size + huge, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		kvmmig_err("cannot map %llu MiB of guest memory: %s",
			   (unsigned long long)(size >> 20), strerror(errno));
		return NULL;
	}
	head = ALIGN_UP((uintptr_t)p, huge) - (uintptr_t)p;
	if (head)
		munmap(p, head);
	munmap(p + head + size, huge - head);
	p += head;
	/* Without THP in the kernel this fails, and memory is plain pages. */
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

static void *vm_mem_map(struct vm *vm, uint64_t size)
{
	int flags = MAP_NORESERVE, fd = -1;
	void *p;

	switch (vm->cfg.backing) {
	case VM_BACKING_ANON:
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		break;
	case VM_BACKING_HUGETLB:
		flags |= MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB;
		break;
	case VM_BACKING_THP:
		return vm_mem_map_thp(size);
	case VM_BACKING_MEMFD:
		fd = memfd_create("kvmmig-guest", MFD_CLOEXEC);
		if (fd < 0) {
			kvmmig_err("memfd_create failed: %s", strerror(errno));
			return NULL;
		}
		if (ftruncate(fd, size) < 0) {
			kvmmig_err("ftruncate of guest memfd to %llu bytes failed: %s",
				   (unsigned long long)size, strerror(errno));
			close(fd);
			return NULL;
		}
		flags |= MAP_SHARED;
		break;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED) {
		if (vm->cfg.backing == VM_BACKING_HUGETLB)
			kvmmig_err("cannot map %llu MiB of 2 MiB hugetlb pages: %s (see /proc/sys/vm/nr_hugepages)",
				   (unsigned long long)(size >> 20), strerror(errno));
		else
			kvmmig_err("cannot map %llu MiB of guest memory: %s",
				   (unsigned long long)(size >> 20), strerror(errno));
		return NULL;
	}
	return p;
}

static int vm_slot_add(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct kvmmig_slot *s = &vm->slots[vm->nr_slots];
	uint64_t map_size = size;

	if (vm->cfg.backing == VM_BACKING_HUGETLB)
		map_size = ALIGN_UP(size, 2ULL << 20);
	s->id = vm->nr_slots;
	s->gpa = gpa;
	s->size = size;
	s->flags = 0;
	s->hva = vm_mem_map(vm, map_size);
	if (!s->hva)
		return -ENOMEM;
	vm->nr_slots++;
	return kvmmig_set_memslot(vm->fd, s);
}

int vm_mem_setup(struct vm *vm, uint64_t sys_size)
{
	uint64_t pages = vm->cfg.ram_bytes / GUEST_PAGE_SIZE;
	uint64_t per_slot = pages / vm->cfg.nr_slots;
	uint64_t gpa = GUEST_RAM_GPA;
	unsigned int i;
	int ret;

	ret = vm_slot_add(vm, 0, sys_size);
	if (ret)
		return ret;
	for (i = 0; i < vm->cfg.nr_slots; i++) {
		uint64_t n = i == vm->cfg.nr_slots - 1 ? pages - per_slot * i : per_slot;

		ret = vm_slot_add(vm, gpa, n * GUEST_PAGE_SIZE);
		if (ret)
			return ret;
		gpa += n * GUEST_PAGE_SIZE;
	}
	return 0;
}

void vm_mem_teardown(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_slots; i++) {
		struct kvmmig_slot *s = &vm->slots[i];
		uint64_t size = s->size;

		if (vm->cfg.backing == VM_BACKING_HUGETLB)
			size = ALIGN_UP(size, 2ULL << 20);
		if (s->hva)
			munmap(s->hva, size);
	}
	vm->nr_slots = 0;
}

void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < vm->nr_slots; i++) {
		struct kvmmig_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa <= s->size &&
		    len <= s->size - (gpa - s->gpa))
			return (char *)s->hva + (gpa - s->gpa);
	}
	return NULL;
}
