/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libkvmmig's own helpers for restoring a snapshot (not an API), shared by
 * the eager restore (snapshot_load.c, and snapshot_read.c for several
 * reader threads) and the lazy one (snapshot_lazy.c).  All of them read
 * through the chain reader (snap_chain_*() in snapshot.h), which checks
 * every block before anything uses it and may be called from any thread.
 */
#ifndef KVMMIG_SNAPSHOT_READ_H
#define KVMMIG_SNAPSHOT_READ_H

#include <signal.h>
#include <stdint.h>

#include "snapshot.h"

/* The VM @create_vm makes for @c's configuration, checked against it. */
int snap_make_vm(struct snap_chain *c,
		 int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
				  struct kvmmig_vm **vm),
		 void *vmm_opaque, struct kvmmig_vm **vm);
/* Block @block of @slot read and checked into @buf, then copied into @vm. */
int snap_load_block(struct snap_chain *c, struct kvmmig_vm *vm, uint8_t *buf, unsigned int slot,
		    uint64_t block);
/* The newest file's vCPU states, checked and loaded through the VMM. */
int snap_load_vcpus(struct snap_chain *c, struct kvmmig_vm *vm);

/* 1..SNAP_MAX_READERS, or -EINVAL named. */
int snap_check_readers(unsigned int readers);
/* Every block into @vm with @readers threads (snapshot_read.c). */
int snap_load_parallel(struct snap_chain *c, struct kvmmig_vm *vm, unsigned int readers,
		       const volatile sig_atomic_t *cancel);

#endif /* KVMMIG_SNAPSHOT_READ_H */
