/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the built-in VMM's files share with each other and nobody else:
 * memory setup (vm_mem.c), x86 long-mode setup (vm_x86.c), the vCPU
 * threads (vcpu.c) and the VMM's face to libkvmmig (vm_kvmmig.c).
 */
#ifndef KVMMIG_VM_INTERNAL_H
#define KVMMIG_VM_INTERNAL_H

#include "vm.h"

#define ALIGN_UP(x, a)		(((x) + (a) - 1) & ~((uint64_t)(a) - 1))

/*
 * A vCPU's state and request flags are written by one thread and polled by
 * another outside vm->lock.  Every such access is one of these: a store
 * releases what was written before it (sleep_ns before sleep_req, the
 * state before a waiter sees it), the load that sees it acquires that.
 */
#define load_acquire(p)		__atomic_load_n(p, __ATOMIC_ACQUIRE)
#define store_release(p, v)	__atomic_store_n(p, v, __ATOMIC_RELEASE)

/* A struct vm with /dev/kvm open and nothing else; vm_destroy() frees it. */
int vm_alloc(const struct vm_config *cfg, struct vm **out);

int vm_mem_setup(struct vm *vm, uint64_t sys_size);
void vm_mem_teardown(struct vm *vm);

/* The end of this binary's loadable segments (guest code lives there). */
uint64_t vm_image_end(void);
int vm_load_image(struct vm *vm);
int vm_x86_setup_memory(struct vm *vm);
int vcpu_x86_setup(struct vcpu *vcpu);
uint64_t vm_vcpu_area_gpa(struct vm *vm, unsigned int id);

int vcpu_create(struct vm *vm, unsigned int id);
/* mmap kvm_run of vcpu->fd. */
int vcpu_map(struct vcpu *vcpu);
void vcpu_destroy(struct vcpu *vcpu);
/* KVM_EXIT_DIRTY_RING_FULL: a test's handler, or libkvmmig's (vm->kv). */
int vcpu_ring_full(struct vcpu *vcpu);
void vm_throttle_stop(struct vm *vm);

/* Wrap the new VM in vm->kv, through kvmmig_vm_new() like any VMM. */
int vm_kvmmig_wrap(struct vm *vm);

/* Guest entry point, in user/lib/guest/. */
void guest_main(uint64_t vcpu_id, uint64_t area_gpa);

#endif /* KVMMIG_VM_INTERNAL_H */
