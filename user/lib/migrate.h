/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libkvmmig's live migration: precopy over TCP with multifd page channels,
 * a sync engine (legacy, background, periodic) and convergence policies
 * (auto-converge, dirty-limit, rate-driven, converge).  Parameter names and defaults
 * follow QEMU's migration parameters.  The source side is
 * mig_source_run(), the destination side mig_dest_run(); both report
 * progress through a callback and fill a struct mig_report.
 */
#ifndef KVMMIG_MIGRATE_H
#define KVMMIG_MIGRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "cancel.h"
#include "dirty.h"
#include "tls.h"
#include "kvmmig_vm.h"
#include "lat_hist.h"

enum mig_sync_mode {
	MIG_SYNC_LEGACY,	/* iteration syncs only (end of each pass) */
	MIG_SYNC_BACKGROUND,	/* + every sync interval into iter_bmap (seed 000/001) */
	MIG_SYNC_PERIODIC,	/* + an iteration sync if none for an interval (QEMU 9.2) */
	NR_MIG_SYNC_MODES,
};

enum mig_policy {
	MIG_POLICY_NONE,
	MIG_POLICY_AUTO_CONVERGE,	/* CPU throttle for all vCPUs, QEMU semantics */
	MIG_POLICY_DIRTY_LIMIT,		/* per-vCPU dirty-rate cap, only on dirtying vCPUs */
	MIG_POLICY_RATE_DRIVEN,		/* continuous per-vCPU rates, no syncs needed */
	MIG_POLICY_CONVERGE,		/* per-vCPU dirty limits just enough (converge.h) */
	NR_MIG_POLICIES,
};

/* Where dirty-limit and rate-driven read continuous per-vCPU rates. */
enum mig_rate_source {
	MIG_RATES_DIRTY,	/* the dirty source's per-vCPU counts (ring, module) */
	MIG_RATES_BPF,		/* the dirtyrate BPF programs (any dirty backend) */
	NR_MIG_RATE_SOURCES,
};

/* When a migration with postcopy-ram switches to postcopy (postcopy.rst). */
enum mig_postcopy_start {
	MIG_POSTCOPY_START_AUTO,	/* when a pass no longer shrinks what is left */
	MIG_POSTCOPY_START_MANUAL,	/* only on migrate-start-postcopy */
	MIG_POSTCOPY_START_PASSES,	/* after postcopy_after_passes passes */
	NR_MIG_POSTCOPY_STARTS,
};

struct mig_params {
	uint64_t downtime_limit_ms;		/* downtime-limit, 300 */
	uint64_t max_bandwidth;			/* max-bandwidth, bytes/s, 0 = unlimited */
	unsigned int multifd_channels;		/* multifd-channels, 1 */
	bool zero_page_detection;		/* zero-page-detection: multifd (true) or none */
	enum mig_sync_mode sync_mode;
	unsigned int sync_interval_ms;		/* background/periodic interval, 5000 */
	enum mig_policy policy;
	unsigned int cpu_throttle_initial;	/* 20 */
	unsigned int cpu_throttle_increment;	/* 10 */
	unsigned int max_cpu_throttle;		/* 99 */
	unsigned int throttle_trigger_threshold;/* 50 (% of bytes sent) */
	bool cpu_throttle_tailslow;
	uint64_t vcpu_dirty_limit;		/* vcpu-dirty-limit, MB/s, 1 */
	unsigned int dirty_limit_period_ms;	/* x-vcpu-dirty-limit-period, 1000 */
	unsigned int max_passes;		/* give up after this many, 0 = never */
	unsigned int converge_within_s;		/* converge: the deadline, 0 = none */
	enum mig_rate_source rate_source;	/* x-rate-source, dirty */
	enum dirty_backend dirty_backend;
	bool dirty_clear_on_send;		/* bitmap-manual re-protects each chunk
						   just before sending it (true), or at
						   each sync as before (benchmarks) */
	bool dirty_limit_cpu_throttle;		/* dirty-limit through CPU-throttle
						   percentages even where kvmmig.ko
						   keeps the exact limit (the previous
						   behaviour, for benchmarks) */
	unsigned int connect_timeout_ms;	/* connect-timeout, 10 s */
	unsigned int io_timeout_ms;		/* io-timeout: no progress on a channel, 30 s */
	/* postcopy (Documentation/postcopy.rst) */
	bool postcopy_ram;			/* postcopy-ram: may switch to postcopy */
	bool postcopy_preempt;			/* postcopy-preempt: urgent pages on a
						   channel of their own */
	bool postcopy_hint;			/* x-postcopy-hint: the background scan goes
						   on right after a requested page (seed
						   003), true */
	enum mig_postcopy_start postcopy_start;	/* x-postcopy-start, auto */
	unsigned int postcopy_after_passes;	/* ... passes: after this many */
	unsigned int postcopy_recover_timeout_ms; /* postcopy-paused: give up after this
						   long without a recovery (0: wait for
						   ever, as QEMU) */
};

void mig_params_init(struct mig_params *p);

enum mig_state {
	MIG_SETUP,
	MIG_ACTIVE,		/* precopy passes */
	MIG_SWITCHOVER,		/* source paused, last pages, vCPU state, handover */
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLED,
	MIG_POSTCOPY_ACTIVE,	/* the guest runs on the destination, pages still flow */
	MIG_POSTCOPY_PAUSED,	/* postcopy's link broke: both sides wait for a recovery */
	MIG_POSTCOPY_RECOVER,	/* a new link is being set up */
	NR_MIG_STATES,
};

/* One point of the timeline, taken at every sync and every progress tick. */
struct mig_sample {
	double t;			/* seconds since start */
	uint64_t pass;
	uint64_t remaining_bytes;	/* still to send in this pass */
	double dirty_rate;		/* bytes/s, latest measurement */
	double throughput;		/* bytes/s, sent */
	unsigned int throttle_pct;	/* highest vCPU throttle in force */
	bool sync;			/* this sample is a dirty sync */
};

/* What held a vCPU back during a migration, as the report names it. */
enum mig_throttle_mech {
	MIG_THROTTLE_NONE,		/* "none": never throttled */
	MIG_THROTTLE_VMM_CPU,		/* "vmm-cpu-throttle": the VMM's set_throttle op */
	MIG_THROTTLE_MODULE_CPU,	/* "module-cpu-throttle": kvmmig.ko's duty cycle */
	MIG_THROTTLE_MODULE_DIRTY_LIMIT,/* "module-dirty-limit": kvmmig.ko's token bucket */
	NR_MIG_THROTTLE_MECHS,
};

/* One vCPU's throttle over a migration; only what was applied is recorded. */
struct mig_vcpu_throttle {
	enum mig_throttle_mech mech;	/* the last mechanism set on it */
	unsigned int max_pct;		/* highest CPU throttle applied (cpu mechanisms) */
	uint64_t dirty_limit;		/* bytes/s (module-dirty-limit), 0: none */
	double slept_ms;		/* time the throttle held it asleep; -1:
					   unknown (a VMM's op does not say) */
};

struct mig_report {
	enum mig_state state;
	char error[512];		/* why it failed (as long as kvmmig_last_error()) */
	double total_s;
	double downtime_ms;		/* source paused -> destination running */
	double setup_ms;
	uint64_t passes;
	uint64_t syncs;			/* dirty syncs (iteration + background/periodic) */
	uint64_t bytes_sent;		/* on the wire, all channels */
	uint64_t pages_sent;		/* pages with data */
	uint64_t zero_pages;		/* pages sent as zero records */
	uint64_t dirty_pages;		/* pages found dirty after the first pass */
	unsigned int max_throttle_pct;
	uint64_t ring_overflows;	/* dirty-ring overflows recovered (all pages resent) */
	double throughput;		/* bytes/s over the whole migration */
	bool source_stopped;		/* failed after COMMIT: the source guest stays stopped */
	const char *dirty_backend;
	const char *throttle_backend;	/* "module", "vmm" or "none" */
	const char *rate_source;	/* "dirty", "bpf", or NULL: no policy reads rates */
	const char *tls;		/* "ktls", "ktls-tx", "gnutls", or NULL: plaintext */
	unsigned int nr_vcpus;		/* entries of vcpu_throttle */
	struct mig_vcpu_throttle vcpu_throttle[MIG_MAX_VCPUS];
	/*
	 * Postcopy (all zero unless it switched).  The source learns the
	 * destination's fault figures from its POSTCOPY_DONE record; the
	 * destination counts them itself.
	 */
	bool postcopy;			/* switched to postcopy */
	bool postcopy_preempt;		/* ... urgent pages on the preempt channel */
	double postcopy_s;		/* the guest's start on the destination -> last page */
	uint64_t postcopy_requests;	/* pages the destination asked for */
	uint64_t postcopy_urgent_pages;	/* pages sent (source) or placed (dest) on request */
	uint64_t postcopy_background_pages;	/* every other postcopy page */
	uint64_t postcopy_remote_faults;	/* faults that had to wait for the source */
	uint64_t postcopy_blocktime_ns;	/* summed time faulting vCPUs waited */
	uint64_t postcopy_dropped;	/* pages that arrived already placed */
	uint64_t postcopy_fault_us_hist[LAT_HIST_SLOTS];	/* fault -> page placed */
	unsigned int postcopy_recoveries;	/* links re-established after a break */
	/* the timeline, for the CSV and SVG outputs */
	struct mig_sample *samples;
	unsigned int nr_samples, cap_samples;
};

void mig_report_free(struct mig_report *r);

/* Called from the migration thread at each sample (progress line, JSON). */
typedef void (*mig_progress_fn)(void *opaque, enum mig_state state,
				const struct mig_sample *s, const struct mig_report *r);

struct mig_source_opts {
	struct mig_params params;
	const char *to;			/* "tcp:HOST:PORT" */
	struct tls_opts tls;		/* every channel TLS when creds or PSK are given */
	volatile sig_atomic_t *cancel;	/* set non-zero to cancel (cancel.h) */
	mig_progress_fn progress;
	void *opaque;
	double progress_interval_s;	/* 0: 0.5 s */
	unsigned int handover_timeout_ms;	/* each handover wait; 0: MIG_HANDOVER_TIMEOUT_MS */
	/*
	 * Set non-zero to switch to postcopy (migrate-start-postcopy); only
	 * with params.postcopy_ram, read between batches.
	 */
	volatile sig_atomic_t *start_postcopy;
};

/* The default deadline of each handover wait (PREPARED, COMMIT, STARTED, recovery). */
#define MIG_HANDOVER_TIMEOUT_MS	30000

/*
 * Migrate the running guest @vm to a `kvmmig receive` at opts->to.  On
 * success the source guest is stopped; on any failure or cancel it is left
 * running, with dirty tracking and throttles removed.  Returns 0 or a
 * negative errno; @report says what happened either way.
 */
int mig_source_run(struct kvmmig_vm *vm, const struct mig_source_opts *opts, struct mig_report *report);

struct mig_dest_opts {
	const char *listen;		/* "tcp:HOST:PORT" (PORT 0: any) */
	int hello_timeout_ms;		/* for a connection's hello; 0: 5000 */
	struct tls_opts tls;		/* demand TLS on every channel when given */
	volatile sig_atomic_t *cancel;	/* set non-zero to cancel (cancel.h) */
	unsigned int io_timeout_ms;	/* no progress within a record; 0: 30 s */
	/* Called once listening, with the port (for PORT 0). */
	void (*listening)(void *opaque, int port);
	/*
	 * Called once a source's session is taken: its main channel's hello
	 * and CONFIG were valid (connections set aside before that leave the
	 * receiver waiting for a source, not failed).
	 */
	void (*accepted)(void *opaque, uint64_t session);
	/*
	 * The VMM makes the guest the CONFIG record describes (@cfg, checked):
	 * a VM with its vCPUs and memslots, not yet running; slots it marks
	 * `zeroed` get no zero-page writes.  0 or -errno, said with
	 * kvmmig_err().  Required, with release_vm; both get vmm_opaque.
	 */
	int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg, struct kvmmig_vm **vm);
	/* Called with the guest running on this side; its return is ours. */
	int (*resumed)(void *opaque, struct kvmmig_vm *vm);
	/*
	 * The migration is done with the VM (@running: it was started here,
	 * else it never ran and holds a partial copy): the VMM frees it.
	 */
	void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running);
	void *vmm_opaque;
	void *opaque;
	unsigned int handover_timeout_ms;	/* 0: MIG_HANDOVER_TIMEOUT_MS */
	/*
	 * Postcopy: how long the destination waits in postcopy-paused for
	 * the source to come back before it gives up (0: for ever).
	 */
	unsigned int postcopy_recover_timeout_ms;
	/* Called once the guest runs here while pages are still missing. */
	void (*postcopy_started)(void *opaque, struct kvmmig_vm *vm);
};

/*
 * Receive a guest, resume it when the source commits (handover.rst), call
 * opts->resumed.  Returns 0 or -errno.
 */
int mig_dest_run(const struct mig_dest_opts *opts, struct mig_report *report);

/*
 * Settling an undecided handover (user/lib/mig_settle.c): the waiting side
 * listens on a control socket named by its role and the session; a settle
 * command tells it what to do and gets its answer in @answer.
 */
enum mig_settle_cmd {
	MIG_SETTLE_START,	/* destination: run the guest */
	MIG_SETTLE_RESUME,	/* source: run the guest */
	MIG_SETTLE_DISCARD,	/* either: drop this side's copy */
	MIG_SETTLE_RESUME_AT,	/* source in postcopy-paused: reconnect to this address */
	MIG_SETTLE_RECOVER_AT,	/* destination in postcopy-paused: listen here as well */
	MIG_SETTLE_MAX,
};

const char *mig_settle_name(enum mig_settle_cmd cmd);
int mig_settle(bool source, uint64_t session, enum mig_settle_cmd cmd, char *answer,
	       size_t len);
int mig_settle_listen(bool source, uint64_t session);
/* Accept one command: the connection to answer on, or -EAGAIN for junk. */
int mig_settle_take(int lfd, uint64_t session, enum mig_settle_cmd *cmd);
void mig_settle_reply(int fd, int status, const char *msg);
/*
 * Postcopy recovery (postcopy.rst): the same control sockets carry
 * RESUME_AT / RECOVER_AT with an address ("tcp:HOST:PORT").
 */
int mig_settle_at(bool source, uint64_t session, enum mig_settle_cmd cmd, const char *addr,
		  char *answer, size_t len);
/* As mig_settle_take(), and the address of a *_AT command into @addr. */
int mig_settle_take_at(int lfd, uint64_t session, enum mig_settle_cmd *cmd, char *addr,
		       size_t len);

const char *mig_sync_mode_name(enum mig_sync_mode m);
int mig_sync_mode_parse(const char *s);
const char *mig_policy_name(enum mig_policy p);
int mig_policy_parse(const char *s);
const char *mig_rate_source_name(enum mig_rate_source r);
int mig_rate_source_parse(const char *s);
const char *mig_state_name(enum mig_state s);
const char *mig_postcopy_start_name(enum mig_postcopy_start m);
/* "auto", "manual" or "passes:N" (N >= 1, into *@passes). */
int mig_postcopy_start_parse(const char *s, unsigned int *passes);
const char *mig_throttle_mech_name(enum mig_throttle_mech m);

/* Outputs of a finished migration (user/lib/mig_report.c). */
int mig_report_write_csv(const struct mig_report *r, const char *path);
int mig_report_write_svg(const struct mig_report *r, const char *path, const char *title);
void mig_report_print(const struct mig_report *r, FILE *f);
/* One line of JSON (migration-report.rst); 0, or -EIO if @f failed (said). */
int mig_report_print_json(const struct mig_report *r, FILE *f);

#endif /* KVMMIG_MIGRATE_H */
