// SPDX-License-Identifier: GPL-2.0-only
/*
 * The "module" dirty source.  It harvests every vCPU's ring with one
 * KVMMIG_HARVEST into an accumulated bitmap and then calls
 * KVM_RESET_DIRTY_RINGS, like the ring source does entry by entry: from a
 * reaper thread while the vCPUs run, on KVM_EXIT_DIRTY_RING_FULL and at
 * each collection.  Its per-vCPU counts come from the module's tracepoint
 * accounting, with no harvest at all.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "dirty_internal.h"
#include "log.h"
#include "module_client.h"
struct kmod_priv {
	struct kmod_session *ks;
	pthread_mutex_t lock;		/* everything below, KVM_RESET_DIRTY_RINGS */
	struct kvmmig_slot_bitmap sb[MIG_MAX_SLOTS];
	unsigned long *acc[MIG_MAX_SLOTS];	/* harvested, not yet collected */
	struct kvmmig_harvest_vcpu hv[MIG_MAX_VCPUS];
	uint64_t vcpu_pages[MIG_MAX_VCPUS];	/* since the last collection */
	bool all_dirty;
	pthread_t reaper;
	bool reaper_running;
	volatile bool reaper_stop;
};

struct kmod_session *dirty_module_session(struct dirty_source *ds)
{
	return ds->priv ? ((struct kmod_priv *)ds->priv)->ks : NULL;
}

/* One KVMMIG_HARVEST of every ring into acc[], then KVM's reset. */
static int kmod_reap_locked(struct dirty_source *ds)
{
	struct kmod_priv *p = ds->priv;
	struct kvmmig_vm *vm = ds->vm;
	struct kvmmig_harvest h = {
		.slots = (uintptr_t)p->sb,
		.nr_slots = vm->nr_slots,
		.vcpus = (uintptr_t)p->hv,
		.nr_vcpus = MIG_MAX_VCPUS,
	};
	uint64_t t0 = dirty_now_ns();
	unsigned int i;
	int ret;

	ret = kmod_harvest(p->ks, &h);
	if (ret)
		return ret;
	for (i = 0; i < h.nr_vcpus && i < MIG_MAX_VCPUS; i++)
		p->vcpu_pages[i] += p->hv[i].entries;
	ds->stats.harvested += h.harvested;
	ds->stats.reaps++;
	if (h.overflows) {
		ds->stats.overflows += h.overflows;
		p->all_dirty = true;
		kvmmig_info("a dirty ring overflowed: reporting all memory dirty");
	}
	if (h.harvested) {
		ret = ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0);
		if (ret < 0)
			return kvmmig_ioctl_err("KVM_RESET_DIRTY_RINGS", errno);
		ds->stats.reset += ret;
	}
	ds->stats.harvest_ns += dirty_now_ns() - t0;
	return 0;
}

static void *kmod_reaper(void *arg)
{
	struct dirty_source *ds = arg;
	struct kmod_priv *p = ds->priv;
	struct timespec ts = { .tv_nsec = ds->opts.reap_interval_us * 1000L };

	while (!p->reaper_stop) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&p->lock);
		kmod_reap_locked(ds);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static int dirty_module_ring_full(struct dirty_source *ds, unsigned int vcpu)
{
	struct kmod_priv *p = ds->priv;
	int ret;

	pthread_mutex_lock(&p->lock);
	ds->stats.ring_full_exits++;
	ret = kmod_reap_locked(ds);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static int kmod_vm_full_cb(void *opaque, unsigned int vcpu)
{
	return dirty_module_ring_full(opaque, vcpu);
}

static int dirty_module_collect(struct dirty_source *ds, struct dirty_set *out)
{
	struct kmod_priv *p = ds->priv;
	uint64_t added = 0, npages;
	unsigned int i;
	int ret;

	pthread_mutex_lock(&p->lock);
	ret = kmod_reap_locked(ds);
	if (ret)
		goto out;
	for (i = 0; i < ds->vm->nr_slots; i++) {
		npages = p->sb[i].npages;
		if (p->all_dirty)
			bitmap_fill(p->acc[i], npages);
		added += bitmap_or_count(out->bitmaps[i], p->acc[i], npages);
		bitmap_zero(p->acc[i], npages);
	}
	out->all_dirty |= p->all_dirty;
	p->all_dirty = false;
	for (i = 0; i < ds->vm->nr_vcpus && i < out->nr_vcpus; i++) {
		out->vcpu_pages[i] += p->vcpu_pages[i];
		p->vcpu_pages[i] = 0;
	}
	ret = added > INT32_MAX ? INT32_MAX : (int)added;
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* The module counts every ring push in the vCPU's thread: no harvest needed. */
static int dirty_module_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	struct kmod_priv *p = ds->priv;
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

static void dirty_module_stop(struct dirty_source *ds)
{
	struct kmod_priv *p = ds->priv;
	unsigned int i;

	if (!p)
		return;
	if (p->reaper_running) {
		p->reaper_stop = true;
		pthread_join(p->reaper, NULL);
	}
	kvmmig_vm_set_ring_full_handler(ds->vm, NULL, NULL);
	pthread_mutex_lock(&p->lock);
	if (p->ks)
		kmod_reap_locked(ds);
	pthread_mutex_unlock(&p->lock);
	kmod_close(p->ks);
	for (i = 0; i < MIG_MAX_SLOTS; i++)
		free(p->acc[i]);
	pthread_mutex_destroy(&p->lock);
	free(p);
	ds->priv = NULL;
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
	pthread_mutex_init(&p->lock, NULL);
	ds->priv = p;
	ret = kmod_attach(vm->fd, &p->ks);
	if (ret)
		goto err;
	for (i = 0; i < vm->nr_slots; i++) {
		p->sb[i].slot = vm->slots[i].id;
		p->sb[i].npages = vm->slots[i].size / MIG_PAGE_SIZE;
		p->acc[i] = bitmap_alloc(p->sb[i].npages);
		if (!p->acc[i]) {
			ret = -ENOMEM;
			goto err;
		}
		p->sb[i].bitmap = (uintptr_t)p->acc[i];
	}
	kvmmig_vm_set_ring_full_handler(vm, kmod_vm_full_cb, ds);
	if (!ds->opts.no_reaper) {
		ret = pthread_create(&p->reaper, NULL, kmod_reaper, ds);
		if (ret) {
			kvmmig_err("cannot start the dirty-ring reaper: %s", strerror(ret));
			ret = -ret;
			goto err;
		}
		p->reaper_running = true;
	}
	kvmmig_info("kvmmig.ko session %u harvests the dirty rings", p->ks->id);
	return 0;
err:
	dirty_module_stop(ds);
	return ret;
}

const struct dirty_source_ops dirty_module_ops = {
	.name = "module",
	.start = dirty_module_start,
	.collect = dirty_module_collect,
	.vcpu_counts = dirty_module_vcpu_counts,
	.ring_full = dirty_module_ring_full,
	.stop = dirty_module_stop,
};
