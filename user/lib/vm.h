/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The built-in VMM: a KVM VM with 1-64 vCPUs in 64-bit long mode from the
 * first instruction, guest RAM in one or several memslots, guest code taken
 * from this very binary (user/lib/guest/), one thread per vCPU, ucalls, and
 * the vCPU state accessors migration needs.  A VM another VMM created can
 * be wrapped in the same struct vm with vm_adopt(), from its fds and memslot
 * layout, so that the dirty sources and the migration engine drive it too.
 * Functions return 0 or a negative errno and report what failed (ioctl name
 * and errno) through kvmmig_err(); nothing here exits.
 */
#ifndef KVMMIG_VM_H
#define KVMMIG_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest_abi.h"

#define VM_MAX_VCPUS	64
#define VM_MAX_SLOTS	32
#define VM_MAX_SLOT_ID	0x7fff		/* KVM's memslot ids of address space 0 */
#define VM_MIN_RAM	(1ULL << 20)

enum vm_backing {
	VM_BACKING_ANON,	/* private anonymous memory */
	VM_BACKING_MEMFD,	/* shared memfd (destination/snapshot friendly) */
	VM_BACKING_HUGETLB,	/* anonymous 2 MiB hugetlb pages */
};

struct vm_config {
	unsigned int nr_vcpus;		/* 1..VM_MAX_VCPUS */
	uint64_t ram_bytes;		/* guest RAM at GUEST_RAM_GPA */
	unsigned int nr_slots;		/* RAM split into this many memslots */
	enum vm_backing backing;
	uint32_t ring_entries;		/* per-vCPU dirty ring, 0 = none */
	bool manual_protect;		/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
	bool initially_set;		/* ... with KVM_DIRTY_LOG_INITIALLY_SET */
	struct guest_shared guest;	/* workload parameters */
};

struct vm_slot {
	uint32_t id;
	uint32_t flags;			/* KVM_MEM_* currently set */
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

struct vm;

/* Called from the vCPU thread on KVM_EXIT_DIRTY_RING_FULL; returns 0 to go on. */
typedef int (*vcpu_ring_full_fn)(void *opaque, unsigned int vcpu);
/* Called from the vCPU thread on UCALL_SYNC; returns 0 to go on. */
typedef int (*vcpu_sync_fn)(void *opaque, unsigned int vcpu, const struct ucall *uc);

enum vcpu_state {
	VCPU_CREATED,
	VCPU_RUNNING,
	VCPU_PAUSED,
	VCPU_DONE,	/* guest sent UCALL_DONE */
	VCPU_FAILED,	/* guest assert, unexpected exit or ioctl error */
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_dirty_gfn *ring;	/* mmapped dirty ring, or NULL */
	/*
	 * Where the ring's harvest stopped, for the next dirty source: KVM's
	 * own indices run on from one migration to the next (dirty_ring.c).
	 */
	uint32_t ring_fetch, ring_reset;
	bool ring_suspect;
	pthread_t thread;
	bool thread_started;
	volatile int state;		/* enum vcpu_state */
	volatile bool pause_req;
	volatile bool exit_req;		/* leave the run loop (vm_stop) */
	uint64_t ring_full_exits;
	uint64_t exits;
	/* CPU throttle by the VMM: run 10 ms, then sleep pct/(100-pct) x 10 ms */
	volatile unsigned int throttle_pct;
	volatile bool sleep_req;	/* the throttle thread asks for a sleep */
	uint64_t sleep_ns;		/* ... of this long */
	uint64_t run_since_ns;		/* when the vCPU last woke up */
	uint64_t throttled_ns;		/* time slept by throttling, in total */
	struct guest_vcpu_area *area;	/* host view of the guest's area */
	char error[256];		/* why the vCPU failed */
};

/*
 * What an adopted VM's VMM does for libkvmmig; 0 or a negative errno.
 * pause returns with every vCPU out of KVM_RUN, and keeps them out (and
 * its devices from writing guest memory) until resume.  stop (optional)
 * ends the guest for good after a migration; without it the guest is left
 * paused.  Called from the thread that called vm_pause() etc.
 */
struct vm_adopt_ops {
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	int (*stop)(void *opaque);
};

struct vm {
	int kvm_fd;
	int fd;
	int named_fd;			/* the fd KVM named the VM after ("<pid>-<fd>" in
					   debugfs, BPF's key): fd, or the VMM's if adopted */
	struct vm_config cfg;
	unsigned int nr_slots;		/* system slot + RAM slots */
	struct vm_slot slots[VM_MAX_SLOTS];
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct guest_shared *shared;	/* host view of the guest's parameters */
	uint64_t entry_rip;
	uint64_t tsc_khz;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* vCPU state changes */
	unsigned int nr_paused;
	pthread_t throttle_thread;
	bool throttle_running;
	volatile bool throttle_stop;
	pthread_mutex_t cb_lock;	/* ring_full and ring_opaque vs their callers */
	vcpu_ring_full_fn ring_full;
	void *ring_opaque;
	vcpu_sync_fn on_sync;
	void *cb_opaque;		/* for on_sync */
	bool adopted;			/* made by vm_adopt(): another VMM runs it */
	struct vm_adopt_ops adopt_ops;	/* the VMM's, copied */
	void *adopt_opaque;		/* for adopt_ops */
};

int vm_create(const struct vm_config *cfg, struct vm **out);
/* The most guest RAM vm_create() accepts: this host's RAM and swap (0: unknown). */
uint64_t vm_host_ram_bytes(void);
void vm_destroy(struct vm *vm);

/*
 * A VM of another VMM, in the VMM's own process: its VM fd, every vCPU fd
 * (vcpu_fds[i] is KVM vCPU id i), every memslot with its host address,
 * and the dirty-logging capabilities the VMM enabled on it.  libkvmmig
 * keeps duplicates of the fds (the caller's stay the caller's) and never
 * unmaps guest memory.  See Documentation/migration.rst.
 */
struct vm_adopt_args {
	int vm_fd;
	unsigned int nr_vcpus;			/* 1..VM_MAX_VCPUS */
	const int *vcpu_fds;
	unsigned int nr_slots;			/* 1..VM_MAX_SLOTS */
	const struct vm_slot *slots;		/* flags: 0 or KVM_MEM_READONLY */
	uint32_t ring_entries;			/* KVM_CAP_DIRTY_LOG_RING size, 0 = none */
	bool manual_protect;			/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on */
	const struct vm_adopt_ops *ops;		/* copied; pause and resume required */
	void *opaque;				/* for ops */
};

/*
 * Check @a and wrap the VM in a struct vm (free it with vm_destroy()).
 * vm_pause(), vm_resume() and vm_stop() call the VMM's ops; vm_start(),
 * vm_wait_done() and vm_set_throttle() (but for 0%) fail with -EOPNOTSUPP;
 * the dirty sources, vcpu_save_state() and mig_source_run() work.
 */
int vm_adopt(const struct vm_adopt_args *a, struct vm **out);
/*
 * An adopted VM's VMM calls this on KVM_EXIT_DIRTY_RING_FULL, in the thread
 * of vCPU @vcpu, before its next KVM_RUN: it runs the dirty source's
 * handler (or recycles the ring when nobody tracks).  0 to go on.
 */
int vm_adopted_ring_full(struct vm *vm, unsigned int vcpu);

/* Turn KVM_MEM_LOG_DIRTY_PAGES on or off for every memslot. */
int vm_set_dirty_logging(struct vm *vm, bool on);

/*
 * Install (or with NULL remove) the handler of dirty-ring-full exits.  Once
 * this returns, no vCPU thread runs the old handler any more.  Without a
 * handler a full ring is recycled: nobody is tracking dirty pages.
 */
void vm_set_ring_full_handler(struct vm *vm, vcpu_ring_full_fn fn, void *opaque);

/* On an adopted VM pause, resume and stop are the VMM's ops (vm_adopt()). */
int vm_start(struct vm *vm);			/* start every vCPU thread */
int vm_pause(struct vm *vm);			/* all vCPUs out of KVM_RUN */
int vm_resume(struct vm *vm);
/* Ask the guest to stop (shared->stop), then join every vCPU thread. */
int vm_stop(struct vm *vm);
/* Wait until every vCPU is DONE or FAILED; -ETIMEDOUT after timeout_ms. */
int vm_wait_done(struct vm *vm, unsigned int timeout_ms);
/*
 * CPU-throttle vCPU @idx (or every vCPU when @idx is -1) to @pct percent,
 * 0-99, QEMU's meaning: after each 10 ms of running the vCPU sleeps
 * pct/(100-pct) x 10 ms in its own thread, between two KVM_RUNs.  A
 * throttle thread kicks vCPUs out of KVM_RUN when their slice is up.
 * -EOPNOTSUPP on an adopted VM, whose vCPU threads are not ours (0% is a
 * no-op there: nothing to lift).
 */
int vm_set_throttle(struct vm *vm, int idx, unsigned int pct);
unsigned int vm_max_throttle(struct vm *vm);

/* First failed vCPU's message, or NULL. */
const char *vm_failure(struct vm *vm);

/* Host address of a guest-physical range, or NULL if not inside a slot. */
void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);
/* The first RAM slot index (slot 0 is the system slot). */
static inline unsigned int vm_first_ram_slot(void) { return 1; }

/*
 * vCPU state for migration: everything KVM needs to resume the vCPU
 * elsewhere (the VM must be paused).
 */
struct vcpu_state_blob {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events events;
	uint32_t nr_msrs;
	uint32_t pad;
	struct kvm_msr_entry msrs[16];
};

int vcpu_save_state(struct vcpu *vcpu, struct vcpu_state_blob *st);
int vcpu_load_state(struct vcpu *vcpu, const struct vcpu_state_blob *st);

/*
 * With the guest paused: does memory written by the incr workload hold one
 * value per vCPU slice with at most one edge one less (QEMU migration-test)?
 * 0, or -EIO with a message naming the first bad page.
 */
int workload_check_incr(struct vm *vm, uint64_t *edges);

/* Workload names for the command line: "incr", "random", ... */
const char *workload_name(enum guest_workload w);
/*
 * A checked copy of the built-in guest's parameters (user/lib/guest_params.c):
 * guest memory is untrusted, so every host-side use of vm->shared beyond
 * `stop` goes through this.  -EBADMSG names a field that does not fit this
 * VM's own configuration; -EOPNOTSUPP for an adopted VM.
 */
int vm_guest_params(const struct vm *vm, struct guest_shared *out);
int workload_parse(const char *name);	/* -EINVAL if unknown */

#endif /* KVMMIG_VM_H */
