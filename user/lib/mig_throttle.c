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
 * fraction d means running a fraction d * L / r.  Through kvmmig.ko,
 * dirty-limit needs no controller: the module's token bucket holds each
 * vCPU at the limit page by page, as QEMU's dirty-limit holds it through
 * KVM's dirty ring (all vCPUs get the limit when the trigger fires; one
 * that dirties less never waits).  Converge asks converge.c for per-vCPU
 * limits at every rate period and applies them as they come: through the
 * module's bucket exactly, else as the CPU throttle whose running fraction
 * is limit / demand, the demand being the measured rate scaled back by the
 * fraction the vCPU ran.
 */
#include <stdlib.h>
#include <string.h>

#include "module_client.h"
#include "log.h"
#include "mig_throttle.h"

#define RATE_IDLE_BYTES		(1 << 20)	/* below 1 MB/s a vCPU is not dirtying */
#define THROTTLE_RELAX_STEP	5		/* percent per period, at most */

static int throttle_set(struct mig_throttle *t, unsigned int vcpu, unsigned int pct);

void mig_throttle_init(struct mig_throttle *t, struct kvmmig_vm *vm, const struct mig_params *p)
{
	memset(t, 0, sizeof(*t));
	t->vm = vm;
	t->p = p;
	t->last_t = -1;
}

/* Nanoseconds each vCPU has slept under the module's throttles. */
static int module_slept_ns(const struct mig_throttle *t, uint64_t *ns)
{
	struct kvmmig_vcpu_stats *st;
	uint32_t i, nr;
	int ret;

	memset(ns, 0, t->vm->nr_vcpus * sizeof(*ns));
	ret = kmod_vcpu_stats(t->ks, &st, &nr);
	if (ret)
		return ret;
	for (i = 0; i < nr; i++)
		if (st[i].vcpu < t->vm->nr_vcpus)
			ns[st[i].vcpu] = st[i].throttle_ns;
	free(st);
	return 0;
}

int mig_throttle_use_module(struct mig_throttle *t, struct kmod_session *ks)
{
	t->ks = ks;
	t->ready = true;
	t->bucket = ks && (t->p->policy == MIG_POLICY_DIRTY_LIMIT ||
			   t->p->policy == MIG_POLICY_CONVERGE) &&
		    !t->p->dirty_limit_cpu_throttle && kmod_session_has_dirty_limit(ks);
	return ks ? module_slept_ns(t, t->slept_ns0) : 0;
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
	return p->policy == MIG_POLICY_DIRTY_LIMIT || p->policy == MIG_POLICY_RATE_DRIVEN ||
	       p->policy == MIG_POLICY_CONVERGE;
}

/*
 * A throttled vCPU sleeps most of a period and may show no dirtying in it:
 * that is the throttle working, not a reason to lift it.  Tighten at once,
 * relax step by step.
 */
static int throttle_adjust(struct mig_throttle *t, unsigned int vcpu, double rate,
			   unsigned int want)
{
	if (rate < 1)
		return 0;
	if (want + THROTTLE_RELAX_STEP < t->pct[vcpu])
		want = t->pct[vcpu] - THROTTLE_RELAX_STEP;
	return throttle_set(t, vcpu, want);
}

/* Recorded only once the backend took it, so the report claims no more. */
static int throttle_set(struct mig_throttle *t, unsigned int vcpu, unsigned int pct)
{
	struct mig_vcpu_throttle *a = &t->applied[vcpu];
	int ret;

	if (pct > t->p->max_cpu_throttle)
		pct = t->p->max_cpu_throttle;
	if (t->pct[vcpu] == pct)
		return 0;
	ret = throttle_apply(t, vcpu, pct);
	if (ret)
		return ret;
	t->pct[vcpu] = pct;
	t->changes++;
	if (pct) {
		a->mech = t->ks ? MIG_THROTTLE_MODULE_CPU : MIG_THROTTLE_VMM_CPU;
		if (pct > a->max_pct)
			a->max_pct = pct;
	}
	return 0;
}

static int throttle_set_all(struct mig_throttle *t, unsigned int pct)
{
	unsigned int i;
	int ret;

	for (i = 0; i < t->vm->nr_vcpus; i++) {
		ret = throttle_set(t, i, pct);
		if (ret)
			return ret;
	}
	return 0;
}

static int auto_converge_down(struct mig_throttle *t, uint64_t dirty, uint64_t threshold)
{
	const struct mig_params *p = t->p;
	unsigned int now = t->pct[0], inc = p->cpu_throttle_increment;
	int ret;

	if (!t->active) {
		ret = throttle_set_all(t, p->cpu_throttle_initial);
		if (!ret)
			t->active = true;
		return ret;
	}
	if (p->cpu_throttle_tailslow) {
		double cpu_now = 100 - now;
		double cpu_ideal = cpu_now * ((double)threshold / dirty);

		if (cpu_now - cpu_ideal < inc)
			inc = cpu_now - cpu_ideal;
	}
	return throttle_set_all(t, now + inc);
}

/* Every vCPU, present and future, gets the module's dirty limit. */
static int dirty_limit_bucket_set(struct mig_throttle *t)
{
	uint64_t pps = t->p->vcpu_dirty_limit * 1000000 / MIG_PAGE_SIZE;
	struct kvmmig_throttle th = {
		.vcpu = KVMMIG_VCPU_ALL,
		.set = KVMMIG_THROTTLE_DIRTY_LIMIT,
		.dirty_limit = pps ? pps : 1,
	};
	unsigned int i;
	int ret;

	ret = kmod_set_throttle(t->ks, &th);
	if (ret)
		return ret;
	t->changes++;
	for (i = 0; i < t->vm->nr_vcpus; i++) {
		t->applied[i].mech = MIG_THROTTLE_MODULE_DIRTY_LIMIT;
		t->applied[i].dirty_limit = th.dirty_limit * MIG_PAGE_SIZE;
	}
	return 0;
}

/* Dirty-limit in service from now on. */
static int dirty_limit_arm(struct mig_throttle *t)
{
	int ret = t->bucket ? dirty_limit_bucket_set(t) : 0;

	if (!ret)
		t->active = true;
	return ret;
}

int mig_throttle_on_sync(struct mig_throttle *t, uint64_t bytes_dirty_period,
			 uint64_t bytes_xfer_period)
{
	uint64_t threshold = bytes_xfer_period * t->p->throttle_trigger_threshold / 100;

	if (!mig_throttle_needs_syncs(t->p))
		return 0;
	if (bytes_dirty_period <= threshold || ++t->high_cnt < 2)
		return 0;
	t->high_cnt = 0;
	if (t->p->policy == MIG_POLICY_AUTO_CONVERGE)
		return auto_converge_down(t, bytes_dirty_period, threshold);
	return t->active ? 0 : dirty_limit_arm(t);
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

/* Dirty-limit as CPU-throttle percentages (the VMM backend, or no bucket). */
static int dirty_limit_adjust(struct mig_throttle *t)
{
	double limit = t->p->vcpu_dirty_limit * 1e6;
	unsigned int i;
	int ret;

	for (i = 0; i < t->vm->nr_vcpus; i++) {
		double r = t->rate[i];

		/* Only vCPUs that dirty are throttled; the others run free. */
		if (r < RATE_IDLE_BYTES && !t->pct[i])
			continue;
		if (r > limit || t->pct[i]) {
			ret = throttle_adjust(t, i, r, pct_for_target(t->pct[i], r, limit));
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int rate_driven_adjust(struct mig_throttle *t, double throughput)
{
	double total = 0, target = throughput / 2;
	unsigned int i;
	int ret;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		total += t->rate[i];
	if (throughput <= 0 || (total < target && !mig_throttle_max(t)))
		return 0;
	for (i = 0; i < t->vm->nr_vcpus; i++) {
		double r = t->rate[i];

		if (r < RATE_IDLE_BYTES && !t->pct[i])
			continue;
		/* Each dirtying vCPU gets its share of the target. */
		ret = throttle_adjust(t, i, r, pct_for_target(t->pct[i], total, target));
		if (ret)
			return ret;
	}
	return 0;
}

void mig_throttle_backlog(struct mig_throttle *t, uint64_t remaining, double bandwidth)
{
	t->backlog = remaining;
	t->bandwidth = bandwidth;
}

double mig_throttle_rate(const struct mig_throttle *t)
{
	double sum = 0;
	unsigned int i;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		sum += t->rate[i];
	return sum;
}

static int converge_start(struct mig_throttle *t, double now)
{
	struct converge_params cp = {
		.nr_vcpus = t->vm->nr_vcpus,
		.downtime_s = t->p->downtime_limit_ms / 1000.0,
		.deadline_s = t->p->converge_within_s,
	};

	t->cv_t0 = now;
	t->verdict = CONVERGE_WAIT;
	return converge_init(&t->cv, &cp);
}

/* One vCPU's dirty limit in the module's bucket (0 lifts it), bytes/s. */
static int converge_bucket_set(struct mig_throttle *t, unsigned int vcpu, uint64_t limit)
{
	struct mig_vcpu_throttle *a = &t->applied[vcpu];
	struct kvmmig_throttle th = {
		.vcpu = vcpu,
		.set = KVMMIG_THROTTLE_DIRTY_LIMIT,
		.dirty_limit = limit / MIG_PAGE_SIZE,
	};
	int ret;

	if (limit && !th.dirty_limit)
		th.dirty_limit = 1;
	ret = kmod_set_throttle(t->ks, &th);
	if (ret)
		return ret;
	t->changes++;
	if (limit) {
		a->mech = MIG_THROTTLE_MODULE_DIRTY_LIMIT;
		if (!a->dirty_limit || limit < a->dirty_limit)
			a->dirty_limit = limit;
	}
	return 0;
}

/* What the controller sees of a vCPU: under a CPU throttle, its demand. */
static void converge_vcpu_of(const struct mig_throttle *t, unsigned int i,
			     struct converge_vcpu *v)
{
	uint64_t limit = t->limit[i];

	v->can_limit = true;
	if (t->bucket) {
		v->rate = t->rate[i];
		v->held = limit && t->rate[i] >= 0.9 * limit;
	} else {
		v->rate = converge_demand_under_cpu(t->rate[i], t->pct[i]);
		v->held = false;
	}
}

static void converge_say(struct mig_throttle *t, const struct converge_out *out)
{
	if (out->verdict == t->verdict)
		return;
	t->verdict = out->verdict;
	if (out->verdict == CONVERGE_INFEASIBLE)
		kvmmig_info("converge: %s", out->why);
	else
		kvmmig_info("converge: %s, %u vCPUs limited", converge_verdict_name(out->verdict),
			    out->nr_limited);
}

static int converge_adjust(struct mig_throttle *t, double now)
{
	struct converge_vcpu v[MIG_MAX_VCPUS];
	struct converge_tick in = {
		.t = now - t->cv_t0,
		.remaining = t->backlog,
		.bandwidth = t->bandwidth,
		.vcpu = v,
	};
	struct converge_out out;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		converge_vcpu_of(t, i, &v[i]);
	converge_tick(&t->cv, &in, &out);
	converge_say(t, &out);
	for (i = 0; !ret && i < t->vm->nr_vcpus; i++) {
		uint64_t l = out.limit[i];

		if (!converge_limit_changed(t->limit[i], l))
			l = t->limit[i];
		/* A CPU throttle follows the demand under a kept limit too. */
		if (t->bucket)
			ret = l == t->limit[i] ? 0 : converge_bucket_set(t, i, l);
		else
			ret = throttle_set(t, i, converge_cpu_pct(v[i].rate, l));
		if (!ret)
			t->limit[i] = l;
	}
	return ret;
}

int mig_throttle_on_rates(struct mig_throttle *t, const uint64_t *pages, double now,
			  double throughput)
{
	double dt = now - t->last_t;
	unsigned int i;
	int ret = 0;

	if (t->last_t >= 0 && dt > 0) {
		for (i = 0; i < t->vm->nr_vcpus; i++)
			t->rate[i] = (pages[i] - t->last_pages[i]) * (double)MIG_PAGE_SIZE / dt;
		/* The module's bucket holds the limit by itself. */
		if (t->p->policy == MIG_POLICY_DIRTY_LIMIT && t->active && !t->bucket)
			ret = dirty_limit_adjust(t);
		else if (t->p->policy == MIG_POLICY_RATE_DRIVEN)
			ret = rate_driven_adjust(t, throughput);
		else if (t->p->policy == MIG_POLICY_CONVERGE)
			ret = converge_adjust(t, now);
	} else if (t->p->policy == MIG_POLICY_CONVERGE) {
		ret = converge_start(t, now);
	}
	memcpy(t->last_pages, pages, t->vm->nr_vcpus * sizeof(*pages));
	t->last_t = now;
	return ret;
}

unsigned int mig_throttle_max(const struct mig_throttle *t)
{
	unsigned int i, max = 0;

	for (i = 0; i < t->vm->nr_vcpus; i++)
		if (t->pct[i] > max)
			max = t->pct[i];
	return max;
}

int mig_throttle_report(const struct mig_throttle *t, struct mig_report *rep)
{
	uint64_t ns[MIG_MAX_VCPUS];
	unsigned int i;
	int ret;

	if (!t->ready)
		return 0;
	rep->nr_vcpus = t->vm->nr_vcpus;
	memcpy(rep->vcpu_throttle, t->applied, rep->nr_vcpus * sizeof(*t->applied));
	/* A VMM's set_throttle op does not say how long it slept. */
	for (i = 0; i < rep->nr_vcpus; i++)
		rep->vcpu_throttle[i].slept_ms = -1;
	if (!t->ks)
		return 0;
	ret = module_slept_ns(t, ns);
	if (ret)
		return ret;
	for (i = 0; i < rep->nr_vcpus; i++)
		rep->vcpu_throttle[i].slept_ms = (ns[i] - t->slept_ns0[i]) / 1e6;
	return 0;
}

/* Lifting every throttle through the module also lifts the dirty limit. */
int mig_throttle_off(struct mig_throttle *t)
{
	int ret = t->vm ? throttle_apply(t, -1, 0) : 0;

	memset(t->pct, 0, sizeof(t->pct));
	memset(t->limit, 0, sizeof(t->limit));
	t->active = false;
	return ret;
}
