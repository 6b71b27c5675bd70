// SPDX-License-Identifier: GPL-2.0-only
/*
 * Snapshot series (snapshot.h): which pages the guest wrote between one
 * snapshot's pause and the next, so the next can be an increment.  Two
 * trackers, measured against each other (Documentation/snapshot.rst):
 *
 * - "dirty": the VM's dirty source (ring, bitmap or module), opened at the
 *   first pause and collected at each later one.  KVM logs a page when it
 *   maps it writable for the guest, which the snapshot's write protection
 *   delays but never hides; it cannot see the VMM's own writes, which the
 *   VMM reports with snap_series_mark_dirty().
 * - "pagemap": PAGEMAP_SCAN over a userfaultfd context with
 *   UFFD_FEATURE_WP_ASYNC, where the kernel lifts protection at a write by
 *   itself and the scan reports the pages written.  Whether faults are
 *   synchronous is a feature of the whole context and a range has one
 *   context, so the two take turns: the snapshot's own context from a pause
 *   to the end of its walk (whose faults record the pages the guest writes,
 *   the walk leaving saved pages protected to see them), then, in a second
 *   short pause, the WP_ASYNC one until the next snapshot's pause.  An
 *   increment of few runs of pages takes only those runs from the WP_ASYNC
 *   context (unregistering a run splits its VMA; registering it back merges
 *   it again), so both pauses cost the runs, not all of RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "snapshot_track.h"

#ifndef PAGEMAP_SCAN	/* Linux 6.7 <linux/fs.h>; Debian 12's headers are 6.1 */
#define PAGE_IS_WRITTEN		(1 << 1)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN		_IOWR('f', 16, struct pm_scan_arg)
#endif

#define SNAP_SCAN_REGIONS	256	/* page_regions taken per PAGEMAP_SCAN */

static const char *const tracker_names[NR_SNAP_TRACKERS] = {
	[SNAP_TRACK_DIRTY] = "dirty",
	[SNAP_TRACK_PAGEMAP] = "pagemap",
};

const char *snap_tracker_name(enum snap_tracker t)
{
	return t < NR_SNAP_TRACKERS ? tracker_names[t] : "?";
}

int snap_tracker_parse(const char *name)
{
	int i;

	for (i = 0; i < NR_SNAP_TRACKERS; i++)
		if (!strcmp(name, tracker_names[i]))
			return i;
	return -EINVAL;
}

/* Pages [@start, @end) of @sl as bits of @map. */
static void snap_set_range(unsigned long *map, const struct kvmmig_slot *sl, uint64_t start,
			   uint64_t end)
{
	uint64_t i = (start - (uintptr_t)sl->hva) / MIG_PAGE_SIZE;
	uint64_t last = (end - (uintptr_t)sl->hva + MIG_PAGE_SIZE - 1) / MIG_PAGE_SIZE;

	for (; i < last && i < kvmmig_slot_pages(sl); i++)
		bitmap_set_bit(map, i);
}

/* The pages of slot @slot PAGEMAP_SCAN finds written since they were protected. */
static int snap_pagemap_scan(struct snap_series *s, unsigned int slot, unsigned long *want)
{
	const struct kvmmig_slot *sl = &s->vm->slots[slot];
	struct page_region r[SNAP_SCAN_REGIONS];
	uint64_t start = (uintptr_t)sl->hva, end = start + sl->size;
	long n, i;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uintptr_t)r, .vec_len = SNAP_SCAN_REGIONS,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
		};

		n = ioctl(s->pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return kvmmig_ioctl_err("PAGEMAP_SCAN", errno);
		for (i = 0; i < n; i++)
			snap_set_range(want, sl, r[i].start, r[i].end);
		/* Fewer regions than room for: the walk reached the end. */
		if (n < SNAP_SCAN_REGIONS || a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return 0;
}

/* Take the bits of @from (atomically, leaving it clear) into @to. */
static void snap_take_bits(unsigned long *to, unsigned long *from, uint64_t npages)
{
	uint64_t w;

	for (w = 0; w < BITMAP_WORDS(npages); w++)
		to[w] |= __atomic_exchange_n(&from[w], 0, __ATOMIC_SEQ_CST);
}

static int snap_dirty_collect(struct snap_series *s, unsigned long *const *want)
{
	unsigned int i;
	int ret;

	dirty_set_clear(&s->set);
	ret = dirty_source_collect(s->ds, &s->set);
	if (ret < 0)
		return ret;
	for (i = 0; i < s->vm->nr_slots; i++) {
		uint64_t npages = kvmmig_slot_pages(&s->vm->slots[i]);

		/* Entries were lost (a ring overflowed): everything is saved. */
		if (s->set.all_dirty)
			bitmap_fill(want[i], npages);
		else
			bitmap_or_count(want[i], s->set.bitmaps[i], npages);
		snap_take_bits(want[i], s->marked[i], npages);
	}
	return 0;
}

int snap_track_collect(struct snap_series *s, unsigned long *const *want)
{
	unsigned int i;
	int ret = 0;

	if (s->tracker == SNAP_TRACK_DIRTY)
		return snap_dirty_collect(s, want);
	for (i = 0; i < s->vm->nr_slots && !ret; i++) {
		snap_take_bits(want[i], s->written[i], kvmmig_slot_pages(&s->vm->slots[i]));
		if (s->async_on)
			ret = snap_pagemap_scan(s, i, want[i]);
	}
	return ret;
}

/* Unregistering clears every protection of the context's ranges. */
static void snap_async_off(struct snap_series *s)
{
	unsigned int i;

	if (!s->async_on)
		return;
	for (i = 0; i < s->vm->nr_slots; i++)
		uffd_unregister(&s->async, s->vm->slots[i].hva, s->vm->slots[i].size);
	uffd_close(&s->async);
	s->async_on = false;
}

unsigned int snap_count_runs(const struct kvmmig_vm *vm, unsigned long *const *want,
			     unsigned int max)
{
	uint64_t a, b;
	unsigned int i, n = 0;

	for (i = 0; i < vm->nr_slots; i++)
		for (b = 0; n <= max && snap_next_run(want[i], kvmmig_slot_pages(&vm->slots[i]),
						      b, &a, &b);)
			n++;
	return n;
}

/*
 * Unregister (@lend) or register and protect again (!@lend) @want's runs
 * in the WP_ASYNC context.
 */
static int snap_async_runs(struct snap_series *s, unsigned long *const *want, bool lend)
{
	uint64_t a, b;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < s->vm->nr_slots; i++) {
		const struct kvmmig_slot *sl = &s->vm->slots[i];

		for (b = 0; !ret && snap_next_run(want[i], kvmmig_slot_pages(sl), b, &a, &b);) {
			uint8_t *p = (uint8_t *)sl->hva + a * MIG_PAGE_SIZE;
			size_t len = (b - a) * MIG_PAGE_SIZE;

			if (lend)
				ret = uffd_unregister(&s->async, p, len);
			else
				ret = uffd_register(&s->async, p, len, UFFD_WP);
			if (!ret && !lend)
				ret = uffd_protect(&s->async, p, len, true);
		}
	}
	return ret;
}

int snap_track_restart(struct snap_series *s, unsigned long *const *want)
{
	unsigned int i;
	int ret = 0;

	/* A new series, or one after a failure: nothing before this pause counts. */
	for (i = 0; !s->tracking && i < s->vm->nr_slots; i++) {
		bitmap_zero(s->marked[i], kvmmig_slot_pages(&s->vm->slots[i]));
		bitmap_zero(s->written[i], kvmmig_slot_pages(&s->vm->slots[i]));
	}

	if (s->tracker == SNAP_TRACK_DIRTY && !s->ds)
		ret = dirty_source_open(s->vm, &s->dopts, &s->ds);
	/* The walk's own context takes over until snap_track_handover(). */
	s->lent = false;
	if (!ret && s->async_on && want &&
	    snap_count_runs(s->vm, want, SNAP_MAX_RUNS) <= SNAP_MAX_RUNS) {
		ret = snap_async_runs(s, want, true);
		s->lent = !ret;
	}
	if (!s->lent)
		snap_async_off(s);
	s->tracking = !ret;
	return ret;
}

int snap_track_handover(struct snap_series *s, unsigned long *const *want)
{
	unsigned int i;
	int ret;

	if (s->lent) {
		s->lent = false;
		ret = snap_async_runs(s, want, false);
		if (ret)
			snap_async_off(s);
		return ret;
	}

	ret = uffd_open(&s->async, UFFD_WP | UFFD_WP_ASYNC);
	if (ret)
		return ret;
	s->async_on = true;
	for (i = 0; i < s->vm->nr_slots && !ret; i++) {
		struct kvmmig_slot *sl = &s->vm->slots[i];

		ret = uffd_register(&s->async, sl->hva, sl->size, UFFD_WP);
		if (!ret)
			ret = uffd_protect(&s->async, sl->hva, sl->size, true);
	}
	if (ret)
		snap_async_off(s);
	return ret;
}

void snap_track_stop(struct snap_series *s)
{
	s->lent = false;
	snap_async_off(s);
	dirty_source_close(s->ds);
	s->ds = NULL;
	s->tracking = false;
	s->last_path[0] = 0;
}

/* Can this kernel track with PAGEMAP_SCAN and WP_ASYNC?  NULL, or why not. */
static const char *snap_pagemap_missing(struct snap_series *s)
{
	struct pm_scan_arg a = { .size = sizeof(a) };
	struct uffd u;

	s->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (s->pagemap_fd < 0)
		return "cannot open /proc/self/pagemap";
	/* An empty range: only a kernel without the ioctl fails (ENOTTY). */
	if (ioctl(s->pagemap_fd, PAGEMAP_SCAN, &a) < 0 && errno == ENOTTY)
		return "this kernel has no PAGEMAP_SCAN (Linux 6.7)";
	if (uffd_open(&u, UFFD_WP | UFFD_WP_ASYNC))
		return "this kernel has no UFFD_FEATURE_WP_ASYNC (Linux 6.7)";
	uffd_close(&u);
	return NULL;
}

int snap_series_new(struct kvmmig_vm *vm, enum snap_tracker tracker,
		    const struct dirty_options *dirty, struct snap_series **out)
{
	struct snap_series *s;
	const char *why;
	unsigned int i;
	int ret = 0;

	if (tracker >= NR_SNAP_TRACKERS) {
		kvmmig_err("snapshot tracker %d: expected dirty or pagemap", tracker);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->tracker = tracker;
	s->pagemap_fd = -1;
	s->async.fd = -1;
	if (dirty)
		s->dopts = *dirty;
	if (tracker == SNAP_TRACK_PAGEMAP && (why = snap_pagemap_missing(s))) {
		snprintf(s->fallback, sizeof(s->fallback), "%s: tracking with the dirty source", why);
		s->tracker = SNAP_TRACK_DIRTY;
	}
	if (s->tracker == SNAP_TRACK_DIRTY)
		ret = dirty_set_alloc(vm, &s->set);
	for (i = 0; !ret && i < vm->nr_slots; i++) {
		s->marked[i] = bitmap_alloc(kvmmig_slot_pages(&vm->slots[i]));
		s->written[i] = bitmap_alloc(kvmmig_slot_pages(&vm->slots[i]));
		if (!s->marked[i] || !s->written[i])
			ret = -ENOMEM;
	}
	if (ret) {
		snap_series_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void snap_series_free(struct snap_series *s)
{
	unsigned int i;

	if (!s)
		return;
	snap_track_stop(s);
	if (s->pagemap_fd >= 0)
		close(s->pagemap_fd);
	dirty_set_free(&s->set);
	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(s->marked[i]);
		free(s->written[i]);
	}
	free(s);
}

enum snap_tracker snap_series_tracker(const struct snap_series *s)
{
	return s->tracker;
}

const char *snap_series_fallback(const struct snap_series *s)
{
	return s->fallback[0] ? s->fallback : NULL;
}

void snap_series_mark_dirty(struct snap_series *s, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len, p;
	unsigned int i;

	for (i = 0; i < s->vm->nr_slots; i++) {
		const struct kvmmig_slot *sl = &s->vm->slots[i];

		p = gpa & ~(MIG_PAGE_SIZE - 1);
		for (p = p > sl->gpa ? p : sl->gpa; p < end && p < sl->gpa + sl->size;
		     p += MIG_PAGE_SIZE) {
			uint64_t idx = (p - sl->gpa) / MIG_PAGE_SIZE;

			__atomic_fetch_or(&s->marked[i][idx / BITS_PER_LONG],
					  1UL << (idx % BITS_PER_LONG), __ATOMIC_SEQ_CST);
		}
	}
}
