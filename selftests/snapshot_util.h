/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared by the snapshot tests and benchmark (selftests/snapshot_*.c): a
 * running built-in guest, whether it makes progress, and a `paused` hook
 * (struct snap_opts) that copies all of guest RAM aside at the pause, makes
 * a random guest write 8 instead of 7 from then on, and can pull a cancel
 * flag or signal a process (a receiver to kill or stop) right there.
 */
#ifndef KVMMIG_SNAPSHOT_UTIL_H
#define KVMMIG_SNAPSHOT_UTIL_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cancel.h"
#include "mig_test_util.h"
#include "snapshot.h"

#define GUEST_RAM	(32ULL << 20)

static inline void quiet_log(int level, const char *msg)
{
}

/* A running guest of @workload, @ram bytes in @nr_slots RAM slots, on @nr_vcpus. */
static inline struct vm *snap_guest(enum guest_workload workload, uint64_t ram,
				    unsigned int nr_vcpus, unsigned int nr_slots)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = ram,
		.nr_slots = nr_slots,
		.guest.workload = workload,
		.guest.iteration = 7,
	};
	struct vm *vm;

	if (vm_create(&cfg, &vm))
		return NULL;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

/* A running guest of @workload on 2 vCPUs (random writes 7 everywhere). */
static inline struct vm *running_guest(enum guest_workload workload)
{
	return snap_guest(workload, GUEST_RAM, 2, 2);
}

/* Does the guest make progress within GUEST_PROGRESS_S? */
static inline bool guest_moves(struct vm *vm)
{
	uint64_t a = guest_loops(vm);
	unsigned int i;

	for (i = 0; i < GUEST_PROGRESS_S * 20 && guest_loops(vm) == a && !vm_failure(vm); i++)
		usleep(50000);
	return guest_loops(vm) != a && !vm_failure(vm);
}

static inline bool file_exists(const char *path)
{
	struct stat st;

	return !stat(path, &st);
}

/*
 * RAM as it was at the pause, slot by slot; a random guest (@vm) writes 8
 * from then on instead of 7; and a cancel to pull, or a process to signal,
 * from there.
 */
struct at_pause {
	struct vm *vm;
	uint8_t *copy[MIG_MAX_SLOTS];
	volatile sig_atomic_t cancel;
	bool cancel_at_pause;
	pid_t kill_pid;		/* sent kill_sig at the pause when set (reaped if SIGKILL) */
	int kill_sig;
};

static inline void copy_at_pause(void *opaque, struct kvmmig_vm *kv)
{
	struct at_pause *p = opaque;
	unsigned int i;

	/* Set first: the snapshot holds RAM as it is when this returns. */
	if (p->vm)
		p->vm->shared->iteration = 8;
	for (i = 0; i < kv->nr_slots; i++) {
		p->copy[i] = malloc(kv->slots[i].size);
		if (p->copy[i])
			memcpy(p->copy[i], kv->slots[i].hva, kv->slots[i].size);
	}
	if (p->cancel_at_pause)
		kvmmig_cancel_set(&p->cancel, 1);
	if (p->kill_pid) {
		kill(p->kill_pid, p->kill_sig);
		if (p->kill_sig == SIGKILL)
			waitpid(p->kill_pid, NULL, 0);
	}
}

static inline void at_pause_free(struct at_pause *p)
{
	unsigned int i;

	for (i = 0; i < MIG_MAX_SLOTS; i++)
		free(p->copy[i]);
}

#endif /* KVMMIG_SNAPSHOT_UTIL_H */
