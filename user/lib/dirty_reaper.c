// SPDX-License-Identifier: GPL-2.0-only
/*
 * The reaper shared by the ring-based dirty sources (dirty_reaper.h).  A
 * thread reaps every reap_interval_us while the vCPUs run, so rings never
 * fill; a vCPU whose ring fills anyway reaps in its own thread at
 * KVM_EXIT_DIRTY_RING_FULL; a collection reaps once more and takes the
 * accumulated bitmaps and counts.  All three hold one lock, so a round's
 * harvest and KVM's reset that re-protects its pages are never split:
 * whatever a collection hands out is protected again already.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "bitmap.h"
#include "dirty_reaper.h"
#include "log.h"

static void dirty_reaper_lock(struct dirty_reaper *r)
{
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->owner, pthread_self(), __ATOMIC_RELAXED);
}

static void dirty_reaper_unlock(struct dirty_reaper *r)
{
	__atomic_store_n(&r->owner, (pthread_t)0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->lock);
}

/*
 * owner is only ever equal to this thread when this thread wrote it while
 * holding the lock, so a relaxed load is enough: another thread's writes
 * can make it differ, never make it match.
 */
void dirty_reaper_assert_held(struct dirty_reaper *r)
{
	static bool reported;

	if (pthread_equal(__atomic_load_n(&r->owner, __ATOMIC_RELAXED), pthread_self()))
		return;
	if (!__atomic_exchange_n(&reported, true, __ATOMIC_RELAXED))
		kvmmig_err("BUG: dirty-ring state used without the reaper's lock");
}

int dirty_reaper_reap_locked(struct dirty_reaper *r)
{
	struct dirty_stats *st = &r->ds->stats;
	uint64_t t0 = now_ns();
	int ret;

	dirty_reaper_assert_held(r);
	ret = r->ops->reap_locked(r);
	st->reaps++;
	r->reaped_ns = now_ns();
	st->harvest_ns += r->reaped_ns - t0;
	return ret;
}

int dirty_reaper_reset_rings_locked(struct dirty_reaper *r)
{
	int ret;

	dirty_reaper_assert_held(r);
	ret = ioctl(r->ds->vm->fd, KVM_RESET_DIRTY_RINGS, 0);
	if (ret < 0)
		return kvmmig_ioctl_err("KVM_RESET_DIRTY_RINGS", errno);
	r->ds->stats.reset += ret;
	return ret;
}

/* @ns of CLOCK_MONOTONIC (now_ns(), the clock of r->wake) as a deadline. */
static void dirty_reaper_deadline(struct timespec *ts, uint64_t ns)
{
	ts->tv_sec = ns / 1000000000ULL;
	ts->tv_nsec = ns % 1000000000ULL;
}

/* Sleep until @deadline, or until stopped: returns false if stopped. */
static bool dirty_reaper_wait_locked(struct dirty_reaper *r, const struct timespec *deadline)
{
	int ret = 0;

	dirty_reaper_assert_held(r);
	/* The wait drops the lock: another thread may take it meanwhile. */
	__atomic_store_n(&r->owner, (pthread_t)0, __ATOMIC_RELAXED);
	/* 0 is a wakeup (perhaps spurious); ETIMEDOUT, or any error, ends the wait. */
	while (!r->stop && !ret)
		ret = pthread_cond_timedwait(&r->wake, &r->lock, deadline);
	__atomic_store_n(&r->owner, pthread_self(), __ATOMIC_RELAXED);
	return !r->stop;
}

/*
 * A full period between the end of one round and the start of the next.
 * The deadline comes from the clock read that ended the round: under TCG
 * with an HPET clocksource every clock read is a costly system call.
 */
static void *dirty_reaper_thread(void *arg)
{
	struct dirty_reaper *r = arg;
	uint64_t period = r->ds->opts.reap_interval_us * 1000ULL, next;
	struct timespec deadline;

	dirty_reaper_lock(r);
	next = now_ns() + period;
	while (!r->stop) {
		dirty_reaper_deadline(&deadline, next);
		if (!dirty_reaper_wait_locked(r, &deadline))
			break;
		dirty_reaper_reap_locked(r);
		next = r->reaped_ns + period;
	}
	dirty_reaper_unlock(r);
	return NULL;
}

int dirty_reaper_ring_full(struct dirty_source *ds, unsigned int vcpu)
{
	struct dirty_reaper *r = ds->priv;
	int ret;

	dirty_reaper_lock(r);
	/* Tests read the count while vCPUs run (migration_adopt_test). */
	__atomic_add_fetch(&ds->stats.ring_full_exits, 1, __ATOMIC_RELAXED);
	if (r->ops->ring_full_locked)
		ret = r->ops->ring_full_locked(r, vcpu);
	else
		ret = dirty_reaper_reap_locked(r);
	dirty_reaper_unlock(r);
	return ret;
}

static int dirty_reaper_vm_full(void *opaque, unsigned int vcpu)
{
	return dirty_reaper_ring_full(opaque, vcpu);
}

/* Hand the accumulated bitmaps and counts to @out; returns pages newly set. */
static int dirty_reaper_merge_locked(struct dirty_reaper *r, struct dirty_set *out)
{
	struct dirty_source *ds = r->ds;
	uint64_t added = 0, t0 = now_ns();
	unsigned int i;

	dirty_reaper_assert_held(r);
	for (i = 0; i < ds->vm->nr_slots; i++) {
		if (r->all_dirty)
			bitmap_fill(r->acc[i], r->npages[i]);
		added += bitmap_or_count(out->bitmaps[i], r->acc[i], r->npages[i]);
		bitmap_zero(r->acc[i], r->npages[i]);
	}
	out->all_dirty |= r->all_dirty;
	r->all_dirty = false;
	for (i = 0; i < ds->vm->nr_vcpus && i < out->nr_vcpus; i++) {
		out->vcpu_pages[i] += r->vcpu_pages[i];
		r->vcpu_pages[i] = 0;
	}
	ds->stats.harvest_ns += now_ns() - t0;
	return added > INT32_MAX ? INT32_MAX : (int)added;
}

int dirty_reaper_collect(struct dirty_source *ds, struct dirty_set *out)
{
	struct dirty_reaper *r = ds->priv;
	int ret;

	dirty_reaper_lock(r);
	ret = dirty_reaper_reap_locked(r);
	if (!ret)
		ret = dirty_reaper_merge_locked(r, out);
	dirty_reaper_unlock(r);
	return ret;
}

/* Fresh counts: reap first, so they are at most a moment old. */
int dirty_reaper_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	struct dirty_reaper *r = ds->priv;
	int ret;

	dirty_reaper_lock(r);
	ret = dirty_reaper_reap_locked(r);
	memcpy(counts, r->vcpu_total, ds->vm->nr_vcpus * sizeof(*counts));
	dirty_reaper_unlock(r);
	return ret;
}

int dirty_reaper_init(struct dirty_reaper *r, struct dirty_source *ds,
		      const struct dirty_reaper_ops *ops)
{
	struct kvmmig_vm *vm = ds->vm;
	pthread_condattr_t attr;
	unsigned int i;

	r->ds = ds;
	r->ops = ops;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &attr);
	pthread_condattr_destroy(&attr);
	ds->priv = r;
	for (i = 0; i < vm->nr_slots; i++) {
		r->npages[i] = vm->slots[i].size / MIG_PAGE_SIZE;
		r->acc[i] = bitmap_alloc(r->npages[i]);
		if (!r->acc[i]) {
			kvmmig_err("out of memory for the dirty bitmap of slot %u (%llu pages)",
				   vm->slots[i].id, (unsigned long long)r->npages[i]);
			return -ENOMEM;
		}
	}
	return 0;
}

int dirty_reaper_start(struct dirty_reaper *r)
{
	struct dirty_source *ds = r->ds;
	int ret;

	kvmmig_vm_set_ring_full_handler(ds->vm, dirty_reaper_vm_full, ds);
	r->handler_set = true;
	if (ds->opts.no_reaper)
		return 0;
	ret = pthread_create(&r->thread, NULL, dirty_reaper_thread, r);
	if (ret) {
		kvmmig_err("cannot start the dirty-ring reaper: %s", strerror(ret));
		return -ret;
	}
	r->thread_running = true;
	return 0;
}

static void dirty_reaper_stop(struct dirty_reaper *r)
{
	if (r->thread_running) {
		dirty_reaper_lock(r);
		r->stop = true;
		pthread_cond_signal(&r->wake);
		dirty_reaper_unlock(r);
		pthread_join(r->thread, NULL);
		r->thread_running = false;
	}
	if (!r->handler_set)
		return;
	/*
	 * The last round while ring-full exits still come here: once the
	 * handler is gone the VM recycles the rings itself (and may probe
	 * them), so nothing of ours may touch them after.  Logging goes off
	 * again first: dirty_source_close() turned it off, but a round since
	 * (a ring-full exit's) may have re-protected memory, turning it on.
	 */
	dirty_reaper_lock(r);
	r->closing = true;
	kvmmig_vm_set_dirty_logging(r->ds->vm, false);
	dirty_reaper_reap_locked(r);
	dirty_reaper_unlock(r);
	/* From here on no vCPU thread enters dirty_reaper_ring_full(). */
	kvmmig_vm_set_ring_full_handler(r->ds->vm, NULL, NULL);
	r->handler_set = false;
}

void dirty_reaper_close(struct dirty_source *ds)
{
	struct dirty_reaper *r = ds->priv;
	unsigned int i;

	if (!r)
		return;
	dirty_reaper_stop(r);
	for (i = 0; i < MIG_MAX_SLOTS; i++)
		free(r->acc[i]);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	ds->priv = NULL;
	r->ops->release(r);
}
