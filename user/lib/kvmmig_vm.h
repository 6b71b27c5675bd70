/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The VM as libkvmmig sees it, whoever runs it: the VM fd, its memslots,
 * the vCPU fds with their dirty rings, the dirty-logging capabilities the
 * VMM enabled, and an ops table through which the VMM pauses, resumes and
 * stops its vCPUs, saves and loads their state (an opaque blob of the
 * VMM's size) and, if it can, throttles them.  Every VMM, the built-in one
 * (user/vmm/) included, wraps its VM with kvmmig_vm_new() from its fds;
 * the dirty sources, the sync engine, the throttle policies, the stream and
 * both migration sides take nothing else.  Limits and the page size are
 * the stream's (stream.h).  Functions return 0 or a negative errno and say
 * what failed with kvmmig_err().
 */
#ifndef KVMMIG_KVMMIG_VM_H
#define KVMMIG_KVMMIG_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

#define KVMMIG_MAX_SLOT_ID	0x7fff	/* KVM's memslot ids of address space 0 */

struct kvmmig_slot {
	uint32_t id;			/* the VMM's KVM memslot id */
	uint32_t flags;			/* KVM_MEM_* currently set */
	uint64_t gpa;
	uint64_t size;			/* bytes, a multiple of MIG_PAGE_SIZE */
	void *hva;			/* the VMM's mapping, never unmapped here */
	bool zeroed;			/* holds nothing but zeros (fresh memory): a
					   receiver need not write zero pages to it */
};

struct kvmmig_vcpu {
	int fd;				/* our duplicate of the VMM's vCPU fd */
	struct kvm_dirty_gfn *ring;	/* mmapped dirty ring, or NULL */
	/*
	 * Where the ring's harvest stopped, for the next dirty source: KVM's
	 * own indices run on from one migration to the next (dirty_ring.c).
	 * Under the VM's hook_lock while no dirty source takes ring-full exits.
	 */
	uint32_t ring_fetch, ring_reset;
	bool ring_suspect;
	/* Nobody tracking: the last ring-full exit recycled nothing (at ring_gen). */
	bool ring_stalled;
	unsigned int ring_stalled_gen;
	uint64_t ring_full_exits;	/* forwarded by the VMM; atomic */
};

/*
 * What the VMM does for libkvmmig; each returns 0 or a negative errno (a
 * positive return is taken as -EIO).  Called from the migration thread.
 *
 * pause: every vCPU out of KVM_RUN, and kept out (devices too must stop
 *   writing guest memory) until resume.
 * resume: let the vCPUs run; on a destination's VM this is the first run.
 * stop: optional; end the guest for good after it migrated away.  Without
 *   it the guest is left paused.
 * save_state, load_state: vCPU @vcpu's state, a blob of state_size bytes
 *   (1..MIG_MAX_VCPU_STATE) that only the VMM interprets; the VM is paused
 *   (on a destination, not yet run).
 * set_throttle: optional; CPU-throttle vCPU @vcpu (-1: all) to @pct percent
 *   (0-99) in QEMU's sense: after each 10 ms of running, sleep
 *   pct/(100-pct) x 10 ms.  Without it only the module can throttle.
 */
struct kvmmig_vm_ops {
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	int (*stop)(void *opaque);
	uint32_t state_size;
	int (*save_state)(void *opaque, unsigned int vcpu, void *state);
	int (*load_state)(void *opaque, unsigned int vcpu, const void *state);
	int (*set_throttle)(void *opaque, int vcpu, unsigned int pct);
};

/* The dirty source's handler of ring-full exits (kvmmig_vm_ring_full()). */
typedef int (*kvmmig_ring_full_fn)(void *opaque, unsigned int vcpu);

struct kvmmig_vm {
	int fd;				/* our duplicate of the VM fd */
	int named_fd;			/* the VMM's VM fd: KVM named the VM after it
					   ("<pid>-<fd>" in debugfs, BPF's key) */
	unsigned int nr_slots;
	struct kvmmig_slot slots[MIG_MAX_SLOTS];
	unsigned int nr_vcpus;		/* vcpus[i] is KVM vCPU id i */
	struct kvmmig_vcpu vcpus[MIG_MAX_VCPUS];
	uint32_t ring_entries;		/* per-vCPU dirty ring, 0 = none */
	bool manual_protect;		/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on */
	struct kvmmig_vm_ops ops;	/* the VMM's, copied */
	void *opaque;			/* for ops */
	unsigned int throttle_pct[MIG_MAX_VCPUS];	/* as last set through ops */

	/*
	 * ring_full and ring_opaque vs their callers; with no handler, the
	 * rings themselves (the VM recycles them).
	 */
	pthread_mutex_t hook_lock;
	kvmmig_ring_full_fn ring_full;
	void *ring_opaque;
	unsigned int ring_gen;		/* handlers set so far */
};

/*
 * A VM in the calling process: its VM fd, every vCPU fd (vcpu_fds[i] is
 * KVM vCPU id i), every memslot with its host address, and the dirty-
 * logging capabilities the VMM enabled on it.  libkvmmig keeps duplicates
 * of the fds (the caller's stay the caller's) and never unmaps guest
 * memory.  See Documentation/migration.rst.
 */
struct kvmmig_vm_args {
	int vm_fd;
	unsigned int nr_vcpus;			/* 1..MIG_MAX_VCPUS */
	const int *vcpu_fds;
	unsigned int nr_slots;			/* 1..MIG_MAX_SLOTS */
	const struct kvmmig_slot *slots;	/* flags: 0 or KVM_MEM_READONLY */
	uint32_t ring_entries;			/* KVM_CAP_DIRTY_LOG_RING size, 0 = none */
	bool manual_protect;			/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on */
	const struct kvmmig_vm_ops *ops;	/* copied; pause, resume and state required */
	void *opaque;				/* for ops */
};

/* Check @a (every field, and what the fds really are) and wrap the VM. */
int kvmmig_vm_new(const struct kvmmig_vm_args *a, struct kvmmig_vm **out);
/* Close our fds and unmap the rings; the VMM's fds and memory stay. */
void kvmmig_vm_free(struct kvmmig_vm *vm);
/* A dirty ring of @entries entries is one KVM accepts (0: none). */
int kvmmig_check_ring_entries(uint32_t entries);
/* KVM_SET_USER_MEMORY_REGION of @s on @vm_fd, the failure named. */
int kvmmig_set_memslot(int vm_fd, const struct kvmmig_slot *s);

/*
 * The VMM calls this on KVM_EXIT_DIRTY_RING_FULL, in the thread of vCPU
 * @vcpu, before its next KVM_RUN: it runs the dirty source's handler, or
 * recycles the ring when nobody tracks.  0 to go on.
 */
int kvmmig_vm_ring_full(struct kvmmig_vm *vm, unsigned int vcpu);

/* ---- libkvmmig's own use ---- */

/*
 * Install (or with NULL remove) the handler of ring-full exits.  Once this
 * returns, no vCPU thread runs the old handler any more.
 */
void kvmmig_vm_set_ring_full_handler(struct kvmmig_vm *vm, kvmmig_ring_full_fn fn,
				     void *opaque);
/* Turn KVM_MEM_LOG_DIRTY_PAGES on or off for every memslot. */
int kvmmig_vm_set_dirty_logging(struct kvmmig_vm *vm, bool on);

/* The VMM's ops, with a failure named; stop without an op leaves the guest paused. */
int kvmmig_vm_pause(struct kvmmig_vm *vm);
int kvmmig_vm_resume(struct kvmmig_vm *vm);
int kvmmig_vm_stop(struct kvmmig_vm *vm);
int kvmmig_vm_save_state(struct kvmmig_vm *vm, unsigned int vcpu, void *state);
int kvmmig_vm_load_state(struct kvmmig_vm *vm, unsigned int vcpu, const void *state);
/*
 * CPU throttle through the VMM: -EOPNOTSUPP when it has no set_throttle
 * (0% is then a no-op: nothing was throttled).
 */
int kvmmig_vm_set_throttle(struct kvmmig_vm *vm, int vcpu, unsigned int pct);
bool kvmmig_vm_can_throttle(const struct kvmmig_vm *vm);
/* The highest percentage set through kvmmig_vm_set_throttle(). */
unsigned int kvmmig_vm_max_throttle(const struct kvmmig_vm *vm);

/*
 * Does @vm have @cfg's layout (vCPUs, slots at their addresses and sizes,
 * state size)?  0, or -EINVAL naming the first difference.
 */
int kvmmig_vm_check_config(const struct kvmmig_vm *vm, const struct mig_config *cfg);
/* The configuration describing @vm, as CONFIG carries it (calloc'd, @len bytes), or NULL. */
struct mig_config *mig_config_of(const struct kvmmig_vm *vm, size_t *len);
/* The first slot from which on every slot is marked zeroed (nr_slots: none). */
unsigned int kvmmig_vm_fresh_from(const struct kvmmig_vm *vm);

static inline uint64_t kvmmig_slot_pages(const struct kvmmig_slot *s)
{
	return s->size / MIG_PAGE_SIZE;
}

#endif /* KVMMIG_KVMMIG_VM_H */
