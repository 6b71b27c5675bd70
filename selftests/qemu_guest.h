/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The memory layout shared by the dirtying QEMU guest (qemu_dirty_bios.S, a
 * 64 KiB -bios image) and the tests that run it (qemu_util.h).  The guest's
 * RAM is a memory-backend-file the test maps too, so both talk through
 * guest memory: the test writes the parameters into the control page before
 * QEMU starts (and may change the pacing while it runs), and each vCPU
 * publishes its own count of pages written, its pass and its memory-check
 * results in a status page of its own; a vCPU the test asks to compute
 * instead counts rounds of an empty loop there, a speed to measure.  Offsets are guest physical
 * addresses, which are also offsets into the backing file (pc machine, RAM
 * below 4 GiB at its own address).  Included from assembly too.
 */
#ifndef KVMMIG_QEMU_GUEST_H
#define KVMMIG_QEMU_GUEST_H

#define QG_PAGE_SIZE		4096
#define QG_MAX_VCPUS		8

/* The control page, written by the test. */
#define QG_CTL			0x1000
#define QG_CTL_MAGIC		0x00	/* QG_MAGIC once the rest is valid */
#define QG_CTL_PAGES		0x04	/* pages each vCPU writes, in turn, per pass */
#define QG_CTL_BASE		0x08	/* GPA of vCPU 0's pages; vCPU n's follow */
#define QG_CTL_PERIOD_LO	0x0c	/* TSC ticks from one write to the next, */
#define QG_CTL_PERIOD_HI	0x10	/* 0: as fast as the vCPU can; read per write */
#define QG_CTL_SLACK_LO		0x14	/* a write more than this late is dropped, */
#define QG_CTL_SLACK_HI		0x18	/* in TSC ticks; read per write */
#define QG_CTL_COMPUTE		0x1c	/* bit n set: vCPU n computes, writes no page */
#define QG_MAGIC		0x47514d4b	/* "KMQG" */
/*
 * A computing vCPU counts one round per QG_SPIN iterations of an empty
 * loop: some 500k rounds a second under TCG, so that its count wraps in
 * hours, not seconds.
 */
#define QG_SPIN			1000

/* Status page of vCPU n (its APIC ID) at QG_STATUS + n * QG_PAGE_SIZE. */
#define QG_STATUS		0x2000
#define QG_ST_ALIVE		0x00	/* QG_MAGIC once the vCPU runs its loop */
#define QG_ST_WRITES		0x04	/* pages written so far (wraps at 2^32); a */
					/* computing vCPU: its rounds of QG_SPIN loops */
#define QG_ST_PASS		0x08	/* the value this pass writes (1, 2, ...) */
#define QG_ST_ERRORS		0x0c	/* pages that did not hold the previous pass */
#define QG_ST_BAD_GPA		0x10	/* the first such page, */
#define QG_ST_BAD_FOUND		0x14	/* what it held, */
#define QG_ST_BAD_WANTED	0x18	/* and what it should have held */
#define QG_ST_NEXT_LO		0x20	/* the guest's own: TSC of the next write */
#define QG_ST_NEXT_HI		0x24

/*
 * Where the vCPUs' pages start (QG_CTL_BASE): 1 MiB, past the status pages
 * and the legacy VGA and BIOS window (0xA0000-0xFFFFF), where writes do not
 * reach RAM.
 */
#define QG_RANGES		0x100000

#ifndef __ASSEMBLER__
#include <stdint.h>

struct qg_ctl {
	uint32_t magic;
	uint32_t pages;
	uint32_t base;
	uint32_t period_lo;
	uint32_t period_hi;
	uint32_t slack_lo;
	uint32_t slack_hi;
	uint32_t compute;
};

struct qg_status {
	uint32_t alive;
	uint32_t writes;
	uint32_t pass;
	uint32_t errors;
	uint32_t bad_gpa;
	uint32_t bad_found;
	uint32_t bad_wanted;
	uint32_t pad;
	uint32_t next_lo;
	uint32_t next_hi;
};

_Static_assert(__builtin_offsetof(struct qg_ctl, slack_hi) == QG_CTL_SLACK_HI, "qg_ctl");
_Static_assert(__builtin_offsetof(struct qg_ctl, compute) == QG_CTL_COMPUTE, "qg_ctl");
_Static_assert(__builtin_offsetof(struct qg_status, bad_wanted) == QG_ST_BAD_WANTED, "qg_status");
_Static_assert(__builtin_offsetof(struct qg_status, next_hi) == QG_ST_NEXT_HI, "qg_status");
#endif

#endif /* KVMMIG_QEMU_GUEST_H */
