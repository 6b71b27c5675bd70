/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Firmware for QEMU guests that dirty memory at a known rate and check
 * their own memory: a 64 KiB `-bios` image, built with the tree, for the
 * tests that run Debian's QEMU beside kvmmig (qemu_module_test).  The
 * bootstrap processor starts the others (INIT, then a startup IPI whose
 * vector 0xF0 starts them at 0xF0000, where this image is mapped below
 * 1 MiB); every vCPU enters flat 32-bit protected mode, takes its index
 * from its APIC ID, waits for the test's parameters in the control page
 * and then writes one 32-bit word per page over its own range of pages,
 * pass after pass, each pass the pass number, paced by the TSC: one write
 * every `period` ticks, each done only if the vCPU runs within `slack`
 * ticks of its time, so writes missed while the vCPU did not run (a
 * throttle's sleep) are dropped, not caught up, and a throttle shows in
 * the rate.  Before each write it checks that the page holds what the previous
 * pass wrote, so after a migration the destination guest finds any page
 * that came over stale or wrong within one pass.  Its count of writes,
 * pass and errors are in its status page (layout: qemu_guest.h).  A vCPU
 * whose bit is set in the control page's compute mask writes no page: it
 * counts rounds of an empty loop in its status page, for a test of how
 * fast a vCPU that does not dirty still runs.  No
 * interrupts, no stack, no paging; code runs from ROM, so the only pages
 * it dirties are its own range and its status page.
 */
#include "qemu_guest.h"

#define ROM_HIGH	0xffff0000	/* this image, at the top of 4 GiB */
#define LAPIC		0xfee00000	/* the local APIC, at its reset address */
#define LAPIC_SVR	0x0f0
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define ICR_INIT_OTHERS	0x000c4500	/* INIT, level assert, all but self */
#define ICR_SIPI_OTHERS	0x000c46f0	/* startup at vector 0xF0, all but self */

/* Private fields of a status page (the test reads the public ones). */
#define ST_RANGE	0x28		/* GPA of this vCPU's first page */
#define ST_PAGES	0x2c		/* pages in its range */

/* An offset in this image: real mode reaches it at 0xF0000 + OFF. */
#define OFF(label)	((label) - start)

	.code16
	.text
start:
/*
 * Offset 0: where the startup IPI starts the other vCPUs, in real mode
 * with CS = 0xF000 (base 0xF0000); the bootstrap processor comes here
 * from the reset vector with the same CS.
 */
real_mode:
	cli
	lgdtl	%cs:OFF(gdt_desc)
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $(ROM_HIGH + OFF(prot_mode))

	.align	8
gdt:
	.quad	0
	.quad	0x00cf9b000000ffff	/* 0x08: code, base 0, 4 GiB, 32-bit */
	.quad	0x00cf93000000ffff	/* 0x10: data, base 0, 4 GiB */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	ROM_HIGH + OFF(gdt)

	.code32
prot_mode:
	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	movl	$1, %eax
	cpuid
	shrl	$24, %ebx		/* the initial APIC ID: this vCPU's index */
	cmpl	$QG_MAX_VCPUS, %ebx
	jae	park
	testl	%ebx, %ebx
	jnz	wait_ctl

	/* The bootstrap processor starts the others. */
	movl	$0x1ff, LAPIC + LAPIC_SVR	/* software-enable the local APIC */
	movl	$0, LAPIC + LAPIC_ICR_HI
	movl	$ICR_INIT_OTHERS, LAPIC + LAPIC_ICR_LO
	movl	$100000, %ecx
1:	decl	%ecx
	jnz	1b
	movl	$ICR_SIPI_OTHERS, LAPIC + LAPIC_ICR_LO

wait_ctl:
	cmpl	$QG_MAGIC, QG_CTL + QG_CTL_MAGIC
	jne	wait_ctl
	/* esi: this vCPU's status page; its range follows vCPU (n - 1)'s. */
	movl	%ebx, %esi
	shll	$12, %esi
	addl	$QG_STATUS, %esi
	movl	QG_CTL + QG_CTL_PAGES, %eax
	testl	%eax, %eax
	jz	park
	movl	%eax, ST_PAGES(%esi)
	imull	%ebx, %eax
	shll	$12, %eax
	addl	QG_CTL + QG_CTL_BASE, %eax
	movl	%eax, ST_RANGE(%esi)
	btl	%ebx, QG_CTL + QG_CTL_COMPUTE
	jc	compute
	rdtsc
	movl	%eax, QG_ST_NEXT_LO(%esi)
	movl	%edx, QG_ST_NEXT_HI(%esi)
	movl	$1, %ebp		/* ebp: the value this pass writes */
	movl	%ebp, QG_ST_PASS(%esi)
	movl	$QG_MAGIC, QG_ST_ALIVE(%esi)

new_pass:
	movl	ST_RANGE(%esi), %edi	/* edi: the page to write next */
	movl	ST_PAGES(%esi), %ebx	/* ebx: pages left in this pass */
pace:
	rdtsc
	subl	QG_ST_NEXT_LO(%esi), %eax
	sbbl	QG_ST_NEXT_HI(%esi), %edx	/* edx:eax = late = now - next */
	js	pace
	/*
	 * The write due at `next` is done only if the vCPU runs within the
	 * slack after it: one missed while the vCPU slept (a throttle) is
	 * dropped, not caught up, so the rate shows the time it ran.
	 */
	movl	QG_CTL + QG_CTL_PERIOD_LO, %ecx
	addl	%ecx, QG_ST_NEXT_LO(%esi)
	movl	QG_CTL + QG_CTL_PERIOD_HI, %ecx
	adcl	%ecx, QG_ST_NEXT_HI(%esi)
	subl	QG_CTL + QG_CTL_SLACK_LO, %eax
	sbbl	QG_CTL + QG_CTL_SLACK_HI, %edx
	jns	pace

	/* The page must hold what the previous pass wrote (0 before pass 1). */
	movl	(%edi), %eax
	leal	-1(%ebp), %edx
	cmpl	%edx, %eax
	je	write
	cmpl	$0, QG_ST_ERRORS(%esi)
	jne	1f
	movl	%edi, QG_ST_BAD_GPA(%esi)	/* the first bad page, before the */
	movl	%eax, QG_ST_BAD_FOUND(%esi)	/* count that makes the test look */
	movl	%edx, QG_ST_BAD_WANTED(%esi)
1:	incl	QG_ST_ERRORS(%esi)
write:
	movl	%ebp, (%edi)
	incl	QG_ST_WRITES(%esi)
	addl	$QG_PAGE_SIZE, %edi
	decl	%ebx
	jnz	pace
	incl	%ebp
	movl	%ebp, QG_ST_PASS(%esi)
	jmp	new_pass

/*
 * A computing vCPU: rounds of QG_SPIN empty loops, each counted in its
 * status page, the only page it writes.  A throttle that slowed it would
 * show as fewer rounds a second.
 */
compute:
	movl	$QG_MAGIC, QG_ST_ALIVE(%esi)
1:	movl	$QG_SPIN, %ecx
2:	decl	%ecx
	jnz	2b
	incl	QG_ST_WRITES(%esi)
	jmp	1b

park:
	cli
	hlt
	/* An NMI or SMI ends a hlt even with interrupts off: halt again. */
	jmp	park

	/* The reset vector: the CPU starts here, at 0xFFFFFFF0, in real mode. */
	.code16
	.org	0xfff0
reset:
	cli
	ljmpw	$0xf000, $OFF(real_mode)
	.org	0x10000
