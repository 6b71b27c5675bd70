// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restoring a snapshot eagerly (see snapshot.h): the file is opened with
 * its chain of bases (snapshot_chain.c, which checks every header, id and
 * presence map), the VMM makes a VM of that layout, and every block of
 * pages is read from the files that hold it, checked against their
 * checksums and only then copied into guest memory (zero pages are skipped
 * in slots the VMM handed over zeroed).  The vCPU states of the newest file
 * are checked and loaded last.  A file is untrusted: a bad one is refused
 * with what is wrong, and the VM released.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "snapshot.h"
#include "snapshot_read.h"

int snap_load_block(struct snap_chain *c, struct kvmmig_vm *vm, uint8_t *buf, unsigned int slot,
		    uint64_t block)
{
	uint8_t *dst = (uint8_t *)vm->slots[slot].hva + block * SNAP_BLOCK_PAGES * MIG_PAGE_SIZE;
	bool zeroed = vm->slots[slot].zeroed;
	uint64_t zero = 0;
	int i, n;

	n = snap_chain_read_block(c, slot, block, buf, zeroed ? &zero : NULL);
	/* A zero page in fresh memory needs no write (and no memory). */
	for (i = 0; i < n; i++)
		if (!(zero >> i & 1))
			memcpy(dst + i * MIG_PAGE_SIZE, buf + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	return n < 0 ? n : 0;
}

/* Every block of every slot into the guest. */
static int snap_load_memory(struct snap_chain *c, struct kvmmig_vm *vm, uint8_t *buf)
{
	const struct mig_config *cfg = snap_chain_config(c);
	unsigned int slot;
	uint64_t b;
	int ret = 0;

	for (slot = 0; !ret && slot < cfg->nr_slots; slot++)
		for (b = 0; !ret && b * SNAP_BLOCK_PAGES < cfg->slots[slot].size / MIG_PAGE_SIZE; b++)
			ret = snap_load_block(c, vm, buf, slot, b);
	return ret;
}

int snap_load_vcpus(struct snap_chain *c, struct kvmmig_vm *vm)
{
	const struct mig_config *cfg = snap_chain_config(c);
	uint8_t *states = malloc((size_t)cfg->nr_vcpus * cfg->vcpu_state_size);
	unsigned int i;
	int ret;

	if (!states)
		return -ENOMEM;
	ret = snap_chain_read_states(c, states);
	for (i = 0; !ret && i < cfg->nr_vcpus; i++)
		ret = kvmmig_vm_load_state(vm, i, states + (size_t)i * cfg->vcpu_state_size);
	free(states);
	return ret;
}

int snap_make_vm(struct snap_chain *c,
		 int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
				  struct kvmmig_vm **vm),
		 void *vmm_opaque, struct kvmmig_vm **vm)
{
	int ret = create_vm(vmm_opaque, snap_chain_config(c), vm);

	if (ret > 0)
		ret = -EIO;
	if (!ret)
		ret = kvmmig_vm_check_config(*vm, snap_chain_config(c));
	return ret;
}

int snapshot_load_with(const char *path,
		       int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
					struct kvmmig_vm **vm),
		       void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
		       void *vmm_opaque, const struct snap_restore_opts *o, struct kvmmig_vm **out)
{
	unsigned int readers = o && o->readers ? o->readers : 1;
	uint8_t *buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	struct snap_chain *c = NULL;
	struct kvmmig_vm *vm = NULL;
	int ret = buf ? snap_check_readers(readers) : -ENOMEM;

	if (!ret)
		ret = snap_chain_open(path, &c);
	if (!ret)
		ret = snap_make_vm(c, create_vm, vmm_opaque, &vm);
	if (!ret)
		ret = readers > 1 ? snap_load_parallel(c, vm, readers, o->cancel) :
				    snap_load_memory(c, vm, buf);
	if (!ret)
		ret = snap_load_vcpus(c, vm);
	if (ret && vm)
		release_vm(vmm_opaque, vm, false);
	else if (!ret)
		*out = vm;
	snap_chain_close(c);
	free(buf);
	return ret;
}

int snapshot_load(const char *path,
		  int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
				   struct kvmmig_vm **vm),
		  void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
		  void *vmm_opaque, struct kvmmig_vm **out)
{
	return snapshot_load_with(path, create_vm, release_vm, vmm_opaque, NULL, out);
}
