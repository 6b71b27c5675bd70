/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The dirty-source backends as dirty.c sees them.
 */
#ifndef KVMMIG_DIRTY_INTERNAL_H
#define KVMMIG_DIRTY_INTERNAL_H

#include "clock.h"
#include "dirty.h"

extern const struct dirty_source_ops dirty_bitmap_ops;
extern const struct dirty_source_ops dirty_bitmap_manual_ops;
extern const struct dirty_source_ops dirty_ring_ops;
/* Set by dirty_module.c when libkvmmig is built with the module backend. */
extern const struct dirty_source_ops dirty_module_ops;

/* Default per-vCPU ring: big enough that the reaper keeps well ahead. */
#define DIRTY_RING_DEFAULT_ENTRIES	65536
#define DIRTY_REAP_DEFAULT_US		500

#endif /* KVMMIG_DIRTY_INTERNAL_H */
