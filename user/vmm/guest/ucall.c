// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest side of the ucall channel: fill the vCPU's ucall block, then write
 * to UCALL_PORT; the port I/O exits to the host, which reads the block from
 * guest memory.  Guest code has no libc, so strings are copied by hand.
 */
#include "guest.h"

static void guest_strlcpy(char *dst, const char *src, uint64_t size)
{
	uint64_t i;

	for (i = 0; i + 1 < size && src[i]; i++)
		dst[i] = src[i];
	dst[i] = '\0';
}

void guest_ucall(struct guest_vcpu_area *area, uint64_t cmd, uint64_t arg0, uint64_t arg1)
{
	area->uc.cmd = cmd;
	area->uc.args[0] = arg0;
	area->uc.args[1] = arg1;
	asm volatile("outb %%al, %%dx" : : "a"(0), "d"(UCALL_PORT) : "memory");
}

void guest_abort(struct guest_vcpu_area *area, const char *file, int line,
		 const char *msg, uint64_t a, uint64_t b)
{
	const char *base = file;
	const char *p;

	for (p = file; *p; p++)
		if (*p == '/')
			base = p + 1;
	guest_strlcpy(area->uc.file, base, UCALL_FILE_LEN);
	guest_strlcpy(area->uc.msg, msg, UCALL_MSG_LEN);
	area->uc.line = line;
	for (;;) {
		guest_ucall(area, UCALL_ABORT, a, b);
		asm volatile("hlt");
	}
}
