/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Firmware for QEMU guests that only halt: a 64 KiB `-bios` image whose
 * reset vector (the last 16 bytes, which the CPU fetches first, at
 * 0xFFFFFFF0, in real mode) disables interrupts and halts for good.
 * qemu_perf migrates such a guest between two QEMUs with `-accel kvm` as
 * the same-run baseline for an idle guest: this host's KVM cannot run a
 * stock kernel under QEMU (PVM, see Documentation/benchmarks.rst), but it
 * runs this.  The build turns it into a flat binary with objcopy.
 */
	.code16
	.text
	.org	0xfff0
reset:
	cli
1:	hlt
	/* An NMI or SMI ends a hlt even with interrupts off: halt again. */
	jmp	1b
	.org	0x10000
