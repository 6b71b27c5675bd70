/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The built-in VMM: a KVM VM with 1-64 vCPUs in 64-bit long mode from the
 * first instruction, guest RAM in one or several memslots, guest code taken
 * from this very binary (user/vmm/guest/), one thread per vCPU, ucalls, and
 * the vCPU state accessors migration needs.  It is one user of libkvmmig
 * like any other VMM: vm_create() wraps the VM in a struct kvmmig_vm (vm->kv)
 * with kvmmig_vm_new(), whose ops are this VMM's pause, resume, stop, state
 * and throttle (vm_kvmmig.c), and the vCPU threads forward ring-full exits
 * to it.  Functions return 0 or a negative errno and report what failed
 * (ioctl name and errno) through kvmmig_err(); nothing here exits.
 */
#ifndef KVMMIG_VM_H
#define KVMMIG_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dirty.h"
#include "guest_abi.h"
#include "kvmmig_vm.h"
#include "migrate.h"

/* The guest's page size is the stream's: one definition, checked. */
_Static_assert(GUEST_PAGE_SIZE == MIG_PAGE_SIZE, "guest and stream page sizes differ");

#define VM_MAX_VCPUS	MIG_MAX_VCPUS
#define VM_MAX_SLOTS	MIG_MAX_SLOTS
#define VM_MIN_RAM	(1ULL << 20)

enum vm_backing {
	VM_BACKING_ANON,	/* private anonymous memory */
	VM_BACKING_MEMFD,	/* shared memfd (destination/snapshot friendly) */
	VM_BACKING_HUGETLB,	/* anonymous 2 MiB hugetlb pages */
	VM_BACKING_THP,		/* anonymous, 2 MiB aligned, transparent huge pages */
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
	pthread_t thread;
	bool thread_started;
	/* state and the *_req flags: load_acquire()/store_release() only */
	int state;			/* enum vcpu_state */
	bool pause_req;
	bool exit_req;			/* leave the run loop (vm_stop) */
	uint64_t exits;
	/* CPU throttle by the VMM: run 10 ms, then sleep pct/(100-pct) x 10 ms */
	unsigned int throttle_pct;
	bool sleep_req;			/* the throttle thread asks for a sleep */
	uint64_t sleep_ns;		/* ... of this long */
	uint64_t run_since_ns;		/* when the vCPU last woke up */
	uint64_t throttled_ns;		/* time slept by throttling, in total */
	struct guest_vcpu_area *area;	/* host view of the guest's area */
	char error[256];		/* why the vCPU failed */
};

struct vm {
	int kvm_fd;
	int fd;
	struct vm_config cfg;
	unsigned int nr_slots;		/* system slot + RAM slots */
	struct kvmmig_slot slots[VM_MAX_SLOTS];	/* as registered with KVM */
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct guest_shared *shared;	/* host view of the guest's parameters */
	uint64_t entry_rip;
	uint64_t tsc_khz;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* vCPU state changes */
	unsigned int nr_paused;
	pthread_t throttle_thread;
	bool throttle_running;
	bool throttle_stop;		/* load_acquire()/store_release() */
	pthread_mutex_t cb_lock;	/* ring_full and ring_opaque vs their callers */
	vcpu_ring_full_fn ring_full;	/* a test's own forwarding, else vm->kv's */
	void *ring_opaque;
	vcpu_sync_fn on_sync;
	void *cb_opaque;		/* for on_sync */
	struct kvmmig_vm *kv;		/* this VM as libkvmmig sees it */
};

int vm_create(const struct vm_config *cfg, struct vm **out);
/* The most guest RAM vm_create() accepts: this host's RAM and swap (0: unknown). */
uint64_t vm_host_ram_bytes(void);
void vm_destroy(struct vm *vm);

/*
 * The capabilities a dirty backend needs (ring size, manual protect) put
 * into @cfg; call before vm_create().  DIRTY_AUTO picks the best the host
 * offers.  Returns the backend, or -errno (dirty_prepare_caps()).
 */
int dirty_prepare_config(enum dirty_backend backend, struct vm_config *cfg);

/*
 * Send the vCPU threads' ring-full exits to @fn instead of vm->kv (a test
 * playing a VMM that forwards them elsewhere); NULL restores vm->kv.  Once
 * this returns, no vCPU thread runs the old handler any more.
 */
void vm_set_ring_full_handler(struct vm *vm, vcpu_ring_full_fn fn, void *opaque);

/*
 * The built-in VMM's side of the destination (mig_dest_opts.create_vm and
 * release_vm, vmm_opaque a struct vm ** that holds the guest meanwhile): a
 * guest laid out as @cfg says, from this very build, and its end.
 */
int vm_create_for_stream(void *vmm_opaque, const struct mig_config *cfg, struct kvmmig_vm **kv);
void vm_release_for_stream(void *vmm_opaque, struct kvmmig_vm *kv, bool running);
/*
 * The backing of the guests vm_create_for_stream() makes from now on
 * (VM_BACKING_ANON until set): a process-wide choice of the command that
 * receives, set before the stream starts.
 */
void vm_set_stream_backing(enum vm_backing backing);

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
 */
int vm_set_throttle(struct vm *vm, int idx, unsigned int pct);
unsigned int vm_max_throttle(struct vm *vm);

/* Writes (iterations for compute) of every vCPU of the guest so far. */
uint64_t vm_loops(const struct vm *vm);

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
 * A checked copy of the built-in guest's parameters (guest_params.c):
 * guest memory is untrusted, so every host-side use of vm->shared beyond
 * `stop` goes through this.  -EBADMSG names a field that does not fit this
 * VM's own configuration.
 */
int vm_guest_params(const struct vm *vm, struct guest_shared *out);
int workload_parse(const char *name);	/* -EINVAL if unknown */

#endif /* KVMMIG_VM_H */
