// SPDX-License-Identifier: GPL-2.0-only
/*
 * The dirty-ring source.  Every vCPU has a ring of struct kvm_dirty_gfn that
 * KVM fills as the guest writes; we harvest entries in order (acquire on the
 * flags, pairing with KVM's release when it publishes an entry), mark them
 * collected (release, so KVM reads our flag after we read the entry) and
 * then call KVM_RESET_DIRTY_RINGS, which write-protects those pages again
 * and recycles the entries.  A reaper thread does this every few hundred
 * microseconds while the vCPUs run, so rings never fill; a vCPU whose ring
 * does fill exits with KVM_EXIT_DIRTY_RING_FULL and harvests in its own
 * thread.  Harvested pages go to an accumulated bitmap that collections
 * hand out only after the reset, so a page a caller reads is already
 * protected again.
 *
 * Overflow: a PVM host emulates up to 1024 guest instructions without
 * honouring the ring's soft limit, so a ring can wrap over entries not yet
 * harvested.  Lost entries cannot be recovered, so on any sign of it (a ring
 * harvested full, KVM resetting fewer entries than were harvested, or a gap:
 * a clean entry where the sequence should go on with dirty ones behind it)
 * every slot is reported wholly dirty once, and the ring is re-synchronised
 * with KVM so the vCPU never stalls.
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

/*
 * Per-vCPU ring position.  Both indices run free (wrap at 2^32) and are
 * masked on use.  [kvm_reset, fetch) are the entries we flagged collected
 * that KVM has not reset yet; kvm_reset follows KVM's own reset index
 * exactly, because after KVM_RESET_DIRTY_RINGS it is advanced over the
 * entries whose flags KVM cleared.
 */
struct ring_vcpu {
	uint32_t fetch;		/* next entry to harvest */
	uint32_t kvm_reset;	/* KVM's reset index */
	bool stalled;		/* last ring-full exit found nothing at all */
	uint32_t stall_fetch;	/* ... and fetch was this */
};

struct ring_priv {
	pthread_mutex_t lock;	/* everything below, and KVM_RESET_DIRTY_RINGS */
	struct ring_vcpu rv[VM_MAX_VCPUS];
	unsigned long *acc[VM_MAX_SLOTS];	/* harvested, not yet collected */
	uint64_t npages[VM_MAX_SLOTS];
	uint64_t vcpu_pages[VM_MAX_VCPUS];	/* since the last collection */
	uint64_t vcpu_total[VM_MAX_VCPUS];	/* since the source opened */
	bool all_dirty;		/* overflow: report every page once */
	pthread_t reaper;
	bool reaper_running;
	volatile bool reaper_stop;
};

static inline uint32_t ring_flags_acquire(struct kvm_dirty_gfn *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
}

static inline void ring_mark_collected(struct kvm_dirty_gfn *e)
{
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
}

static inline bool ring_is_dirty(uint32_t flags)
{
	return flags & KVM_DIRTY_GFN_F_DIRTY;
}

static void ring_record(struct ring_priv *p, const struct kvm_dirty_gfn *e)
{
	uint32_t slot = e->slot & 0xffff;

	/* as_id (high half) is 0 on our VMs; out-of-range entries are ignored. */
	if (e->slot >> 16 || slot >= VM_MAX_SLOTS || !p->acc[slot] || e->offset >= p->npages[slot])
		return;
	bitmap_set_bit(p->acc[slot], e->offset);
}

static void ring_overflow(struct dirty_source *ds, unsigned int vcpu, const char *why)
{
	struct ring_priv *p = ds->priv;

	ds->stats.overflows++;
	p->all_dirty = true;
	kvmmig_info("dirty ring of vCPU %u overflowed (%s): reporting all memory dirty",
		    vcpu, why);
}

/* Harvest one vCPU's ring into the accumulated bitmap; returns entries taken. */
static uint32_t ring_harvest(struct dirty_source *ds, unsigned int idx)
{
	struct ring_priv *p = ds->priv;
	struct vcpu *v = &ds->vm->vcpus[idx];
	struct ring_vcpu *rv = &p->rv[idx];
	uint32_t size = ds->vm->cfg.ring_entries, mask = size - 1, n = 0;
	bool was_empty = rv->fetch == rv->kvm_reset;

	/* At most a whole ring can wait for KVM's reset. */
	while (rv->fetch - rv->kvm_reset < size) {
		struct kvm_dirty_gfn *e = &v->ring[rv->fetch & mask];
		uint32_t flags = ring_flags_acquire(e);

		if (ring_is_dirty(flags)) {
			ring_record(p, e);
			ring_mark_collected(e);
			n++;
		} else if (!(flags & KVM_DIRTY_GFN_F_RESET)) {
			break;
		}
		/* A collected entry here is one of ours that KVM has not reset. */
		rv->fetch++;
	}
	p->vcpu_pages[idx] += n;
	p->vcpu_total[idx] += n;
	ds->stats.harvested += n;
	/* KVM never lets a healthy ring fill up: it wrapped over entries. */
	if (was_empty && n == size)
		ring_overflow(ds, idx, "harvested full");
	return n;
}

/*
 * After KVM_RESET_DIRTY_RINGS: KVM cleared the flags of the entries it
 * reset, in order from its reset index, and stopped at the first entry not
 * flagged collected.  If that is before our fetch index, KVM overwrote one
 * of our collected entries with a new dirty one: it wrapped the ring.
 * Harvesting resumes at that entry.
 */
static void ring_follow_reset(struct dirty_source *ds, unsigned int idx)
{
	struct ring_priv *p = ds->priv;
	struct ring_vcpu *rv = &p->rv[idx];
	struct kvm_dirty_gfn *ring = ds->vm->vcpus[idx].ring;
	uint32_t mask = ds->vm->cfg.ring_entries - 1;

	while (rv->kvm_reset != rv->fetch && !ring_flags_acquire(&ring[rv->kvm_reset & mask]))
		rv->kvm_reset++;
	if (rv->kvm_reset != rv->fetch) {
		ring_overflow(ds, idx, "KVM stopped resetting at an overwritten entry");
		rv->fetch = rv->kvm_reset;
	}
}

static int ring_reset(struct dirty_source *ds)
{
	struct ring_priv *p = ds->priv;
	unsigned int i, n = ds->vm->cfg.nr_vcpus;
	bool pending = false;
	int ret;

	for (i = 0; i < n; i++)
		pending |= p->rv[i].fetch != p->rv[i].kvm_reset;
	if (!pending)
		return 0;
	ret = ioctl(ds->vm->fd, KVM_RESET_DIRTY_RINGS, 0);
	if (ret < 0)
		return kvmmig_ioctl_err("KVM_RESET_DIRTY_RINGS", errno);
	ds->stats.reset += ret;
	for (i = 0; i < n; i++)
		ring_follow_reset(ds, i);
	return 0;
}

/*
 * KVM may believe entries are outstanding that we can never see: after it
 * wrapped a ring, we harvested a whole lap and KVM reset that lap, but its
 * dirty index had run ahead by the overrun, so the entries between our
 * position and its next push hold nothing ("phantoms").  Flag them
 * collected so its reset walks over them.  Two cases, both exact:
 *  - dirty entries follow a run of clean ones: the run is the phantoms
 *    (KVM pushes in order right after them);
 *  - nothing at all is dirty, and the vCPU exited ring-full twice with
 *    nothing reset in between: KVM's count of outstanding entries is at
 *    least its soft limit, so flagging one more phantom cannot overshoot;
 *    the vCPU re-enters and we go on one entry per exit.
 * Called only with nothing of ours pending (fetch == kvm_reset), in the
 * vCPU's thread while it is out of KVM_RUN.
 */
static uint32_t ring_mark_phantoms(struct dirty_source *ds, unsigned int idx)
{
	struct ring_vcpu *rv = &((struct ring_priv *)ds->priv)->rv[idx];
	struct kvm_dirty_gfn *ring = ds->vm->vcpus[idx].ring;
	uint32_t size = ds->vm->cfg.ring_entries, mask = size - 1, i, first = 0;

	for (i = 1; i < size; i++) {
		if (ring_is_dirty(ring_flags_acquire(&ring[(rv->fetch + i) & mask]))) {
			first = i;
			break;
		}
	}
	if (!first) {
		if (!rv->stalled || rv->stall_fetch != rv->fetch)
			return 0;
		first = 1;
	}
	for (i = 0; i < first; i++)
		ring_mark_collected(&ring[(rv->fetch + i) & mask]);
	rv->fetch += first;
	return first;
}

static int ring_reap_locked(struct dirty_source *ds)
{
	uint64_t t0 = dirty_now_ns();
	unsigned int i;
	int ret;

	for (i = 0; i < ds->vm->cfg.nr_vcpus; i++)
		ring_harvest(ds, i);
	ds->stats.reaps++;
	ret = ring_reset(ds);
	ds->stats.harvest_ns += dirty_now_ns() - t0;
	return ret;
}

static void *ring_reaper(void *arg)
{
	struct dirty_source *ds = arg;
	struct ring_priv *p = ds->priv;
	struct timespec ts = {
		.tv_nsec = ds->opts.reap_interval_us * 1000L,
	};

	while (!p->reaper_stop) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&p->lock);
		ring_reap_locked(ds);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

/* KVM_EXIT_DIRTY_RING_FULL, in the vCPU's own thread: its ring is still. */
static int dirty_ring_full(struct dirty_source *ds, unsigned int idx)
{
	struct ring_priv *p = ds->priv;
	struct ring_vcpu *rv = &p->rv[idx];
	bool idle;
	int ret;

	pthread_mutex_lock(&p->lock);
	ds->stats.ring_full_exits++;
	idle = rv->fetch == rv->kvm_reset && !ring_harvest(ds, idx);
	if (idle && ring_mark_phantoms(ds, idx)) {
		ring_overflow(ds, idx, "KVM counts entries the ring does not hold");
		ring_harvest(ds, idx);
	}
	ret = ring_reap_locked(ds);
	rv->stalled = idle;
	rv->stall_fetch = rv->fetch;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static int dirty_ring_collect(struct dirty_source *ds, struct dirty_set *out)
{
	struct ring_priv *p = ds->priv;
	uint64_t added = 0, t0;
	unsigned int i;
	int ret;

	pthread_mutex_lock(&p->lock);
	ret = ring_reap_locked(ds);
	if (ret)
		goto out;
	t0 = dirty_now_ns();
	for (i = 0; i < ds->vm->nr_slots; i++) {
		if (p->all_dirty)
			bitmap_fill(p->acc[i], p->npages[i]);
		added += bitmap_or_count(out->bitmaps[i], p->acc[i], p->npages[i]);
		bitmap_zero(p->acc[i], p->npages[i]);
	}
	out->all_dirty |= p->all_dirty;
	p->all_dirty = false;
	ds->stats.harvest_ns += dirty_now_ns() - t0;
	for (i = 0; i < ds->vm->cfg.nr_vcpus && i < out->nr_vcpus; i++) {
		out->vcpu_pages[i] += p->vcpu_pages[i];
		p->vcpu_pages[i] = 0;
	}
	ret = added > INT32_MAX ? INT32_MAX : (int)added;
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* Fresh counts: reap first, so they are at most a moment old. */
static int dirty_ring_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	struct ring_priv *p = ds->priv;
	int ret;

	pthread_mutex_lock(&p->lock);
	ret = ring_reap_locked(ds);
	memcpy(counts, p->vcpu_total, ds->vm->cfg.nr_vcpus * sizeof(*counts));
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static int ring_vm_full_cb(void *opaque, unsigned int vcpu)
{
	return dirty_ring_full(opaque, vcpu);
}

static void dirty_ring_stop(struct dirty_source *ds)
{
	struct ring_priv *p = ds->priv;
	unsigned int i;

	if (!p)
		return;
	if (p->reaper_running) {
		p->reaper_stop = true;
		pthread_join(p->reaper, NULL);
	}
	/* From here on no vCPU thread enters dirty_ring_full(). */
	vm_set_ring_full_handler(ds->vm, NULL, NULL);
	pthread_mutex_lock(&p->lock);
	ring_reap_locked(ds);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < VM_MAX_SLOTS; i++)
		free(p->acc[i]);
	pthread_mutex_destroy(&p->lock);
	free(p);
	ds->priv = NULL;
}

static int dirty_ring_start(struct dirty_source *ds)
{
	struct vm *vm = ds->vm;
	struct ring_priv *p;
	unsigned int i;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	ds->priv = p;
	for (i = 0; i < vm->nr_slots; i++) {
		p->npages[i] = vm->slots[i].size / GUEST_PAGE_SIZE;
		p->acc[i] = bitmap_alloc(p->npages[i]);
		if (!p->acc[i]) {
			dirty_ring_stop(ds);
			return -ENOMEM;
		}
	}
	vm_set_ring_full_handler(vm, ring_vm_full_cb, ds);
	if (!ds->opts.no_reaper) {
		ret = pthread_create(&p->reaper, NULL, ring_reaper, ds);
		if (ret) {
			kvmmig_err("cannot start the dirty-ring reaper: %s", strerror(ret));
			dirty_ring_stop(ds);
			return -ret;
		}
		p->reaper_running = true;
	}
	return 0;
}

const struct dirty_source_ops dirty_ring_ops = {
	.name = "ring",
	.start = dirty_ring_start,
	.collect = dirty_ring_collect,
	.vcpu_counts = dirty_ring_vcpu_counts,
	.ring_full = dirty_ring_full,
	.stop = dirty_ring_stop,
};
