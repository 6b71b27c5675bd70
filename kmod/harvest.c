// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVMMIG_HARVEST: walk every vCPU's dirty ring exactly as a userspace
 * harvester does (an entry is ready when its flags say DIRTY, collected by
 * setting RESET), OR the pages into the caller's per-slot bitmaps and count
 * per vCPU.  Entries are read a chunk at a time and marked collected only
 * after their bits reached user memory, so a fault loses nothing: the chunk
 * stays DIRTY for the next call.  KVM re-protects collected pages when
 * userspace calls KVM_RESET_DIRTY_RINGS on the VM fd (kvm_dirty_ring_reset()
 * is not exported).  A reaper calls this every few milliseconds, mostly to
 * find the rings empty, so a call allocates nothing: the entry chunk and the
 * per-vCPU results live in a per-session scratch area, allocated on first
 * use and used under the session lock, and up to KVMMIG_HCTX_SLOTS caller
 * bitmaps are copied to the stack.
 */
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "kvmmig.h"

#define KVMMIG_HARVEST_CHUNK	512
#define KVMMIG_HCTX_SLOTS	4	/* caller bitmaps kept on the stack */

struct kvmmig_gfn {
	u32 slot;
	u64 offset;
};

/* One caller bitmap, by slot; ub[] stays in the caller's order. */
struct kvmmig_hslot {
	u32 slot;
	u32 ub;
};

struct kvmmig_harvest_scratch {
	struct kvmmig_gfn buf[KVMMIG_HARVEST_CHUNK];
	struct kvmmig_harvest_vcpu out[KVM_MAX_VCPUS];
};

struct kvmmig_hctx {
	struct kvmmig_slot_bitmap *ub;	/* copy of the caller's array */
	struct kvmmig_hslot *by_slot;	/* sorted by slot */
	struct kvmmig_slot_bitmap ub_inline[KVMMIG_HCTX_SLOTS];
	struct kvmmig_hslot by_slot_inline[KVMMIG_HCTX_SLOTS];
	u32 nr_slots;
	u32 last;			/* by_slot index of the last hit */
	struct kvmmig_gfn *buf;		/* the session's scratch chunk */
	u64 unmatched;
	u64 __user *wptr;		/* bitmap word being assembled */
	u64 wbits;
};

static int kvmmig_hslot_cmp(const void *a, const void *b)
{
	const struct kvmmig_hslot *x = a, *y = b;

	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static int kvmmig_slot_bitmap_check(const struct kvmmig_slot_bitmap *b)
{
	if (b->pad || b->flags || b->pad2 ||
	    memchr_inv(b->reserved, 0, sizeof(b->reserved)))
		return -EINVAL;
	if (!b->npages || b->npages > KVMMIG_MAX_SLOT_PAGES)
		return -EINVAL;
	if (!access_ok(u64_to_user_ptr(b->bitmap),
		       DIV_ROUND_UP(b->npages, 64) * sizeof(u64)))
		return -EFAULT;
	return 0;
}

/* Copy and check the caller's bitmaps; slots must be unique. */
static int kvmmig_hctx_init(struct kvmmig_hctx *h, const struct kvmmig_harvest *hv)
{
	u32 i, n = hv->nr_slots;
	int r;

	h->nr_slots = n;
	if (n <= KVMMIG_HCTX_SLOTS) {
		h->ub = h->ub_inline;
		h->by_slot = h->by_slot_inline;
	} else {
		h->ub = kvmalloc_array(n, sizeof(*h->ub), GFP_KERNEL);
		h->by_slot = kvmalloc_array(n, sizeof(*h->by_slot), GFP_KERNEL);
		if (!h->ub || !h->by_slot)
			return -ENOMEM;
	}
	if (copy_from_user(h->ub, u64_to_user_ptr(hv->slots), n * sizeof(*h->ub)))
		return -EFAULT;
	for (i = 0; i < n; i++) {
		r = kvmmig_slot_bitmap_check(&h->ub[i]);
		if (r)
			return r;
		h->ub[i].harvested = 0;
		h->by_slot[i].slot = h->ub[i].slot;
		h->by_slot[i].ub = i;
	}
	sort(h->by_slot, n, sizeof(*h->by_slot), kvmmig_hslot_cmp, NULL);
	for (i = 1; i < n; i++)
		if (h->by_slot[i].slot == h->by_slot[i - 1].slot)
			return -EINVAL;
	return 0;
}

static void kvmmig_hctx_free(struct kvmmig_hctx *h)
{
	if (h->ub != h->ub_inline)
		kvfree(h->ub);
	if (h->by_slot != h->by_slot_inline)
		kvfree(h->by_slot);
}

/* The session's scratch area, allocated on first use; under s->lock. */
static struct kvmmig_harvest_scratch *kvmmig_harvest_scratch(struct kvmmig_session *s)
{
	lockdep_assert_held(&s->lock);
	if (!s->scratch)
		s->scratch = kvmalloc(sizeof(*s->scratch), GFP_KERNEL_ACCOUNT);
	return s->scratch;
}

void kvmmig_harvest_scratch_free(struct kvmmig_session *s)
{
	kvfree(s->scratch);
	s->scratch = NULL;
}

/* The caller's bitmap for a slot, or NULL; consecutive entries usually share one. */
static struct kvmmig_slot_bitmap *kvmmig_hslot_find(struct kvmmig_hctx *h, u32 slot)
{
	u32 lo = 0, hi = h->nr_slots, mid;

	if (!h->nr_slots)
		return NULL;
	if (h->by_slot[h->last].slot == slot)
		return &h->ub[h->by_slot[h->last].ub];
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (h->by_slot[mid].slot == slot) {
			h->last = mid;
			return &h->ub[h->by_slot[mid].ub];
		}
		if (h->by_slot[mid].slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int kvmmig_word_flush(struct kvmmig_hctx *h)
{
	u64 old;

	if (!h->wptr)
		return 0;
	if (get_user(old, h->wptr) || put_user(old | h->wbits, h->wptr))
		return -EFAULT;
	h->wptr = NULL;
	h->wbits = 0;
	return 0;
}

/* Set the bits of n gfns in the caller's bitmaps. */
static int kvmmig_mark(struct kvmmig_hctx *h, const struct kvmmig_gfn *g, u32 n)
{
	struct kvmmig_slot_bitmap *b;
	u64 __user *word;
	u32 i;
	int r;

	for (i = 0; i < n; i++) {
		b = kvmmig_hslot_find(h, g[i].slot);
		if (!b || g[i].offset >= b->npages) {
			h->unmatched++;
			continue;
		}
		b->harvested++;
		word = (u64 __user *)u64_to_user_ptr(b->bitmap) + g[i].offset / 64;
		if (word != h->wptr) {
			r = kvmmig_word_flush(h);
			if (r)
				return r;
			h->wptr = word;
		}
		h->wbits |= 1ULL << (g[i].offset % 64);
	}
	return kvmmig_word_flush(h);
}

static struct kvm_dirty_gfn *kvmmig_ring_entry(struct kvm_dirty_ring *ring, u32 i)
{
	return &ring->dirty_gfns[i & (ring->size - 1)];
}

/*
 * Read up to max ring positions from idx: DIRTY entries into buf, RESET
 * ones (collected, awaiting reset) skipped; stop at an empty entry.
 * Returns the number of positions scanned.
 */
static u32 kvmmig_ring_read(struct kvm_dirty_ring *ring, u32 idx, u32 max,
			    struct kvmmig_gfn *buf, u32 *nr)
{
	struct kvm_dirty_gfn *e;
	u32 i, n = 0, f;

	for (i = 0; i < max; i++) {
		e = kvmmig_ring_entry(ring, idx + i);
		/* Pairs with smp_wmb() in kvm_dirty_ring_push(). */
		f = smp_load_acquire(&e->flags);
		if (f & KVM_DIRTY_GFN_F_RESET)
			continue;
		if (!(f & KVM_DIRTY_GFN_F_DIRTY))
			break;
		buf[n].slot = READ_ONCE(e->slot);
		buf[n].offset = READ_ONCE(e->offset);
		n++;
	}
	*nr = n;
	return i;
}

static void kvmmig_ring_collect(struct kvm_dirty_ring *ring, u32 idx, u32 count)
{
	struct kvm_dirty_gfn *e;
	u32 i;

	for (i = 0; i < count; i++) {
		e = kvmmig_ring_entry(ring, idx + i);
		if (READ_ONCE(e->flags) != KVM_DIRTY_GFN_F_DIRTY)
			continue;
		/* Pairs with smp_load_acquire() in kvm_dirty_gfn_harvested(). */
		smp_store_release(&e->flags, KVM_DIRTY_GFN_F_RESET);
	}
}

/* Someone else may have collected and reset entries: never start behind. */
static u32 kvmmig_ring_start(struct kvmmig_vcpu *v, struct kvm_dirty_ring *ring)
{
	u32 reset = READ_ONCE(ring->reset_index);

	if ((s32)(reset - v->fetch_index) > 0)
		v->fetch_index = reset;
	return v->fetch_index;
}

static int kvmmig_harvest_vcpu(struct kvmmig_hctx *h, struct kvmmig_vcpu *v,
			       struct kvmmig_harvest_vcpu *out)
{
	struct kvm_dirty_ring *ring = &v->vcpu->dirty_ring;
	u32 idx, scanned, done = 0, n, reset;
	int r;

	if (!ring->size || !ring->dirty_gfns)
		return 0;
	idx = kvmmig_ring_start(v, ring);
	while (done < ring->size) {
		scanned = kvmmig_ring_read(ring, idx,
					   min_t(u32, KVMMIG_HARVEST_CHUNK, ring->size - done),
					   h->buf, &n);
		if (!scanned)
			break;
		r = kvmmig_mark(h, h->buf, n);
		if (r)
			return r;
		kvmmig_ring_collect(ring, idx, scanned);
		idx += scanned;
		done += scanned;
		v->fetch_index = idx;
		out->entries += n;
		if (scanned < KVMMIG_HARVEST_CHUNK)
			break;
	}
	/* reset_index first: read the other way round, a reset in between could wrap. */
	reset = READ_ONCE(ring->reset_index);
	out->ring_used = READ_ONCE(ring->dirty_index) - reset;
	if (out->ring_used >= ring->size)
		out->flags |= KVMMIG_HARVEST_VCPU_OVERFLOW;
	return 0;
}

static int kvmmig_harvest_check(const struct kvmmig_harvest *hv)
{
	if (hv->flags || memchr_inv(hv->reserved, 0, sizeof(hv->reserved)))
		return -EINVAL;
	if (hv->nr_slots > KVMMIG_MAX_SLOTS || hv->nr_vcpus > KVM_MAX_VCPUS)
		return -E2BIG;
	return 0;
}

/* Walk every ring; results into h, hv and out[] (nr_vcpus entries). */
static int kvmmig_harvest_all(struct kvmmig_session *s, struct kvmmig_hctx *h,
			      struct kvmmig_harvest *hv,
			      struct kvmmig_harvest_vcpu *out)
{
	u32 i;
	int r;

	for (i = 0; i < s->nr_vcpus; i++) {
		r = kvmmig_harvest_vcpu(h, s->vcpus[i], &out[i]);
		if (r)
			return r;
		hv->harvested += out[i].entries;
		hv->overflows += !!(out[i].flags & KVMMIG_HARVEST_VCPU_OVERFLOW);
	}
	hv->unmatched = h->unmatched;
	return 0;
}

/*
 * Output arrays are written (with their current contents or zeroes) before
 * any entry is collected: a caller whose arrays fault loses no entry.
 */
static int kvmmig_harvest_probe_out(struct kvmmig_hctx *h,
				    const struct kvmmig_harvest *hv, u32 nr_vcpus)
{
	if (copy_to_user(u64_to_user_ptr(hv->slots), h->ub,
			 h->nr_slots * sizeof(*h->ub)))
		return -EFAULT;
	if (hv->nr_vcpus &&
	    clear_user(u64_to_user_ptr(hv->vcpus),
		       nr_vcpus * sizeof(struct kvmmig_harvest_vcpu)))
		return -EFAULT;
	return 0;
}

long kvmmig_harvest(struct kvmmig_session *s, struct kvmmig_harvest __user *uh)
{
	struct kvmmig_harvest_scratch *scratch;
	struct kvmmig_harvest_vcpu *out;
	struct kvmmig_hctx h = {};
	struct kvmmig_harvest hv;
	u32 n;
	int r;

	if (copy_from_user(&hv, uh, sizeof(hv)))
		return -EFAULT;
	r = kvmmig_harvest_check(&hv);
	if (r)
		return r;
	r = kvmmig_hctx_init(&h, &hv);
	if (r)
		goto out_free;
	r = kvmmig_session_lock(s);
	if (r)
		goto out_free;

	n = s->nr_vcpus;
	hv.harvested = 0;
	hv.unmatched = 0;
	hv.overflows = 0;
	if (!s->kvm->dirty_ring_size) {
		r = -EOPNOTSUPP;
		goto out_unlock;
	}
	if (hv.nr_vcpus && hv.nr_vcpus < n) {
		hv.nr_vcpus = n;
		r = -ENOSPC;
		goto out_unlock;
	}
	scratch = kvmmig_harvest_scratch(s);
	if (!scratch) {
		r = -ENOMEM;
		goto out_unlock;
	}
	h.buf = scratch->buf;
	out = scratch->out;
	memset(out, 0, n * sizeof(*out));
	r = kvmmig_harvest_probe_out(&h, &hv, n);
	if (!r)
		r = kvmmig_harvest_all(s, &h, &hv, out);
	/* Still under the lock: out[] is the session's. */
	if (!r && (copy_to_user(u64_to_user_ptr(hv.slots), h.ub, h.nr_slots * sizeof(*h.ub)) ||
		   (hv.nr_vcpus && copy_to_user(u64_to_user_ptr(hv.vcpus), out, n * sizeof(*out)))))
		r = -EFAULT;
	mutex_unlock(&s->lock);
	if (r)
		goto out_free;
	hv.nr_vcpus = n;
	r = copy_to_user(uh, &hv, sizeof(hv)) ? -EFAULT : 0;
	goto out_free;

out_unlock:
	mutex_unlock(&s->lock);
	if (r == -ENOSPC && copy_to_user(uh, &hv, sizeof(hv)))
		r = -EFAULT;
out_free:
	kvmmig_hctx_free(&h);
	return r;
}
