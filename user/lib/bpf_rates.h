/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Per-vCPU dirty rates and run times from the dirtyrate BPF programs, for
 * any KVM VMM and with no module.  bpf_rates_open() finds out what this
 * kernel lets BPF see (each source loads and attaches on its own, the
 * reason is kept when it cannot), pins the maps under
 * /sys/fs/bpf/kvmmig/ for bpftool and attaches; bpf_rates_update() reads
 * the maps and turns counts into rates over the time since the previous
 * update, which makes it a continuous rate source for the migration engine;
 * bpf_rates_close() detaches and unpins.  Functions return 0 or a negative
 * errno and describe failures with kvmmig_err().
 */
#ifndef KVMMIG_BPF_RATES_H
#define KVMMIG_BPF_RATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BPF_RATES_HIST_SLOTS	32

enum bpf_rates_source {
	BPF_RATES_RING,		/* dirty-ring pushes */
	BPF_RATES_BITMAP,	/* bitmap-mode dirtying */
	BPF_RATES_RUN,		/* time inside KVM_RUN */
	BPF_RATES_GUEST,	/* time in guest mode */
	NR_BPF_RATES_SOURCES,
};

struct bpf_rates_opts {
	pid_t pid;			/* only this VMM process (0: all) */
	const char *pin_dir;		/* NULL: /sys/fs/bpf/kvmmig; "": no pin */
	unsigned int hist_interval_ms;	/* histogram interval (0: 100) */
	unsigned int skip;		/* 1 << BPF_RATES_*: sources not wanted */
	bool verbose;			/* libbpf debug output to stderr */
};

struct bpf_rates_source_info {
	const char *name;		/* "ring", "bitmap", "run", "guest" */
	const char *attached;		/* e.g. "tp_btf/kvm_dirty_ring_push", or NULL */
	int err;			/* why not attached (negative errno) */
	char why[256];			/* ... in words */
};

struct bpf_rates_vcpu {
	uint32_t pid;			/* VMM process */
	int32_t vm_fd;			/* VM fd in that process (< 0: unknown) */
	uint32_t vcpu;			/* vCPU index */
	uint32_t tid;			/* vCPU thread */
	/* cumulative since attach */
	uint64_t ring_pages;
	uint64_t bitmap_pages;
	uint64_t dirty_pages;		/* ring + bitmap */
	uint64_t dirty_events;		/* pushes and marks, repeats included */
	uint64_t run_ns;		/* includes a KVM_RUN in progress */
	uint64_t guest_ns;		/* up to 10 ms late (flushed per CPU) */
	uint64_t exits;
	/* over the last update interval */
	double pages_per_sec;
	double run_pct;			/* share of the interval inside KVM_RUN */
	double guest_pct;		/* share in guest mode, < 0 if unknown */
	double exits_per_sec;
};

struct bpf_rates_hist {
	uint64_t interval_ns;
	uint64_t intervals;		/* closed intervals */
	uint64_t slots[BPF_RATES_HIST_SLOTS];	/* see bpf/dirtyrate.h */
	uint64_t window_pages;		/* in the open interval */
};

struct bpf_rates;

int bpf_rates_open(const struct bpf_rates_opts *opts, struct bpf_rates **out);
void bpf_rates_close(struct bpf_rates *br);

const struct bpf_rates_source_info *bpf_rates_source(const struct bpf_rates *br,
						     enum bpf_rates_source src);
/* Where the maps are pinned ("" if not pinned). */
const char *bpf_rates_pin_dir(const struct bpf_rates *br);
/* Pins left by a loader that died without closing, replaced by this one. */
unsigned int bpf_rates_stale_pins(const struct bpf_rates *br);

/*
 * Read the maps.  Rates cover the time since the previous update (since
 * bpf_rates_open() returned, for the first).  Entries of processes that have exited are
 * dropped from the maps.
 */
int bpf_rates_update(struct bpf_rates *br);
/* Seconds covered by the last update. */
double bpf_rates_interval(const struct bpf_rates *br);
/* When that interval ended: CLOCK_MONOTONIC, ns (now_ns() of clock.h). */
uint64_t bpf_rates_interval_end_ns(const struct bpf_rates *br);

/* vCPUs known at the last update, sorted by (pid, vm_fd, vcpu). */
size_t bpf_rates_count(const struct bpf_rates *br);
const struct bpf_rates_vcpu *bpf_rates_get(const struct bpf_rates *br, size_t i);

/*
 * One VM's vCPUs: out[v] for vCPU index v < nr (zeroed when not seen yet).
 * Returns how many of them were seen.
 */
int bpf_rates_vm(const struct bpf_rates *br, pid_t pid, int vm_fd,
		 struct bpf_rates_vcpu *out, unsigned int nr);

/*
 * One VM's cumulative dirty pages per vCPU, read from the map now (no
 * bpf_rates_update() needed): pages[v] for v < nr, 0 for vCPUs not seen.
 * The shape mig_throttle_on_rates() takes, so the BPF programs can be the
 * continuous rate source of the rate-driven and dirty-limit policies for
 * any dirty backend.  Returns how many vCPUs were seen.
 */
int bpf_rates_vm_pages(const struct bpf_rates *br, pid_t pid, int vm_fd, uint64_t *pages,
		       unsigned int nr);

/* The dirty-pages-per-interval histogram of one vCPU, read now. */
int bpf_rates_hist(const struct bpf_rates *br, pid_t pid, int vm_fd,
		   unsigned int vcpu, struct bpf_rates_hist *out);

/* Events lost to full maps, and bitmap marks outside a known vCPU thread. */
uint64_t bpf_rates_dropped(const struct bpf_rates *br);
uint64_t bpf_rates_unattributed(const struct bpf_rates *br);
/*
 * Events the kernel did not hand to a program because another program of
 * the same kind was running on that CPU (bpf_prog_info.recursion_misses).
 */
uint64_t bpf_rates_misses(const struct bpf_rates *br);

/* Map and program ids, to check that nothing outlives bpf_rates_close(). */
int bpf_rates_ids(const struct bpf_rates *br, uint32_t *map_ids, unsigned int nr_maps,
		  uint32_t *prog_ids, unsigned int nr_progs, unsigned int *nr_map_out,
		  unsigned int *nr_prog_out);

#endif /* KVMMIG_BPF_RATES_H */
