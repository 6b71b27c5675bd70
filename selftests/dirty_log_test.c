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
 * check that no page is lost and no vCPU stalls.
 */
#include <stdio.h>
#include <stdlib.h>
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
	ASSERT_EQ(dirty_source_open(*vm, opts, ds), 0);
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
	ASSERT_EQ(dirty_set_alloc(self->vm, &self->set), 0);
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
	ASSERT_EQ(dirty_set_alloc(vm, &set), 0);
	track = bitmap_alloc(vm->shared->mem_pages);
	run_iterations(_metadata, vm, ds, &set, track, vm->shared->mem_pages, TEST_ITERATIONS,
		       had_ring_full_exit);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		exits += vm->vcpus[i].ring_full_exits;
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
	ASSERT_EQ(dirty_source_open(vm, &opts, &ds), 0);
	ASSERT_EQ(dirty_set_alloc(vm, &set), 0);
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

TEST_HARNESS_MAIN
