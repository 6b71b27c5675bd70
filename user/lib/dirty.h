/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dirty sources: one interface over the ways of learning which guest pages
 * were written since the last collection.  Backends: "bitmap"
 * (KVM_GET_DIRTY_LOG, get-and-clear), "bitmap-manual"
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: get, and KVM_CLEAR_DIRTY_LOG apart),
 * "ring" (per-vCPU dirty rings with a concurrent reaper) and, with
 * kvmmig.ko, "module".  A collection ORs the pages dirtied since the
 * previous one into the caller's per-slot bitmaps (bit i of slot s = page i
 * of vm->slots[s]) and, where the backend knows them, adds per-vCPU counts.
 * Every page a backend reports has already been write-protected again, so a
 * caller may read it and trust that any later write is reported by a later
 * collection; with dirty_options.clear_on_send that is true only once the
 * caller has passed the page to dirty_source_clear(), which it does just
 * before reading it (Documentation/dirty-sources.rst).
 */
#ifndef KVMMIG_DIRTY_H
#define KVMMIG_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "kvmmig_vm.h"

enum dirty_backend {
	DIRTY_AUTO,
	DIRTY_BITMAP,
	DIRTY_BITMAP_MANUAL,
	DIRTY_RING,
	DIRTY_MODULE,
	NR_DIRTY_BACKENDS,
};

/* Where a collection puts its result; sized with dirty_set_alloc(). */
struct dirty_set {
	unsigned int nr_slots;
	uint64_t *nr_pages;		/* per slot */
	unsigned long **bitmaps;	/* per slot */
	unsigned int nr_vcpus;
	uint64_t *vcpu_pages;		/* per vCPU, if the backend knows */
	bool all_dirty;			/* a collection reported every page
					   because entries were lost (overflow) */
};

struct dirty_stats {
	uint64_t collections;
	uint64_t pages;			/* pages reported, in total */
	uint64_t harvested;		/* ring entries harvested */
	uint64_t reset;			/* ring entries KVM reset */
	uint64_t ring_full_exits;
	uint64_t overflows;		/* ring overflows detected and recovered */
	uint64_t reaps;			/* reaper rounds */
	uint64_t harvest_ns;		/* time spent collecting and re-protecting */
};

struct dirty_source;

struct dirty_source_ops {
	const char *name;
	int (*start)(struct dirty_source *ds);
	int (*collect)(struct dirty_source *ds, struct dirty_set *out);
	/* cumulative pages dirtied per vCPU, without a collection (optional) */
	int (*vcpu_counts)(struct dirty_source *ds, uint64_t *counts);
	/*
	 * clear_on_send: re-protect the reported pages among @npages from
	 * @first_page of @slot (set bits of @bits, bit 0 = @first_page), which
	 * the caller is about to read (optional: backends that re-protect in
	 * collect have nothing to do)
	 */
	int (*clear)(struct dirty_source *ds, unsigned int slot, uint64_t first_page,
		     uint64_t npages, const unsigned long *bits);
	/* KVM_EXIT_DIRTY_RING_FULL on a vCPU, called in its thread */
	int (*ring_full)(struct dirty_source *ds, unsigned int vcpu);
	void (*stop)(struct dirty_source *ds);
};

struct dirty_options {
	enum dirty_backend backend;
	unsigned int reap_interval_us;	/* ring: reaper period (0: default 500) */
	bool no_reaper;			/* ring: harvest only on ring-full exits
					   and collections (tests) */
	bool clear_on_send;		/* bitmap-manual: collections only read
					   the log; dirty_source_clear()
					   re-protects just before sending */
};

struct dirty_source {
	const struct dirty_source_ops *ops;
	struct kvmmig_vm *vm;
	struct dirty_options opts;
	struct dirty_stats stats;
	void *priv;
};

/* What a VM must be created with for a dirty backend. */
struct dirty_vm_caps {
	uint32_t ring_entries;		/* KVM_CAP_DIRTY_LOG_RING size, 0 = none */
	bool manual_protect;		/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
};

/*
 * Fill in the capabilities @backend needs (a default ring size when none
 * is set); the VMM enables them before creating any vCPU.  DIRTY_AUTO
 * picks the best the host offers.  Returns the backend, or -errno.
 */
int dirty_prepare_caps(enum dirty_backend backend, struct dirty_vm_caps *cfg);

/* Start dirty tracking on a VM (turns dirty logging on). */
int dirty_source_open(struct kvmmig_vm *vm, const struct dirty_options *opts,
		      struct dirty_source **out);
int dirty_source_collect(struct dirty_source *ds, struct dirty_set *out);
/*
 * With clear_on_send, call just before reading (sending) pages: re-protects
 * the set bits of @bits (bit 0 = @first_page; @first_page a multiple of 64,
 * @npages too unless the range ends the slot), so a write from now on is
 * reported by a later collection.  Clear only pages about to be read: a
 * page cleared and not read would be lost.  0, or a negative errno; does
 * nothing for backends that re-protect in collect.
 */
int dirty_source_clear(struct dirty_source *ds, unsigned int slot, uint64_t first_page,
		       uint64_t npages, const unsigned long *bits);
void dirty_source_close(struct dirty_source *ds);
/*
 * Pages each vCPU has dirtied since the source opened (nr_vcpus counters),
 * read at any time without a sync: the continuous per-vCPU rates the
 * rate-driven and dirty-limit policies use.  -EOPNOTSUPP for the bitmaps.
 */
int dirty_source_vcpu_counts(struct dirty_source *ds, uint64_t *counts);

const char *dirty_backend_name(enum dirty_backend b);
int dirty_backend_parse(const char *name);

int dirty_set_alloc(struct kvmmig_vm *vm, struct dirty_set *set);
/* The same for a layout given as values: @nr_pages[@nr_slots] pages per slot. */
int dirty_set_alloc_layout(struct dirty_set *set, unsigned int nr_slots,
			   const uint64_t *nr_pages, unsigned int nr_vcpus);
void dirty_set_clear(struct dirty_set *set);
void dirty_set_free(struct dirty_set *set);
uint64_t dirty_set_count(const struct dirty_set *set);

#endif /* KVMMIG_DIRTY_H */
