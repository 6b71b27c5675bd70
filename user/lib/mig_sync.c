// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sync engine of the migration source, in three modes (DESIGN.md):
 *  - legacy: an iteration sync at the end of each pass, nothing else;
 *  - background (the seed series): every sync interval, collect into
 *    iter_bmap, keep shadow_bmap = bmap, and update the dirty rate and the
 *    throttle, without disturbing the pass; the next iteration sync drops
 *    from iter_bmap what was sent since and merges the rest;
 *  - periodic (what QEMU 9.2 merged): an ordinary iteration sync when none
 *    happened for an interval.
 * Background and periodic syncs happen only past the first pass and only
 * when a policy consumes the dirty rate they measure (auto-converge,
 * dirty-limit): otherwise they would cost syncs for nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "clock.h"
#include "log.h"
#include "mig_internal.h"

int mig_sync_init(struct mig_src *s)
{
	struct mig_sync *y = &s->sync;
	unsigned int i;
	int ret;

	memset(y, 0, sizeof(*y));
	y->nr_slots = s->vm->nr_slots;
	for (i = 0; i < y->nr_slots; i++) {
		y->npages[i] = s->vm->slots[i].size / MIG_PAGE_SIZE;
		y->bmap[i] = bitmap_alloc(y->npages[i]);
		y->iter_bmap[i] = bitmap_alloc(y->npages[i]);
		y->shadow_bmap[i] = bitmap_alloc(y->npages[i]);
		if (!y->bmap[i] || !y->iter_bmap[i] || !y->shadow_bmap[i])
			return -ENOMEM;
		/* The first pass sends everything. */
		bitmap_fill(y->bmap[i], y->npages[i]);
	}
	ret = dirty_set_alloc(s->vm, &y->set);
	if (ret)
		return ret;
	/* Whatever the source held before the first pass is in it already. */
	ret = dirty_source_collect(s->ds, &y->set);
	dirty_set_clear(&y->set);
	y->gen = 1;
	y->last_sync_t = y->period_t = now_s();
	return ret < 0 ? ret : 0;
}

void mig_sync_free(struct mig_sync *y)
{
	unsigned int i;

	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(y->bmap[i]);
		free(y->iter_bmap[i]);
		free(y->shadow_bmap[i]);
	}
	if (y->set.bitmaps)
		dirty_set_free(&y->set);
	memset(y, 0, sizeof(*y));
}

uint64_t mig_sync_pending(const struct mig_sync *y)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < y->nr_slots; i++)
		if (y->bmap[i])
			n += bitmap_weight(y->bmap[i], y->npages[i]);
	return n;
}

/* Dirty rate over the period since the last sync, and the policies' trigger. */
static int mig_sync_account(struct mig_src *s, uint64_t found)
{
	struct mig_sync *y = &s->sync;
	uint64_t sent = __atomic_load_n(&s->bytes_sent, __ATOMIC_RELAXED);
	double now = now_s(), dt = now - y->period_t;
	int ret;

	y->syncs++;
	y->dirty_pages += s->pass > 1 || s->state == MIG_SWITCHOVER ? found : 0;
	y->period_pages += found;
	y->last_sync_t = now;
	if (dt < 0.05)
		return 0;
	s->dirty_rate = y->period_pages * (double)MIG_PAGE_SIZE / dt;
	ret = mig_throttle_on_sync(&s->thr, y->period_pages * MIG_PAGE_SIZE,
				   sent - y->period_bytes_sent);
	y->period_pages = 0;
	y->period_bytes_sent = sent;
	y->period_t = now;
	return ret;
}

int mig_sync_iteration(struct mig_src *s)
{
	struct mig_sync *y = &s->sync;
	unsigned int i;
	uint64_t w;
	int ret;

	dirty_set_clear(&y->set);
	ret = dirty_source_collect(s->ds, &y->set);
	if (ret < 0)
		return ret;
	for (i = 0; i < y->nr_slots; i++) {
		unsigned long *set = y->set.bitmaps[i];

		if (y->bg_pending) {
			for (w = 0; w < BITMAP_WORDS(y->npages[i]); w++) {
				/* Sent since the background sync: the copy sent is newer. */
				y->iter_bmap[i][w] &= ~(y->shadow_bmap[i][w] & ~y->bmap[i][w]);
				set[w] |= y->iter_bmap[i][w];
			}
			bitmap_zero(y->iter_bmap[i], y->npages[i]);
		}
		bitmap_or_count(y->bmap[i], set, y->npages[i]);
	}
	y->bg_pending = false;
	y->gen++;
	/* Dirtied since the last collection; background syncs counted theirs. */
	return mig_sync_account(s, ret);
}

static int mig_sync_background(struct mig_src *s)
{
	struct mig_sync *y = &s->sync;
	unsigned int i;
	int ret;

	dirty_set_clear(&y->set);
	ret = dirty_source_collect(s->ds, &y->set);
	if (ret < 0)
		return ret;
	for (i = 0; i < y->nr_slots; i++) {
		bitmap_or_count(y->iter_bmap[i], y->set.bitmaps[i], y->npages[i]);
		memcpy(y->shadow_bmap[i], y->bmap[i], BITMAP_BYTES(y->npages[i]));
	}
	y->bg_pending = true;
	return mig_sync_account(s, ret);
}

int mig_sync_timer(struct mig_src *s)
{
	struct mig_sync *y = &s->sync;

	if (s->p.sync_mode == MIG_SYNC_LEGACY || s->pass < 2 ||
	    !mig_throttle_needs_syncs(&s->p) ||
	    now_s() - y->last_sync_t < s->p.sync_interval_ms / 1000.0)
		return 0;
	if (s->p.sync_mode == MIG_SYNC_BACKGROUND)
		return mig_sync_background(s);
	return mig_sync_iteration(s);
}
