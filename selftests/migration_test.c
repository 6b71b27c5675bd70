// SPDX-License-Identifier: GPL-2.0-only
/*
 * Live migration end to end, for every combination of sync mode (legacy,
 * background, periodic), convergence policy (none, auto-converge,
 * dirty-limit, rate-driven), multifd channels (1, 4) and zero-page
 * detection (on, off): an incr guest migrates to a destination process over
 * loopback TCP, and there, after running on, its memory passes QEMU
 * migration-test's one-edge check.  The policies are made to work: the link
 * is capped below the guest's dirty rate, so the guest cannot converge
 * without being throttled (max-passes turns a failure to converge into a
 * test failure instead of a hang).  A few combinations run again on the
 * bitmap-manual dirty source, which re-protects pages only just before
 * sending them: no page may be lost there either.
 */
#include "kselftest_harness.h"
#include "mig_test_util.h"

#define GUEST_RAM	(32ULL << 20)
#define CAPPED_LINK	(48ULL << 20)	/* bytes/s, well below incr's dirty rate */

FIXTURE(mig) {
	struct vm *vm;
	struct dest_child dest;
};

FIXTURE_VARIANT(mig) {
	enum mig_sync_mode sync;
	enum mig_policy policy;
	unsigned int channels;
	bool zero;
	enum dirty_backend backend;	/* DIRTY_AUTO: the best the host has */
};

#define MIG_VARIANT(s, p, c, z)							\
	FIXTURE_VARIANT_ADD(mig, s##_##p##_ch##c##_##z) {			\
		.sync = MIG_SYNC_##s, .policy = MIG_POLICY_##p,			\
		.channels = c, .zero = !strcmp(#z, "zero"),			\
	}
#define MIG_VARIANTS_CZ(s, p)							\
	MIG_VARIANT(s, p, 1, zero); MIG_VARIANT(s, p, 1, nozero);		\
	MIG_VARIANT(s, p, 4, zero); MIG_VARIANT(s, p, 4, nozero)
#define MIG_VARIANTS_P(s)							\
	MIG_VARIANTS_CZ(s, NONE); MIG_VARIANTS_CZ(s, AUTO_CONVERGE);		\
	MIG_VARIANTS_CZ(s, DIRTY_LIMIT); MIG_VARIANTS_CZ(s, RATE_DRIVEN)

MIG_VARIANTS_P(LEGACY);
MIG_VARIANTS_P(BACKGROUND);
MIG_VARIANTS_P(PERIODIC);

#define MIG_VARIANT_MANUAL(s, p, c, z)						\
	FIXTURE_VARIANT_ADD(mig, manual_##s##_##p##_ch##c##_##z) {		\
		.sync = MIG_SYNC_##s, .policy = MIG_POLICY_##p,			\
		.channels = c, .zero = !strcmp(#z, "zero"),			\
		.backend = DIRTY_BITMAP_MANUAL,					\
	}
MIG_VARIANT_MANUAL(LEGACY, NONE, 1, zero);
MIG_VARIANT_MANUAL(BACKGROUND, AUTO_CONVERGE, 4, nozero);
MIG_VARIANT_MANUAL(PERIODIC, AUTO_CONVERGE, 1, zero);

FIXTURE_SETUP(mig)
{
	enum dirty_backend backend = variant->backend;

	if (backend == DIRTY_BITMAP_MANUAL && kvm_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
		SKIP(return, "KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
	self->vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->vm, NULL);
	ASSERT_EQ(dest_child_start(&self->dest, "127.0.0.1", NULL), 0);
}

FIXTURE_TEARDOWN(mig)
{
	if (self->dest.pid > 0)
		kill(self->dest.pid, SIGKILL), dest_child_wait(&self->dest);
	vm_destroy(self->vm);
}

TEST_F_TIMEOUT(mig, incr_guest_survives, 300)
{
	struct mig_source_opts o = { .to = self->dest.addr };
	struct mig_params *p = &o.params;
	struct mig_report rep;
	int ret, st;

	mig_params_init(p);
	p->sync_mode = variant->sync;
	p->policy = variant->policy;
	p->multifd_channels = variant->channels;
	p->zero_page_detection = variant->zero;
	p->dirty_backend = variant->backend;
	p->sync_interval_ms = 300;
	p->max_passes = 400;
	p->downtime_limit_ms = 500;
	/* Steeper than QEMU's defaults: a test, not a tuning study. */
	p->cpu_throttle_initial = 80;
	p->cpu_throttle_increment = 19;
	p->vcpu_dirty_limit = 2;
	p->dirty_limit_period_ms = 200;
	if (variant->policy != MIG_POLICY_NONE)
		p->max_bandwidth = CAPPED_LINK;

	ret = mig_source_run(self->vm->kv, &o, &rep);
	TH_LOG("%s: %s/%s/%u ch/%s: %s in %.2f s, %llu passes, %llu syncs, max throttle %u%%, downtime %.0f ms, %llu zero pages, %llu ring overflows%s%s",
	       rep.dirty_backend, mig_sync_mode_name(p->sync_mode), mig_policy_name(p->policy),
	       p->multifd_channels,
	       p->zero_page_detection ? "zero" : "nozero", mig_state_name(rep.state), rep.total_s,
	       (unsigned long long)rep.passes, (unsigned long long)rep.syncs, rep.max_throttle_pct,
	       rep.downtime_ms, (unsigned long long)rep.zero_pages,
	       (unsigned long long)rep.ring_overflows, rep.error[0] ? ": " : "",
	       rep.error);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(rep.state, (enum mig_state)MIG_COMPLETED);
	st = dest_child_wait(&self->dest);
	self->dest.pid = 0;
	ASSERT_EQ(st, DEST_OK) TH_LOG("destination exit code %d", st);
	if (!variant->zero) {
		ASSERT_EQ(rep.zero_pages, 0ULL);
	} else {
		/* Most of a fresh guest's system slot is zero. */
		ASSERT_GT(rep.zero_pages, 0ULL);
	}
	if (variant->policy == MIG_POLICY_NONE || variant->policy == MIG_POLICY_RATE_DRIVEN ||
	    variant->sync == MIG_SYNC_LEGACY) {
		/* No extra syncs when nothing needs them: one per pass. */
		ASSERT_EQ(rep.syncs, rep.passes);
	}
	mig_report_free(&rep);
}

TEST_HARNESS_MAIN
