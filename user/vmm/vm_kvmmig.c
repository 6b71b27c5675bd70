// SPDX-License-Identifier: GPL-2.0-only
/*
 * The built-in VMM's face to libkvmmig, the same as any VMM's: once the VM
 * exists, vm_kvmmig_wrap() hands its fds and memslots to kvmmig_vm_new()
 * with this VMM's ops (pause, resume, stop, vCPU state as a struct
 * vcpu_state_blob, CPU throttle by its vCPU threads), and the vCPU threads
 * forward ring-full exits to the result (vcpu.c).  On a destination,
 * vm_create_for_stream() makes a guest from the stream's CONFIG record;
 * its first resume starts the vCPU threads.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "vm.h"
#include "vm_internal.h"

static int vmm_pause(void *opaque)
{
	return vm_pause(opaque);
}

/* A destination's guest has never run: its first resume starts it. */
static int vmm_resume(void *opaque)
{
	struct vm *vm = opaque;

	if (!vm->vcpus[0].thread_started)
		return vm_start(vm);
	return vm_resume(vm);
}

static int vmm_stop(void *opaque)
{
	return vm_stop(opaque);
}

static int vmm_save_state(void *opaque, unsigned int vcpu, void *state)
{
	struct vm *vm = opaque;

	return vcpu_save_state(&vm->vcpus[vcpu], state);
}

static int vmm_load_state(void *opaque, unsigned int vcpu, const void *state)
{
	struct vm *vm = opaque;

	return vcpu_load_state(&vm->vcpus[vcpu], state);
}

static int vmm_set_throttle(void *opaque, int vcpu, unsigned int pct)
{
	return vm_set_throttle(opaque, vcpu, pct);
}

static const struct kvmmig_vm_ops vmm_ops = {
	.pause = vmm_pause,
	.resume = vmm_resume,
	.stop = vmm_stop,
	.state_size = sizeof(struct vcpu_state_blob),
	.save_state = vmm_save_state,
	.load_state = vmm_load_state,
	.set_throttle = vmm_set_throttle,
};

int vm_kvmmig_wrap(struct vm *vm)
{
	struct kvmmig_slot slots[VM_MAX_SLOTS];
	int fds[VM_MAX_VCPUS];
	unsigned int i;
	struct kvmmig_vm_args a = {
		.vm_fd = vm->fd,
		.nr_vcpus = vm->cfg.nr_vcpus,
		.vcpu_fds = fds,
		.nr_slots = vm->nr_slots,
		.slots = slots,
		.ring_entries = vm->cfg.ring_entries,
		.manual_protect = vm->cfg.manual_protect,
		.ops = &vmm_ops,
		.opaque = vm,
	};

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		fds[i] = vm->vcpus[i].fd;
	for (i = 0; i < vm->nr_slots; i++) {
		slots[i] = vm->slots[i];
		/* The system slot holds code and page tables; RAM is fresh. */
		slots[i].zeroed = i >= vm_first_ram_slot();
	}
	return kvmmig_vm_new(&a, &vm->kv);
}

/* Set before any stream is received, read when one brings its guest. */
static enum vm_backing stream_backing = VM_BACKING_ANON;

void vm_set_stream_backing(enum vm_backing backing)
{
	stream_backing = backing;
}

int vm_create_for_stream(void *vmm_opaque, const struct mig_config *c, struct kvmmig_vm **kv)
{
	struct vm **out = vmm_opaque;
	struct vm_config vc = {
		.nr_vcpus = c->nr_vcpus,
		.nr_slots = c->nr_slots - 1,
		.backing = stream_backing,
	};
	unsigned int i;
	int ret;

	/* The system slot, then RAM: the layout vm_create() makes. */
	if (c->nr_slots < 2) {
		kvmmig_err("configuration mismatch: %u slots in the stream, the built-in VMM needs at least 2",
			   c->nr_slots);
		return -EINVAL;
	}
	for (i = 1; i < c->nr_slots; i++)
		vc.ram_bytes += c->slots[i].size;
	ret = vm_create(&vc, out);
	if (ret)
		return ret;
	*kv = (*out)->kv;
	return 0;
}

void vm_release_for_stream(void *vmm_opaque, struct kvmmig_vm *kv, bool running)
{
	struct vm **vm = vmm_opaque;

	vm_destroy(*vm);
	*vm = NULL;
}
