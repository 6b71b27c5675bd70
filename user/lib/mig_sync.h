/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The sync engine of the migration source: which pages still have to be
 * sent, kept up to date from a dirty source in one of three modes (legacy,
 * background, periodic; Documentation/migration.rst).  It works on its own
 * bitmaps and the dirty source it is given, for a slot layout and a mode
 * fixed at init, and returns what each sync found; it reads no VM and
 * updates no rate or throttle: that is its caller's business (mig_source.c).
 * The unit tests (selftests/mig_sync_test.c) drive it with a scripted dirty
 * source.
 */
#ifndef KVMMIG_MIG_SYNC_H
#define KVMMIG_MIG_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "dirty.h"
#include "migrate.h"

/*
 * bmap: pages still to send in this pass.  iter_bmap: pages found dirty by
 * background syncs, merged at the next iteration sync.  shadow_bmap: bmap
 * as it was at the last background sync, so that the next sync can drop
 * from iter_bmap the pages sent since (their copy on the wire is newer than
 * the dirtying that put them there).  gen counts merges into bmap; a page
 * is sent at most once per generation.
 *
 * The contract with the walk that sends pages (mig_queue_pages()): it
 * clears a page's bit in bmap before it copies the page, and nothing but
 * that walk and the syncs below touches bmap, so a bit that left bmap since
 * the last background sync means the page was sent after that sync.  The
 * syncs run on the walk's thread, between its batches.
 */
struct mig_sync {
	struct dirty_source *ds;
	enum mig_sync_mode mode;
	double interval_s;
	unsigned int nr_slots;
	uint64_t npages[MIG_MAX_SLOTS];
	unsigned long *bmap[MIG_MAX_SLOTS];
	unsigned long *iter_bmap[MIG_MAX_SLOTS];
	unsigned long *shadow_bmap[MIG_MAX_SLOTS];
	struct dirty_set set;		/* what one collection returns */
	bool bg_pending;		/* iter_bmap and shadow_bmap are in use */
	uint64_t gen;
	uint64_t syncs;			/* syncs run (not init's drain) */
	double last_sync_t;		/* the caller's clock, seconds */
};

/* The slot layout and the mode, as plain values. */
struct mig_sync_config {
	unsigned int nr_slots;
	const uint64_t *npages;		/* pages per slot, nr_slots of them */
	unsigned int nr_vcpus;		/* per-vCPU counts a collection may add */
	/*
	 * Background and periodic syncs are worth their cost only to a
	 * policy that reads the dirty rate they measure: without one, the
	 * caller asks for MIG_SYNC_LEGACY.
	 */
	enum mig_sync_mode mode;
	unsigned int interval_ms;	/* background/periodic */
};

/* What one sync did. */
struct mig_sync_result {
	bool ran;			/* a collection was made */
	bool background;		/* ... into iter_bmap, bmap untouched */
	uint64_t found;			/* pages the dirty source reported */
	uint64_t merged;		/* pages newly set in bmap */
	uint64_t dropped;		/* iter_bmap pages dropped: sent since found */
};

/*
 * Allocate the bitmaps, mark every page to send and drain @ds (whatever it
 * held is in the first pass already).  @now: the caller's clock in seconds,
 * the one it passes to mig_sync_timer().  0 or a negative errno; on error
 * call mig_sync_free().
 */
int mig_sync_init(struct mig_sync *y, struct dirty_source *ds,
		  const struct mig_sync_config *cfg, double now);
void mig_sync_free(struct mig_sync *y);
/* End of a pass (and switchover): collect and merge everything into bmap. */
int mig_sync_iteration(struct mig_sync *y, double now, struct mig_sync_result *r);
/*
 * Between batches: a background or periodic sync when @mode asks for one
 * and none ran for the interval; none before the first iteration sync (the
 * first pass sends every page anyway).  r->ran says whether one did.
 */
int mig_sync_timer(struct mig_sync *y, double now, struct mig_sync_result *r);
/* Pages set in bmap. */
uint64_t mig_sync_pending(const struct mig_sync *y);

#endif /* KVMMIG_MIG_SYNC_H */
