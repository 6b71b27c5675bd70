// SPDX-License-Identifier: GPL-2.0-only
/*
 * Dirty-tracking correctness for every userspace dirty source, by KVM's
 * dirty_log_test method: the guest writes the current iteration number into
 * random pages while the host collects; then, with the vCPUs paused, every
 * page reported dirty must hold this or the previous iteration's value, and
 * every page holding this iteration's value but not reported must be
 * reported by the next collection.  With 1 and 4 vCPUs, on several
 * memslots, collecting while the vCPUs run.  Further tests drive the ring
 * through KVM_EXIT_DIRTY_RING_FULL on purpose, and provoke an overflow to
 * check that no page is lost and no vCPU stalls.  bitmap-manual with
 * clear_on_send is driven as a migration drives it (collect, then clear
 * each chunk just before "sending" it to a shadow copy), and the copy must
 * end equal to guest memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "dirty.h"
#include "kselftest_harness.h"
#include "test_util.h"

#define TEST_RAM		(64ULL << 20)
#define TEST_ITERATIONS		8
#define TEST_INTERVAL_US	150000
/* An iteration waits for this many guest writes: proof of progress. */
#define MIN_WRITES_PER_ITER	500

FIXTURE(dirty_log) {
	struct vm *vm;
	struct dirty_source *ds;
	struct dirty_set set;
	unsigned long *track;	/* pages that must show up next time */
	uint64_t pages;
};

FIXTURE_VARIANT(dirty_log) {
	enum dirty_backend backend;
	unsigned int nr_vcpus;
	unsigned int nr_slots;
};

FIXTURE_VARIANT_ADD(dirty_log, bitmap_1vcpu) { DIRTY_BITMAP, 1, 1 };
FIXTURE_VARIANT_ADD(dirty_log, bitmap_4vcpu) { DIRTY_BITMAP, 4, 3 };
FIXTURE_VARIANT_ADD(dirty_log, manual_1vcpu) { DIRTY_BITMAP_MANUAL, 1, 2 };
FIXTURE_VARIANT_ADD(dirty_log, manual_4vcpu) { DIRTY_BITMAP_MANUAL, 4, 4 };
FIXTURE_VARIANT_ADD(dirty_log, ring_1vcpu) { DIRTY_RING, 1, 1 };
FIXTURE_VARIANT_ADD(dirty_log, ring_4vcpu) { DIRTY_RING, 4, 3 };

static bool backend_supported(enum dirty_backend b, const char **why)
{
	switch (b) {
	case DIRTY_BITMAP_MANUAL:
		*why = "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 missing";
		return kvm_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
	case DIRTY_RING:
		*why = "KVM_CAP_DIRTY_LOG_RING missing";
		return kvm_cap(KVM_CAP_DIRTY_LOG_RING) > 0 ||
		       kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0;
	default:
		*why = "";
		return true;
	}
}

static int open_random_vm(struct __test_metadata *_metadata, enum dirty_backend backend,
			  unsigned int nr_vcpus, unsigned int nr_slots,
			  const struct dirty_options *opts, uint32_t ring_entries,
			  struct vm **vm, struct dirty_source **ds)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = TEST_RAM,
		.nr_slots = nr_slots,
		.ring_entries = ring_entries,
		.guest.workload = WORKLOAD_RANDOM,
		.guest.iteration = 1,
	};

	ASSERT_EQ(dirty_prepare_config(backend, &cfg), (int)backend);
	ASSERT_EQ(vm_create(&cfg, vm), 0);
	ASSERT_EQ(dirty_source_open((*vm)->kv, opts, ds), 0);
	return 0;
}

FIXTURE_SETUP(dirty_log)
{
	struct dirty_options opts = { .backend = variant->backend };
	const char *why;

	if (!backend_supported(variant->backend, &why))
		SKIP(return, "%s", why);
	open_random_vm(_metadata, variant->backend, variant->nr_vcpus, variant->nr_slots,
		       &opts, 0, &self->vm, &self->ds);
	ASSERT_EQ(dirty_set_alloc(self->vm->kv, &self->set), 0);
	self->pages = self->vm->shared->mem_pages;
	self->track = bitmap_alloc(self->pages);
	ASSERT_NE(self->track, NULL);
}

FIXTURE_TEARDOWN(dirty_log)
{
	if (self->vm)
		vm_stop(self->vm);
	dirty_source_close(self->ds);
	dirty_set_free(&self->set);
	vm_destroy(self->vm);
	free(self->track);
}

struct verify_counts {
	uint64_t dirty, clean, tracked, inflight;
};

/*
 * dirty_log_test's check, with the vCPUs paused: a reported page holds
 * iter or iter - 1; an unreported page holding iter was written after the
 * collection and must be reported next time.  After a ring overflow the
 * source reports every page instead, which is all that is checked then.
 * KVM marks a page dirty in the write fault, before the store retires: a
 * vCPU paused right after such a fault leaves a reported page holding an
 * older value (0 if it was never written), at most one per vCPU.  KVM's
 * test never pauses and so allows this only for the ring; we count them.
 */
static void verify_iteration(struct __test_metadata *_metadata, struct vm *vm,
			     struct dirty_set *set, unsigned long *track, uint64_t pages,
			     uint64_t iter, bool overflowed, struct verify_counts *c)
{
	uint64_t i, off, inflight = 0;
	unsigned int slot;

	for (i = 0; i < pages; i++) {
		uint64_t val = *(volatile uint64_t *)workload_page(vm, i);
		bool dirty;

		workload_slot_page(vm, i, &slot, &off);
		dirty = bitmap_test_bit(set->bitmaps[slot], off);
		if (bitmap_test_bit(track, i)) {
			bitmap_clear_bit(track, i);
			c->tracked++;
			ASSERT_TRUE(dirty) {
				TH_LOG("iteration %lu: page %lu held %lu last time but is not reported now",
				       iter, i, iter - 1);
			}
		}
		if (overflowed) {
			/* The ring lost entries: every page must be reported. */
			ASSERT_TRUE(dirty) TH_LOG("iteration %lu: overflow, page %lu missing", iter, i);
			c->dirty++;
		} else if (dirty) {
			c->dirty++;
			if (val != iter && val != iter - 1)
				inflight++;
			ASSERT_LE(inflight, vm->cfg.nr_vcpus) {
				TH_LOG("iteration %lu: page %lu reported dirty holds %lu, and %lu other pages have a store in flight",
				       iter, i, val, inflight - 1);
			}
			ASSERT_LE(val, iter);
		} else {
			c->clean++;
			ASSERT_LE(val, iter);
			if (val == iter)
				bitmap_set_bit(track, i);
		}
	}
	c->inflight += inflight;
}

static uint64_t total_writes(struct vm *vm)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		n += vm->vcpus[i].area->loops;
	return n;
}

/*
 * Let the guest run an interval, and longer if it has not yet made the
 * writes an iteration needs (a loaded host slows the emulated guest).
 */
static void wait_for_writes(struct vm *vm, uint64_t target)
{
	uint64_t deadline = now_ns() + 30 * 1000000000ULL;

	usleep(TEST_INTERVAL_US);
	while (total_writes(vm) < target && now_ns() < deadline && !vm_failure(vm))
		usleep(10000);
}

/* Go on past @iterations (up to 8 times as many) until @enough says so. */
typedef bool (*enough_fn)(struct vm *vm, struct dirty_source *ds);

static void run_iterations(struct __test_metadata *_metadata, struct vm *vm,
			   struct dirty_source *ds, struct dirty_set *set,
			   unsigned long *track, uint64_t pages, unsigned int iterations,
			   enough_fn enough)
{
	struct verify_counts c = { 0 };
	uint64_t iter, writes, prev = 0;

	ASSERT_EQ(vm_start(vm), 0);
	for (iter = 1; iter <= iterations || (enough && !enough(vm, ds) &&
					      iter <= 8 * iterations); iter++) {
		wait_for_writes(vm, prev + MIN_WRITES_PER_ITER);
		dirty_set_clear(set);
		/* Collected while the vCPUs run, as a migration does. */
		ASSERT_GE(dirty_source_collect(ds, set), 0);
		ASSERT_EQ(vm_pause(vm), 0);
		ASSERT_EQ(vm_failure(vm), NULL);
		verify_iteration(_metadata, vm, set, track, pages, iter,
				 set->all_dirty, &c);
		writes = total_writes(vm);
		ASSERT_GE(writes - prev, (uint64_t)MIN_WRITES_PER_ITER) {
			TH_LOG("iteration %lu: only %lu guest writes", iter, writes - prev);
		}
		prev = writes;
		vm->shared->iteration = iter + 1;
		ASSERT_EQ(vm_resume(vm), 0);
	}
	TH_LOG("%s: %lu dirty, %lu clean, %lu caught late, %lu in flight, %lu writes, %lu ring-full exits, %lu overflows",
	       ds->ops->name, c.dirty, c.clean, c.tracked, c.inflight, prev,
	       ds->stats.ring_full_exits, ds->stats.overflows);
	ASSERT_GT(c.dirty, (uint64_t)0);
}

TEST_F(dirty_log, random_writes)
{
	run_iterations(_metadata, self->vm, self->ds, &self->set, self->track, self->pages,
		       TEST_ITERATIONS, NULL);
	if (self->ds->opts.backend == DIRTY_RING) {
		/* Once quiet, every harvested entry has been handed back to KVM. */
		ASSERT_EQ(vm_pause(self->vm), 0);
		ASSERT_GE(dirty_source_collect(self->ds, &self->set), 0);
		ASSERT_EQ(self->ds->stats.reset, self->ds->stats.harvested);
	}
}

static bool had_ring_full_exit(struct vm *vm, struct dirty_source *ds)
{
	return ds->stats.ring_full_exits > 0;
}

/*
 * Harvest only on KVM_EXIT_DIRTY_RING_FULL and at collections: the ring
 * fills, the vCPU exits, its own thread harvests and it goes on.
 */
TEST(ring_full_exit)
{
	struct dirty_options opts = { .backend = DIRTY_RING, .no_reaper = true };
	struct dirty_source *ds;
	struct dirty_set set;
	unsigned long *track;
	struct vm *vm;
	uint64_t exits = 0;
	unsigned int i;

	if (kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 && kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	open_random_vm(_metadata, DIRTY_RING, 2, 2, &opts, 1024, &vm, &ds);
	ASSERT_EQ(dirty_set_alloc(vm->kv, &set), 0);
	track = bitmap_alloc(vm->shared->mem_pages);
	run_iterations(_metadata, vm, ds, &set, track, vm->shared->mem_pages, TEST_ITERATIONS,
		       had_ring_full_exit);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		exits += vm->kv->vcpus[i].ring_full_exits;
	ASSERT_GT(exits, (uint64_t)0);
	ASSERT_EQ(ds->stats.ring_full_exits, exits);
	if (!ds->stats.overflows)
		ASSERT_EQ(ds->stats.reset, ds->stats.harvested);
	vm_stop(vm);
	dirty_source_close(ds);
	dirty_set_free(&set);
	vm_destroy(vm);
	free(track);
}

/*
 * The smallest ring KVM allows, harvested only when full, under the densest
 * writer (incr: one byte per page, a few instructions apart): a KVM that
 * emulates guest instructions in batches (PVM) overruns it.  The overflow
 * must be detected, no written page may go unreported (every page whose
 * byte changed between two pauses is in the collections between them) and
 * the guest must keep running afterwards.
 */
TEST(ring_overflow_recovery)
{
	struct dirty_options opts = { .backend = DIRTY_RING, .no_reaper = true };
	struct vm_config cfg = {
		.nr_vcpus = 1,
		.ram_bytes = TEST_RAM,
		.nr_slots = 2,
		.ring_entries = 256,
		.guest.workload = WORKLOAD_INCR,
	};
	struct dirty_source *ds;
	struct dirty_set set;
	uint64_t i, off, before, changed = 0;
	unsigned int slot, iter;
	uint8_t *snap;
	struct vm *vm;

	if (kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 && kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	ASSERT_EQ(dirty_prepare_config(DIRTY_RING, &cfg), DIRTY_RING);
	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(dirty_source_open(vm->kv, &opts, &ds), 0);
	ASSERT_EQ(dirty_set_alloc(vm->kv, &set), 0);
	snap = calloc(vm->shared->mem_pages, 1);
	ASSERT_NE(snap, NULL);
	ASSERT_EQ(vm_start(vm), 0);
	for (iter = 0; iter < TEST_ITERATIONS; iter++) {
		usleep(TEST_INTERVAL_US);
		ASSERT_GE(dirty_source_collect(ds, &set), 0);
		ASSERT_EQ(vm_pause(vm), 0);
		ASSERT_EQ(vm_failure(vm), NULL);
		/* Paused: every write so far has been pushed to the ring. */
		ASSERT_GE(dirty_source_collect(ds, &set), 0);
		for (i = 0; i < vm->shared->mem_pages; i++) {
			uint8_t val = *(volatile uint8_t *)workload_page(vm, i);

			if (val == snap[i])
				continue;
			changed++;
			workload_slot_page(vm, i, &slot, &off);
			ASSERT_TRUE(bitmap_test_bit(set.bitmaps[slot], off)) {
				TH_LOG("round %u: page %lu changed %u -> %u but was not reported",
				       iter, i, snap[i], val);
			}
			snap[i] = val;
		}
		dirty_set_clear(&set);
		ASSERT_EQ(vm_resume(vm), 0);
	}
	TH_LOG("%lu page changes, %lu ring-full exits, %lu overflows, %lu harvested, %lu reset",
	       changed, ds->stats.ring_full_exits, ds->stats.overflows,
	       ds->stats.harvested, ds->stats.reset);
	ASSERT_GT(changed, (uint64_t)0);
	if (!ds->stats.overflows) {
		vm_stop(vm);
		dirty_source_close(ds);
		vm_destroy(vm);
		SKIP(return, "this KVM honours the ring's soft limit: no overflow to recover from");
	}
	/* Still running after the overflows: no stall. */
	before = vm->vcpus[0].area->loops;
	usleep(TEST_INTERVAL_US * 4);
	ASSERT_GT(vm->vcpus[0].area->loops, before);
	ASSERT_EQ(vm_failure(vm), NULL);
	vm_stop(vm);
	dirty_source_close(ds);
	dirty_set_free(&set);
	vm_destroy(vm);
	free(snap);
}

#define SEND_CHUNK_PAGES	4096	/* what mig_queue_pages clears at a time */

/*
 * Send every pending page to @shadow as the migration source does: clear
 * a chunk in the dirty source, then read its pending pages.
 */
static uint64_t send_pending(struct __test_metadata *_metadata, struct vm *vm,
			     struct dirty_source *ds, unsigned long **pending, uint8_t **shadow)
{
	uint64_t sent = 0, first, i, n;
	unsigned int s;

	for (s = 0; s < vm->nr_slots; s++) {
		uint64_t npages = vm->slots[s].size / GUEST_PAGE_SIZE;

		for (first = 0; first < npages; first += SEND_CHUNK_PAGES) {
			unsigned long *map = pending[s] + first / BITS_PER_LONG;
			uint64_t off;

			n = npages - first < SEND_CHUNK_PAGES ? npages - first : SEND_CHUNK_PAGES;
			EXPECT_EQ(dirty_source_clear(ds, s, first, n, map), 0);
			for (i = bitmap_next_set(map, n, 0); i < n; i = bitmap_next_set(map, n, i + 1)) {
				off = (first + i) * GUEST_PAGE_SIZE;
				memcpy(shadow[s] + off, (uint8_t *)vm->slots[s].hva + off,
				       GUEST_PAGE_SIZE);
				sent++;
			}
			bitmap_zero(map, n);
		}
	}
	return sent;
}

static void collect_pending(struct __test_metadata *_metadata, struct vm *vm,
			    struct dirty_source *ds, struct dirty_set *set,
			    unsigned long **pending)
{
	unsigned int s;

	dirty_set_clear(set);
	ASSERT_GE(dirty_source_collect(ds, set), 0);
	for (s = 0; s < vm->nr_slots; s++)
		bitmap_or_count(pending[s], set->bitmaps[s], set->nr_pages[s]);
}

/*
 * bitmap-manual re-protects a page only when the sender is about to read
 * it.  A clear of anything more loses the writes made after the collection
 * (the shadow ends stale); a clear that does nothing leaves the log full
 * after the last send.  The guest writes on between collection and sending,
 * with a new value each round, so a lost write shows.
 */
TEST(manual_clear_on_send)
{
	struct dirty_options opts = { .backend = DIRTY_BITMAP_MANUAL, .clear_on_send = true };
	unsigned long *pending[VM_MAX_SLOTS] = { NULL };
	uint8_t *shadow[VM_MAX_SLOTS] = { NULL };
	uint64_t iter, i, prev = 0, sent = 0, stale = 0;
	struct dirty_source *ds;
	struct dirty_set set;
	struct vm *vm;
	unsigned int s;

	if (kvm_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
		SKIP(return, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 missing");
	open_random_vm(_metadata, DIRTY_BITMAP_MANUAL, 2, 3, &opts, 0, &vm, &ds);
	ASSERT_EQ(dirty_set_alloc(vm->kv, &set), 0);
	for (s = 0; s < vm->nr_slots; s++) {
		shadow[s] = calloc(1, vm->slots[s].size);
		pending[s] = bitmap_alloc(set.nr_pages[s]);
		ASSERT_TRUE(shadow[s] && pending[s]);
		bitmap_fill(pending[s], set.nr_pages[s]);	/* the first pass sends all */
	}
	ASSERT_EQ(vm_start(vm), 0);
	for (iter = 1; iter <= TEST_ITERATIONS; iter++) {
		sent += send_pending(_metadata, vm, ds, pending, shadow);
		wait_for_writes(vm, prev + MIN_WRITES_PER_ITER);
		prev = total_writes(vm);
		collect_pending(_metadata, vm, ds, &set, pending);
		ASSERT_EQ(vm_pause(vm), 0);
		vm->shared->iteration = iter + 1;
		ASSERT_EQ(vm_resume(vm), 0);
		usleep(TEST_INTERVAL_US / 4);	/* writes after the collection */
	}
	ASSERT_EQ(vm_pause(vm), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	collect_pending(_metadata, vm, ds, &set, pending);
	sent += send_pending(_metadata, vm, ds, pending, shadow);
	/* The guest RAM slots (slot 0 also holds what the host wrote itself). */
	for (s = 1; s < vm->nr_slots; s++)
		for (i = 0; i < set.nr_pages[s]; i++) {
			uint64_t off = i * GUEST_PAGE_SIZE;

			if (memcmp(shadow[s] + off, (uint8_t *)vm->slots[s].hva + off,
				   GUEST_PAGE_SIZE) && stale++ < 4)
				TH_LOG("slot %u page %lu: a write was lost", s, i);
		}
	/* Paused and everything sent: nothing may still be dirty in KVM. */
	dirty_set_clear(&set);
	ASSERT_GE(dirty_source_collect(ds, &set), 0);
	TH_LOG("%lu pages sent, %lu guest writes, %lu still dirty after the last send",
	       sent, prev, dirty_set_count(&set));
	ASSERT_EQ(stale, (uint64_t)0);
	ASSERT_EQ(dirty_set_count(&set), (uint64_t)0);
	vm_stop(vm);
	dirty_source_close(ds);
	dirty_set_free(&set);
	vm_destroy(vm);
	for (s = 0; s < VM_MAX_SLOTS; s++) {
		free(shadow[s]);
		free(pending[s]);
	}
}

TEST_HARNESS_MAIN
