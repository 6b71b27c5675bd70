// SPDX-License-Identifier: GPL-2.0-only
/*
 * The "module" dirty source.  Its harvest is one KVMMIG_HARVEST that takes
 * every vCPU's ring into the shared reaper's accumulated bitmap
 * (dirty_reaper.c), then KVM_RESET_DIRTY_RINGS, like the ring source does
 * entry by entry: from the reaper thread while the vCPUs run, on
 * KVM_EXIT_DIRTY_RING_FULL and at each collection.  Its per-vCPU counts
 * come from the module's tracepoint accounting, with no harvest at all.
 */
#include <errno.h>
#include <stdlib.h>

#include "dirty_reaper.h"
#include "log.h"
#include "module_client.h"

struct kmod_priv {
	struct dirty_reaper reaper;	/* its lock guards hv[] and the harvest */
	struct kmod_session *ks;
	struct kvmmig_slot_bitmap sb[MIG_MAX_SLOTS];	/* into reaper.acc[] */
	struct kvmmig_harvest_vcpu hv[MIG_MAX_VCPUS];
};

struct kmod_session *dirty_module_session(struct dirty_source *ds)
{
	if (ds->ops != &dirty_module_ops || !ds->priv)
		return NULL;
	return container_of(ds->priv, struct kmod_priv, reaper)->ks;
}

/* One KVMMIG_HARVEST of every ring into acc[], then KVM's reset. */
static int kmod_reap_locked(struct dirty_reaper *r)
{
	struct kmod_priv *p = container_of(r, struct kmod_priv, reaper);
	struct dirty_source *ds = r->ds;
	struct kvmmig_harvest h = {
		.slots = (uintptr_t)p->sb,
		.nr_slots = ds->vm->nr_slots,
		.vcpus = (uintptr_t)p->hv,
		.nr_vcpus = MIG_MAX_VCPUS,
	};
	unsigned int i;
	int ret;

	dirty_reaper_assert_held(r);
	ret = kmod_harvest(p->ks, &h);
	if (ret)
		return ret;
	for (i = 0; i < h.nr_vcpus && i < MIG_MAX_VCPUS; i++)
		dirty_reaper_count_locked(r, i, p->hv[i].entries);
	ds->stats.harvested += h.harvested;
	if (h.overflows) {
		ds->stats.overflows += h.overflows;
		r->all_dirty = true;
		kvmmig_info("a dirty ring overflowed: reporting all memory dirty");
	}
	if (h.harvested) {
		ret = dirty_reaper_reset_rings_locked(r);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void kmod_release(struct dirty_reaper *r)
{
	struct kmod_priv *p = container_of(r, struct kmod_priv, reaper);

	kmod_close(p->ks);
	free(p);
}

static const struct dirty_reaper_ops kmod_reaper_ops = {
	.reap_locked = kmod_reap_locked,
	.release = kmod_release,
};

/* The module counts every ring push in the vCPU's thread: no harvest needed. */
static int dirty_module_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	struct kmod_priv *p = container_of(ds->priv, struct kmod_priv, reaper);
	struct kvmmig_vcpu_stats *st;
	uint32_t nr, i;
	int ret;

	ret = kmod_vcpu_stats(p->ks, &st, &nr);
	if (ret)
		return ret;
	for (i = 0; i < ds->vm->nr_vcpus; i++)
		counts[i] = i < nr ? st[i].dirty_pages : 0;
	free(st);
	return 0;
}

static int dirty_module_start(struct dirty_source *ds)
{
	struct kvmmig_vm *vm = ds->vm;
	struct kmod_priv *p;
	unsigned int i;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	ret = dirty_reaper_init(&p->reaper, ds, &kmod_reaper_ops);
	if (!ret)
		ret = kmod_attach(vm->fd, &p->ks);
	if (ret)
		goto err;
	/* KVMMIG_HARVEST sets the bits of each slot's page in reaper.acc[]. */
	for (i = 0; i < vm->nr_slots; i++) {
		p->sb[i].slot = vm->slots[i].id;
		p->sb[i].npages = p->reaper.npages[i];
		p->sb[i].bitmap = (uintptr_t)p->reaper.acc[i];
	}
	ret = dirty_reaper_start(&p->reaper);
	if (ret)
		goto err;
	kvmmig_info("kvmmig.ko session %u harvests the dirty rings", p->ks->id);
	return 0;
err:
	dirty_reaper_close(ds);
	return ret;
}

const struct dirty_source_ops dirty_module_ops = {
	.name = "module",
	.start = dirty_module_start,
	.collect = dirty_reaper_collect,
	.vcpu_counts = dirty_module_vcpu_counts,
	.ring_full = dirty_reaper_ring_full,
	.stop = dirty_reaper_close,
};
