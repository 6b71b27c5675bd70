// SPDX-License-Identifier: GPL-2.0-only
/*
 * Taking a background snapshot (see snapshot.h, Documentation/snapshot.rst).
 * While the VM is paused: its vCPU states are saved, every memslot is
 * registered once with a write-protect userfaultfd and protected whole
 * (pre-faulted for reading first where the kernel cannot protect pages
 * that were never populated), and the guest resumes.  From then on a page
 * is saved exactly once, by whoever claims it first in the `claimed`
 * bitmap (one atomic OR claims up to 64 pages): a walker (opts.writers of
 * them take 4 MiB chunks in address order from a shared cursor), or the
 * fault thread, when the guest is about to write a page no walker has
 * reached.  A page is written to the file straight from guest memory,
 * which protection keeps as it was at the pause, and only then is its
 * protection lifted, by its claimer alone; that wakes any vCPU waiting on
 * it.  The fault thread never waits for the walkers, nor makes a vCPU wait
 * for the file: it copies the page aside, lifts the protection, then
 * writes the copy with its own pwrite().
 *
 * In a series (snapshot_track.c) an increment saves only the pages its
 * tracker reports written since the previous snapshot's pause, the `want`
 * bitmaps, and marks them present in the file's map.  With the pagemap
 * tracker the walk is also how writes are seen until the WP_ASYNC context
 * takes over: every page stays protected until the guest writes it (the
 * claimer of a page sets `saved`, the fault thread `written`, each then
 * looks at the other's bit, so one of them lifts the protection), and at
 * the end a second short pause hands over to WP_ASYNC.  An increment of at
 * most SNAP_MAX_RUNS runs of pages registers just those runs, so that no
 * step walks the page tables of all of RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "cancel.h"
#include "clock.h"
#include "csum.h"
#include "log.h"
#include "migrate.h"
#include "snapshot_sink.h"
#include "snapshot_track.h"
#include "thread_nice.h"
#include "uffd.h"
#include "zero.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#endif

#define SNAP_FAULT_TICK_MS	100
#define SNAP_WALK_CHUNK	16	/* bitmap words a walker takes at a time: 4 MiB */

struct snap_save {
	struct kvmmig_vm *vm;
	const struct snap_opts *o;
	struct snap_report *r;
	struct mig_config *cfg;
	struct snap_header h;
	struct snap_sink *sink;		/* the file, or a receiver (snapshot_sink.c) */
	uint8_t *states;		/* nr_vcpus blobs, saved while paused */
	struct uffd u;
	unsigned int nr_registered;	/* slots 0.. registered and protected */
	unsigned long *claimed[MIG_MAX_SLOTS];	/* atomic: saved or being saved */
	uint32_t *page_crc[MIG_MAX_SLOTS];
	struct snap_series *series;	/* NULL: a lone snapshot */
	bool incremental;		/* save only want[] */
	unsigned long *want[MIG_MAX_SLOTS];	/* increment: the pages to save */
	bool keep_wp;			/* pagemap tracker: see the comment above */
	bool by_runs;			/* registered over want's runs only */
	unsigned long *saved[MIG_MAX_SLOTS];	/* keep_wp: in the file (atomic) */
	pthread_t fault_thread;
	bool fault_started;
	unsigned int nr_writers;	/* walker threads to start */
	unsigned int nr_walkers;	/* walkers[0..] started */
	pthread_t walkers[SNAP_MAX_WRITERS];
	uint64_t walk_next;		/* atomic: the next chunk to walk */
	uint64_t chunk_start[MIG_MAX_SLOTS + 1];	/* first chunk of each slot */
	bool walk_done;			/* every page saved and released */
	bool stop;			/* atomic: the fault thread ends */
	int stop_fd;			/* eventfd: ... now */
	int error;			/* atomic: the first failure */
};

static void snap_fail(struct snap_save *s, int err)
{
	int none = 0;

	if (__atomic_compare_exchange_n(&s->error, &none, err, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		snprintf(s->r->error, sizeof(s->r->error), "%s", kvmmig_last_error());
}

static int snap_failed(struct snap_save *s)
{
	return __atomic_load_n(&s->error, __ATOMIC_ACQUIRE);
}

static int snap_pwrite(struct snap_save *s, const void *buf, size_t len, uint64_t off)
{
	return snap_sink_write(s->sink, buf, len, off);
}

/*
 * Save pages [@first, @first + @n) of slot @slot, which the caller has
 * claimed: checksums, zero pages left as holes, the rest written from
 * guest memory in runs.  Protection is the caller's to lift afterwards.
 */
static int snap_save_pages(struct snap_save *s, unsigned int slot, uint64_t first, uint64_t n,
			   uint64_t *zero)
{
	const uint8_t *base = s->vm->slots[slot].hva;
	uint64_t i, run = 0, run_start = 0;
	int ret = 0;

	for (i = first; i <= first + n && !ret; i++) {
		const uint8_t *p = base + i * MIG_PAGE_SIZE;
		bool data = i < first + n && !buffer_is_zero(p, MIG_PAGE_SIZE);

		if (i < first + n)
			s->page_crc[slot][i] = crc32c(0, p, MIG_PAGE_SIZE);
		if (data) {
			if (!run)
				run_start = i;
			run++;
			continue;
		}
		if (i < first + n)
			(*zero)++;
		if (run)
			ret = snap_pwrite(s, base + run_start * MIG_PAGE_SIZE, run * MIG_PAGE_SIZE,
					  snap_page_off(&s->h, s->cfg, slot, run_start));
		run = 0;
	}
	return ret;
}

/* The slot holding [@addr, @addr + page), or -1. */
static int snap_slot_of(const struct kvmmig_vm *vm, uint64_t addr, uint64_t *idx)
{
	unsigned int i;

	for (i = 0; i < vm->nr_slots; i++) {
		uint64_t base = (uintptr_t)vm->slots[i].hva;

		if (addr >= base && addr - base < vm->slots[i].size) {
			*idx = (addr - base) / MIG_PAGE_SIZE;
			return i;
		}
	}
	return -1;
}

static void snap_count_latency(struct snap_save *s, double seconds)
{
	uint64_t us = (uint64_t)(seconds * 1e6);
	unsigned int b = 0;

	while (us >= 2 && b < 23) {
		us >>= 1;
		b++;
	}
	__atomic_add_fetch(&s->r->fault_us_hist[b], 1, __ATOMIC_RELAXED);
}

/*
 * Write the copy @buf of page @idx of @slot taken before the guest could
 * change it (its checksum, or a hole if it is zero).
 */
static int snap_save_copy(struct snap_save *s, unsigned int slot, uint64_t idx,
			  const void *buf, uint64_t *zero)
{
	s->page_crc[slot][idx] = crc32c(0, buf, MIG_PAGE_SIZE);
	if (buffer_is_zero(buf, MIG_PAGE_SIZE)) {
		(*zero)++;
		return 0;
	}
	return snap_pwrite(s, buf, MIG_PAGE_SIZE, snap_page_off(&s->h, s->cfg, slot, idx));
}

/*
 * A guest write to a protected page: save it first if nobody has.  The
 * page is copied to @copy (page-aligned, for O_DIRECT) and its protection
 * lifted before the copy is written, so the waiting vCPU pays for a
 * memcpy and an ioctl, never for the file or the receiver's link.
 */
static int snap_serve_fault(struct snap_save *s, const struct uffd_fault *f, uint8_t *copy)
{
	void *page = (void *)(uintptr_t)f->addr;
	unsigned long bit, old;
	uint64_t idx, zero = 0;
	double t0 = now_s();
	int slot, ret;

	slot = snap_slot_of(s->vm, f->addr, &idx);
	if (slot < 0)
		return uffd_wake(&s->u, page, MIG_PAGE_SIZE);
	bit = 1UL << (idx % BITS_PER_LONG);
	if (s->keep_wp)
		snap_track_record(s->series, slot, idx);
	/* Not in this increment: only watched for the next one. */
	if (s->incremental && !bitmap_test_bit(s->want[slot], idx))
		return uffd_protect(&s->u, page, MIG_PAGE_SIZE, false);
	old = __atomic_fetch_or(&s->claimed[slot][idx / BITS_PER_LONG], bit, __ATOMIC_ACQ_REL);
	if (old & bit && s->keep_wp) {
		/* Pairs with snap_release_run(): one of us sees the other's bit. */
		if (__atomic_load_n(&s->saved[slot][idx / BITS_PER_LONG], __ATOMIC_SEQ_CST) & bit)
			return uffd_protect(&s->u, page, MIG_PAGE_SIZE, false);
		return 0;
	}
	if (old & bit)
		/* Its claimer lifts the protection, which wakes this writer; be sure. */
		return uffd_wake(&s->u, page, MIG_PAGE_SIZE);
	memcpy(copy, page, MIG_PAGE_SIZE);
	if (s->keep_wp)
		__atomic_fetch_or(&s->saved[slot][idx / BITS_PER_LONG], bit, __ATOMIC_SEQ_CST);
	ret = uffd_protect(&s->u, page, MIG_PAGE_SIZE, false);
	if (ret)
		return ret;
	snap_count_latency(s, now_s() - t0);
	/* A failure here fails the whole snapshot: nothing half-saved is kept. */
	ret = snap_save_copy(s, slot, idx, copy, &zero);
	if (ret)
		return ret;
	__atomic_add_fetch(&s->r->pages_fault, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->r->zero_pages, zero, __ATOMIC_RELAXED);
	return 0;
}

/*
 * A fault queued (1), the tick over (0) or -errno.  The stop eventfd ends
 * the wait at once: the end of a walk (and the pagemap tracker's handover,
 * with the guest paused) does not wait out a tick.
 */
static int snap_fault_wait(struct snap_save *s)
{
	struct pollfd p[2] = {
		{ .fd = s->u.fd, .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};
	int n = poll(p, 2, SNAP_FAULT_TICK_MS);

	if (n < 0 && errno != EINTR)
		return kvmmig_ioctl_err("poll on the userfaultfd", errno);
	return n > 0 && p[0].revents ? 1 : 0;
}

static void *snap_fault_thread(void *arg)
{
	uint8_t copy[MIG_PAGE_SIZE] __attribute__((aligned(MIG_PAGE_SIZE)));
	struct uffd_fault f[UFFD_MAX_BATCH];
	struct snap_save *s = arg;
	int n, i, ret = 0;

	/* Its failure is said once, by the caller's thread (snap_run(), snapshot_save()). */
	kvmmig_log_quiet(true);
	while (!ret && !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		n = snap_fault_wait(s);
		if (n > 0)
			n = uffd_read_faults(&s->u, f, UFFD_MAX_BATCH);
		for (i = 0; n > 0 && i < n && !ret; i++)
			ret = snap_serve_fault(s, &f[i], copy);
		if (n < 0)
			ret = n;
	}
	if (ret)
		snap_fail(s, ret);
	return NULL;
}

/* The lowest run of set bits of *@bits, [*@a, *@b), taken out of it; its mask. */
static unsigned long snap_take_run(unsigned long *bits, unsigned int *a, unsigned int *b)
{
	unsigned long run;

	*a = __builtin_ctzl(*bits);
	*b = *a;
	while (*b < BITS_PER_LONG && *bits & (1UL << *b))
		(*b)++;
	run = (*b < BITS_PER_LONG ? (1UL << *b) - 1 : ~0UL) & ~((1UL << *a) - 1);
	*bits &= ~run;
	return run;
}

/* Protect or un-protect the pages of @bits in bitmap word @w of @slot, run by run. */
static int snap_protect_word(struct snap_save *s, unsigned int slot, uint64_t w,
			     unsigned long bits, bool protect)
{
	uint8_t *base = (uint8_t *)s->vm->slots[slot].hva + w * BITS_PER_LONG * MIG_PAGE_SIZE;
	unsigned int a, b;
	int ret = 0;

	while (bits && !ret) {
		snap_take_run(&bits, &a, &b);
		ret = uffd_protect(&s->u, base + a * MIG_PAGE_SIZE, (uint64_t)(b - a) * MIG_PAGE_SIZE,
				   protect);
	}
	return ret;
}

/*
 * Saved pages @run of word @w: unprotected, or with keep_wp only those the
 * guest is waiting to write (the fault thread left them to us).
 */
static int snap_release_run(struct snap_save *s, unsigned int slot, uint64_t w,
			    unsigned long run)
{
	if (s->keep_wp) {
		/* Pairs with snap_serve_fault(): one of us sees the other's bit. */
		__atomic_fetch_or(&s->saved[slot][w], run, __ATOMIC_SEQ_CST);
		run &= __atomic_load_n(&s->series->written[slot][w], __ATOMIC_SEQ_CST);
	}
	return snap_protect_word(s, slot, w, run, false);
}

/*
 * Claim, save and release the pages of bitmap word @w of @slot (those the
 * increment wants) that the fault thread has not taken.
 */
static int snap_walk_word(struct snap_save *s, unsigned int slot, uint64_t w, uint64_t *zero,
			  uint64_t *walked)
{
	uint64_t npages = kvmmig_slot_pages(&s->vm->slots[slot]);
	uint64_t first = w * BITS_PER_LONG, left = npages - first;
	unsigned long mask = left >= BITS_PER_LONG ? ~0UL : (1UL << left) - 1;
	unsigned long mine;
	int ret = 0;

	if (s->incremental)
		mask &= s->want[slot][w];
	if (!mask)
		return 0;
	mine = mask & ~__atomic_fetch_or(&s->claimed[slot][w], mask, __ATOMIC_ACQ_REL);
	while (mine && !ret) {
		unsigned int a, b;
		unsigned long run = snap_take_run(&mine, &a, &b);

		ret = snap_save_pages(s, slot, first + a, b - a, zero);
		if (!ret)
			ret = snap_release_run(s, slot, w, run);
		*walked += b - a;
	}
	return ret;
}

/*
 * One walker: chunks of SNAP_WALK_CHUNK words taken in address order from
 * a shared cursor, so any number of walkers cover memory once between them.
 */
static int snap_walk(struct snap_save *s)
{
	uint64_t c, w, end, zero = 0, walked = 0;
	unsigned int slot = 0;
	int ret = 0;

	while (!ret && (c = __atomic_fetch_add(&s->walk_next, 1, __ATOMIC_RELAXED)) <
		       s->chunk_start[s->vm->nr_slots]) {
		while (c >= s->chunk_start[slot + 1])
			slot++;
		w = (c - s->chunk_start[slot]) * SNAP_WALK_CHUNK;
		end = BITMAP_WORDS(kvmmig_slot_pages(&s->vm->slots[slot]));
		if (end > w + SNAP_WALK_CHUNK)
			end = w + SNAP_WALK_CHUNK;
		for (; w < end && !ret; w++)
			ret = snap_walk_word(s, slot, w, &zero, &walked);
		if (!ret && kvmmig_cancelled(s->o->cancel)) {
			kvmmig_err("snapshot cancelled");
			ret = -ECANCELED;
		}
		if (!ret)
			ret = snap_failed(s);
	}
	__atomic_add_fetch(&s->r->pages_walk, walked, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->r->zero_pages, zero, __ATOMIC_RELAXED);
	return ret;
}

/*
 * A walker.  The walk is background work: its threads run at nice
 * KVMMIG_BACKGROUND_NICE, below the guest's vCPUs and the fault thread, so that on
 * a busy host the guest and a vCPU waiting on a page get the CPU first
 * (the caller's thread only waits, so that no thread of the caller's is
 * left at a lower priority, which it could not undo without privilege).
 */
static void *snap_walker_thread(void *arg)
{
	struct snap_save *s = arg;
	int ret;

	kvmmig_thread_background("snapshot writer");
	/* Its failure is said once, by the caller's thread (snap_run()). */
	kvmmig_log_quiet(true);
	ret = snap_walk(s);
	if (ret && ret != snap_failed(s))
		snap_fail(s, ret);
	return NULL;
}

/*
 * Protect what the walk will save: every page, or only an increment's
 * (when its tracker needs no faults to see writes).
 */
static int snap_protect_slot(struct snap_save *s, unsigned int slot)
{
	struct kvmmig_slot *sl = &s->vm->slots[slot];
	uint64_t w;
	int ret = 0;

	if (!s->incremental || s->keep_wp)
		return uffd_protect(&s->u, sl->hva, sl->size, true);
	for (w = 0; w < BITMAP_WORDS(kvmmig_slot_pages(sl)) && !ret; w++)
		ret = snap_protect_word(s, slot, w, s->want[slot][w], true);
	return ret;
}

/*
 * Register and protect (@on) or unregister each run of the increment's
 * pages (with the pagemap tracker, the runs its context lent).
 */
static int snap_register_runs(struct snap_save *s, bool on)
{
	uint64_t a, b;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < s->vm->nr_slots && !ret; i++) {
		const struct kvmmig_slot *sl = &s->vm->slots[i];

		for (b = 0; snap_next_run(s->want[i], kvmmig_slot_pages(sl), b, &a, &b);) {
			uint8_t *p = (uint8_t *)sl->hva + a * MIG_PAGE_SIZE;
			size_t len = (b - a) * MIG_PAGE_SIZE;

			if (!on) {
				if (!s->walk_done && !s->keep_wp)
					uffd_protect(&s->u, p, len, false);
				uffd_unregister(&s->u, p, len);
				continue;
			}
			ret = uffd_register(&s->u, p, len, UFFD_WP);
			if (!ret && !s->r->wp_unpopulated && madvise(p, len, MADV_POPULATE_READ))
				ret = kvmmig_ioctl_err("madvise(MADV_POPULATE_READ)", errno);
			if (!ret)
				ret = uffd_protect(&s->u, p, len, true);
			if (ret)
				break;
		}
	}
	return ret;
}

/* While paused: register and protect every slot, pre-faulting if the kernel needs it. */
static int snap_protect(struct snap_save *s)
{
	int ret = uffd_open(&s->u, UFFD_WP);

	if (ret)
		return ret;
	s->r->wp_unpopulated = uffd_wp_unpopulated(&s->u) && !s->o->prefault;
	if (s->by_runs)
		return snap_register_runs(s, true);
	for (; s->nr_registered < s->vm->nr_slots; s->nr_registered++) {
		struct kvmmig_slot *sl = &s->vm->slots[s->nr_registered];

		ret = uffd_register(&s->u, sl->hva, sl->size, UFFD_WP);
		if (ret)
			return ret;
		/* Without WP_UNPOPULATED only present pages fault: make them present. */
		if (!s->r->wp_unpopulated && madvise(sl->hva, sl->size, MADV_POPULATE_READ)) {
			ret = kvmmig_ioctl_err("madvise(MADV_POPULATE_READ)", errno);
			uffd_unregister(&s->u, sl->hva, sl->size);
			return ret;
		}
		ret = snap_protect_slot(s, s->nr_registered);
		if (ret) {
			uffd_unregister(&s->u, sl->hva, sl->size);
			return ret;
		}
	}
	return 0;
}

/*
 * Protection off everywhere it may still be, registrations and the fd gone.
 * A walk that ended well lifted every protection it set, and the pagemap
 * tracker runs only where unregistering lifts what is left (Linux 6.2 and
 * later; WP_ASYNC is 6.7): then the whole-slot un-protect, which rewrites
 * every page table of RAM, is skipped.
 */
static void snap_unprotect_all(struct snap_save *s)
{
	unsigned int i;

	if (s->by_runs && s->u.fd >= 0)
		snap_register_runs(s, false);

	for (i = 0; i < s->nr_registered; i++) {
		struct kvmmig_slot *sl = &s->vm->slots[i];

		if (!s->walk_done && !s->keep_wp)
			uffd_protect(&s->u, sl->hva, sl->size, false);
		uffd_unregister(&s->u, sl->hva, sl->size);
	}
	s->nr_registered = 0;
	uffd_close(&s->u);
}

/* The pause: vCPU states, protection, the caller's look; then the guest runs. */
static int snap_pause(struct snap_save *s)
{
	uint32_t size = s->vm->ops.state_size;
	double t0 = now_s();
	unsigned int i;
	int ret, rret;

	ret = kvmmig_vm_pause(s->vm);
	if (ret)
		return ret;
	s->h.taken_ns = clock_now_ns(CLOCK_REALTIME);
	for (i = 0; !ret && i < s->vm->nr_vcpus; i++)
		ret = kvmmig_vm_save_state(s->vm, i, s->states + (size_t)i * size);
	/* Before protection: the caller may still write guest memory. */
	if (!ret && s->o->paused)
		s->o->paused(s->o->opaque, s->vm);
	/* Written since the last pause, and tracked from this one on. */
	if (!ret && s->incremental)
		ret = snap_track_collect(s->series, s->want);
	if (!ret && s->series)
		ret = snap_track_restart(s->series, s->incremental ? s->want : NULL);
	/* Few runs: register those, not all of RAM (whose page tables that would walk). */
	s->by_runs = snap_track_lent(s->series) ||
		     (!ret && s->incremental && !s->keep_wp &&
		      snap_count_runs(s->vm, s->want, SNAP_MAX_RUNS) <= SNAP_MAX_RUNS);
	if (!ret)
		ret = snap_protect(s);
	if (ret)
		snap_unprotect_all(s);
	rret = kvmmig_vm_resume(s->vm);
	s->r->pause_ms = (now_s() - t0) * 1000.0;
	return ret ? ret : rret;
}

/* Block checksums and presence map: a block's word of `want`, all of it in a full one. */
static void snap_fill_tables(struct snap_save *s, uint32_t *table, uint64_t *map)
{
	uint64_t b = 0, i, n, present;
	unsigned int slot;

	for (slot = 0; slot < s->cfg->nr_slots; slot++) {
		uint64_t npages = s->cfg->slots[slot].size / MIG_PAGE_SIZE;

		for (i = 0; i * SNAP_BLOCK_PAGES < npages; i++, b++) {
			n = snap_block_len(npages, i);
			present = n == SNAP_BLOCK_PAGES ? ~0ULL : (1ULL << n) - 1;
			if (s->incremental)
				present &= s->want[slot][i];
			map[b] = present;
			table[b] = snap_block_crc(&s->page_crc[slot][i * SNAP_BLOCK_PAGES], present);
		}
	}
}

/* Block checksums, presence map, vCPU states and, last, the header that says "complete". */
static int snap_finish_file(struct snap_save *s)
{
	uint64_t nblocks = snap_nr_blocks(s->cfg);
	uint32_t *table = calloc(nblocks ? nblocks : 1, sizeof(*table));
	uint64_t *map = calloc(nblocks ? nblocks : 1, sizeof(*map));
	size_t vlen = (size_t)s->vm->nr_vcpus * s->vm->ops.state_size;
	uint8_t hdr[SNAP_HEADER_SIZE] = { 0 };
	int ret;

	if (!table || !map) {
		free(table);
		free(map);
		return -ENOMEM;
	}
	snap_fill_tables(s, table, map);
	s->h.table_crc = crc32c(0, table, nblocks * sizeof(*table));
	s->h.map_crc = crc32c(0, map, nblocks * sizeof(*map));
	s->h.vcpu_crc = crc32c(0, s->states, vlen);
	ret = snap_pwrite(s, table, nblocks * sizeof(*table), s->h.crc_off);
	if (!ret)
		ret = snap_pwrite(s, map, nblocks * sizeof(*map), s->h.map_off);
	if (!ret)
		ret = snap_pwrite(s, s->states, vlen, s->h.vcpu_off);
	if (!ret)
		ret = snap_sink_sync(s->sink);
	s->h.flags |= SNAP_COMPLETE;
	snap_header_seal(&s->h, s->cfg);
	memcpy(hdr, &s->h, sizeof(s->h));
	memcpy(hdr + sizeof(s->h), s->cfg, s->h.config_len);
	if (!ret)
		ret = snap_pwrite(s, hdr, sizeof(hdr), 0);
	if (!ret)
		ret = snap_sink_sync(s->sink);
	free(table);
	free(map);
	return ret;
}

/*
 * An increment names its base: by file name when both are in one
 * directory, else by absolute path (snap_check_base() in snapshot_file.c).
 */
static int snap_name_base(struct snap_save *s)
{
	char base[PATH_MAX], dir[PATH_MAX], copy[PATH_MAX];
	const char *name;
	size_t dlen;

	snprintf(copy, sizeof(copy), "%s", s->o->path);
	if (!realpath(s->series->last_path, base) || !realpath(dirname(copy), dir)) {
		int err = errno;

		kvmmig_err("cannot resolve the base %s of %s: %s", s->series->last_path,
			   s->o->path, strerror(err));
		return -err;
	}
	dlen = strlen(dir);
	name = base + dlen + (dlen > 1);
	if (strncmp(base, dir, dlen) || base[dlen] != '/' || strchr(name, '/'))
		name = base;
	if (strlen(name) >= sizeof(s->h.base_name)) {
		kvmmig_err("the base %s of %s: a path of at most %d bytes expected", name,
			   s->o->path, SNAP_BASE_NAME_MAX - 1);
		return -ENAMETOOLONG;
	}
	strcpy(s->h.base_name, name);
	s->h.base_id = s->series->last_id;
	s->h.flags |= SNAP_INCREMENTAL;
	s->r->incremental = true;
	snprintf(s->r->base_path, sizeof(s->r->base_path), "%.*s",
		 (int)sizeof(s->r->base_path) - 1, s->series->last_path);
	return 0;
}

/* The file's id, increments' base, and the bitmaps a series needs. */
static int snap_setup_series(struct snap_save *s)
{
	unsigned int i;
	int ret = 0;

	while (!s->h.id)
		if (getrandom(&s->h.id, sizeof(s->h.id), 0) != sizeof(s->h.id))
			return kvmmig_ioctl_err("getrandom for the snapshot id", errno);
	s->r->id = s->h.id;
	if (!s->series)
		return 0;
	s->r->tracker = snap_tracker_name(snap_series_tracker(s->series));
	s->incremental = snap_track_has_base(s->series);
	s->keep_wp = snap_track_keeps_wp(s->series);
	if (s->incremental)
		ret = snap_name_base(s);
	for (i = 0; !ret && i < s->vm->nr_slots; i++) {
		uint64_t npages = kvmmig_slot_pages(&s->vm->slots[i]);

		if (s->incremental && !(s->want[i] = bitmap_alloc(npages)))
			ret = -ENOMEM;
		if (s->keep_wp && !(s->saved[i] = bitmap_alloc(npages)))
			ret = -ENOMEM;
	}
	return ret;
}

static int snap_setup(struct snap_save *s)
{
	size_t len;
	unsigned int i;
	int ret;

	s->cfg = mig_config_of(s->vm, &len);
	s->states = calloc(s->vm->nr_vcpus, s->vm->ops.state_size);
	if (!s->cfg || !s->states)
		return -ENOMEM;
	snap_layout(s->cfg, &s->h);
	if (s->h.config_len + sizeof(s->h) > SNAP_HEADER_SIZE) {
		kvmmig_err("a guest of %u slots does not fit the snapshot header", s->cfg->nr_slots);
		return -E2BIG;
	}
	for (i = 0; i < s->vm->nr_slots; i++) {
		uint64_t npages = kvmmig_slot_pages(&s->vm->slots[i]);

		s->claimed[i] = bitmap_alloc(npages);
		s->page_crc[i] = calloc(npages, sizeof(uint32_t));
		if (!s->claimed[i] || !s->page_crc[i])
			return -ENOMEM;
		s->r->pages_total += npages;
	}
	ret = snap_setup_series(s);
	if (ret)
		return ret;
	return snap_sink_open(&(struct snap_sink_opts){ .path = s->o->path,
							 .direct = s->o->direct,
							 .cancel = s->o->cancel,
							 .tls = s->o->tls },
			      s->h.file_size, &s->sink);
}

static int snap_run(struct snap_save *s)
{
	unsigned int i;
	int ret;

	ret = snap_setup(s);
	if (!ret)
		ret = snap_pause(s);
	if (ret)
		return ret;
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0)
		return kvmmig_ioctl_err("eventfd for the snapshot's fault thread", errno);
	ret = -pthread_create(&s->fault_thread, NULL, snap_fault_thread, s);
	if (ret) {
		kvmmig_err("cannot start the snapshot's fault thread: %s", strerror(-ret));
		return ret;
	}
	s->fault_started = true;
	for (i = 0; i < s->vm->nr_slots; i++)
		s->chunk_start[i + 1] = s->chunk_start[i] +
			(BITMAP_WORDS(kvmmig_slot_pages(&s->vm->slots[i])) + SNAP_WALK_CHUNK - 1) /
			SNAP_WALK_CHUNK;
	for (i = 0; !ret && i < s->nr_writers; i++) {
		ret = -pthread_create(&s->walkers[i], NULL, snap_walker_thread, s);
		if (ret)
			kvmmig_err("cannot start snapshot writer %u: %s", i, strerror(-ret));
		else
			s->nr_walkers = i + 1;
	}
	if (ret)
		snap_fail(s, ret);
	for (i = 0; i < s->nr_walkers; i++)
		pthread_join(s->walkers[i], NULL);
	if (ret)
		return ret;
	ret = snap_failed(s);
	if (ret)
		/* A walker's or the fault thread's, kept quiet there: said once, here. */
		kvmmig_err("%s", s->r->error);
	return ret;
}

static void snap_stop_faults(struct snap_save *s)
{
	uint64_t one = 1;

	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	if (s->fault_started && write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
		kvmmig_info("cannot wake the snapshot's fault thread: it stops within %d ms",
			    SNAP_FAULT_TICK_MS);
	if (s->fault_started)
		pthread_join(s->fault_thread, NULL);
	s->fault_started = false;
}

/*
 * Pagemap tracker, after the walk: pages the guest has not written since
 * the pause are still protected by the walk's context.  With the guest
 * paused (the fault thread serves it until it is out), that context goes,
 * which lifts all of it, and the WP_ASYNC one protects everything again.
 */
static int snap_handover(struct snap_save *s)
{
	double t0 = now_s();
	int ret, rret;

	ret = kvmmig_vm_pause(s->vm);
	if (ret)
		return ret;
	snap_stop_faults(s);
	ret = snap_failed(s);
	snap_unprotect_all(s);
	if (!ret)
		ret = snap_track_handover(s->series, s->want);
	rret = kvmmig_vm_resume(s->vm);
	s->r->handover_ms = (now_s() - t0) * 1000.0;
	return ret ? ret : rret;
}

static void snap_cleanup(struct snap_save *s)
{
	unsigned int i;

	snap_stop_faults(s);
	snap_unprotect_all(s);
	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(s->claimed[i]);
		free(s->page_crc[i]);
		free(s->want[i]);
		free(s->saved[i]);
	}
	free(s->states);
	free(s->cfg);
}

int snapshot_save(struct kvmmig_vm *vm, const struct snap_opts *o, struct snap_report *r)
{
	struct snap_save s = {
		.vm = vm, .o = o, .r = r, .u = { .fd = -1 }, .series = o->series,
		.stop_fd = -1,
		.nr_writers = o->writers ? o->writers : 1,
	};
	double t0 = now_s();
	int ret;

	memset(r, 0, sizeof(*r));
	if (s.nr_writers > SNAP_MAX_WRITERS) {
		kvmmig_err("%u snapshot writers: expected 1 to %u", s.nr_writers, SNAP_MAX_WRITERS);
		snprintf(r->error, sizeof(r->error), "%s", kvmmig_last_error());
		return -EINVAL;
	}
	ret = snap_run(&s);
	if (!ret && s.keep_wp)
		ret = snap_handover(&s);
	/* The walk saved everything: no page is protected any more, stop the faults. */
	snap_stop_faults(&s);
	if (!ret) {
		ret = snap_failed(&s);
		if (ret)
			kvmmig_err("%s", r->error);
	}
	s.walk_done = !ret;
	if (!ret)
		ret = snap_finish_file(&s);
	if (ret)
		snap_fail(&s, ret);
	snap_cleanup(&s);
	if (s.stop_fd >= 0)
		close(s.stop_fd);
	if (!ret) {
		ret = snap_sink_commit(s.sink);
		if (ret)
			snap_fail(&s, ret);
	}
	r->direct = snap_sink_direct(s.sink);
	/* A failed snapshot leaves no file behind, complete-looking or not. */
	snap_sink_close(s.sink, ret ? r->error : NULL);
	if (o->series && ret)
		snap_track_stop(o->series);
	if (o->series && !ret) {
		snprintf(o->series->last_path, sizeof(o->series->last_path), "%s", o->path);
		o->series->last_id = s.h.id;
	}
	r->total_s = now_s() - t0;
	r->pages_saved = r->pages_walk + r->pages_fault;
	r->bytes_written = (r->pages_saved - r->zero_pages) * MIG_PAGE_SIZE;
	return ret;
}

uint64_t snap_fault_percentile_us(const struct snap_report *r, double p)
{
	uint64_t total = 0, seen = 0;
	unsigned int b;

	for (b = 0; b < 24; b++)
		total += r->fault_us_hist[b];
	for (b = 0; b < 24 && total; b++) {
		seen += r->fault_us_hist[b];
		if (seen * 100.0 >= p * total)
			return 2ULL << b;
	}
	return 0;
}
