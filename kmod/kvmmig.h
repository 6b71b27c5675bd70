/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvmmig.ko internals shared by its files: the session (one per attached
 * VM) and its per-vCPU state, and the functions each file offers the
 * others.  main.c holds the device and module parameters, session.c the
 * session lifetime and ioctl dispatch, harvest.c ring harvesting, account.c
 * the tracepoint probes and statistics, throttle.c the throttles, netlink.c
 * the generic netlink family.
 */
#ifndef KVMMIG_KMOD_H
#define KVMMIG_KMOD_H

#include <linux/kref.h>
#include <linux/kvm_host.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/kvmmig.h>

#include "compat.h"

#define KVMMIG_VERSION		"0.1.0"
#define KVMMIG_MAX_SESSIONS	256
/* Most memslots a VM can have: user slots in every address space. */
#define KVMMIG_MAX_SLOTS	(KVM_USER_MEM_SLOTS * KVMMIG_MAX_AS)
/* QEMU's CPU throttle timeslice: pct/(1-pct) x 10 ms of sleep per 10 ms run. */
#define KVMMIG_SLICE_NS		(10 * NSEC_PER_MSEC)
/*
 * Dirty-limit burst: credit an idle vCPU may bank, in time at its limit.
 * Large enough to absorb scheduling delays between two dirtied pages on a
 * busy host, which would otherwise be lost and leave the vCPU below its
 * limit.
 */
#define KVMMIG_BURST_NS		(100 * NSEC_PER_MSEC)
/* Shorter debts are carried over rather than slept. */
#define KVMMIG_MIN_SLEEP_NS	(100 * NSEC_PER_USEC)

struct kvmmig_session;

/*
 * Per-vCPU state.  The probes run in the thread that runs the vCPU, under
 * vcpu->mutex, so the "hot" fields have a single writer and need no lock;
 * readers elsewhere use READ_ONCE.  Throttle configuration is written under
 * the session lock and read by the probes; cfg_gen tells them it changed.
 */
struct kvmmig_vcpu {
	/* hot path, written by the vCPU's thread */
	u64 entry_ns;			/* 0 outside guest mode */
	u64 run_ns;
	u64 exits;
	u64 dirty_pages;
	u64 ring_full_exits;
	u64 tat_ns;			/* dirty limit: theoretical arrival time */
	u64 tb_pages;			/* dirty_pages at the last kvm_exit */
	u64 slice_run_ns;		/* CPU throttle: run since the last quantum */
	u64 limited;			/* exits that found a dirty-limit debt */
	u32 cfg_seen;

	/* configuration, written under the session lock */
	u32 cfg_gen;
	u64 dirty_limit;
	u64 ns_per_page;
	u32 cpu_pct;
	u32 ring_quota;
	u32 saved_soft_limit;		/* KVM's soft limit while a quota is set */

	/* throttle sleep, queued by the exit probe, run by the vCPU thread */
	struct callback_head twork;
	unsigned long twork_pending;	/* bit 0 */
	u64 sleep_req_ns;
	atomic64_t owed_ns;		/* CPU throttle sleep owed, < 0: overslept */
	atomic64_t overslept_ns;	/* dirty limit: credit for late wake-ups */
	atomic64_t throttle_ns;
	atomic64_t throttle_sleeps;

	/* rate window, written by the session tick under the session lock */
	u64 win_start_ns;
	u64 win_pages;
	u64 win_limited;
	u64 rate;
	u64 last_event_ns;
	bool over_limit;

	/* harvest cursor, under the session lock */
	u32 fetch_index;

	u32 idx;
	u32 vcpu_id;
	struct kvm_vcpu *vcpu;		/* valid while the session holds the VM */
	struct kvmmig_session *s;
} ____cacheline_aligned_in_smp;

/* Throttle settings applied to vCPUs that come online after a SET for all. */
struct kvmmig_throttle_cfg {
	u64 dirty_limit;
	u32 cpu_pct;
	u32 ring_quota;
};

struct kvmmig_session {
	struct kref ref;		/* the file, queued sleeps and gone checks */
	struct mutex lock;		/* ioctls, netlink, tick, detach */
	u32 id;
	enum kvmmig_state state;
	struct kvm *kvm;		/* referenced while ATTACHED */
	struct hlist_node hnode;	/* kvmmig_table, keyed by kvm */
	pid_t pid;			/* tgid that attached */
	pid_t vm_pid;
	u32 nr_vcpus;			/* vCPUs with a kvmmig_vcpu */
	u32 ring_entries;		/* per vCPU, 0: the VM has no dirty ring */
	struct kvmmig_vcpu **vcpus;	/* [KVM_MAX_VCPUS], published with release */
	struct kvmmig_throttle_cfg dflt;
	wait_queue_head_t wq;		/* wakes throttle sleeps on change/detach */
	struct delayed_work tick;
	u64 window_ns;
	struct kvmmig_harvest_scratch *scratch;	/* HARVEST's buffers, under lock */
	/* "VM gone" noticed by a release probe: detach in the releasing task */
	struct callback_head gone_twork;
	unsigned long gone_pending;	/* bit 0: gone_twork queued */
};

/* main.c */
extern unsigned int kvmmig_window_ms;
extern unsigned int kvmmig_event_interval_ms;
extern unsigned int kvmmig_max_sleep_ms;

/* session.c */
long kvmmig_attach(struct kvmmig_attach __user *uattach);
struct kvmmig_session *kvmmig_session_find(u32 id);
void kvmmig_session_put(struct kvmmig_session *s);
int kvmmig_session_lock(struct kvmmig_session *s);
struct kvmmig_vcpu *kvmmig_vcpu_find(struct kvm_vcpu *vcpu);
bool kvmmig_sessions_attached(void);
void kvmmig_vm_put_seen(struct kvm *kvm);
int kvmmig_for_each_session(int (*fn)(struct kvmmig_session *s, void *arg),
			    u32 start, void *arg);

/* vm_release.c */
void kvmmig_release_probes_register(void);
void kvmmig_release_probes_unregister(void);
bool kvmmig_release_probes_attached(void);

/* harvest.c */
long kvmmig_harvest(struct kvmmig_session *s, struct kvmmig_harvest __user *uh);
void kvmmig_harvest_scratch_free(struct kvmmig_session *s);

/* account.c */
int kvmmig_probes_register(void);
void kvmmig_probes_unregister(void);
bool kvmmig_probe_attached(int which);
void kvmmig_vcpu_stats_fill(struct kvmmig_vcpu *v, struct kvmmig_vcpu_stats *st);
void kvmmig_window_update(struct kvmmig_session *s, u64 now);
long kvmmig_vcpu_stats(struct kvmmig_session *s, struct kvmmig_stats __user *ust);

enum {
	KVMMIG_PROBE_ENTRY,
	KVMMIG_PROBE_EXIT,
	KVMMIG_PROBE_PUSH,
	KVMMIG_PROBE_RING_EXIT,
	KVMMIG_NR_PROBES,
	KVMMIG_PROBE_MARK_DIRTY = KVMMIG_NR_PROBES,	/* the bitmap kprobe */
};

/* throttle.c */
int kvmmig_throttle_check(struct kvmmig_session *s, const struct kvmmig_throttle *t);
int kvmmig_throttle_set(struct kvmmig_session *s, const struct kvmmig_throttle *t);
void kvmmig_throttle_get(struct kvmmig_vcpu *v, struct kvmmig_throttle *t);
void kvmmig_throttle_init_vcpu(struct kvmmig_session *s, struct kvmmig_vcpu *v);
void kvmmig_throttle_restore(struct kvmmig_session *s);
void kvmmig_throttle_exit(struct kvmmig_vcpu *v, u64 now, u64 ran);

/* netlink.c */
int kvmmig_nl_register(void);
void kvmmig_nl_unregister(void);
void kvmmig_nl_session_event(struct kvmmig_session *s, u8 cmd);
void kvmmig_nl_throttle_event(struct kvmmig_session *s, const struct kvmmig_throttle *t);
void kvmmig_nl_over_limit_event(struct kvmmig_session *s, struct kvmmig_vcpu *v);

#endif /* KVMMIG_KMOD_H */
