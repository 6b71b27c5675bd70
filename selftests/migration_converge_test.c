// SPDX-License-Identifier: GPL-2.0-only
/*
 * The converge policy on kvmmig's own migration (`migrate --policy
 * converge`, user/lib/converge.c through mig_throttle.c), on the host with
 * the built-in VMM: the throttle backend is kvmmig.ko's dirty limit where
 * the module is loaded, else the VMM's vCPU threads.  An incr guest that
 * does not converge without a policy at a capped link (checked in the same
 * test: max-passes runs out) completes under converge, and its memory
 * passes the one-edge check on the destination.  A guest with one dirtying
 * and one computing vCPU completes with only the dirtying vCPU limited,
 * and the computing vCPU keeps at least 95% of its speed over the same
 * migration without a policy (loops per second of its compute loop, as
 * dirty_limit_perf counts them).  No timing is asserted.
 */
#include "kselftest_harness.h"
#include "mig_test_util.h"

#define GUEST_RAM	(32ULL << 20)
#define CAPPED_LINK	(48ULL << 20)	/* bytes/s, well below incr's dirty rate */

/* The computing vCPU's loops at the first and the latest precopy sample. */
struct speed_probe {
	struct vm *vm;
	uint64_t loops[2];
	double t[2];
	bool started;
};

static void speed_progress(void *opaque, enum mig_state state, const struct mig_sample *smp,
			   const struct mig_report *rep)
{
	struct speed_probe *sp = opaque;
	uint64_t l = __atomic_load_n(&sp->vm->vcpus[1].area->loops, __ATOMIC_RELAXED);

	if (state != MIG_ACTIVE)
		return;
	if (!sp->started) {
		sp->loops[0] = l;
		sp->t[0] = now_s();
		sp->started = true;
	}
	sp->loops[1] = l;
	sp->t[1] = now_s();
}

/* An incr guest on @nr_vcpus; the vCPUs in @compute_mask only compute. */
static struct vm *converge_guest(unsigned int nr_vcpus, uint64_t compute_mask)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = GUEST_RAM,
		.nr_slots = 2,
		.guest.workload = WORKLOAD_INCR,
		.guest.compute_mask = compute_mask,
	};
	struct vm *vm;

	if (dirty_prepare_config(DIRTY_AUTO, &cfg) < 0 || vm_create(&cfg, &vm))
		return NULL;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	usleep(200000);
	return vm;
}

static void converge_params(struct mig_params *p, enum mig_policy policy)
{
	mig_params_init(p);
	p->policy = policy;
	p->max_bandwidth = CAPPED_LINK;
	p->downtime_limit_ms = 300;
	p->dirty_limit_period_ms = 200;
	p->max_passes = 400;
}

static void log_report(struct __test_metadata *_metadata, const struct mig_report *rep)
{
	unsigned int i;

	TH_LOG("%s, throttle %s: %s in %.2f s, %llu passes, downtime %.0f ms%s%s",
	       rep->dirty_backend, rep->throttle_backend, mig_state_name(rep->state),
	       rep->total_s, (unsigned long long)rep->passes, rep->downtime_ms,
	       rep->error[0] ? ": " : "", rep->error);
	for (i = 0; i < rep->nr_vcpus; i++)
		TH_LOG("  vCPU %u: %s, max %u%%, dirty limit %llu B/s", i,
		       mig_throttle_mech_name(rep->vcpu_throttle[i].mech),
		       rep->vcpu_throttle[i].max_pct,
		       (unsigned long long)rep->vcpu_throttle[i].dirty_limit);
}

/* Without a policy it never converges; with converge it completes, memory intact. */
TEST(busy_guest_converges)
{
	struct mig_source_opts o = { 0 };
	struct dest_child dest;
	struct mig_report rep;
	struct vm *vm;
	int ret, st;

	vm = converge_guest(2, 0);
	ASSERT_NE(vm, NULL);

	ASSERT_EQ(dest_child_start(&dest, "127.0.0.1", NULL), 0);
	o.to = dest.addr;
	converge_params(&o.params, MIG_POLICY_NONE);
	o.params.max_passes = 6;
	ret = mig_source_run(vm->kv, &o, &rep);
	log_report(_metadata, &rep);
	EXPECT_NE(ret, 0);
	EXPECT_EQ(rep.state, (enum mig_state)MIG_FAILED);
	/* It gave up at max-passes, not for another reason. */
	EXPECT_EQ(rep.passes, 6ULL);
	mig_report_free(&rep);
	kill(dest.pid, SIGKILL);
	dest_child_wait(&dest);

	ASSERT_EQ(dest_child_start(&dest, "127.0.0.1", NULL), 0);
	o.to = dest.addr;
	converge_params(&o.params, MIG_POLICY_CONVERGE);
	ret = mig_source_run(vm->kv, &o, &rep);
	log_report(_metadata, &rep);
	EXPECT_EQ(ret, 0);
	EXPECT_EQ(rep.state, (enum mig_state)MIG_COMPLETED);
	EXPECT_NE(rep.vcpu_throttle[0].mech, (enum mig_throttle_mech)MIG_THROTTLE_NONE);
	mig_report_free(&rep);
	st = dest_child_wait(&dest);
	EXPECT_EQ(st, DEST_OK) TH_LOG("destination exit code %d", st);
	vm_destroy(vm);
}

/*
 * The computing vCPU's loops per second over a migration's precopy passes
 * (the switchover's pause is not the throttle's), as @policy runs it.
 */
static double speed_during(struct __test_metadata *_metadata, struct vm *vm,
			   enum mig_policy policy, unsigned int max_passes, struct mig_report *rep,
			   int *ret)
{
	struct mig_source_opts o = { 0 };
	struct speed_probe sp = { .vm = vm };
	struct dest_child dest;

	ASSERT_EQ(dest_child_start(&dest, "127.0.0.1", NULL), 0);
	o.to = dest.addr;
	converge_params(&o.params, policy);
	if (max_passes)
		o.params.max_passes = max_passes;
	o.progress = speed_progress;
	o.opaque = &sp;
	o.progress_interval_s = 0.2;
	*ret = mig_source_run(vm->kv, &o, rep);
	log_report(_metadata, rep);
	if (*ret) {
		kill(dest.pid, SIGKILL);
		dest_child_wait(&dest);
	} else {
		EXPECT_EQ(dest_child_wait(&dest), DEST_OK);
	}
	ASSERT_GT(sp.t[1], sp.t[0]);
	return (sp.loops[1] - sp.loops[0]) / (sp.t[1] - sp.t[0]);
}

/*
 * vCPU 0 dirties, vCPU 1 computes: only vCPU 0 is limited, and vCPU 1 runs
 * at >= 95% of its unthrottled speed.  That is its speed over the passes of
 * the same migration without a policy (which never converges: it gives up
 * at max-passes), not before any migration: dirty tracking slows it too
 * (every reset of the rings write-protects its pages and flushes its TLB),
 * whatever the throttle does, and that is not what is measured here.
 */
TEST(computing_vcpu_runs_free)
{
	struct mig_report rep;
	double free_speed, during;
	struct vm *vm;
	int ret;

	vm = converge_guest(2, 1 << 1);
	ASSERT_NE(vm, NULL);
	free_speed = speed_during(_metadata, vm, MIG_POLICY_NONE, 6, &rep, &ret);
	EXPECT_EQ(rep.state, (enum mig_state)MIG_FAILED);
	mig_report_free(&rep);
	ASSERT_GT(free_speed, 0);

	during = speed_during(_metadata, vm, MIG_POLICY_CONVERGE, 0, &rep, &ret);
	TH_LOG("computing vCPU: %.0f loops/s unthrottled, %.0f under converge (%.1f%%)",
	       free_speed, during, during / free_speed * 100);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(rep.state, (enum mig_state)MIG_COMPLETED);
	EXPECT_NE(rep.vcpu_throttle[0].mech, (enum mig_throttle_mech)MIG_THROTTLE_NONE);
	EXPECT_EQ(rep.vcpu_throttle[1].mech, (enum mig_throttle_mech)MIG_THROTTLE_NONE);
	EXPECT_GE(during, 0.95 * free_speed);
	mig_report_free(&rep);
	vm_destroy(vm);
}

TEST_HARNESS_MAIN
