// SPDX-License-Identifier: GPL-2.0-only
/*
 * Throttles that need no help from the VMM.  The kvm_exit probe decides:
 * a dirty limit is a token bucket kept as a theoretical arrival time (each
 * dirtied page costs 1/limit seconds, an idle vCPU banks at most
 * KVMMIG_BURST_NS; pages are counted by account.c's ring or bitmap probe,
 * so it works with and without a dirty ring), and a CPU throttle owes
 * pct/(100-pct) x 10 ms of sleep per 10 ms of guest run, as QEMU's.  A debt is paid by a task_work queued
 * on the vCPU's thread, which KVM runs before the next guest entry (or on
 * the way back to userspace): it sleeps there, interruptibly, so a signal
 * or a kill ends the sleep at once.  The probe runs after the last
 * pre-entry work check on kvm_entry, so deciding on kvm_exit is what makes
 * the sleep happen before the very next entry.  A ring quota lowers KVM's
 * soft limit on the vCPU's dirty ring, so KVM exits to userspace with
 * KVM_EXIT_DIRTY_RING_FULL after that many pages; KVM's value comes back
 * when the quota is removed or the session detaches.
 */
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/task_work.h>

#include "kvmmig.h"

/* Shape of a SET request; checks needing the session come with s != NULL. */
int kvmmig_throttle_check(struct kvmmig_session *s, const struct kvmmig_throttle *t)
{
	struct kvm_dirty_ring *ring;
	u32 soft;

	if (t->flags || t->pad || memchr_inv(t->reserved, 0, sizeof(t->reserved)))
		return -EINVAL;
	if (!t->set || (t->set & ~KVMMIG_THROTTLE_ALL))
		return -EINVAL;
	if ((!(t->set & KVMMIG_THROTTLE_DIRTY_LIMIT) && t->dirty_limit) ||
	    (!(t->set & KVMMIG_THROTTLE_CPU) && t->cpu_throttle) ||
	    (!(t->set & KVMMIG_THROTTLE_RING_QUOTA) && t->ring_quota))
		return -EINVAL;
	if (t->dirty_limit > KVMMIG_DIRTY_LIMIT_MAX ||
	    t->cpu_throttle > KVMMIG_CPU_THROTTLE_MAX)
		return -EINVAL;
	if (!s)
		return 0;

	lockdep_assert_held(&s->lock);
	/* A quota is a ring soft limit: nothing to lower without a ring. */
	if (t->ring_quota && !s->kvm->dirty_ring_size)
		return -EOPNOTSUPP;
	if (t->dirty_limit && !kvmmig_probe_attached(s->kvm->dirty_ring_size ?
						     KVMMIG_PROBE_PUSH :
						     KVMMIG_PROBE_MARK_DIRTY))
		return -EOPNOTSUPP;
	if (t->dirty_limit && !kvmmig_probe_attached(KVMMIG_PROBE_EXIT))
		return -EOPNOTSUPP;
	if (t->cpu_throttle && !kvmmig_probe_attached(KVMMIG_PROBE_EXIT))
		return -EOPNOTSUPP;
	if (t->ring_quota && s->nr_vcpus) {
		ring = &s->vcpus[0]->vcpu->dirty_ring;
		soft = s->vcpus[0]->saved_soft_limit ?: READ_ONCE(ring->soft_limit);
		if (t->ring_quota > soft)
			return -EINVAL;
	}
	return 0;
}

static void kvmmig_ring_quota_set(struct kvmmig_vcpu *v, u32 quota)
{
	struct kvm_dirty_ring *ring = &v->vcpu->dirty_ring;

	if (!ring->size)
		return;
	if (quota) {
		if (!v->saved_soft_limit)
			v->saved_soft_limit = READ_ONCE(ring->soft_limit);
		WRITE_ONCE(ring->soft_limit, min(quota, v->saved_soft_limit));
	} else if (v->saved_soft_limit) {
		WRITE_ONCE(ring->soft_limit, v->saved_soft_limit);
		v->saved_soft_limit = 0;
	}
	v->ring_quota = quota;
}

static void kvmmig_throttle_apply(struct kvmmig_vcpu *v, u32 set,
				  const struct kvmmig_throttle_cfg *c)
{
	if (set & KVMMIG_THROTTLE_DIRTY_LIMIT) {
		WRITE_ONCE(v->dirty_limit, c->dirty_limit);
		WRITE_ONCE(v->ns_per_page, c->dirty_limit ?
			   max_t(u64, div64_u64(NSEC_PER_SEC, c->dirty_limit), 1) : 0);
	}
	if (set & KVMMIG_THROTTLE_CPU)
		WRITE_ONCE(v->cpu_pct, c->cpu_pct);
	if (set & KVMMIG_THROTTLE_RING_QUOTA)
		kvmmig_ring_quota_set(v, c->ring_quota);
	/* The exit probe resets its bucket and duty cycle when cfg_gen moves. */
	smp_wmb();
	WRITE_ONCE(v->cfg_gen, v->cfg_gen + 1);
}

int kvmmig_throttle_set(struct kvmmig_session *s, const struct kvmmig_throttle *t)
{
	struct kvmmig_throttle_cfg c = {
		.dirty_limit = t->dirty_limit,
		.cpu_pct = t->cpu_throttle,
		.ring_quota = t->ring_quota,
	};
	u32 i;
	int r;

	if (t->vcpu != KVMMIG_VCPU_ALL && t->vcpu >= s->nr_vcpus)
		return -ENOENT;
	r = kvmmig_throttle_check(s, t);
	if (r)
		return r;
	if (t->vcpu != KVMMIG_VCPU_ALL) {
		kvmmig_throttle_apply(s->vcpus[t->vcpu], t->set, &c);
	} else {
		for (i = 0; i < s->nr_vcpus; i++)
			kvmmig_throttle_apply(s->vcpus[i], t->set, &c);
		if (t->set & KVMMIG_THROTTLE_DIRTY_LIMIT)
			s->dflt.dirty_limit = c.dirty_limit;
		if (t->set & KVMMIG_THROTTLE_CPU)
			s->dflt.cpu_pct = c.cpu_pct;
		if (t->set & KVMMIG_THROTTLE_RING_QUOTA)
			s->dflt.ring_quota = c.ring_quota;
	}
	/* A vCPU asleep under the old setting re-evaluates now. */
	wake_up_all(&s->wq);
	return 0;
}

void kvmmig_throttle_get(struct kvmmig_vcpu *v, struct kvmmig_throttle *t)
{
	u32 vcpu = t->vcpu;

	memset(t, 0, sizeof(*t));
	t->vcpu = vcpu;
	t->dirty_limit = v->dirty_limit;
	t->cpu_throttle = v->cpu_pct;
	t->ring_quota = v->ring_quota;
	if (t->dirty_limit)
		t->set |= KVMMIG_THROTTLE_DIRTY_LIMIT;
	if (t->cpu_throttle)
		t->set |= KVMMIG_THROTTLE_CPU;
	if (t->ring_quota)
		t->set |= KVMMIG_THROTTLE_RING_QUOTA;
}

/* A vCPU that comes online inherits what was last set for all vCPUs. */
void kvmmig_throttle_init_vcpu(struct kvmmig_session *s, struct kvmmig_vcpu *v)
{
	atomic64_set(&v->owed_ns, 0);
	atomic64_set(&v->overslept_ns, 0);
	atomic64_set(&v->throttle_ns, 0);
	atomic64_set(&v->throttle_sleeps, 0);
	kvmmig_throttle_apply(v, KVMMIG_THROTTLE_ALL, &s->dflt);
}

/* Detach: KVM's soft limits back, every throttle off. */
void kvmmig_throttle_restore(struct kvmmig_session *s)
{
	static const struct kvmmig_throttle_cfg off;
	u32 i;

	lockdep_assert_held(&s->lock);
	for (i = 0; i < s->nr_vcpus; i++)
		kvmmig_throttle_apply(s->vcpus[i], KVMMIG_THROTTLE_ALL, &off);
}

/* Wake early when the session detaches or the vCPU's setting changes. */
static bool kvmmig_sleep_cancelled(struct kvmmig_vcpu *v, u32 gen)
{
	return READ_ONCE(v->s->state) != KVMMIG_STATE_ATTACHED ||
	       READ_ONCE(v->cfg_gen) != gen;
}

static s64 kvmmig_max_sleep_ns(void)
{
	return (s64)kvmmig_max_sleep_ms * NSEC_PER_MSEC;
}

/*
 * A sleep pays CPU-throttle debt.  Timers fire late on a loaded host, so
 * the debt may go negative: what was overslept is credited to the next
 * quanta (down to one max sleep), which keeps the long-run duty cycle.
 */
static void kvmmig_owed_pay(struct kvmmig_vcpu *v, u64 slept)
{
	s64 owed = atomic64_read(&v->owed_ns), left;

	do {
		left = max(owed - (s64)slept, -kvmmig_max_sleep_ns());
	} while (!atomic64_try_cmpxchg(&v->owed_ns, &owed, left));
}

/*
 * The dirty limit gets the same credit for a sleep longer than asked, kept
 * until used (kvmmig_dirty_debt()), at most one max sleep in all.
 */
static void kvmmig_overslept(struct kvmmig_vcpu *v, u64 want, u64 slept)
{
	s64 credit;

	if (slept <= want)
		return;
	credit = atomic64_add_return(min_t(u64, slept - want, kvmmig_max_sleep_ns()),
				     &v->overslept_ns);
	if (credit > kvmmig_max_sleep_ns())
		atomic64_set(&v->overslept_ns, kvmmig_max_sleep_ns());
}

/* task_work: runs in the vCPU's thread, in process context, may sleep. */
static void kvmmig_throttle_work(struct callback_head *cb)
{
	struct kvmmig_vcpu *v = container_of(cb, struct kvmmig_vcpu, twork);
	struct kvmmig_session *s = v->s;
	u32 gen = READ_ONCE(v->cfg_gen);
	u64 want = READ_ONCE(v->sleep_req_ns), start, slept;

	if (want && !(current->flags & PF_EXITING) && !fatal_signal_pending(current) &&
	    !kvmmig_sleep_cancelled(v, gen)) {
		start = ktime_get_ns();
		/* TASK_INTERRUPTIBLE: any signal ends the sleep. */
		wait_event_interruptible_hrtimeout(s->wq, kvmmig_sleep_cancelled(v, gen),
						   ns_to_ktime(want));
		slept = ktime_get_ns() - start;
		atomic64_add(slept, &v->throttle_ns);
		atomic64_inc(&v->throttle_sleeps);
		kvmmig_owed_pay(v, slept);
		kvmmig_overslept(v, want, slept);
	}
	clear_bit_unlock(0, &v->twork_pending);
	kvmmig_session_put(s);
	module_put(THIS_MODULE);
}

/*
 * Ask the current (vCPU) thread to sleep ns before it enters the guest
 * again.  One sleep is queued at a time; it holds the session and the
 * module until it has run.
 */
static void kvmmig_throttle_queue(struct kvmmig_vcpu *v, u64 ns)
{
	WRITE_ONCE(v->sleep_req_ns, ns);
	if (test_and_set_bit_lock(0, &v->twork_pending))
		return;
	if (!try_module_get(THIS_MODULE))
		goto out_clear;
	kref_get(&v->s->ref);
	init_task_work(&v->twork, kvmmig_throttle_work);
	if (!task_work_add(current, &v->twork, TWA_RESUME))
		return;
	/* The task is exiting.  The session's file still holds a reference. */
	kvmmig_session_put(v->s);
	module_put(THIS_MODULE);
out_clear:
	clear_bit_unlock(0, &v->twork_pending);
}

static u64 kvmmig_cpu_debt(struct kvmmig_vcpu *v, u64 ran)
{
	u32 pct = READ_ONCE(v->cpu_pct);
	u64 slices;
	s64 owed;

	if (!pct)
		return 0;
	v->slice_run_ns += ran;
	if (v->slice_run_ns < KVMMIG_SLICE_NS) {
		owed = atomic64_read(&v->owed_ns);
		return owed > 0 ? owed : 0;
	}
	slices = div64_u64(v->slice_run_ns, KVMMIG_SLICE_NS);
	v->slice_run_ns -= slices * KVMMIG_SLICE_NS;
	owed = atomic64_add_return(div_u64(slices * KVMMIG_SLICE_NS * pct, 100 - pct),
				   &v->owed_ns);
	/* Never owe more than the longest single sleep. */
	if (owed > kvmmig_max_sleep_ns()) {
		owed = kvmmig_max_sleep_ns();
		atomic64_set(&v->owed_ns, owed);
	}
	return owed > 0 ? owed : 0;
}

static u64 kvmmig_dirty_debt(struct kvmmig_vcpu *v, u64 now)
{
	u64 npp = READ_ONCE(v->ns_per_page), pages, dirty, floor;
	s64 credit;

	if (!npp)
		return 0;
	dirty = READ_ONCE(v->dirty_pages);
	pages = dirty - v->tb_pages;
	v->tb_pages = dirty;
	/*
	 * An idle vCPU banks at most the burst, plus what it overslept: a
	 * late wake-up (a loaded host) must not cost the vCPU its rate.  That
	 * credit lasts until the bucket is back within the burst, not just to
	 * the next exit: one page costs one exit, and a credit dropped there
	 * would be lost whole.
	 */
	credit = atomic64_read(&v->overslept_ns);
	floor = now - KVMMIG_BURST_NS - credit;
	if ((s64)(v->tat_ns - floor) < 0)
		v->tat_ns = floor;
	v->tat_ns += pages * npp;
	if (credit && (s64)(v->tat_ns - (now - KVMMIG_BURST_NS)) >= 0)
		atomic64_sub(credit, &v->overslept_ns);
	if (v->tat_ns <= now + KVMMIG_MIN_SLEEP_NS)
		return 0;
	WRITE_ONCE(v->limited, v->limited + 1);
	return v->tat_ns - now;
}

/* Called by the kvm_exit probe after a guest run of ran ns. */
void kvmmig_throttle_exit(struct kvmmig_vcpu *v, u64 now, u64 ran)
{
	u32 gen = READ_ONCE(v->cfg_gen);
	u64 want;

	if (gen != v->cfg_seen) {
		/* Pairs with smp_wmb() in kvmmig_throttle_apply(). */
		smp_rmb();
		v->cfg_seen = gen;
		v->tat_ns = now;
		v->tb_pages = READ_ONCE(v->dirty_pages);
		v->slice_run_ns = 0;
		atomic64_set(&v->owed_ns, 0);
		atomic64_set(&v->overslept_ns, 0);
	}
	want = max(kvmmig_cpu_debt(v, ran), kvmmig_dirty_debt(v, now));
	if (want < KVMMIG_MIN_SLEEP_NS)
		return;
	kvmmig_throttle_queue(v, min_t(u64, want, kvmmig_max_sleep_ns()));
}
