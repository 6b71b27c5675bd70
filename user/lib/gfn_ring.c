// SPDX-License-Identifier: GPL-2.0-only
/*
 * Getting a stuck dirty ring moving again.  KVM keeps two free-running
 * indices per ring: D, where it pushes the next entry, and R, from where
 * KVM_RESET_DIRTY_RINGS recycles entries flagged collected, in order,
 * stopping at the first entry not flagged.  A PVM host can push past the
 * ring's soft limit and wrap over entries not yet recycled; a later reset
 * then clears the new entries in those places while R counts on, so R can
 * end at a clean entry KVM still counts as used (a "phantom").  Such a ring
 * stays soft-full whatever is flagged after R, and its vCPU exits with
 * KVM_EXIT_DIRTY_RING_FULL for ever.  Userspace cannot read R or D; it can
 * only find R by probing, and skip the phantoms.  Both are safe only under
 * the conditions stated on each function, which the callers guarantee.
 */
#include "gfn_ring.h"

/*
 * Probe for R with the vCPU out of KVM_RUN at a ring-full exit, and R not
 * moved since that exit, so that D - R is at least the soft limit: flagging
 * the entry at R and resetting cannot take R past D.  (KVM 6.1's reset is
 * not bounded by D: flagging entries past D would let R overrun it, so
 * never flag everything.)  A probe flags one entry collected and asks KVM
 * to reset: only if the entry is at R does KVM reset it (and go on over
 * the entries flagged after it, all before D: KVM pushed them and has not
 * reset them); otherwise the entry is put back as it was.  The caller
 * leaves no collected entry KVM could reset on other rings, so the count
 * is this ring's.
 */
int gfn_ring_find_reset(const struct gfn_ring_probe *p, uint32_t *pos)
{
	uint32_t mask = p->size - 1, i;
	int cnt;

	for (i = 0; i < p->size; i++) {
		uint32_t x = *pos + i;
		struct kvm_dirty_gfn *e = &p->ring[x & mask];
		uint32_t old = gfn_flags_acquire(e);

		/* KVM would have reset a collected entry at R already. */
		if (old & KVM_DIRTY_GFN_F_RESET)
			continue;
		if (gfn_is_dirty(old) && p->take)
			p->take(p->opaque, e);
		gfn_mark_collected(e);
		cnt = p->reset(p->opaque);
		if (cnt < 0)
			return cnt;
		if (cnt) {
			*pos = x + cnt;
			return 1;
		}
		gfn_set_flags(e, old);
	}
	return 0;
}

/*
 * With R known (@pos) and KVM stopped there: if an entry KVM still holds
 * (dirty, or flagged collected and not reset) follows a run of clean ones,
 * every entry of the run is before D (KVM pushed the held one after them),
 * so the run can be flagged collected for the next reset.  With nothing
 * held behind it, the run may reach past D: it is left alone.
 */
uint32_t gfn_ring_skip_phantoms(struct kvm_dirty_gfn *ring, uint32_t size, uint32_t pos)
{
	uint32_t mask = size - 1, run, i;

	for (run = 0; run < size; run++)
		if (gfn_flags_acquire(&ring[(pos + run) & mask]))
			break;
	if (run == size)
		return 0;
	for (i = 0; i < run; i++)
		gfn_mark_collected(&ring[(pos + i) & mask]);
	return run;
}
