// SPDX-License-Identifier: GPL-2.0-only
/*
 * The convergence policies' bookkeeping against a real backend: a throttle
 * counts as applied, and reaches the report, only once the backend took
 * it.  A built-in 2-vCPU guest computes; the policies are driven as the
 * migration drives them (dirty syncs, per-vCPU dirty counts at given
 * times).  Through the built-in VMM the throttles are in force in its vCPU
 * threads, the report names vmm-cpu-throttle, and a vCPU below the dirty
 * limit stays unthrottled; through the same VM wrapped by a VMM whose
 * throttle op fails, every attempt fails with its errno, which the policy
 * returns, and the report claims nothing.
 */
#include "kselftest_harness.h"
#include "mig_test_util.h"
#include "mig_throttle.h"

#define RAM		(16ULL << 20)
#define NR_VCPUS	2U

static int nop_op(void *opaque)
{
	return 0;
}

static int nop_state(void *opaque, unsigned int vcpu, void *state)
{
	return 0;
}

static int nop_load(void *opaque, unsigned int vcpu, const void *state)
{
	return 0;
}

/* A VMM that has a throttle, which refuses to work. */
static int refuse_throttle(void *opaque, int vcpu, unsigned int pct)
{
	unsigned int *calls = opaque;

	(*calls)++;
	return -EPERM;
}

static const struct kvmmig_vm_ops refusing_ops = {
	.pause = nop_op,
	.resume = nop_op,
	.state_size = 8,
	.save_state = nop_state,
	.load_state = nop_load,
	.set_throttle = refuse_throttle,
};

static void quiet_log(int level, const char *msg)
{
}

FIXTURE(pol) {
	struct vm *vm;		/* the built-in VMM's guest */
	struct kvmmig_vm *refusing;	/* the same VM, through refusing_ops */
	unsigned int refusals;
	struct mig_params p;
	struct mig_throttle t;
	struct mig_report rep;
};

FIXTURE_SETUP(pol)
{
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = RAM,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_COMPUTE,
		.guest.mem_gpa = GUEST_RAM_GPA,
		.guest.mem_pages = RAM / GUEST_PAGE_SIZE,
	};
	int fds[VM_MAX_VCPUS];
	struct kvmmig_vm_args a;
	unsigned int i;

	ASSERT_EQ(vm_create(&cfg, &self->vm), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_start(self->vm), 0);
	for (i = 0; i < NR_VCPUS; i++)
		fds[i] = self->vm->vcpus[i].fd;
	a = (struct kvmmig_vm_args){
		.vm_fd = self->vm->fd,
		.nr_vcpus = NR_VCPUS,
		.vcpu_fds = fds,
		.nr_slots = self->vm->nr_slots,
		.slots = self->vm->slots,
		.ops = &refusing_ops,
		.opaque = &self->refusals,
	};
	ASSERT_EQ(kvmmig_vm_new(&a, &self->refusing), 0) TH_LOG("%s", kvmmig_last_error());
	mig_params_init(&self->p);
	self->p.cpu_throttle_initial = 40;
	self->p.vcpu_dirty_limit = 2;
	memset(&self->rep, 0xff, sizeof(self->rep));	/* all must be written */
}

FIXTURE_TEARDOWN(pol)
{
	kvmmig_vm_free(self->refusing);
	if (self->vm)
		vm_stop(self->vm);
	vm_destroy(self->vm);
}

/* The trigger: dirtied more than threshold x sent, twice. */
static int trigger(struct mig_throttle *t)
{
	int ret = mig_throttle_on_sync(t, 2, 1);

	return ret ? ret : mig_throttle_on_sync(t, 2, 1);
}

/* vCPU 0 dirtied 10 MB in a second (over the 2 MB/s limit), vCPU 1 nothing. */
static int over_limit_period(struct mig_throttle *t)
{
	uint64_t pages[NR_VCPUS] = { 0, 0 };
	int ret = mig_throttle_on_rates(t, pages, 1.0, 0);

	pages[0] = 10000000 / GUEST_PAGE_SIZE;
	return ret ? ret : mig_throttle_on_rates(t, pages, 2.0, 0);
}

static void assert_nothing_claimed(struct __test_metadata *_metadata,
				   const struct mig_throttle *t, struct mig_report *rep)
{
	unsigned int i;

	ASSERT_EQ(mig_throttle_max(t), 0U);
	ASSERT_EQ(mig_throttle_report(t, rep), 0);
	ASSERT_EQ(rep->nr_vcpus, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++) {
		EXPECT_EQ(rep->vcpu_throttle[i].mech, (enum mig_throttle_mech)MIG_THROTTLE_NONE);
		EXPECT_EQ(rep->vcpu_throttle[i].max_pct, 0U);
		EXPECT_EQ(rep->vcpu_throttle[i].dirty_limit, 0ULL);
		EXPECT_EQ(rep->vcpu_throttle[i].slept_ms, -1);
	}
}

TEST_F_TIMEOUT(pol, auto_converge_vmm_applied, 60)
{
	unsigned int i;

	self->p.policy = MIG_POLICY_AUTO_CONVERGE;
	mig_throttle_init(&self->t, self->vm->kv, &self->p);
	ASSERT_EQ(mig_throttle_use_module(&self->t, NULL), 0);
	ASSERT_EQ(trigger(&self->t), 0);
	ASSERT_EQ(mig_throttle_max(&self->t), 40U);
	for (i = 0; i < NR_VCPUS; i++)
		ASSERT_EQ(self->vm->vcpus[i].throttle_pct, 40U);
	ASSERT_EQ(mig_throttle_report(&self->t, &self->rep), 0);
	ASSERT_EQ(self->rep.nr_vcpus, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++) {
		EXPECT_EQ(self->rep.vcpu_throttle[i].mech,
			  (enum mig_throttle_mech)MIG_THROTTLE_VMM_CPU);
		EXPECT_EQ(self->rep.vcpu_throttle[i].max_pct, 40U);
		EXPECT_EQ(self->rep.vcpu_throttle[i].dirty_limit, 0ULL);
		/* The VMM's op does not say how long it slept. */
		EXPECT_EQ(self->rep.vcpu_throttle[i].slept_ms, -1);
	}
	ASSERT_EQ(mig_throttle_off(&self->t), 0);
	ASSERT_EQ(vm_max_throttle(self->vm), 0U);
}

TEST_F_TIMEOUT(pol, auto_converge_refused, 60)
{
	self->p.policy = MIG_POLICY_AUTO_CONVERGE;
	mig_throttle_init(&self->t, self->refusing, &self->p);
	ASSERT_EQ(mig_throttle_use_module(&self->t, NULL), 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(trigger(&self->t), -EPERM);
	ASSERT_EQ(self->refusals, 1U);
	/* Not armed either: the next trigger tries the initial throttle again. */
	ASSERT_FALSE(self->t.active);
	ASSERT_EQ(self->t.changes, 0U);
	assert_nothing_claimed(_metadata, &self->t, &self->rep);
	ASSERT_EQ(vm_max_throttle(self->vm), 0U);
}

TEST_F_TIMEOUT(pol, dirty_limit_vmm_applied, 60)
{
	self->p.policy = MIG_POLICY_DIRTY_LIMIT;
	mig_throttle_init(&self->t, self->vm->kv, &self->p);
	ASSERT_EQ(mig_throttle_use_module(&self->t, NULL), 0);
	ASSERT_FALSE(self->t.bucket);
	ASSERT_EQ(trigger(&self->t), 0);
	ASSERT_TRUE(self->t.active);
	ASSERT_EQ(over_limit_period(&self->t), 0);
	/* 10 MB/s to 2 MB/s: run a fifth of the time. */
	ASSERT_EQ(self->t.pct[0], 80U);
	ASSERT_EQ(self->vm->vcpus[0].throttle_pct, 80U);
	ASSERT_EQ(self->vm->vcpus[1].throttle_pct, 0U);
	ASSERT_EQ(mig_throttle_report(&self->t, &self->rep), 0);
	EXPECT_EQ(self->rep.vcpu_throttle[0].mech, (enum mig_throttle_mech)MIG_THROTTLE_VMM_CPU);
	EXPECT_EQ(self->rep.vcpu_throttle[0].max_pct, 80U);
	EXPECT_EQ(self->rep.vcpu_throttle[1].mech, (enum mig_throttle_mech)MIG_THROTTLE_NONE);
	EXPECT_EQ(self->rep.vcpu_throttle[1].max_pct, 0U);
	ASSERT_EQ(mig_throttle_off(&self->t), 0);
	ASSERT_EQ(vm_max_throttle(self->vm), 0U);
}

TEST_F_TIMEOUT(pol, dirty_limit_refused, 60)
{
	self->p.policy = MIG_POLICY_DIRTY_LIMIT;
	mig_throttle_init(&self->t, self->refusing, &self->p);
	ASSERT_EQ(mig_throttle_use_module(&self->t, NULL), 0);
	ASSERT_EQ(trigger(&self->t), 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(over_limit_period(&self->t), -EPERM);
	ASSERT_EQ(self->refusals, 1U);
	ASSERT_EQ(self->t.pct[0], 0U);
	assert_nothing_claimed(_metadata, &self->t, &self->rep);
}

TEST_HARNESS_MAIN
