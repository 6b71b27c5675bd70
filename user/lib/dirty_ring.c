// SPDX-License-Identifier: GPL-2.0-only
/*
 * The dirty-ring source.  Every vCPU has a ring of struct kvm_dirty_gfn that
 * KVM fills as the guest writes; we harvest entries in order (acquire on the
 * flags, pairing with KVM's release when it publishes an entry), mark them
 * collected (release, so KVM reads our flag after we read the entry) and
 * then call KVM_RESET_DIRTY_RINGS, which write-protects those pages again
 * and recycles the entries.  The shared reaper (dirty_reaper.c) runs that
 * round every few hundred microseconds while the vCPUs run, at
 * KVM_EXIT_DIRTY_RING_FULL in the vCPU's thread and at each collection,
 * and keeps the accumulated bitmap that collections hand out only after
 * the reset, so a page a caller reads is already protected again.  All of
 * this file runs with the reaper's lock held.
 *
 * Overflow: a PVM host emulates up to 1024 guest instructions without
 * honouring the ring's soft limit, so a ring can wrap over entries not yet
 * harvested.  Lost entries cannot be recovered, so on any sign of it (a ring
 * harvested full, KVM resetting fewer entries than were harvested, or a gap:
 * a clean entry where the sequence should go on with dirty ones behind it)
 * all memory is write-protected again (a lost entry's page would otherwise
 * stay writable and unlogged for good: ring_reprotect()), every slot is
 * reported wholly dirty, and the ring is re-synchronised with KVM so the
 * vCPU never stalls.  (On PVM every emulated write pushes an entry whatever
 * the page's protection, even 64 pages written over and over fill a ring
 * of 256, so there a lost entry costs nothing later; with hardware paging,
 * where only a protected page's first write is logged, it would.)
 */
#include <errno.h>
#include <stdlib.h>

#include "bitmap.h"
#include "dirty_reaper.h"
#include "gfn_ring.h"
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
	bool suspect;		/* overflow seen: kvm_reset may be wrong */
	bool full_seen;		/* at the last ring-full exit, indices were: */
	uint32_t full_fetch, full_reset;
};

struct ring_priv {
	struct dirty_reaper reaper;	/* its lock guards everything below */
	struct ring_vcpu rv[MIG_MAX_VCPUS];
	bool reprotect;			/* entries were lost: protect all memory again */
	/* KVM slot id -> index in vm->slots[] + 1 (the ids are the VMM's own) */
	uint8_t slot_of[KVMMIG_MAX_SLOT_ID + 1];
};

static inline struct ring_priv *ring_of(struct dirty_reaper *r)
{
	dirty_reaper_assert_held(r);
	return container_of(r, struct ring_priv, reaper);
}

static void ring_record(struct ring_priv *p, const struct kvm_dirty_gfn *e)
{
	uint32_t id = e->slot & 0xffff, slot;

	/* Slots we know are all of address space 0 (as_id, the high half); others are ignored. */
	if (e->slot >> 16 || id > KVMMIG_MAX_SLOT_ID || !p->slot_of[id])
		return;
	slot = p->slot_of[id] - 1;
	if (e->offset < p->reaper.npages[slot])
		bitmap_set_bit(p->reaper.acc[slot], e->offset);
}

/*
 * Entries were lost: report every page at the next collection, and treat
 * the ring as suspect until KVM and we agree on its position again.
 */
static void ring_overflow(struct dirty_reaper *r, unsigned int vcpu, const char *why)
{
	struct ring_priv *p = ring_of(r);

	r->all_dirty = true;
	p->reprotect = true;
	if (p->rv[vcpu].suspect)
		return;
	p->rv[vcpu].suspect = true;
	r->ds->stats.overflows++;
	kvmmig_info("dirty ring of vCPU %u overflowed (%s): reporting all memory dirty",
		    vcpu, why);
}

/* Harvest one vCPU's ring into the accumulated bitmap; returns entries taken. */
static uint32_t ring_harvest(struct dirty_reaper *r, unsigned int idx)
{
	struct dirty_source *ds = r->ds;
	struct ring_priv *p = ring_of(r);
	struct kvmmig_vcpu *v = &ds->vm->vcpus[idx];
	struct ring_vcpu *rv = &p->rv[idx];
	uint32_t size = ds->vm->ring_entries, mask = size - 1, n = 0;
	bool was_empty = rv->fetch == rv->kvm_reset;

	/* At most a whole ring can wait for KVM's reset. */
	while (rv->fetch - rv->kvm_reset < size) {
		struct kvm_dirty_gfn *e = &v->ring[rv->fetch & mask];
		uint32_t flags = gfn_flags_acquire(e);

		if (gfn_is_dirty(flags)) {
			ring_record(p, e);
			gfn_mark_collected(e);
			n++;
		} else if (!(flags & KVM_DIRTY_GFN_F_RESET)) {
			break;
		}
		/* A collected entry here is one of ours that KVM has not reset. */
		rv->fetch++;
	}
	dirty_reaper_count_locked(r, idx, n);
	ds->stats.harvested += n;
	/* KVM never lets a healthy ring fill up: it wrapped over entries. */
	if (was_empty && n == size)
		ring_overflow(r, idx, "harvested full");
	return n;
}

/*
 * After KVM_RESET_DIRTY_RINGS: KVM cleared the flags of the entries it
 * reset, in order from its reset index, and stopped at the first entry not
 * flagged collected.  If that is before our fetch index and the entry is
 * dirty, KVM overwrote one of our collected entries with a new one: it
 * wrapped the ring, and harvesting resumes there.  If the entry is one of
 * ours, KVM's reset index is elsewhere: ring_resync() must locate it.
 */
static void ring_follow_reset(struct dirty_reaper *r, unsigned int idx)
{
	struct ring_vcpu *rv = &ring_of(r)->rv[idx];
	struct kvm_dirty_gfn *ring = r->ds->vm->vcpus[idx].ring;
	uint32_t mask = r->ds->vm->ring_entries - 1, flags;

	while (rv->kvm_reset != rv->fetch && !gfn_flags_acquire(&ring[rv->kvm_reset & mask]))
		rv->kvm_reset++;
	if (rv->kvm_reset == rv->fetch) {
		if (rv->suspect) {
			/* In step with KVM again: what was lost in between is resent. */
			rv->suspect = false;
			r->all_dirty = true;
		}
		return;
	}
	flags = gfn_flags_acquire(&ring[rv->kvm_reset & mask]);
	if (gfn_is_dirty(flags))
		rv->fetch = rv->kvm_reset;
	ring_overflow(r, idx, gfn_is_dirty(flags) ? "KVM stopped resetting at an overwritten entry"
						    : "KVM's reset index is not where expected");
}

static int ring_reset(struct dirty_reaper *r)
{
	struct ring_priv *p = ring_of(r);
	unsigned int i, n = r->ds->vm->nr_vcpus;
	bool pending = false;
	int ret;

	for (i = 0; i < n; i++)
		pending |= p->rv[i].fetch != p->rv[i].kvm_reset;
	if (!pending)
		return 0;
	ret = dirty_reaper_reset_rings_locked(r);
	if (ret < 0)
		return ret;
	for (i = 0; i < n; i++)
		ring_follow_reset(r, i);
	return 0;
}

static int ring_probe_reset(void *opaque)
{
	return dirty_reaper_reset_rings_locked(opaque);
}

static void ring_probe_take(void *opaque, const struct kvm_dirty_gfn *e)
{
	ring_record(ring_of(opaque), e);
}

/*
 * Locate KVM's reset index of a stuck ring (gfn_ring_find_reset()), with
 * the vCPU at a ring-full exit and nothing of its ring reset since, and no
 * collected entry pending on other rings (after a reap).  Then skip the
 * phantoms there.  Harvesting resumes at KVM's new position.
 */
static int ring_resync(struct dirty_reaper *r, unsigned int idx)
{
	struct ring_vcpu *rv = &ring_of(r)->rv[idx];
	struct gfn_ring_probe probe = {
		.ring = r->ds->vm->vcpus[idx].ring,
		.size = r->ds->vm->ring_entries,
		.reset = ring_probe_reset,
		.take = ring_probe_take,
		.opaque = r,
	};
	uint32_t pos = rv->kvm_reset;
	int ret;

	ret = gfn_ring_find_reset(&probe, &pos);
	if (ret != 1)
		return ret;
	rv->kvm_reset = pos;
	rv->fetch = pos + gfn_ring_skip_phantoms(probe.ring, probe.size, pos);
	return 1;
}

/*
 * KVM write-protects a page again only when it resets the page's ring
 * entry.  An entry overwritten before it was harvested is never reset, so
 * its page would stay writable for good and every later write to it would
 * go unlogged: reporting all memory dirty once is not enough.  Turning
 * dirty logging off and on protects every page of every slot again; the
 * pages reported (all of them) are then read after that, so any write from
 * here on is logged.
 */
static int ring_reprotect(struct dirty_reaper *r)
{
	struct ring_priv *p = ring_of(r);
	int ret;

	ret = kvmmig_vm_set_dirty_logging(r->ds->vm, false);
	/* Closing, logging stays off: nothing is tracked any more. */
	if (!ret && !r->closing)
		ret = kvmmig_vm_set_dirty_logging(r->ds->vm, true);
	if (ret)
		return ret;
	p->reprotect = false;
	r->all_dirty = true;
	return 0;
}

/*
 * KVM pushes the next entries where the last harvest stopped, whenever
 * tracking resumes (a migration retried after a failed one): a new source
 * that started at 0 would miss them until the ring wrapped.  So the ring
 * positions are the VM's: they come from it at start and go back to it
 * after every round.  Rounds run only while ring-full exits come to this
 * source; before and after, the VM's own recycling keeps them.
 */
static void ring_hand_back(struct dirty_reaper *r)
{
	struct ring_priv *p = ring_of(r);
	struct kvmmig_vm *vm = r->ds->vm;
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].ring_fetch = p->rv[i].fetch;
		vm->vcpus[i].ring_reset = p->rv[i].kvm_reset;
		vm->vcpus[i].ring_suspect = p->rv[i].suspect;
	}
}

/* One round: harvest every ring, then have KVM reset what was harvested. */
static int ring_reap_locked(struct dirty_reaper *r)
{
	struct ring_priv *p = ring_of(r);
	unsigned int i;
	int ret;

	for (i = 0; i < r->ds->vm->nr_vcpus; i++)
		ring_harvest(r, i);
	ret = ring_reset(r);
	if (!ret && p->reprotect)
		ret = ring_reprotect(r);
	ring_hand_back(r);
	return ret;
}

/*
 * KVM_EXIT_DIRTY_RING_FULL, in the vCPU's own thread: its ring is still.
 * A healthy ring just needs a harvest and a reset.  One that exits again
 * with nothing of it harvested or reset since its last exit is stuck: KVM
 * counts at least its soft limit of entries from a reset index that did not
 * move, entries the ring does not hold (after a wrap), so probing for that
 * index and skipping them is safe.
 */
static int ring_full_locked(struct dirty_reaper *r, unsigned int idx)
{
	struct ring_vcpu *rv = &ring_of(r)->rv[idx];
	bool stuck;
	int ret;

	ret = dirty_reaper_reap_locked(r);
	/* A healthy ring always has new entries by its next ring-full exit. */
	stuck = rv->full_seen && rv->full_fetch == rv->fetch && rv->full_reset == rv->kvm_reset;
	if (!ret && stuck) {
		ring_overflow(r, idx, "KVM counts entries the ring does not hold");
		ret = ring_resync(r, idx);
		if (ret == 1)
			ret = dirty_reaper_reap_locked(r);
	}
	rv->full_seen = true;
	rv->full_fetch = rv->fetch;
	rv->full_reset = rv->kvm_reset;
	ring_hand_back(r);
	return ret;
}

static void ring_release(struct dirty_reaper *r)
{
	free(container_of(r, struct ring_priv, reaper));
}

static const struct dirty_reaper_ops ring_reaper_ops = {
	.reap_locked = ring_reap_locked,
	.ring_full_locked = ring_full_locked,
	.release = ring_release,
};

static int dirty_ring_start(struct dirty_source *ds)
{
	struct ring_priv *p = calloc(1, sizeof(*p));
	struct kvmmig_vm *vm = ds->vm;
	unsigned int i;
	int ret;

	if (!p)
		return -ENOMEM;
	/* Under the VM's lock: until our handler is in, it recycles the rings. */
	pthread_mutex_lock(&vm->hook_lock);
	for (i = 0; i < vm->nr_vcpus; i++) {
		p->rv[i].fetch = vm->vcpus[i].ring_fetch;
		p->rv[i].kvm_reset = vm->vcpus[i].ring_reset;
		p->rv[i].suspect = vm->vcpus[i].ring_suspect;
	}
	pthread_mutex_unlock(&vm->hook_lock);
	for (i = 0; i < vm->nr_slots; i++)
		p->slot_of[vm->slots[i].id] = i + 1;
	ret = dirty_reaper_init(&p->reaper, ds, &ring_reaper_ops);
	if (!ret)
		ret = dirty_reaper_start(&p->reaper);
	if (ret)
		dirty_reaper_close(ds);
	return ret;
}

const struct dirty_source_ops dirty_ring_ops = {
	.name = "ring",
	.start = dirty_ring_start,
	.collect = dirty_reaper_collect,
	.vcpu_counts = dirty_reaper_vcpu_counts,
	.ring_full = dirty_reaper_ring_full,
	.stop = dirty_reaper_close,
};
