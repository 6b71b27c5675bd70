/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Convergence policies of the migration engine: auto-converge (QEMU's
 * trigger and its cpu-throttle-* parameters), dirty-limit (a per-vCPU
 * cap in MB/s, applied only to vCPUs that exceed it) and rate-driven (a
 * controller on continuous per-vCPU rates that keeps the guest's total
 * dirty rate under half the measured link throughput).  They set per-vCPU
 * CPU-throttle percentages through the throttle backend: kvmmig.ko when
 * it is loaded (the vCPU sleeps in its own thread before guest entry, in
 * the kernel, whatever VMM runs it), else the VMM's own set_throttle op
 * (kvmmig_vm_set_throttle()).
 */
#ifndef KVMMIG_MIG_THROTTLE_H
#define KVMMIG_MIG_THROTTLE_H

#include "migrate.h"

struct kmod_session;

struct mig_throttle {
	struct kvmmig_vm *vm;
	struct kmod_session *ks;	/* throttle through kvmmig.ko, or NULL */
	const struct mig_params *p;
	unsigned int high_cnt;		/* QEMU's dirty_rate_high_cnt */
	bool active;
	unsigned int pct[MIG_MAX_VCPUS];
	uint64_t last_pages[MIG_MAX_VCPUS];
	double last_t;
	double rate[MIG_MAX_VCPUS];	/* bytes/s per vCPU, latest period */
	unsigned int changes;		/* throttle adjustments made */
};

void mig_throttle_init(struct mig_throttle *t, struct kvmmig_vm *vm, const struct mig_params *p);
/* Throttle through kvmmig.ko's session @ks from now on (NULL: the VMM). */
void mig_throttle_use_module(struct mig_throttle *t, struct kmod_session *ks);
/* Dirty syncs feed the policies that need them (auto-converge, dirty-limit's trigger). */
bool mig_throttle_needs_syncs(const struct mig_params *p);
/* Policies that read per-vCPU rates continuously. */
bool mig_throttle_needs_rates(const struct mig_params *p);
/* QEMU's migration_trigger_throttle(), at every dirty sync. */
void mig_throttle_on_sync(struct mig_throttle *t, uint64_t bytes_dirty_period,
			  uint64_t bytes_xfer_period);
/* Per-vCPU controllers, with cumulative per-vCPU dirty pages at time @now (s). */
void mig_throttle_on_rates(struct mig_throttle *t, const uint64_t *pages, double now,
			   double throughput);
unsigned int mig_throttle_max(const struct mig_throttle *t);
/* Remove every throttle (end of migration, success or not). */
void mig_throttle_off(struct mig_throttle *t);

#endif /* KVMMIG_MIG_THROTTLE_H */
