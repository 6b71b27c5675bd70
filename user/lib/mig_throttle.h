/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Convergence policies of the migration engine: auto-converge (QEMU's
 * trigger and its cpu-throttle-* parameters), dirty-limit (a per-vCPU
 * cap in MB/s, applied only to vCPUs that exceed it), rate-driven (a
 * controller on continuous per-vCPU rates that keeps the guest's total
 * dirty rate under half the measured link throughput) and converge (the
 * controller of converge.h: per-vCPU dirty limits on the vCPUs that dirty,
 * just enough for the backlog to fit the downtime, by --converge-within
 * when given).  They throttle through a backend: kvmmig.ko when it is
 * loaded (the vCPU sleeps in its own thread before guest entry, in the
 * kernel, whatever VMM runs it), else the VMM's own set_throttle op
 * (kvmmig_vm_set_throttle()).  Through the module, dirty-limit and
 * converge set the module's exact per-vCPU dirty limit (a token bucket);
 * otherwise every policy sets per-vCPU CPU-throttle percentages
 * (converge: the running fraction limit / demand).
 * A throttle counts as applied only once the backend took it: a failure
 * is returned to the caller and leaves nothing recorded.
 */
#ifndef KVMMIG_MIG_THROTTLE_H
#define KVMMIG_MIG_THROTTLE_H

#include "converge.h"
#include "migrate.h"

struct kmod_session;

struct mig_throttle {
	struct kvmmig_vm *vm;
	struct kmod_session *ks;	/* throttle through kvmmig.ko, or NULL */
	const struct mig_params *p;
	unsigned int high_cnt;		/* QEMU's dirty_rate_high_cnt */
	bool active;
	bool ready;			/* a backend was chosen: mig_throttle_use_module() */
	bool bucket;			/* dirty-limit through the module's token bucket */
	unsigned int pct[MIG_MAX_VCPUS];	/* CPU throttle in force */
	uint64_t last_pages[MIG_MAX_VCPUS];
	double last_t;
	double rate[MIG_MAX_VCPUS];	/* bytes/s per vCPU, latest period */
	unsigned int changes;		/* throttle adjustments made */
	/* What was applied, for the report */
	struct mig_vcpu_throttle applied[MIG_MAX_VCPUS];
	uint64_t slept_ns0[MIG_MAX_VCPUS];	/* the module's sleep count at the start */
	/* converge: the controller, its clock origin and the latest backlog */
	struct converge cv;
	uint64_t limit[MIG_MAX_VCPUS];	/* bytes/s in force, 0: none */
	double cv_t0;
	uint64_t backlog;
	double bandwidth;
	enum converge_verdict verdict;
};

void mig_throttle_init(struct mig_throttle *t, struct kvmmig_vm *vm, const struct mig_params *p);
/*
 * Throttle through kvmmig.ko's session @ks from now on (NULL: the VMM);
 * dirty-limit takes the module's dirty limit when the module has it for
 * this VM (a dirty ring, its probes) and p->dirty_limit_cpu_throttle is off.
 */
int mig_throttle_use_module(struct mig_throttle *t, struct kmod_session *ks);
/* Dirty syncs feed the policies that need them (auto-converge, dirty-limit's trigger). */
bool mig_throttle_needs_syncs(const struct mig_params *p);
/* Policies that read per-vCPU rates continuously. */
bool mig_throttle_needs_rates(const struct mig_params *p);
/* QEMU's migration_trigger_throttle(), at every dirty sync; 0 or -errno. */
int mig_throttle_on_sync(struct mig_throttle *t, uint64_t bytes_dirty_period,
			 uint64_t bytes_xfer_period);
/* Per-vCPU controllers, with cumulative per-vCPU dirty pages at time @now (s). */
int mig_throttle_on_rates(struct mig_throttle *t, const uint64_t *pages, double now,
			  double throughput);
/*
 * converge: bytes still to send and the bandwidth (bytes/s, at most
 * max-bandwidth; 0 unknown), read at the next mig_throttle_on_rates().
 */
void mig_throttle_backlog(struct mig_throttle *t, uint64_t remaining, double bandwidth);
/* Total dirty rate of the latest period, bytes/s. */
double mig_throttle_rate(const struct mig_throttle *t);
/* Highest CPU throttle in force on any vCPU. */
unsigned int mig_throttle_max(const struct mig_throttle *t);
/*
 * Per vCPU, what was applied and how long it held the vCPU (before _off;
 * -1 ms through a VMM, which does not say); nothing when no backend was
 * chosen.
 */
int mig_throttle_report(const struct mig_throttle *t, struct mig_report *rep);
/* Remove every throttle (end of migration, success or not). */
int mig_throttle_off(struct mig_throttle *t);

#endif /* KVMMIG_MIG_THROTTLE_H */
