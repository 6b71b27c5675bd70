/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One vCPU's KVM dirty ring (struct kvm_dirty_gfn[]) as userspace handles
 * it, shared by the ring source (dirty_ring.c) and the recycling of rings
 * when nobody tracks (kvmmig_vm.c): reading and flagging an entry with the
 * ordering KVM pairs with, and finding KVM's reset index again when a ring
 * is stuck behind entries KVM counts but the ring no longer holds.
 */
#ifndef KVMMIG_GFN_RING_H
#define KVMMIG_GFN_RING_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* Pairs with KVM's release of the flags after it filled in slot and offset. */
static inline uint32_t gfn_flags_acquire(struct kvm_dirty_gfn *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
}

/* Pairs with KVM's reset, which reads the flag and then reuses the entry. */
static inline void gfn_set_flags(struct kvm_dirty_gfn *e, uint32_t flags)
{
	__atomic_store_n(&e->flags, flags, __ATOMIC_RELEASE);
}

static inline void gfn_mark_collected(struct kvm_dirty_gfn *e)
{
	gfn_set_flags(e, KVM_DIRTY_GFN_F_RESET);
}

static inline bool gfn_is_dirty(uint32_t flags)
{
	return flags & KVM_DIRTY_GFN_F_DIRTY;
}

/* A stuck ring and how to have KVM reset it, for gfn_ring_find_reset(). */
struct gfn_ring_probe {
	struct kvm_dirty_gfn *ring;
	uint32_t size;			/* entries, a power of two */
	/* KVM_RESET_DIRTY_RINGS: entries reset (this ring's only), or -errno */
	int (*reset)(void *opaque);
	/* Optional: dirty entry @e is about to be flagged collected. */
	void (*take)(void *opaque, const struct kvm_dirty_gfn *e);
	void *opaque;
};

/*
 * Locate KVM's reset index of a stuck ring, probing from *@pos on; see
 * gfn_ring.c for when this is safe.  Returns 1 with *@pos set to where
 * KVM's reset index is now, 0 if no entry was it, or a negative errno.
 */
int gfn_ring_find_reset(const struct gfn_ring_probe *p, uint32_t *pos);
/*
 * At KVM's reset index @pos, flag collected the run of clean entries
 * ("phantoms") that ends at an entry KVM still holds; returns how many.
 */
uint32_t gfn_ring_skip_phantoms(struct kvm_dirty_gfn *ring, uint32_t size, uint32_t pos);

#endif /* KVMMIG_GFN_RING_H */
