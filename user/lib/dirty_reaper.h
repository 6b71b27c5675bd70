/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The part the ring-based dirty sources ("ring", "module") share: a reaper
 * thread that harvests every reap_interval_us while the vCPUs run, the
 * accumulated per-slot bitmaps (harvested, not yet collected) and per-vCPU
 * counters behind one lock, the merge into the caller's dirty_set at a
 * collection, and the KVM_EXIT_DIRTY_RING_FULL path.  A source supplies
 * only its harvest: reap_locked() takes one round of every ring into the
 * accumulator (and has KVM reset the rings) with the lock held.  The source
 * embeds a struct dirty_reaper in its private state and points ds->priv at
 * it; container_of() leads back.
 */
#ifndef KVMMIG_DIRTY_REAPER_H
#define KVMMIG_DIRTY_REAPER_H

#include <pthread.h>
#include <stddef.h>

#include "dirty_internal.h"

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

struct dirty_reaper;

struct dirty_reaper_ops {
	/* One harvest of every ring into acc[] and the counters, then KVM's reset. */
	int (*reap_locked)(struct dirty_reaper *r);
	/* KVM_EXIT_DIRTY_RING_FULL on @vcpu (optional; default: one reap). */
	int (*ring_full_locked)(struct dirty_reaper *r, unsigned int vcpu);
	/*
	 * The source's own teardown at close, after the last round, with the
	 * reaper stopped and gone: it frees the state that embeds @r.
	 */
	void (*release)(struct dirty_reaper *r);
};

struct dirty_reaper {
	struct dirty_source *ds;
	const struct dirty_reaper_ops *ops;
	/*
	 * Serialises reaps (the reaper, ring-full exits, collections) and
	 * guards everything below as well as the source's own ring state.
	 */
	pthread_mutex_t lock;
	pthread_t owner;			/* holder of lock, for the asserts */
	pthread_cond_t wake;			/* ends the reaper's wait at stop */
	unsigned long *acc[MIG_MAX_SLOTS];	/* harvested, not yet collected */
	uint64_t npages[MIG_MAX_SLOTS];
	uint64_t vcpu_pages[MIG_MAX_VCPUS];	/* since the last collection */
	uint64_t vcpu_total[MIG_MAX_VCPUS];	/* since the source opened */
	bool all_dirty;				/* entries lost: report every page once */
	uint64_t reaped_ns;			/* now_ns() as the last round ended */
	/*
	 * The reaper thread is to end.  Under the lock, not atomic: the
	 * thread sleeps on wake with the lock, so a stop set and signalled
	 * under it cannot fall between its check and its sleep.
	 */
	bool stop;
	bool closing;				/* logging is off for good: the last rounds */
	bool handler_set;			/* ring-full exits come to us */
	bool thread_running;
	pthread_t thread;
};

/* Set up the lock and acc[] for every slot of ds->vm; points ds->priv at @r. */
int dirty_reaper_init(struct dirty_reaper *r, struct dirty_source *ds,
		      const struct dirty_reaper_ops *ops);
/* Take the VM's ring-full exits, and start the thread unless no_reaper. */
int dirty_reaper_start(struct dirty_reaper *r);
/*
 * dirty_source_ops.stop, also after a failed start once dirty_reaper_init()
 * ran: stop the thread (its wait ends at once: at most the round under way
 * is waited for), reap a last time, give ring-full exits back to the VM,
 * free what dirty_reaper_init() set up, then ops->release().
 */
void dirty_reaper_close(struct dirty_source *ds);

/* lockdep_assert_held(): reports a caller without the lock (a bug) once. */
void dirty_reaper_assert_held(struct dirty_reaper *r);

/* ops->reap_locked() with the reaper statistics (rounds, harvest_ns). */
int dirty_reaper_reap_locked(struct dirty_reaper *r);

/*
 * KVM_RESET_DIRTY_RINGS: re-protect the pages of every entry flagged
 * collected and recycle those entries.  Returns how many KVM reset, or a
 * negative errno.
 */
int dirty_reaper_reset_rings_locked(struct dirty_reaper *r);

/* @n entries harvested from @vcpu's ring. */
static inline void dirty_reaper_count_locked(struct dirty_reaper *r, unsigned int vcpu,
					     uint64_t n)
{
	r->vcpu_pages[vcpu] += n;
	r->vcpu_total[vcpu] += n;
}

/* dirty_source_ops for a source built on the reaper (ds->priv: its reaper). */
int dirty_reaper_collect(struct dirty_source *ds, struct dirty_set *out);
/* Pages per vCPU since the source opened, reaped just now. */
int dirty_reaper_vcpu_counts(struct dirty_source *ds, uint64_t *counts);
int dirty_reaper_ring_full(struct dirty_source *ds, unsigned int vcpu);

#endif /* KVMMIG_DIRTY_REAPER_H */
