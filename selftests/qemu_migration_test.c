// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU's own live migration beside kvmmig: Debian's qemu-system-x86_64
 * migrates the dirtying guest of qemu_dirty_bios.S to a second QEMU on
 * loopback, both driven over QMP (user/lib/qmp.c), at a bandwidth where it
 * does not converge; a kvmmig dirty limit set from outside QEMU makes it
 * complete, and the destination guest checks its own memory.  These are
 * the pieces `kvmmig converge` is to be tested with.  With QEMU's dirty
 * ring and with its bitmap; inside the Debian kernels with kvmmig.ko
 * loaded (selftests/vm), SKIPped without the module.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "log.h"
#include "module_client.h"
#include "qemu_kvmmig.h"
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
	bool started, dst_started;	/* qg_start() was called: qg_stop() */
	struct qemu_guest g, dst;
	struct qk_attach attach;
};

FIXTURE_VARIANT(qmig) {
	unsigned int ring_entries;	/* 0: QEMU's dirty bitmap */
};

FIXTURE_VARIANT_ADD(qmig, ring) { 4096 };
/* Passes once kvmmig.ko accounts bitmap-mode dirtying (issue 14). */
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
	if (self->started)
		qg_stop(&self->g);
	if (self->dst_started)
		qg_stop(&self->dst);
}

/*
 * Poll query-migrate until the migration has completed (@until_completed)
 * or the source made @syncs passes over its dirty pages, or for @secs at
 * most.  A destination answers with its own status.
 */
static void follow_migration(struct __test_metadata *_metadata, struct qemu_guest *src,
			     struct qmp_migration *m, double secs, bool until_completed,
			     uint64_t syncs)
{
	double deadline = now_s() + secs;

	do {
		ASSERT_EQ(0, qmp_query_migrate(&src->qmp, m, QG_QMP_MS))
			TH_LOG("%s", kvmmig_last_error());
		ASSERT_STRNE("failed", m->status);
		if (!strcmp(m->status, "completed") || (!until_completed && m->dirty_sync_count >= syncs))
			return;
		usleep(200000);
	} while (now_s() < deadline);
}

/*
 * QEMU's own live migration of the dirtying guest to a second QEMU on
 * loopback, at a bandwidth (512 KiB/s) below the guest's dirtying
 * (2 x 100 pages/s, 800 KiB/s) over 512 KiB a vCPU, which it writes again
 * every 1.3 s: pass after pass it does not converge; a kvmmig dirty limit
 * of 5 pages/s per vCPU makes it.  The destination starts paused; one page
 * is spoiled there before it runs, and its guest must find that page and
 * no other in one pass over its memory.
 */
TEST_F_TIMEOUT(qmig, converges_under_dirty_limit, 300)
{
	struct qg_opts o = {
		.nr_vcpus = NR_VCPUS, .ram_mib = MIG_RAM_MIB,
		.ring_entries = variant->ring_entries,
	};
	struct qemu_guest *dst = &self->dst;
	struct qmp_migration m;
	volatile struct qg_status *st;
	volatile uint32_t *spoilt;
	char err[1024], uri[64];
	uint32_t pass0, pass1, k, syncs;
	double t0;

	if (!self->ready)
		return;
	o.pages = MIG_PAGES;
	o.rate = RATE;
	o.incoming = false;
	self->started = true;
	ASSERT_EQ(0, qg_start(&self->g, &o, err, sizeof(err))) TH_LOG("%s", err);
	o.incoming = true;
	self->dst_started = true;
	ASSERT_EQ(0, qg_start(dst, &o, err, sizeof(err))) TH_LOG("%s", err);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", 20000 + getpid() % 20000);
	if (qmp_command(&dst->qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"%s\"}}", uri) ||
	    qmp_command(&self->g.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-set-parameters\",\"arguments\":"
			"{\"max-bandwidth\":524288,\"downtime-limit\":300}}") ||
	    qmp_command(&self->g.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"%s\"}}", uri)) {
		ASSERT_TRUE(0) TH_LOG("%s", kvmmig_last_error());
	}
	/* Pass after pass over the dirty pages, it does not end. */
	follow_migration(_metadata, &self->g, &m, 90, false, 5);
	TH_LOG("%s after %llu dirty syncs: %llu bytes remaining, %.1f Mb/s", m.status,
	       (unsigned long long)m.dirty_sync_count, (unsigned long long)m.remaining, m.mbps);
	ASSERT_STREQ("active", m.status);
	ASSERT_GE(m.dirty_sync_count, 5ULL);
	syncs = m.dirty_sync_count;
	qk_attach(_metadata, &self->attach, self->g.pid);
	qk_throttle(_metadata, &self->attach, "--dirty-limit", "5pages/s", NULL, NULL);
	t0 = now_s();
	follow_migration(_metadata, &self->g, &m, 120, true, 0);
	TH_LOG("%s %.1f s after the dirty limit: %llu ms total, %llu ms downtime, %llu dirty syncs",
	       m.status, now_s() - t0, (unsigned long long)m.total_time_ms,
	       (unsigned long long)m.downtime_ms, (unsigned long long)m.dirty_sync_count);
	EXPECT_STREQ("completed", m.status);
	EXPECT_EQ(NULL, qg_check_errors(&self->g, err, sizeof(err))) TH_LOG("source: %s", err);
	EXPECT_GT(m.dirty_sync_count, syncs);
	if (strcmp(m.status, "completed"))
		return;
	/* The source is done when it has sent all; the destination when it has loaded all. */
	follow_migration(_metadata, dst, &m, 60, true, 0);
	ASSERT_STREQ("completed", m.status) TH_LOG("the destination did not finish loading");
	/*
	 * Spoil a page vCPU 0 comes to half a pass from now.  Not the next one:
	 * a vCPU held at its dirty limit stops at the write's fault, with the
	 * old value already read for the check.
	 */
	st = qg_status(dst, 0);
	pass0 = st->pass;
	pass1 = qg_status(dst, 1)->pass;
	spoilt = (volatile uint32_t *)(dst->mem + QG_RANGES +
				       (size_t)((st->writes + MIG_PAGES / 2) % MIG_PAGES) * QG_PAGE_SIZE);
	*spoilt += 1000;
	/* Flat out: no dirty logging here, a pass takes moments. */
	qg_set_rate(dst, 0);
	ASSERT_EQ(0, qmp_command(&dst->qmp, NULL, 0, QG_QMP_MS, "{\"execute\":\"cont\"}"))
		TH_LOG("%s", kvmmig_last_error());
	for (k = 0; k < 600 && (st->pass < pass0 + 2 || qg_status(dst, 1)->pass < pass1 + 2); k++)
		usleep(100000);
	TH_LOG("destination: vCPU 0 at pass %u (from %u), %u errors; vCPU 1 %u errors", st->pass,
	       pass0, st->errors, qg_status(dst, 1)->errors);
	EXPECT_GE(st->pass, pass0 + 2);
	EXPECT_EQ(1U, st->errors);
	EXPECT_EQ((uint32_t)((volatile uint8_t *)spoilt - dst->mem), st->bad_gpa);
	EXPECT_EQ(0U, qg_status(dst, 1)->errors)
		TH_LOG("%s", qg_check_errors(dst, err, sizeof(err)) ?: "");
}

TEST_HARNESS_MAIN
