// SPDX-License-Identifier: GPL-2.0-only
/*
 * The convergence policies (see mig_throttle.h).  Auto-converge follows
 * QEMU's migration_trigger_throttle() and mig_throttle_guest_down(): when
 * the bytes dirtied in a sync period exceed throttle-trigger-threshold
 * percent of the bytes sent in it, twice, start at cpu-throttle-initial or
 * add cpu-throttle-increment (or, with cpu-throttle-tailslow, only what
 * should bring the dirty rate down to the threshold), up to
 * max-cpu-throttle.  The per-vCPU controllers use that a vCPU running a
 * fraction d = 1 - pct/100 of the time dirties at about d times its
 * unthrottled rate, so reaching rate L from a measured rate r under
 * fraction d means running a fraction d * L / r.
 */
#include <string.h>

#include "module_client.h"
#include "log.h"
#include "mig_throttle.h"

#define RATE_IDLE_BYTES		(1 << 20)	/* below 1 MB/s a vCPU is not dirtying */
#define THROTTLE_RELAX_STEP	5		/* percent per period, at most */

static void throttle_set(struct mig_throttle *t, unsigned int vcpu, unsigned int pct);

void mig_throttle_init(struct mig_throttle *t, struct kvmmig_vm *vm, const struct mig_params *p)
{
	memset(t, 0, sizeof(*t));
	t->vm = vm;
	t->p = p;
	t->last_t = -1;
}

void mig_throttle_use_module(struct mig_throttle *t, struct kmod_session *ks)
{
	t->ks = ks;
}

/* One vCPU (or every vCPU when @vcpu is -1) to @pct, through the backend. */
static int throttle_apply(struct mig_throttle *t, int vcpu, unsigned int pct)
{
	struct kvmmig_throttle th = {
		.vcpu = vcpu < 0 ? KVMMIG_VCPU_ALL : (uint32_t)vcpu,
		.set = KVMMIG_THROTTLE_CPU,
		.cpu_throttle = pct,
	};

	if (!t->ks)
		return kvmmig_vm_set_throttle(t->vm, vcpu, pct);
	/* Lifting every throttle also lifts what someone else set by hand. */
	if (vcpu < 0 && !pct)
		th.set = KVMMIG_THROTTLE_ALL;
	return kmod_set_throttle(t->ks, &th);
}

bool mig_throttle_needs_syncs(const struct mig_params *p)
{
	return p->policy == MIG_POLICY_AUTO_CONVERGE || p->policy == MIG_POLICY_DIRTY_LIMIT;
}

bool mig_throttle_needs_rates(const struct mig_params *p)
{
	return p->policy == MIG_POLICY_DIRTY_LIMIT || p->policy == MIG_POLICY_RATE_DRIVEN;
}

/*
 * A throttled vCPU sleeps most of a period and may show no dirtying in it:
 * that is the throttle working, not a reason to lift it.  Tighten at once,
 * relax step by step.
 */
static void throttle_adjust(struct mig_throttle *t, unsigned int vcpu, double rate,
			    unsigned int want)
{
	if (rate < 1)
		return;
	if (want + THROTTLE_RELAX_STEP < t->pct[vcpu])
		want = t->pct[vcpu] - THROTTLE_RELAX_STEP;
	throttle_set(t, vcpu, want);
}

static void throttle_set(struct mig_throttle *t, unsigned int vcpu, unsigned int pct)
{
	if (pct > t->p->max_cpu_throttle)
		pct = t->p->max_cpu_throttle;
	if (t->pct[vcpu] == pct)
		return;
	t->pct[vcpu] = pct;
	t->changes++;
	throttle_apply(t, vcpu, pct);
}

static void throttle_set_all(struct mig_throttle *t, unsigned int pct)
{
	unsigned int i;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		throttle_set(t, i, pct);
}

static void auto_converge_down(struct mig_throttle *t, uint64_t dirty, uint64_t threshold)
{
	const struct mig_params *p = t->p;
	unsigned int now = t->pct[0], inc = p->cpu_throttle_increment;

	if (!t->active) {
		t->active = true;
		throttle_set_all(t, p->cpu_throttle_initial);
		return;
	}
	if (p->cpu_throttle_tailslow) {
		double cpu_now = 100 - now;
		double cpu_ideal = cpu_now * ((double)threshold / dirty);

		if (cpu_now - cpu_ideal < inc)
			inc = cpu_now - cpu_ideal;
	}
	throttle_set_all(t, now + inc);
}

void mig_throttle_on_sync(struct mig_throttle *t, uint64_t bytes_dirty_period,
			  uint64_t bytes_xfer_period)
{
	uint64_t threshold = bytes_xfer_period * t->p->throttle_trigger_threshold / 100;

	if (!mig_throttle_needs_syncs(t->p))
		return;
	if (bytes_dirty_period <= threshold || ++t->high_cnt < 2)
		return;
	t->high_cnt = 0;
	if (t->p->policy == MIG_POLICY_AUTO_CONVERGE)
		auto_converge_down(t, bytes_dirty_period, threshold);
	else if (!t->active)
		t->active = true;	/* dirty-limit in service from now on */
}

/* Running fraction that brings rate @r (under @pct) to @target. */
static unsigned int pct_for_target(unsigned int pct, double r, double target)
{
	double d = (100.0 - pct) / 100.0 * target / r;

	if (d >= 1.0)
		return 0;
	if (d <= 0.01)
		return 99;
	return (unsigned int)(100.0 - d * 100.0 + 0.5);
}

static void dirty_limit_adjust(struct mig_throttle *t)
{
	double limit = t->p->vcpu_dirty_limit * 1e6;
	unsigned int i;

	for (i = 0; i < t->vm->nr_vcpus; i++) {
		double r = t->rate[i];

		/* Only vCPUs that dirty are throttled; the others run free. */
		if (r < RATE_IDLE_BYTES && !t->pct[i])
			continue;
		if (r > limit || t->pct[i])
			throttle_adjust(t, i, r, pct_for_target(t->pct[i], r, limit));
	}
}

static void rate_driven_adjust(struct mig_throttle *t, double throughput)
{
	double total = 0, target = throughput / 2;
	unsigned int i;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		total += t->rate[i];
	if (throughput <= 0 || (total < target && !mig_throttle_max(t)))
		return;
	for (i = 0; i < t->vm->nr_vcpus; i++) {
		double r = t->rate[i];

		if (r < RATE_IDLE_BYTES && !t->pct[i])
			continue;
		/* Each dirtying vCPU gets its share of the target. */
		throttle_adjust(t, i, r, pct_for_target(t->pct[i], total, target));
	}
}

void mig_throttle_on_rates(struct mig_throttle *t, const uint64_t *pages, double now,
			   double throughput)
{
	double dt = now - t->last_t;
	unsigned int i;

	if (t->last_t >= 0 && dt > 0) {
		for (i = 0; i < t->vm->nr_vcpus; i++)
			t->rate[i] = (pages[i] - t->last_pages[i]) * (double)MIG_PAGE_SIZE / dt;
		if (t->p->policy == MIG_POLICY_DIRTY_LIMIT && t->active)
			dirty_limit_adjust(t);
		else if (t->p->policy == MIG_POLICY_RATE_DRIVEN)
			rate_driven_adjust(t, throughput);
	}
	memcpy(t->last_pages, pages, t->vm->nr_vcpus * sizeof(*pages));
	t->last_t = now;
}

unsigned int mig_throttle_max(const struct mig_throttle *t)
{
	unsigned int i, max = 0;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		if (t->pct[i] > max)
			max = t->pct[i];
	return max;
}

void mig_throttle_off(struct mig_throttle *t)
{
	if (t->vm)
		throttle_apply(t, -1, 0);
	memset(t->pct, 0, sizeof(t->pct));
	t->active = false;
}
