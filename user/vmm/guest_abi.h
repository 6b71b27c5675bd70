/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The layout shared by host and guest code of the built-in VMM: where things
 * live in guest-physical memory, the workload parameters the host writes for
 * the guest, the per-vCPU area (counters the host reads, the ucall block the
 * guest fills) and the ucall commands.  Guest code is freestanding, so this
 * header may include nothing but <stdint.h>.
 */
#ifndef KVMMIG_GUEST_ABI_H
#define KVMMIG_GUEST_ABI_H

#include <stdint.h>

#define GUEST_PAGE_SIZE		4096ULL
#define GUEST_PAGE_SHIFT	12

/*
 * Guest-physical layout.  Slot 0 ("system") starts at 0 and holds the GDT,
 * the shared parameters, the page tables, the binary's own segments (loaded
 * at their link addresses, which is why binaries are built non-PIE) and
 * the per-vCPU areas.  Guest RAM proper starts at 4 GiB and may be split
 * into several memslots.  Everything is identity-mapped with 2 MiB pages.
 */
#define GUEST_GDT_GPA		0x1000ULL
#define GUEST_SHARED_GPA	0x2000ULL
#define GUEST_PT_GPA		0x10000ULL	/* PML4, PDPT, then PDs */
#define GUEST_PT_END		0x100000ULL
#define GUEST_RAM_GPA		(4ULL << 30)
#define GUEST_VCPU_AREA_SIZE	(64ULL << 10)

#define GUEST_CODE_SEL		0x08
#define GUEST_DATA_SEL		0x10

/* I/O port the guest writes to for a ucall; the value is ignored. */
#define UCALL_PORT		0xe7

enum ucall_cmd {
	UCALL_NONE,
	UCALL_SYNC,	/* args[0]: stage; host may inspect and resume */
	UCALL_DONE,	/* the workload finished; the vCPU stops */
	UCALL_ABORT,	/* a guest assert failed: file, line, msg, args */
	UCALL_IDLE,	/* nothing to do: the host parks the vCPU for a tick */
};

#define UCALL_FILE_LEN	64
#define UCALL_MSG_LEN	160

struct ucall {
	uint64_t cmd;
	uint64_t line;
	uint64_t args[4];
	char file[UCALL_FILE_LEN];
	char msg[UCALL_MSG_LEN];
};

enum guest_workload {
	WORKLOAD_IDLE,		/* UCALL_IDLE until stopped; writes only its ucall block */
	WORKLOAD_INCR,		/* bump byte 0 of every page, pass after pass */
	WORKLOAD_RANDOM,	/* write the host's iteration into random pages of wss_pages */
	WORKLOAD_RATE,		/* dirty pages_per_sec pages per second over wss_pages */
	WORKLOAD_COMPUTE,	/* no writes: count loop iterations */
	WORKLOAD_SEQ,		/* sequential writes over wss_pages */
	WORKLOAD_RAND,		/* random writes over wss_pages */
	WORKLOAD_ASSERT,	/* fail a guest assert on purpose (tests) */
	NR_WORKLOADS,
};

/*
 * Written by the host before the vCPUs start (and `iteration`, `stop`
 * while they run).  Each vCPU works on its own slice of [mem_gpa,
 * mem_gpa + mem_pages * 4096): slices never overlap, so a page's value
 * always comes from one writer.
 */
struct guest_shared {
	uint64_t workload;
	uint64_t nr_vcpus;
	uint64_t mem_gpa;
	uint64_t mem_pages;
	uint64_t wss_pages;	/* random/seq/rand/rate: working set per vCPU (0: slice) */
	uint64_t pages_per_sec;	/* rate: per vCPU */
	uint64_t tsc_khz;
	uint64_t sync_every;	/* incr/seq/rand: ucall SYNC every N passes (0: never) */
	uint64_t max_passes;	/* stop after this many passes (0: run until stopped) */
	uint64_t compute_mask;	/* these vCPUs run `compute` whatever the workload */
	volatile uint64_t iteration;	/* random: value to write */
	volatile uint64_t stop;		/* host asks every vCPU to finish */
};

/* Per-vCPU area at guest_vcpu_area_gpa(): counters first, stack at the top. */
struct guest_vcpu_area {
	volatile uint64_t loops;	/* compute: iterations; others: writes */
	volatile uint64_t passes;	/* complete passes over the slice */
	volatile uint64_t started;	/* set once by the guest on entry */
	uint64_t seed;			/* random/rand: PRNG state (host seeds) */
	struct ucall uc;
};

#endif /* KVMMIG_GUEST_ABI_H */
