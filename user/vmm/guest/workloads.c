// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest workloads of the built-in VMM, chosen by guest_shared.workload.
 * Each vCPU works on its own slice of the workload range, polls the host's
 * stop flag between batches of writes and reports a finished run with
 * UCALL_DONE.  They are the ways tests prove dirty tracking and migration
 * right: `incr` is QEMU migration-test's one-byte-per-page incrementer,
 * `random` is dirty_log_test's writer of the iteration number, `rate`
 * dirties a set number of pages per second over its working set,
 * `compute` writes nothing but a loop counter.  Guest instructions are
 * emulated on a PVM host (~0.6 us each), so the loops are kept short.
 */
#include "guest.h"

#define STOP_CHECK_EVERY	256	/* writes between looks at the stop flag */
#define COMPUTE_PUBLISH_EVERY	1024	/* loop iterations between counter stores */

struct slice {
	uint8_t *base;
	uint64_t pages;
};

static struct slice guest_slice(uint64_t id)
{
	struct guest_shared *g = GUEST_SHARED;
	uint64_t per = g->mem_pages / g->nr_vcpus;
	struct slice s = {
		.base = (uint8_t *)(g->mem_gpa + id * per * GUEST_PAGE_SIZE),
		.pages = per,
	};

	if (id == g->nr_vcpus - 1)
		s.pages = g->mem_pages - per * id;
	return s;
}

static int guest_should_stop(void)
{
	return GUEST_SHARED->stop != 0;
}

/* Count a finished pass; returns 1 when the run should end. */
static int guest_pass_done(struct guest_vcpu_area *area)
{
	struct guest_shared *g = GUEST_SHARED;
	uint64_t passes = ++area->passes;

	if (g->sync_every && passes % g->sync_every == 0)
		GUEST_SYNC(area, passes);
	return (g->max_passes && passes >= g->max_passes) || guest_should_stop();
}

/*
 * Bump byte 0 of @n pages from @p.  Emulated instructions cost ~0.6 us
 * each, so this is hand-unrolled to under two instructions a page.
 */
static void guest_incr_block(uint8_t *p, uint64_t n)
{
	uint64_t quads = n / 4;

	if (quads)
		asm volatile("1:\n\t"
			     "incb (%0)\n\t"
			     "incb 4096(%0)\n\t"
			     "incb 8192(%0)\n\t"
			     "incb 12288(%0)\n\t"
			     "add $16384, %0\n\t"
			     "dec %1\n\t"
			     "jnz 1b"
			     : "+r"(p), "+r"(quads) : : "memory", "cc");
	for (n %= 4; n; n--, p += GUEST_PAGE_SIZE)
		*(volatile uint8_t *)p += 1;
}

/*
 * The first wss_pages of the slice (all of it when 0), read again before
 * every batch so the host can change it while the guest runs.
 */
static uint64_t guest_wss(struct slice s)
{
	uint64_t wss = *(volatile uint64_t *)&GUEST_SHARED->wss_pages;

	return wss && wss < s.pages ? wss : s.pages;
}

static void guest_incr(struct guest_vcpu_area *area, struct slice s)
{
	uint64_t i, n;

	for (;;) {
		for (i = 0; i < s.pages; i += n) {
			n = s.pages - i < STOP_CHECK_EVERY ? s.pages - i : STOP_CHECK_EVERY;
			guest_incr_block(s.base + i * GUEST_PAGE_SIZE, n);
			area->loops += n;
			if (guest_should_stop())
				return;
		}
		if (guest_pass_done(area))
			return;
	}
}

static void guest_random_writes(struct guest_vcpu_area *area, struct slice s)
{
	uint64_t rng = area->seed, i, wss;

	for (;;) {
		wss = guest_wss(s);
		for (i = 0; i < STOP_CHECK_EVERY; i++) {
			uint64_t page = guest_random(&rng) % wss;

			*(volatile uint64_t *)(s.base + page * GUEST_PAGE_SIZE) =
				GUEST_SHARED->iteration;
		}
		area->loops += STOP_CHECK_EVERY;
		if (guest_should_stop())
			return;
	}
}

/*
 * The rate workload's schedule may lag this far before it restarts from
 * now.  Short enough that a throttle sleep (10 ms and more) is lost time,
 * not a burst afterwards: a vCPU throttled to p% then dirties about
 * (1 - p/100) x its rate.  Long enough to absorb a VM exit or a short
 * host preemption without losing pages.
 */
#define RATE_MAX_LAG_US		1000

/*
 * Dirty pages_per_sec pages a second, paced by the TSC, cycling over the
 * first wss_pages of the slice (the whole slice when 0).
 */
static void guest_rate(struct guest_vcpu_area *area, struct slice s)
{
	struct guest_shared *g = GUEST_SHARED;
	uint64_t interval = g->tsc_khz * 1000 / (g->pages_per_sec ? g->pages_per_sec : 1);
	uint64_t max_lag = g->tsc_khz * RATE_MAX_LAG_US / 1000;
	uint64_t wss = guest_wss(s);
	uint64_t next = guest_rdtsc(), page = 0, now;

	for (;;) {
		now = guest_rdtsc();
		if (now < next)
			continue;
		if (now - next > max_lag)
			next = now;
		next += interval;
		*(volatile uint64_t *)(s.base + page * GUEST_PAGE_SIZE) = area->loops;
		area->loops++;
		if (++page == wss) {
			page = 0;
			if (guest_pass_done(area))
				return;
		}
		if (area->loops % 64 == 0 && guest_should_stop())
			return;
	}
}

static void guest_compute(struct guest_vcpu_area *area)
{
	uint64_t n = area->loops;

	for (;;) {
		n++;
		if (n % COMPUTE_PUBLISH_EVERY == 0) {
			area->loops = n;
			if (guest_should_stop())
				return;
		}
	}
}

static void guest_working_set(struct guest_vcpu_area *area, struct slice s, int random)
{
	uint64_t wss = guest_wss(s), rng = area->seed, i, page;
	for (;;) {
		for (i = 0; i < wss; i++) {
			page = random ? guest_random(&rng) % wss : i;
			*(volatile uint64_t *)(s.base + page * GUEST_PAGE_SIZE) = i;
			if ((i + 1) % STOP_CHECK_EVERY == 0) {
				area->loops += STOP_CHECK_EVERY;
				if (guest_should_stop())
					return;
			}
		}
		area->loops += wss % STOP_CHECK_EVERY;
		if (guest_pass_done(area))
			return;
	}
}

/*
 * An idle kernel halts until its next timer tick; this guest has no
 * interrupts, so it asks the host to park it instead.  Spinning would cost
 * a host core: every guest instruction here goes through KVM's emulator.
 */
static void guest_idle(struct guest_vcpu_area *area)
{
	while (!guest_should_stop())
		guest_ucall(area, UCALL_IDLE, 0, 0);
}

static void guest_run(struct guest_vcpu_area *area, struct slice s)
{
	switch (GUEST_SHARED->workload) {
	case WORKLOAD_INCR:
		guest_incr(area, s);
		break;
	case WORKLOAD_RANDOM:
		guest_random_writes(area, s);
		break;
	case WORKLOAD_RATE:
		guest_rate(area, s);
		break;
	case WORKLOAD_COMPUTE:
		guest_compute(area);
		break;
	case WORKLOAD_SEQ:
		guest_working_set(area, s, 0);
		break;
	case WORKLOAD_RAND:
		guest_working_set(area, s, 1);
		break;
	case WORKLOAD_ASSERT:
		GUEST_ASSERT_EQ(area, GUEST_SHARED->nr_vcpus, 0);
		break;
	default:
		guest_idle(area);
		break;
	}
}

void guest_main(uint64_t id, uint64_t area_gpa)
{
	struct guest_vcpu_area *area = (struct guest_vcpu_area *)area_gpa;

	area->started = 1;
	/* A mixed guest: some vCPUs only compute (throttling side effects). */
	if (GUEST_SHARED->compute_mask >> id & 1)
		guest_compute(area);
	else
		guest_run(area, guest_slice(id));
	for (;;) {
		GUEST_DONE(area);
		asm volatile("hlt");
	}
}
