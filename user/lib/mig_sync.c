// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sync engine of the migration source, in three modes (DESIGN.md):
 *  - legacy: an iteration sync at the end of each pass, nothing else;
 *  - background (the seed series): every sync interval, collect into
 *    iter_bmap and keep shadow_bmap = bmap, without disturbing the pass;
 *    pages sent since are dropped from iter_bmap at the next sync, and the
 *    next iteration sync merges the rest into bmap;
 *  - periodic (what QEMU 9.2 merged): an ordinary iteration sync when none
 *    happened for an interval.
 * Each sync returns what it found; the caller turns that into a dirty rate
 * and the throttle's trigger (mig_sync.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "log.h"
#include "mig_sync.h"

int mig_sync_init(struct mig_sync *y, struct dirty_source *ds,
		  const struct mig_sync_config *cfg, double now)
{
	unsigned int i;
	int ret;

	memset(y, 0, sizeof(*y));
	if (cfg->nr_slots > MIG_MAX_SLOTS || cfg->mode >= NR_MIG_SYNC_MODES) {
		kvmmig_err("sync engine: %u slots in mode %d: expected at most %u slots and a mode below %d",
			   cfg->nr_slots, cfg->mode, MIG_MAX_SLOTS, NR_MIG_SYNC_MODES);
		return -EINVAL;
	}
	y->ds = ds;
	y->mode = cfg->mode;
	y->interval_s = cfg->interval_ms / 1000.0;
	y->nr_slots = cfg->nr_slots;
	for (i = 0; i < y->nr_slots; i++) {
		y->npages[i] = cfg->npages[i];
		y->bmap[i] = bitmap_alloc(y->npages[i]);
		y->iter_bmap[i] = bitmap_alloc(y->npages[i]);
		y->shadow_bmap[i] = bitmap_alloc(y->npages[i]);
		if (!y->bmap[i] || !y->iter_bmap[i] || !y->shadow_bmap[i]) {
			kvmmig_err("out of memory for the sync engine's bitmaps");
			return -ENOMEM;
		}
		/* The first pass sends everything. */
		bitmap_fill(y->bmap[i], y->npages[i]);
	}
	ret = dirty_set_alloc_layout(&y->set, cfg->nr_slots, cfg->npages, cfg->nr_vcpus);
	if (ret)
		return ret;
	/* Whatever the source held before the first pass is in it already. */
	ret = dirty_source_collect(ds, &y->set);
	dirty_set_clear(&y->set);
	y->gen = 1;
	y->last_sync_t = now;
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

/* One collection into y->set; counts it into @r. */
static int mig_sync_collect(struct mig_sync *y, double now, struct mig_sync_result *r)
{
	int ret;

	memset(r, 0, sizeof(*r));
	dirty_set_clear(&y->set);
	ret = dirty_source_collect(y->ds, &y->set);
	if (ret < 0)
		return ret;
	r->ran = true;
	r->found = ret;
	y->syncs++;
	y->last_sync_t = now;
	return 0;
}

/*
 * Drop from iter_bmap what was sent since the last background sync: it was
 * in bmap then (shadow_bmap) and is gone now, so its copy was taken after
 * the collection that put it in iter_bmap.  A page sent and dirtied again
 * is not lost: the later write is in this sync's collection.
 */
static uint64_t mig_sync_drop_sent(struct mig_sync *y, unsigned int slot)
{
	unsigned long *iter = y->iter_bmap[slot], sent;
	uint64_t w, n = 0;

	for (w = 0; w < BITMAP_WORDS(y->npages[slot]); w++) {
		sent = iter[w] & y->shadow_bmap[slot][w] & ~y->bmap[slot][w];
		n += __builtin_popcountl(sent);
		iter[w] &= ~sent;
	}
	return n;
}

int mig_sync_iteration(struct mig_sync *y, double now, struct mig_sync_result *r)
{
	unsigned int i;
	int ret;

	ret = mig_sync_collect(y, now, r);
	if (ret)
		return ret;
	for (i = 0; i < y->nr_slots; i++) {
		if (y->bg_pending) {
			r->dropped += mig_sync_drop_sent(y, i);
			bitmap_or_count(y->set.bitmaps[i], y->iter_bmap[i], y->npages[i]);
			bitmap_zero(y->iter_bmap[i], y->npages[i]);
		}
		r->merged += bitmap_or_count(y->bmap[i], y->set.bitmaps[i], y->npages[i]);
	}
	y->bg_pending = false;
	y->gen++;
	return 0;
}

/*
 * Pages dropped here, not only at the iteration sync: shadow_bmap is
 * overwritten below, and a page found by an earlier background sync and
 * sent since would otherwise be resent.
 */
static int mig_sync_background(struct mig_sync *y, double now, struct mig_sync_result *r)
{
	unsigned int i;
	int ret;

	ret = mig_sync_collect(y, now, r);
	if (ret)
		return ret;
	r->background = true;
	for (i = 0; i < y->nr_slots; i++) {
		if (y->bg_pending)
			r->dropped += mig_sync_drop_sent(y, i);
		bitmap_or_count(y->iter_bmap[i], y->set.bitmaps[i], y->npages[i]);
		memcpy(y->shadow_bmap[i], y->bmap[i], BITMAP_BYTES(y->npages[i]));
	}
	y->bg_pending = true;
	return 0;
}

int mig_sync_timer(struct mig_sync *y, double now, struct mig_sync_result *r)
{
	memset(r, 0, sizeof(*r));
	if (y->mode == MIG_SYNC_LEGACY || y->gen < 2 || now - y->last_sync_t < y->interval_s)
		return 0;
	if (y->mode == MIG_SYNC_BACKGROUND)
		return mig_sync_background(y, now, r);
	return mig_sync_iteration(y, now, r);
}
