// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU's own live migration beside kvmmig: Debian's qemu-system-x86_64
 * migrates the dirtying guest of qemu_dirty_bios.S to a second QEMU on
 * loopback, both driven over QMP (user/lib/qmp.c, qemu_mig.h), at a
 * bandwidth where it does not converge; a kvmmig dirty limit set by hand
 * from outside QEMU makes it complete, and the destination guest checks
 * its own memory (qemu_converge_test does it with `kvmmig converge`).
 * With QEMU's dirty ring and with its bitmap; inside the Debian kernels
 * with kvmmig.ko loaded (selftests/vm), SKIPped without the module.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "log.h"
#include "module_client.h"
#include "qemu_kvmmig.h"
#include "qemu_mig.h"
#include "qemu_util.h"

#define NR_VCPUS	2
/*
 * Little RAM, since QEMU's zero-page scan is slow under TCG, and 512 KiB a
 * vCPU at 100 pages/s, written again every 1.3 s.
 */
#define MIG_RAM_MIB	32
#define MIG_PAGES	128
#define RATE		100.0

FIXTURE(qmig) {
	bool ready;
	struct qm_pair p;
	struct qk_attach attach;
};

FIXTURE_VARIANT(qmig) {
	unsigned int ring_entries;	/* 0: QEMU's dirty bitmap */
};

FIXTURE_VARIANT_ADD(qmig, ring) { 4096 };
FIXTURE_VARIANT_ADD(qmig, bitmap) { 0 };

FIXTURE_SETUP(qmig)
{
	const char *why = "";

	qk_attach_init(&self->attach);
	if (!kmod_present(&why))
		SKIP(return, "%s: these tests run inside the Debian kernels (make vmcheck)", why);
	self->ready = true;
}

FIXTURE_TEARDOWN(qmig)
{
	qk_attach_end(&self->attach);
	qm_stop(&self->p);
}

/*
 * QEMU's own live migration of the dirtying guest to a second QEMU on
 * loopback, at a bandwidth (512 KiB/s) below the guest's dirtying
 * (2 x 100 pages/s, 800 KiB/s) over 512 KiB a vCPU, which it writes again
 * every 1.3 s: pass after pass it does not converge; a kvmmig dirty limit
 * of 5 pages/s per vCPU makes it.  The destination guest then checks its
 * memory (qm_check_destination()).
 */
TEST_F_TIMEOUT(qmig, converges_under_dirty_limit, 300)
{
	struct qg_opts o = {
		.nr_vcpus = NR_VCPUS, .ram_mib = MIG_RAM_MIB,
		.ring_entries = variant->ring_entries, .pages = MIG_PAGES, .rate = RATE,
	};
	struct qmp_migration m;
	char err[1024];
	uint64_t syncs;
	double t0;

	if (!self->ready)
		return;
	qm_migrate(_metadata, &self->p, &o, 512 << 10);
	/* Pass after pass over the dirty pages, it does not end. */
	qm_follow(_metadata, &self->p.src, &m, 90, false, 5, NULL);
	TH_LOG("%s after %llu dirty syncs: %llu bytes remaining, %.1f Mb/s", m.status,
	       (unsigned long long)m.dirty_sync_count, (unsigned long long)m.remaining, m.mbps);
	ASSERT_STREQ("active", m.status);
	ASSERT_GE(m.dirty_sync_count, 5ULL);
	syncs = m.dirty_sync_count;
	qk_attach(_metadata, &self->attach, self->p.src.pid);
	qk_throttle(_metadata, &self->attach, "--dirty-limit", "5pages/s", NULL, NULL);
	t0 = now_s();
	qm_follow(_metadata, &self->p.src, &m, 120, true, 0, NULL);
	TH_LOG("%s %.1f s after the dirty limit: %llu ms total, %llu ms downtime, %llu dirty syncs",
	       m.status, now_s() - t0, (unsigned long long)m.total_time_ms,
	       (unsigned long long)m.downtime_ms, (unsigned long long)m.dirty_sync_count);
	EXPECT_STREQ("completed", m.status);
	EXPECT_EQ(NULL, qg_check_errors(&self->p.src, err, sizeof(err))) TH_LOG("source: %s", err);
	EXPECT_GT(m.dirty_sync_count, syncs);
	if (strcmp(m.status, "completed"))
		return;
	qm_check_destination(_metadata, &self->p);
}

TEST_HARNESS_MAIN
