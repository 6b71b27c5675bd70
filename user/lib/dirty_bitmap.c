// SPDX-License-Identifier: GPL-2.0-only
/*
 * The bitmap dirty sources.  "bitmap" uses KVM_GET_DIRTY_LOG, which returns
 * a slot's dirty bits and write-protects them in one call.  "bitmap-manual"
 * uses KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG only reads, and
 * KVM_CLEAR_DIRTY_LOG re-protects the pages named.  On its own it clears
 * what it collected at once, like "bitmap"; with clear_on_send it leaves
 * the pages dirty in KVM until the caller clears each range just before
 * sending it, so a page written again between the collection and its
 * sending is sent once, not twice.  Both fetch into a private per-slot
 * buffer and OR it into the caller's set.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "bitmap.h"
#include "clock.h"
#include "dirty_internal.h"
#include "log.h"

struct bitmap_priv {
	unsigned long *buf[MIG_MAX_SLOTS];
	/*
	 * clear_on_send: reported and not cleared yet, so still set in KVM's
	 * log; a collection counts only what is not in here, lest pages
	 * waiting to be sent count as dirtied again at every collection.
	 */
	unsigned long *reported[MIG_MAX_SLOTS];
};

static int dirty_bitmap_start(struct dirty_source *ds)
{
	struct bitmap_priv *p = calloc(1, sizeof(*p));
	struct kvmmig_vm *vm = ds->vm;
	unsigned int i;

	if (!p)
		return -ENOMEM;
	ds->priv = p;
	for (i = 0; i < vm->nr_slots; i++) {
		uint64_t npages = vm->slots[i].size / MIG_PAGE_SIZE;

		p->buf[i] = bitmap_alloc(npages);
		if (p->buf[i] && ds->opts.clear_on_send)
			p->reported[i] = bitmap_alloc(npages);
		if (!p->buf[i] || (ds->opts.clear_on_send && !p->reported[i])) {
			ds->ops->stop(ds);
			return -ENOMEM;
		}
	}
	return 0;
}

static void dirty_bitmap_stop(struct dirty_source *ds)
{
	struct bitmap_priv *p = ds->priv;
	unsigned int i;

	if (!p)
		return;
	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(p->buf[i]);
		free(p->reported[i]);
	}
	free(p);
	ds->priv = NULL;
}

static int dirty_bitmap_get(struct dirty_source *ds, unsigned int slot, unsigned long *buf)
{
	struct kvm_dirty_log log = {
		.slot = ds->vm->slots[slot].id,
		.dirty_bitmap = buf,
	};

	if (ioctl(ds->vm->fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return kvmmig_ioctl_err("KVM_GET_DIRTY_LOG", errno);
	return 0;
}

static int dirty_bitmap_clear(struct dirty_source *ds, unsigned int slot, uint64_t first_page,
			      uint64_t npages, const unsigned long *bits)
{
	struct kvm_clear_dirty_log clr = {
		.slot = ds->vm->slots[slot].id,
		.first_page = first_page,
		.num_pages = npages,
		.dirty_bitmap = (void *)bits,
	};

	if (ioctl(ds->vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
		return kvmmig_ioctl_err("KVM_CLEAR_DIRTY_LOG", errno);
	return 0;
}

static int dirty_bitmap_collect_one(struct dirty_source *ds, struct dirty_set *out, bool manual)
{
	struct bitmap_priv *p = ds->priv;
	uint64_t added = 0, t0 = now_ns();
	unsigned int i;
	int ret;

	for (i = 0; i < ds->vm->nr_slots; i++) {
		uint64_t npages = out->nr_pages[i], n;

		ret = dirty_bitmap_get(ds, i, p->buf[i]);
		if (!ret && manual && !ds->opts.clear_on_send)
			ret = dirty_bitmap_clear(ds, i, 0, npages, p->buf[i]);
		if (ret)
			return ret;
		/*
		 * All of the log goes into @out, even pages reported before: a
		 * caller that dropped one without sending it gets it back.
		 */
		n = bitmap_or_count(out->bitmaps[i], p->buf[i], npages);
		if (p->reported[i])
			n = bitmap_or_count(p->reported[i], p->buf[i], npages);
		added += n;
	}
	ds->stats.harvest_ns += now_ns() - t0;
	return added > INT32_MAX ? INT32_MAX : (int)added;
}

static int dirty_bitmap_collect(struct dirty_source *ds, struct dirty_set *out)
{
	return dirty_bitmap_collect_one(ds, out, false);
}

static int dirty_bitmap_manual_collect(struct dirty_source *ds, struct dirty_set *out)
{
	return dirty_bitmap_collect_one(ds, out, true);
}

/* clear_on_send: re-protect a range the caller is about to send. */
static int dirty_bitmap_manual_clear(struct dirty_source *ds, unsigned int slot,
				     uint64_t first_page, uint64_t npages,
				     const unsigned long *bits)
{
	unsigned long *reported = ((struct bitmap_priv *)ds->priv)->reported[slot];
	uint64_t w, nwords = BITMAP_WORDS(npages), t0;
	int ret;

	for (w = 0; w < nwords && !bits[w]; w++)
		;
	if (w == nwords)
		return 0;
	t0 = now_ns();
	ret = dirty_bitmap_clear(ds, slot, first_page, npages, bits);
	if (ret)
		return ret;
	reported += first_page / BITS_PER_LONG;
	for (w = 0; w < nwords; w++)
		reported[w] &= ~bits[w];
	ds->stats.harvest_ns += now_ns() - t0;
	return 0;
}

const struct dirty_source_ops dirty_bitmap_ops = {
	.name = "bitmap",
	.start = dirty_bitmap_start,
	.collect = dirty_bitmap_collect,
	.stop = dirty_bitmap_stop,
};

const struct dirty_source_ops dirty_bitmap_manual_ops = {
	.name = "bitmap-manual",
	.start = dirty_bitmap_start,
	.collect = dirty_bitmap_manual_collect,
	.clear = dirty_bitmap_manual_clear,
	.stop = dirty_bitmap_stop,
};
