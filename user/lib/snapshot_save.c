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
 * it.  The fault thread never waits for the walkers: it writes its pages
 * with its own pwrite().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "cancel.h"
#include "clock.h"
#include "csum.h"
#include "log.h"
#include "migrate.h"
#include "snapshot.h"
#include "snapshot_sink.h"
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
	pthread_t fault_thread;
	bool fault_started;
	unsigned int nr_writers;	/* walkers, the caller's thread the first */
	unsigned int nr_walkers;	/* walkers[1..] started */
	pthread_t walkers[SNAP_MAX_WRITERS];
	uint64_t walk_next;		/* atomic: the next chunk to walk */
	uint64_t chunk_start[MIG_MAX_SLOTS + 1];	/* first chunk of each slot */
	bool stop;			/* atomic: the fault thread ends */
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

/* A guest write to a protected page: save it first if nobody has. */
static int snap_serve_fault(struct snap_save *s, const struct uffd_fault *f)
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
	old = __atomic_fetch_or(&s->claimed[slot][idx / BITS_PER_LONG], bit, __ATOMIC_ACQ_REL);
	if (old & bit)
		/* Its claimer lifts the protection, which wakes this writer; be sure. */
		return uffd_wake(&s->u, page, MIG_PAGE_SIZE);
	ret = snap_save_pages(s, slot, idx, 1, &zero);
	if (!ret)
		ret = uffd_protect(&s->u, page, MIG_PAGE_SIZE, false);
	if (ret)
		return ret;
	__atomic_add_fetch(&s->r->pages_fault, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->r->zero_pages, zero, __ATOMIC_RELAXED);
	snap_count_latency(s, now_s() - t0);
	return 0;
}

static void *snap_fault_thread(void *arg)
{
	struct uffd_fault f[UFFD_MAX_BATCH];
	struct snap_save *s = arg;
	int n, i, ret = 0;

	/* Its failure is reported once, by the walker's thread. */
	kvmmig_log_quiet(true);
	while (!ret && !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		n = uffd_wait(&s->u, SNAP_FAULT_TICK_MS, NULL);
		if (n > 0)
			n = uffd_read_faults(&s->u, f, UFFD_MAX_BATCH);
		for (i = 0; n > 0 && i < n && !ret; i++)
			ret = snap_serve_fault(s, &f[i]);
		if (n < 0)
			ret = n;
	}
	if (ret)
		snap_fail(s, ret);
	return NULL;
}

/*
 * Claim, save and unprotect the pages of bitmap word @w of @slot that the
 * fault thread has not taken.
 */
static int snap_walk_word(struct snap_save *s, unsigned int slot, uint64_t w, uint64_t *zero,
			  uint64_t *walked)
{
	uint64_t npages = kvmmig_slot_pages(&s->vm->slots[slot]);
	uint64_t first = w * BITS_PER_LONG, left = npages - first;
	uint8_t *base = s->vm->slots[slot].hva;
	unsigned long mask = left >= BITS_PER_LONG ? ~0UL : (1UL << left) - 1;
	unsigned long mine = mask & ~__atomic_fetch_or(&s->claimed[slot][w], mask,
						       __ATOMIC_ACQ_REL);
	int ret = 0;

	while (mine && !ret) {
		unsigned int a = __builtin_ctzl(mine), b = a;

		while (b < BITS_PER_LONG && mine & (1UL << b))
			b++;
		mine &= b < BITS_PER_LONG ? ~((1UL << b) - 1) : 0;
		ret = snap_save_pages(s, slot, first + a, b - a, zero);
		if (!ret)
			ret = uffd_protect(&s->u, base + (first + a) * MIG_PAGE_SIZE,
					   (uint64_t)(b - a) * MIG_PAGE_SIZE, false);
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

static void *snap_walker_thread(void *arg)
{
	struct snap_save *s = arg;
	int ret;

	/* Its failure is reported once, by the first walker's thread. */
	kvmmig_log_quiet(true);
	ret = snap_walk(s);
	if (ret && ret != snap_failed(s))
		snap_fail(s, ret);
	return NULL;
}

/* While paused: register and protect every slot, pre-faulting if the kernel needs it. */
static int snap_protect(struct snap_save *s)
{
	int ret = uffd_open(&s->u, UFFD_WP);

	if (ret)
		return ret;
	s->r->wp_unpopulated = uffd_wp_unpopulated(&s->u) && !s->o->prefault;
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
		ret = uffd_protect(&s->u, sl->hva, sl->size, true);
		if (ret) {
			uffd_unregister(&s->u, sl->hva, sl->size);
			return ret;
		}
	}
	return 0;
}

/* Protection off everywhere it may still be, registrations and the fd gone. */
static void snap_unprotect_all(struct snap_save *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_registered; i++) {
		struct kvmmig_slot *sl = &s->vm->slots[i];

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
	if (!ret)
		ret = snap_protect(s);
	if (ret)
		snap_unprotect_all(s);
	rret = kvmmig_vm_resume(s->vm);
	s->r->pause_ms = (now_s() - t0) * 1000.0;
	return ret ? ret : rret;
}

/* Block checksums, vCPU states and, last, the header that says "complete". */
static int snap_finish_file(struct snap_save *s)
{
	uint64_t nblocks = snap_nr_blocks(s->cfg), b = 0, first;
	uint32_t *table = calloc(nblocks ? nblocks : 1, sizeof(*table));
	size_t vlen = (size_t)s->vm->nr_vcpus * s->vm->ops.state_size;
	uint8_t hdr[SNAP_HEADER_SIZE] = { 0 };
	unsigned int slot;
	int ret;

	if (!table)
		return -ENOMEM;
	for (slot = 0; slot < s->cfg->nr_slots; slot++) {
		uint64_t npages = s->cfg->slots[slot].size / MIG_PAGE_SIZE;

		for (first = 0; first < npages; first += SNAP_BLOCK_PAGES, b++) {
			uint64_t n = npages - first < SNAP_BLOCK_PAGES ? npages - first :
									 SNAP_BLOCK_PAGES;

			table[b] = crc32c(0, &s->page_crc[slot][first], n * sizeof(uint32_t));
		}
	}
	s->h.table_crc = crc32c(0, table, nblocks * sizeof(*table));
	s->h.vcpu_crc = crc32c(0, s->states, vlen);
	ret = snap_pwrite(s, table, nblocks * sizeof(*table), s->h.crc_off);
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
	return ret;
}

static int snap_setup(struct snap_save *s)
{
	size_t len;
	unsigned int i;

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
	}
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
	for (i = 1; !ret && i < s->nr_writers; i++) {
		ret = -pthread_create(&s->walkers[i], NULL, snap_walker_thread, s);
		if (ret)
			kvmmig_err("cannot start snapshot writer %u: %s", i, strerror(-ret));
		else
			s->nr_walkers = i;
	}
	if (!ret)
		ret = snap_walk(s);
	if (ret)
		snap_fail(s, ret);
	for (i = 1; i <= s->nr_walkers; i++)
		pthread_join(s->walkers[i], NULL);
	return ret ? ret : snap_failed(s);
}

static void snap_cleanup(struct snap_save *s)
{
	unsigned int i;

	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	if (s->fault_started)
		pthread_join(s->fault_thread, NULL);
	snap_unprotect_all(s);
	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(s->claimed[i]);
		free(s->page_crc[i]);
	}
	free(s->states);
	free(s->cfg);
}

int snapshot_save(struct kvmmig_vm *vm, const struct snap_opts *o, struct snap_report *r)
{
	struct snap_save s = {
		.vm = vm, .o = o, .r = r, .u = { .fd = -1 },
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
	/* The walk saved everything: no page is protected any more, stop the faults. */
	__atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
	if (s.fault_started)
		pthread_join(s.fault_thread, NULL);
	s.fault_started = false;
	if (!ret)
		ret = snap_failed(&s);
	if (!ret)
		ret = snap_finish_file(&s);
	if (ret)
		snap_fail(&s, ret);
	snap_cleanup(&s);
	if (!ret) {
		ret = snap_sink_commit(s.sink);
		if (ret)
			snap_fail(&s, ret);
	}
	r->direct = snap_sink_direct(s.sink);
	/* A failed snapshot leaves no file behind, complete-looking or not. */
	snap_sink_close(s.sink, ret ? r->error : NULL);
	r->total_s = now_s() - t0;
	r->bytes_written = (r->pages_walk + r->pages_fault - r->zero_pages) * MIG_PAGE_SIZE;
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
