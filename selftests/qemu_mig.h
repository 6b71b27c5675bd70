/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU's own live migration as the tests drive it: a source QEMU on the
 * dirtying guest (qemu_util.h) and a paused `-incoming defer` destination,
 * `migrate-incoming` and `migrate` over QMP on loopback TCP at a chosen
 * max-bandwidth, query-migrate followed until it has made some passes or
 * completed, and the destination's own memory check once it runs.  For the
 * tests of kvmmig making QEMU's migration converge (qemu_migration_test,
 * qemu_converge_test).  Include after kselftest_harness.h: the helpers
 * assert.
 */
#ifndef KVMMIG_QEMU_MIG_H
#define KVMMIG_QEMU_MIG_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qemu_util.h"

#define QM_DOWNTIME_MS	300	/* QEMU's default downtime-limit, set anyway */
#define QM_POLL_US	200000	/* query-migrate this often */

/* A source and its destination; stopped by qm_stop(). */
struct qm_pair {
	struct qemu_guest src, dst;
	bool src_started, dst_started;
};

static inline void qm_stop(struct qm_pair *p)
{
	if (p->src_started)
		qg_stop(&p->src);
	if (p->dst_started)
		qg_stop(&p->dst);
	p->src_started = p->dst_started = false;
}

/*
 * Start the source on @o (running) and a destination like it, and QEMU's
 * migration between them on loopback at @max_bw bytes/s.
 */
static inline void qm_migrate(struct __test_metadata *_metadata, struct qm_pair *p,
			      const struct qg_opts *o, uint64_t max_bw)
{
	struct qg_opts d = *o;
	char err[1024], uri[64];

	p->src_started = true;
	ASSERT_EQ(0, qg_start(&p->src, o, err, sizeof(err))) TH_LOG("source: %s", err);
	d.incoming = true;
	d.second_qmp = false;
	p->dst_started = true;
	ASSERT_EQ(0, qg_start(&p->dst, &d, err, sizeof(err))) TH_LOG("destination: %s", err);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", 20000 + getpid() % 20000);
	if (qmp_command(&p->dst.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"%s\"}}", uri) ||
	    qmp_command(&p->src.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-set-parameters\",\"arguments\":"
			"{\"max-bandwidth\":%llu,\"downtime-limit\":%d}}",
			(unsigned long long)max_bw, QM_DOWNTIME_MS) ||
	    qmp_command(&p->src.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"%s\"}}", uri)) {
		ASSERT_TRUE(0) TH_LOG("%s", kvmmig_last_error());
	}
}

/*
 * Poll query-migrate on @g until the migration has completed
 * (@until_completed) or the source made @syncs passes over its dirty
 * pages, for @secs at most.  A destination answers with its own status.
 * @active_t (may be NULL): the latest time it was seen active, when the
 * source's guest still ran.
 */
static inline void qm_follow(struct __test_metadata *_metadata, struct qemu_guest *g,
			     struct qmp_migration *m, double secs, bool until_completed,
			     uint64_t syncs, double *active_t)
{
	double deadline = now_s() + secs, t;

	do {
		t = now_s();
		ASSERT_EQ(0, qmp_query_migrate(&g->qmp, m, QG_QMP_MS))
			TH_LOG("%s", kvmmig_last_error());
		ASSERT_STRNE("failed", m->status);
		if (active_t && !strcmp(m->status, "active"))
			*active_t = t;
		if (!strcmp(m->status, "completed") ||
		    (!until_completed && m->dirty_sync_count >= syncs))
			return;
		usleep(QM_POLL_US);
	} while (now_s() < deadline);
}

/*
 * The destination of a completed migration, run: once it has loaded all,
 * one page of vCPU 0's is spoilt half a pass ahead of it (not the next
 * one: a vCPU held at a dirty limit stops at the write's fault, with the
 * old value already read for the check), then it runs flat out (no dirty
 * logging there: a pass takes moments) until every dirtying vCPU has made
 * two passes, and must find that page and no other.
 */
static inline void qm_check_destination(struct __test_metadata *_metadata, struct qm_pair *p)
{
	struct qemu_guest *dst = &p->dst;
	unsigned int nr = dst->o.nr_vcpus, k, i, behind;
	volatile struct qg_status *st = qg_status(dst, 0);
	uint32_t pass0[QG_MAX_VCPUS];
	volatile uint32_t *spoilt;
	struct qmp_migration m;
	char err[512];

	ASSERT_EQ(0U, dst->o.compute_mask & 1) TH_LOG("vCPU 0 must dirty for the check");
	qm_follow(_metadata, dst, &m, 60, true, 0, NULL);
	ASSERT_STREQ("completed", m.status) TH_LOG("the destination did not finish loading");
	for (i = 0; i < nr; i++)
		pass0[i] = qg_status(dst, i)->pass;
	spoilt = (volatile uint32_t *)(dst->mem + QG_RANGES +
				       (size_t)((st->writes + dst->o.pages / 2) % dst->o.pages) *
				       QG_PAGE_SIZE);
	*spoilt += 1000;
	qg_set_rate(dst, 0);
	ASSERT_EQ(0, qmp_command(&dst->qmp, NULL, 0, QG_QMP_MS, "{\"execute\":\"cont\"}"))
		TH_LOG("%s", kvmmig_last_error());
	for (k = 0; k < 600; k++) {
		for (i = behind = 0; i < nr; i++)
			behind += !(dst->o.compute_mask & (1U << i)) &&
				  qg_status(dst, i)->pass < pass0[i] + 2;
		if (!behind)
			break;
		usleep(100000);
	}
	TH_LOG("destination: vCPU 0 at pass %u (from %u), %u errors", st->pass, pass0[0],
	       st->errors);
	EXPECT_EQ(0U, behind) TH_LOG("%u dirtying vCPUs made fewer than two passes in 60 s",
				     behind);
	EXPECT_EQ(1U, st->errors);
	EXPECT_EQ((uint32_t)((volatile uint8_t *)spoilt - dst->mem), st->bad_gpa);
	for (i = 1; i < nr; i++)
		EXPECT_EQ(0U, qg_status(dst, i)->errors)
			TH_LOG("%s", qg_check_errors(dst, err, sizeof(err)) ?: "");
}

#endif /* KVMMIG_QEMU_MIG_H */
