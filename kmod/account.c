// SPDX-License-Identifier: GPL-2.0-only
/*
 * Per-vCPU accounting on KVM's tracepoints: time in guest mode between
 * kvm_entry and kvm_exit (both exported), pages dirtied from
 * kvm_dirty_ring_push and ring-full exits from kvm_dirty_ring_exit (neither
 * exported: found by name when kvm.ko's tracepoints are announced).  VMs
 * without a dirty ring have no dirty tracepoint: their pages are counted by
 * a kprobe on mark_page_dirty_in_slot() and given to the vCPU running on
 * this CPU (kvm_get_running_vcpu()).  The probes run in the vCPU's own
 * thread, take no lock and allocate nothing; kvm_exit also drives the
 * throttle.  The session tick turns counters into rates over a window;
 * KVMMIG_VCPU_STATS reads them.
 */
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>
#include <linux/uaccess.h>

#include "kvmmig.h"

/* Exported by kvm.ko; arch/x86/kvm/trace.h, which declares them, is not in the headers. */
extern struct tracepoint __tracepoint_kvm_entry;
extern struct tracepoint __tracepoint_kvm_exit;

static void kvmmig_probe_entry(void *data, KVMMIG_PROBE_ENTRY_ARGS)
{
	struct kvmmig_vcpu *v;
	u64 now, start;

	rcu_read_lock();
	v = kvmmig_vcpu_find(vcpu);
	if (v) {
		now = ktime_get_ns();
		/* Re-entry without kvm_exit: a fastpath exit handled in place. */
		start = v->entry_ns;
		if (start)
			WRITE_ONCE(v->run_ns, v->run_ns + (now - start));
		WRITE_ONCE(v->entry_ns, now);
	}
	rcu_read_unlock();
}

static void kvmmig_probe_exit(void *data, struct kvm_vcpu *vcpu, u32 isa)
{
	struct kvmmig_vcpu *v;
	u64 now, start, ran = 0;

	rcu_read_lock();
	v = kvmmig_vcpu_find(vcpu);
	if (v) {
		now = ktime_get_ns();
		start = v->entry_ns;
		if (start) {
			ran = now - start;
			WRITE_ONCE(v->run_ns, v->run_ns + ran);
			WRITE_ONCE(v->entry_ns, 0);
		}
		WRITE_ONCE(v->exits, v->exits + 1);
		kvmmig_throttle_exit(v, now, ran);
	}
	rcu_read_unlock();
}

static void kvmmig_probe_push(void *data, struct kvm_dirty_ring *ring,
			      u32 slot, u64 offset)
{
	struct kvm_vcpu *vcpu = container_of(ring, struct kvm_vcpu, dirty_ring);
	struct kvmmig_vcpu *v;

	rcu_read_lock();
	v = kvmmig_vcpu_find(vcpu);
	if (v) {
		WRITE_ONCE(v->dirty_pages, v->dirty_pages + 1);
#ifdef KVMMIG_RING_SOFT_FULL_NUDGE
		/* Runs in the vCPU's thread, before its next entry. */
		if (ring->dirty_index - ring->reset_index >= READ_ONCE(ring->soft_limit))
			kvm_make_request(KVMMIG_RING_SOFT_FULL_NUDGE, vcpu);
#endif
	}
	rcu_read_unlock();
}

static void kvmmig_probe_ring_exit(void *data, struct kvm_vcpu *vcpu)
{
	struct kvmmig_vcpu *v;

	rcu_read_lock();
	v = kvmmig_vcpu_find(vcpu);
	if (v)
		WRITE_ONCE(v->ring_full_exits, v->ring_full_exits + 1);
	rcu_read_unlock();
}

/*
 * Bitmap mode: count a page the first time KVM marks it since the VMM last
 * collected the log (KVM_GET_DIRTY_LOG or KVM_CLEAR_DIRTY_LOG cleared its
 * bit and write-protected it again), as the ring counts one push per page
 * per reset.  Ring VMs reach mark_page_dirty_in_slot() too, and are counted
 * by the push tracepoint only.  The probe runs before the function, with
 * preemption disabled, in the thread that runs the vCPU: the counter keeps
 * its single writer.  Session teardown: as for the tracepoint probes, the
 * session is found under RCU and detach waits with synchronize_rcu().
 */
static int kvmmig_probe_mark_dirty(struct kprobe *kp, struct pt_regs *regs)
{
	struct kvm *kvm = (struct kvm *)kvmmig_probe_arg(regs, 0);
	const struct kvm_memory_slot *ms = (const void *)kvmmig_probe_arg(regs, 1);
	gfn_t gfn = kvmmig_probe_arg(regs, 2);
	struct kvm_vcpu *vcpu;
	struct kvmmig_vcpu *v;
	unsigned long *bitmap;

	if (!kvmmig_sessions_attached() || !ms || READ_ONCE(kvm->dirty_ring_size) ||
	    !(ms->flags & KVM_MEM_LOG_DIRTY_PAGES))
		return 0;
	bitmap = READ_ONCE(ms->dirty_bitmap);
	if (!bitmap || gfn - ms->base_gfn >= ms->npages ||
	    test_bit_le(gfn - ms->base_gfn, bitmap))
		return 0;
	vcpu = kvm_get_running_vcpu();
	if (!vcpu || vcpu->kvm != kvm)
		return 0;
	rcu_read_lock();
	v = kvmmig_vcpu_find(vcpu);
	if (v)
		WRITE_ONCE(v->dirty_pages, v->dirty_pages + 1);
	rcu_read_unlock();
	return 0;
}

static struct kprobe kvmmig_mark_kp = {
	.symbol_name	= KVMMIG_MARK_DIRTY_SYMBOL,
	.pre_handler	= kvmmig_probe_mark_dirty,
};

static bool kvmmig_mark_kp_on;

struct kvmmig_probe {
	const char *name;
	void *func;
	struct tracepoint *tp;		/* set while registered */
};

static struct kvmmig_probe kvmmig_probes[KVMMIG_NR_PROBES] = {
	[KVMMIG_PROBE_ENTRY]	 = { "kvm_entry", kvmmig_probe_entry },
	[KVMMIG_PROBE_EXIT]	 = { "kvm_exit", kvmmig_probe_exit },
	[KVMMIG_PROBE_PUSH]	 = { "kvm_dirty_ring_push", kvmmig_probe_push },
	[KVMMIG_PROBE_RING_EXIT] = { "kvm_dirty_ring_exit", kvmmig_probe_ring_exit },
};

bool kvmmig_probe_attached(int which)
{
	if (which == KVMMIG_PROBE_MARK_DIRTY)
		return kvmmig_mark_kp_on;
	return READ_ONCE(kvmmig_probes[which].tp) != NULL;
}

static int kvmmig_probe_attach(struct kvmmig_probe *p, struct tracepoint *tp)
{
	int r = tracepoint_probe_register(tp, p->func, NULL);

	if (r)
		pr_warn("kvmmig: cannot attach to %s: %d\n", p->name, r);
	else
		WRITE_ONCE(p->tp, tp);
	return r;
}

static void kvmmig_probe_detach(struct kvmmig_probe *p)
{
	if (!p->tp)
		return;
	WARN_ON_ONCE(tracepoint_probe_unregister(p->tp, p->func, NULL));
	WRITE_ONCE(p->tp, NULL);
}

/* The ring tracepoints live in kvm.ko but are not exported: match by name. */
static int kvmmig_tp_module_notify(struct notifier_block *nb,
				   unsigned long val, void *data)
{
	struct tp_module *tp_mod = data;
	struct module *mod = tp_mod->mod;
	struct tracepoint *tp;
	unsigned int i;
	int w;

	for (i = 0; i < mod->num_tracepoints; i++) {
		tp = tracepoint_ptr_deref(&mod->tracepoints_ptrs[i]);
		for (w = KVMMIG_PROBE_PUSH; w <= KVMMIG_PROBE_RING_EXIT; w++) {
			struct kvmmig_probe *p = &kvmmig_probes[w];

			if (strcmp(tp->name, p->name))
				continue;
			if (val == MODULE_STATE_COMING && !p->tp)
				kvmmig_probe_attach(p, tp);
			else if (val == MODULE_STATE_GOING && p->tp == tp)
				kvmmig_probe_detach(p);
		}
	}
	return NOTIFY_OK;
}

static struct notifier_block kvmmig_tp_nb = {
	.notifier_call = kvmmig_tp_module_notify,
};

int kvmmig_probes_register(void)
{
	int r;

	r = kvmmig_probe_attach(&kvmmig_probes[KVMMIG_PROBE_ENTRY],
				&__tracepoint_kvm_entry);
	if (r)
		return r;
	r = kvmmig_probe_attach(&kvmmig_probes[KVMMIG_PROBE_EXIT],
				&__tracepoint_kvm_exit);
	if (r)
		goto err_entry;
	/* Replays MODULE_STATE_COMING for kvm.ko, which is already loaded. */
	r = register_tracepoint_module_notifier(&kvmmig_tp_nb);
	if (r)
		goto err_exit;
	if (!kvmmig_probe_attached(KVMMIG_PROBE_PUSH))
		pr_warn("kvmmig: kvm_dirty_ring_push not found: no dirty counts or dirty limit\n");
	/* Optional: without it, VMs without a ring get no dirty counts. */
	r = register_kprobe(&kvmmig_mark_kp);
	if (r)
		pr_warn("kvmmig: cannot probe %s (%d): no dirty counts or dirty limit without a dirty ring\n",
			KVMMIG_MARK_DIRTY_SYMBOL, r);
	kvmmig_mark_kp_on = !r;
	return 0;

err_exit:
	kvmmig_probe_detach(&kvmmig_probes[KVMMIG_PROBE_EXIT]);
err_entry:
	kvmmig_probe_detach(&kvmmig_probes[KVMMIG_PROBE_ENTRY]);
	tracepoint_synchronize_unregister();
	return r;
}

void kvmmig_probes_unregister(void)
{
	/* Waits for running handlers (synchronize_rcu()). */
	if (kvmmig_mark_kp_on)
		unregister_kprobe(&kvmmig_mark_kp);
	kvmmig_mark_kp_on = false;
	/* Replays MODULE_STATE_GOING: detaches the ring probes. */
	unregister_tracepoint_module_notifier(&kvmmig_tp_nb);
	kvmmig_probe_detach(&kvmmig_probes[KVMMIG_PROBE_EXIT]);
	kvmmig_probe_detach(&kvmmig_probes[KVMMIG_PROBE_ENTRY]);
	/* No probe of ours runs, or will run, once this returns. */
	tracepoint_synchronize_unregister();
}

void kvmmig_vcpu_stats_fill(struct kvmmig_vcpu *v, struct kvmmig_vcpu_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->vcpu = v->idx;
	st->vcpu_id = v->vcpu_id;
	st->dirty_pages = READ_ONCE(v->dirty_pages);
	st->dirty_rate = v->rate;
	st->run_ns = READ_ONCE(v->run_ns);
	st->throttle_ns = atomic64_read(&v->throttle_ns);
	st->throttle_sleeps = atomic64_read(&v->throttle_sleeps);
	st->ring_full_exits = READ_ONCE(v->ring_full_exits);
	st->exits = READ_ONCE(v->exits);
	st->dirty_limit = v->dirty_limit;
	st->cpu_throttle = v->cpu_pct;
	st->ring_quota = v->ring_quota;
	if (READ_ONCE(v->entry_ns))
		st->flags |= KVMMIG_VCPU_F_IN_GUEST;
	if (test_bit(0, &v->twork_pending))
		st->flags |= KVMMIG_VCPU_F_SLEEP_PENDING;
	if (v->over_limit)
		st->flags |= KVMMIG_VCPU_F_OVER_LIMIT;
}

/* Close the rate window of every vCPU; over-limit events, rate limited. */
void kvmmig_window_update(struct kvmmig_session *s, u64 now)
{
	u64 pages, limited, dt, interval = (u64)kvmmig_event_interval_ms * NSEC_PER_MSEC;
	struct kvmmig_vcpu *v;
	u32 i;

	lockdep_assert_held(&s->lock);
	for (i = 0; i < s->nr_vcpus; i++) {
		v = s->vcpus[i];
		pages = READ_ONCE(v->dirty_pages);
		limited = READ_ONCE(v->limited);
		dt = now - v->win_start_ns;
		if (!dt)
			continue;
		v->rate = mul_u64_u64_div_u64(pages - v->win_pages, NSEC_PER_SEC, dt);
		v->over_limit = v->dirty_limit && limited != v->win_limited;
		v->win_start_ns = now;
		v->win_pages = pages;
		v->win_limited = limited;
		if (v->over_limit && now - v->last_event_ns >= interval) {
			v->last_event_ns = now;
			kvmmig_nl_over_limit_event(s, v);
		}
	}
}

static int kvmmig_stats_check(const struct kvmmig_stats *st)
{
	if (st->flags || st->pad || st->pad2 ||
	    memchr_inv(st->reserved, 0, sizeof(st->reserved)))
		return -EINVAL;
	if (st->nr_vcpus > KVM_MAX_VCPUS)
		return -E2BIG;
	return 0;
}

long kvmmig_vcpu_stats(struct kvmmig_session *s, struct kvmmig_stats __user *ust)
{
	struct kvmmig_vcpu_stats *buf = NULL;
	struct kvmmig_stats in, out;
	u32 i, n;
	int r;

	if (copy_from_user(&in, ust, sizeof(in)))
		return -EFAULT;
	r = kvmmig_stats_check(&in);
	if (r)
		return r;
	r = kvmmig_session_lock(s);
	if (r)
		return r;
	n = s->nr_vcpus;
	memset(&out, 0, sizeof(out));
	out.vcpus = in.vcpus;
	out.nr_vcpus = n;
	out.window_ns = s->window_ns;
	out.timestamp_ns = ktime_get_ns();
	if (n > in.nr_vcpus) {
		r = -ENOSPC;
	} else if (n) {
		buf = kvcalloc(n, sizeof(*buf), GFP_KERNEL);
		if (!buf)
			r = -ENOMEM;
		for (i = 0; buf && i < n; i++)
			kvmmig_vcpu_stats_fill(s->vcpus[i], &buf[i]);
	}
	mutex_unlock(&s->lock);
	if (buf && copy_to_user(u64_to_user_ptr(in.vcpus), buf, n * sizeof(*buf)))
		r = -EFAULT;
	kvfree(buf);
	if ((!r || r == -ENOSPC) && copy_to_user(ust, &out, sizeof(out)))
		r = -EFAULT;
	return r;
}
