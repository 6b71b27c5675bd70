/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libkvmmig's own view of a snapshot series (snapshot_track.c), for
 * snapshot_save.c: the tracker's steps at each pause, and the state the
 * walk shares with it.  Every step but snap_track_record() runs with the
 * VM paused.
 */
#ifndef KVMMIG_SNAPSHOT_TRACK_H
#define KVMMIG_SNAPSHOT_TRACK_H

#include <limits.h>

#include "bitmap.h"
#include "snapshot.h"
#include "uffd.h"

/*
 * An increment of at most this many runs of pages registers only them with
 * the snapshot's context (each splits a VMA for the while); more, and all
 * of RAM is registered.
 */
#define SNAP_MAX_RUNS	256

struct snap_series {
	struct kvmmig_vm *vm;
	enum snap_tracker tracker;
	char fallback[200];		/* why not the tracker asked for */
	struct dirty_options dopts;
	struct dirty_source *ds;	/* dirty: open from a pause on */
	struct dirty_set set;		/* dirty: what a collection reports */
	unsigned long *marked[MIG_MAX_SLOTS];	/* dirty: the VMM's own writes (atomic) */
	int pagemap_fd;			/* pagemap: /proc/self/pagemap */
	struct uffd async;		/* pagemap: WP_ASYNC context between walks */
	bool async_on;
	bool lent;			/* the increment's runs are the snapshot's context's */
	unsigned long *written[MIG_MAX_SLOTS];	/* pagemap: written during a walk (atomic) */
	bool tracking;			/* since the pause of last_path */
	char last_path[PATH_MAX];	/* the series' last complete file, "" none */
	uint64_t last_id;
};

/* An increment is possible: tracking runs since the last file's pause. */
static inline bool snap_track_has_base(const struct snap_series *s)
{
	return s && s->tracking && s->last_path[0];
}

/* Does the walk keep saved pages protected and record writes (snap_track_record())? */
static inline bool snap_track_keeps_wp(const struct snap_series *s)
{
	return s && s->tracker == SNAP_TRACK_PAGEMAP;
}

/* The next run [*@a, *@b) of set bits of @map from @from on; false when there is none. */
static inline bool snap_next_run(const unsigned long *map, uint64_t nbits, uint64_t from,
				 uint64_t *a, uint64_t *b)
{
	*a = bitmap_next_set(map, nbits, from);
	if (*a >= nbits)
		return false;
	for (*b = *a + 1; *b < nbits && bitmap_test_bit(map, *b); (*b)++)
		;
	return true;
}

/* The runs of set bits in @want (per slot of @vm): how many, at most @max + 1. */
unsigned int snap_count_runs(const struct kvmmig_vm *vm, unsigned long *const *want,
			     unsigned int max);

/* OR into @want[slot] every page written since the last pause. */
int snap_track_collect(struct snap_series *s, unsigned long *const *want);
/*
 * Tracking from this pause on (after the collection of the increment's
 * pages @want, NULL for a full snapshot).  Pagemap: the snapshot's context
 * takes over all of RAM, or only @want's runs when the WP_ASYNC context
 * can lend them (snap_track_lent()).
 */
int snap_track_restart(struct snap_series *s, unsigned long *const *want);
static inline bool snap_track_lent(const struct snap_series *s)
{
	return s && s->lent;
}
/*
 * Pagemap: after the walk, its context gone from RAM (or from @want's runs
 * it was lent): WP_ASYNC tracking there again from here.
 */
int snap_track_handover(struct snap_series *s, unsigned long *const *want);
/* Pagemap: the guest wrote page @idx of slot @slot during the walk. */
static inline void snap_track_record(struct snap_series *s, unsigned int slot, uint64_t idx)
{
	__atomic_fetch_or(&s->written[slot][idx / BITS_PER_LONG], 1UL << (idx % BITS_PER_LONG),
			  __ATOMIC_SEQ_CST);
}
/* After a failure: no tracking, no base; the next snapshot is full. */
void snap_track_stop(struct snap_series *s);

#endif /* KVMMIG_SNAPSHOT_TRACK_H */
