/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note OR BSD-2-Clause */
/*
 * The ABI of kvmmig.ko, shared by the module, libkvmmig, the kvmmig command
 * and the tests: ioctls on /dev/kvmmig (version, extensions, ATTACH), ioctls
 * on the session fd that ATTACH returns (INFO, HARVEST, VCPU_STATS,
 * SET_THROTTLE, GET_THROTTLE, DETACH) and the generic netlink family
 * "kvmmig".  Documentation/kvmmig-api.rst describes every call.  Rules for
 * every structure: fixed-width fields only, explicit padding, sizes a
 * multiple of 8, user pointers as __u64, and flags, pad and reserved fields
 * that must be zero on input (the module answers -EINVAL otherwise) and are
 * zero on output.
 */
#ifndef _UAPI_LINUX_KVMMIG_H
#define _UAPI_LINUX_KVMMIG_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define KVMMIG_API_VERSION		1
#define KVMMIG_DEVICE			"/dev/kvmmig"
#define KVMMIG_IO			0xB9

/* A vCPU argument that means every vCPU of the VM (SET_THROTTLE only). */
#define KVMMIG_VCPU_ALL			0xffffffffu

/* KVMMIG_CHECK_EXTENSION arguments; the answer is 0 when not available. */
#define KVMMIG_CAP_HARVEST		1	/* KVMMIG_HARVEST */
#define KVMMIG_CAP_VCPU_STATS		2	/* KVMMIG_VCPU_STATS */
#define KVMMIG_CAP_DIRTY_LIMIT		3	/* KVMMIG_THROTTLE_DIRTY_LIMIT */
#define KVMMIG_CAP_CPU_THROTTLE		4	/* KVMMIG_THROTTLE_CPU */
#define KVMMIG_CAP_RING_QUOTA		5	/* KVMMIG_THROTTLE_RING_QUOTA */
#define KVMMIG_CAP_NETLINK		6	/* answers KVMMIG_GENL_VERSION */
#define KVMMIG_CAP_RUN_TIME		7	/* kvm_entry/kvm_exit probes attached */
#define KVMMIG_CAP_DIRTY_COUNT		8	/* kvm_dirty_ring_push probe attached */
#define KVMMIG_CAP_RING_FULL_COUNT	9	/* kvm_dirty_ring_exit probe attached */
#define KVMMIG_CAP_DETACH		10	/* KVMMIG_DETACH */
#define KVMMIG_CAP_MAX_SESSIONS		11	/* answers the session limit */
/* dirty counts and dirty limits for VMs without a dirty ring (bitmap mode) */
#define KVMMIG_CAP_BITMAP_DIRTY		12
/* a VM its VMM let go is released before the VMM's close() returns */
#define KVMMIG_CAP_PROMPT_RELEASE	13

/* ioctls on /dev/kvmmig */
#define KVMMIG_GET_API_VERSION		_IO(KVMMIG_IO, 0x00)
#define KVMMIG_CHECK_EXTENSION		_IO(KVMMIG_IO, 0x01)
#define KVMMIG_ATTACH			_IOWR(KVMMIG_IO, 0x02, struct kvmmig_attach)

/* ioctls on a session fd */
#define KVMMIG_INFO			_IOWR(KVMMIG_IO, 0x10, struct kvmmig_info)
#define KVMMIG_HARVEST			_IOWR(KVMMIG_IO, 0x11, struct kvmmig_harvest)
#define KVMMIG_VCPU_STATS		_IOWR(KVMMIG_IO, 0x12, struct kvmmig_stats)
#define KVMMIG_SET_THROTTLE		_IOW(KVMMIG_IO, 0x13, struct kvmmig_throttle)
#define KVMMIG_GET_THROTTLE		_IOWR(KVMMIG_IO, 0x14, struct kvmmig_throttle)
#define KVMMIG_DETACH			_IO(KVMMIG_IO, 0x15)

/* KVMMIG_ATTACH: bind a new session fd to a VM. */
struct kvmmig_attach {
	__u32 vm_fd;		/* in: a KVM VM file descriptor */
	__u32 session_id;	/* out: the session's id (netlink, stats) */
	__u32 flags;		/* in: must be 0 */
	__u32 pad;
	__u64 reserved[2];
};

/* One memslot, as KVMMIG_INFO lists it. */
struct kvmmig_memslot {
	__u32 slot;		/* as_id << 16 | id, as in struct kvm_dirty_gfn */
	__u32 kvm_flags;	/* the memslot's KVM_MEM_* flags */
	__u64 base_gfn;
	__u64 npages;
	__u32 flags;		/* 0 */
	__u32 pad;
	__u64 reserved[1];
};

/* KVMMIG_INFO */
struct kvmmig_info {
	__u64 slots;		/* in: address of struct kvmmig_memslot[nr_slots] */
	__u32 nr_slots;		/* in: capacity; out: user memslots of the VM */
	__u32 nr_vcpus;		/* out: online vCPUs */
	__u32 max_vcpus;	/* out: the VM's vCPU limit */
	__u32 ring_entries;	/* out: dirty ring entries per vCPU, 0: no ring */
	__u32 ring_soft_limit;	/* out: KVM's ring-full threshold, entries */
	__u32 session_id;	/* out */
	__u64 window_ns;	/* out: the window of VCPU_STATS dirty rates */
	__u32 vm_pid;		/* out: the process that created the VM */
	__u32 flags;		/* in: must be 0 */
	__u64 reserved[4];
};

/* One caller bitmap for KVMMIG_HARVEST. */
struct kvmmig_slot_bitmap {
	__u32 slot;		/* in: as_id << 16 | id */
	__u32 pad;
	/* in: address of (npages + 63) / 64 __u64 words; bit i of word w is page w * 64 + i */
	__u64 bitmap;
	__u64 npages;		/* in: bits in the bitmap, 1..KVMMIG_MAX_SLOT_PAGES */
	__u64 harvested;	/* out: ring entries of this slot in this call */
	__u32 flags;		/* in: must be 0 */
	__u32 pad2;
	__u64 reserved[2];
};

#define KVMMIG_MAX_SLOT_PAGES		(1ULL << 40)

/* Per-vCPU result of KVMMIG_HARVEST. */
struct kvmmig_harvest_vcpu {
	__u64 entries;		/* ring entries collected from this vCPU */
	__u32 ring_used;	/* entries in the ring awaiting KVM_RESET_DIRTY_RINGS */
	__u32 flags;		/* KVMMIG_HARVEST_VCPU_* */
	__u64 reserved[1];
};

/*
 * The ring was found full: KVM may have overwritten entries, so the caller
 * must treat every memslot as wholly dirty.
 */
#define KVMMIG_HARVEST_VCPU_OVERFLOW	(1U << 0)

/* KVMMIG_HARVEST */
struct kvmmig_harvest {
	__u64 slots;		/* in: address of struct kvmmig_slot_bitmap[nr_slots] */
	__u64 vcpus;		/* in: address of struct kvmmig_harvest_vcpu[nr_vcpus] */
	__u32 nr_slots;		/* in */
	/* in: capacity, 0 for no per-vCPU results; out: online vCPUs */
	__u32 nr_vcpus;
	__u64 harvested;	/* out: ring entries collected */
	__u64 unmatched;	/* out: collected entries outside every bitmap */
	__u32 overflows;	/* out: vCPUs with KVMMIG_HARVEST_VCPU_OVERFLOW */
	__u32 flags;		/* in: must be 0 */
	__u64 reserved[4];
};

/* Per-vCPU statistics of KVMMIG_VCPU_STATS. */
struct kvmmig_vcpu_stats {
	__u32 vcpu;		/* index (0..nr_vcpus-1) */
	__u32 vcpu_id;		/* KVM's vcpu_id */
	__u64 dirty_pages;	/* pages dirtied since attach (ring pushes, or
				 * first marks since the last log collection) */
	__u64 dirty_rate;	/* pages per second over the last window */
	__u64 run_ns;		/* time in guest mode (kvm_entry to kvm_exit) */
	__u64 throttle_ns;	/* time slept by the throttle */
	__u64 throttle_sleeps;	/* number of throttle sleeps */
	__u64 ring_full_exits;	/* KVM_EXIT_DIRTY_RING_FULL exits */
	__u64 exits;		/* kvm_exit events */
	__u64 dirty_limit;	/* limit in force, pages per second (0: none) */
	__u32 cpu_throttle;	/* limit in force, percent (0: none) */
	__u32 ring_quota;	/* limit in force, pages (0: none) */
	__u32 flags;		/* KVMMIG_VCPU_F_* */
	__u32 pad;
	__u64 reserved[4];
};

#define KVMMIG_VCPU_F_IN_GUEST		(1U << 0)	/* between kvm_entry and kvm_exit */
#define KVMMIG_VCPU_F_SLEEP_PENDING	(1U << 1)	/* a throttle sleep is queued */
#define KVMMIG_VCPU_F_OVER_LIMIT	(1U << 2)	/* held at its dirty limit last window */

/* KVMMIG_VCPU_STATS */
struct kvmmig_stats {
	__u64 vcpus;		/* in: address of struct kvmmig_vcpu_stats[nr_vcpus] */
	__u32 nr_vcpus;		/* in: capacity; out: online vCPUs */
	__u32 pad;
	__u64 window_ns;	/* out: length of the rate window */
	__u64 timestamp_ns;	/* out: CLOCK_MONOTONIC of the snapshot */
	__u32 flags;		/* in: must be 0 */
	__u32 pad2;
	__u64 reserved[4];
};

/* Which throttles a struct kvmmig_throttle sets (in) or has in force (out). */
#define KVMMIG_THROTTLE_DIRTY_LIMIT	(1U << 0)
#define KVMMIG_THROTTLE_CPU		(1U << 1)
#define KVMMIG_THROTTLE_RING_QUOTA	(1U << 2)
#define KVMMIG_THROTTLE_ALL		(KVMMIG_THROTTLE_DIRTY_LIMIT | \
					 KVMMIG_THROTTLE_CPU | \
					 KVMMIG_THROTTLE_RING_QUOTA)

#define KVMMIG_DIRTY_LIMIT_MAX		(1ULL << 32)	/* pages per second */
#define KVMMIG_CPU_THROTTLE_MAX		99		/* percent */

/* KVMMIG_SET_THROTTLE / KVMMIG_GET_THROTTLE */
struct kvmmig_throttle {
	__u32 vcpu;		/* index, or KVMMIG_VCPU_ALL (SET only) */
	/* SET in: KVMMIG_THROTTLE_* to apply; GET out: the throttles in force */
	__u32 set;
	__u64 dirty_limit;	/* pages per second, 0: off */
	__u32 cpu_throttle;	/* percent 0..99, 0: off */
	__u32 ring_quota;	/* pages before KVM_EXIT_DIRTY_RING_FULL, 0: off */
	__u32 flags;		/* in: must be 0 */
	__u32 pad;
	__u64 reserved[4];
};

/*
 * Generic netlink family KVMMIG_GENL_NAME.  Commands (requests):
 *   GET_SESSION   doit with SESSION_ID, or dump: one message per session
 *                 (SESSION_ID, STATE, PID, VM_PID, NR_VCPUS, RING_ENTRIES,
 *                 WINDOW_NS).
 *   GET_STATS     dump, optionally filtered by SESSION_ID: one message per
 *                 vCPU (SESSION_ID, VCPU, VCPU_ID, DIRTY_PAGES, DIRTY_RATE,
 *                 RUN_NS, THROTTLE_NS, THROTTLE_SLEEPS, RING_FULL_EXITS,
 *                 EXITS, DIRTY_LIMIT, CPU_THROTTLE, RING_QUOTA, VCPU_FLAGS,
 *                 WINDOW_NS).
 *   SET_THROTTLE  doit, CAP_NET_ADMIN: SESSION_ID, VCPU (index or
 *                 KVMMIG_VCPU_ALL), THROTTLE_SET and the values it names;
 *                 the same rules as KVMMIG_SET_THROTTLE.
 * Events, multicast to group KVMMIG_GENL_MCGRP_EVENTS:
 *   EVENT_ATTACHED        SESSION_ID, PID, VM_PID, NR_VCPUS
 *   EVENT_THROTTLE        SESSION_ID, VCPU, THROTTLE_SET, DIRTY_LIMIT,
 *                         CPU_THROTTLE, RING_QUOTA (the values just set)
 *   EVENT_OVER_LIMIT      SESSION_ID, VCPU, DIRTY_RATE, DIRTY_LIMIT; at most
 *                         one per vCPU per event interval (module parameter)
 *   EVENT_VM_GONE         SESSION_ID: every other user of the VM let go
 *   EVENT_DETACHED        SESSION_ID, STATE
 */
#define KVMMIG_GENL_NAME		"kvmmig"
#define KVMMIG_GENL_VERSION		1
#define KVMMIG_GENL_MCGRP_EVENTS	"events"

enum kvmmig_nl_cmd {
	KVMMIG_NL_CMD_UNSPEC,
	KVMMIG_NL_CMD_GET_SESSION,
	KVMMIG_NL_CMD_GET_STATS,
	KVMMIG_NL_CMD_SET_THROTTLE,
	KVMMIG_NL_EVENT_ATTACHED,
	KVMMIG_NL_EVENT_THROTTLE,
	KVMMIG_NL_EVENT_OVER_LIMIT,
	KVMMIG_NL_EVENT_VM_GONE,
	KVMMIG_NL_EVENT_DETACHED,
	__KVMMIG_NL_CMD_MAX,
};

#define KVMMIG_NL_CMD_MAX		(__KVMMIG_NL_CMD_MAX - 1)

enum kvmmig_nl_attr {
	KVMMIG_NL_A_UNSPEC,
	KVMMIG_NL_A_PAD,
	KVMMIG_NL_A_SESSION_ID,		/* u32 */
	KVMMIG_NL_A_STATE,		/* u32, KVMMIG_STATE_* */
	KVMMIG_NL_A_PID,		/* u32, the process that attached */
	KVMMIG_NL_A_VM_PID,		/* u32, the process that created the VM */
	KVMMIG_NL_A_NR_VCPUS,		/* u32 */
	KVMMIG_NL_A_RING_ENTRIES,	/* u32 */
	KVMMIG_NL_A_WINDOW_NS,		/* u64 */
	KVMMIG_NL_A_VCPU,		/* u32, index or KVMMIG_VCPU_ALL */
	KVMMIG_NL_A_VCPU_ID,		/* u32 */
	KVMMIG_NL_A_DIRTY_PAGES,	/* u64 */
	KVMMIG_NL_A_DIRTY_RATE,		/* u64, pages per second */
	KVMMIG_NL_A_RUN_NS,		/* u64 */
	KVMMIG_NL_A_THROTTLE_NS,	/* u64 */
	KVMMIG_NL_A_THROTTLE_SLEEPS,	/* u64 */
	KVMMIG_NL_A_RING_FULL_EXITS,	/* u64 */
	KVMMIG_NL_A_EXITS,		/* u64 */
	KVMMIG_NL_A_DIRTY_LIMIT,	/* u64, pages per second */
	KVMMIG_NL_A_CPU_THROTTLE,	/* u32, percent */
	KVMMIG_NL_A_RING_QUOTA,		/* u32, pages */
	KVMMIG_NL_A_THROTTLE_SET,	/* u32, KVMMIG_THROTTLE_* */
	KVMMIG_NL_A_VCPU_FLAGS,		/* u32, KVMMIG_VCPU_F_* */
	__KVMMIG_NL_A_MAX,
};

#define KVMMIG_NL_A_MAX			(__KVMMIG_NL_A_MAX - 1)

/* KVMMIG_NL_A_STATE */
enum kvmmig_state {
	KVMMIG_STATE_ATTACHED,		/* bound to a live VM */
	KVMMIG_STATE_VM_GONE,		/* the VM lost every other user */
	KVMMIG_STATE_DETACHED,		/* KVMMIG_DETACH or close */
};

#endif /* _UAPI_LINUX_KVMMIG_H */
