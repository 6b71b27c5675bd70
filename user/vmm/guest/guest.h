/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for guest code: ucalls to the host, guest asserts that carry file,
 * line and message to the host, the TSC, a small PRNG.  Everything here runs
 * inside the guest, freestanding, with general-purpose registers only.
 */
#ifndef KVMMIG_GUEST_H
#define KVMMIG_GUEST_H

#include "guest_abi.h"

#define GUEST_SHARED	((struct guest_shared *)GUEST_SHARED_GPA)

void guest_ucall(struct guest_vcpu_area *area, uint64_t cmd, uint64_t arg0, uint64_t arg1);
void guest_abort(struct guest_vcpu_area *area, const char *file, int line,
		 const char *msg, uint64_t a, uint64_t b) __attribute__((noreturn));

#define GUEST_SYNC(area, stage)	guest_ucall(area, UCALL_SYNC, stage, 0)
#define GUEST_DONE(area)	guest_ucall(area, UCALL_DONE, 0, 0)

#define GUEST_ASSERT_EQ(area, a, b)					\
	do {								\
		uint64_t __a = (a), __b = (b);				\
		if (__a != __b)						\
			guest_abort(area, __FILE__, __LINE__,		\
				    #a " == " #b, __a, __b);		\
	} while (0)

static inline uint64_t guest_rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* xorshift64*: cheap, good enough to spread writes over pages. */
static inline uint64_t guest_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

#endif /* KVMMIG_GUEST_H */
