// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig converge` on QEMU's own live migration, as an operator would run
 * it: Debian's qemu-system-x86_64 migrates a guest to a second QEMU on
 * loopback (qemu_mig.h) at a max-bandwidth below what the guest's vCPU 0
 * dirties, so that pass after pass it does not converge, while vCPU 1
 * only computes (qemu_dirty_bios.S).  Then the real command, `kvmmig
 * converge --pid QEMU --qmp SOCKET --json` (build/kvmmig), on a second QMP
 * monitor of the source: the migration must complete by the deadline
 * given, the destination guest's memory check pass, the dirty limit go on
 * vCPU 0 only, the computing vCPU keep >= 95% of its speed over the same
 * migration before converge started, and converge's final report say that
 * it converged, met the deadline, which limits it set, and that it lifted
 * them, which kvmmig.ko confirms over netlink.  A deadline that cannot be
 * met is said plainly, and the limits are still lifted at the end; SIGINT
 * mid-way lifts every limit and ends the command within a second.  With
 * QEMU's dirty ring and its bitmap; inside the Debian kernels with
 * kvmmig.ko loaded (selftests/vm), SKIPped without the module.  Timings
 * other than the bounds are measured and printed, not asserted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <json-c/json.h>

#include "kselftest_harness.h"
#include "log.h"
#include "module_client.h"
#include "qemu_kvmmig.h"
#include "qemu_mig.h"
#include "qemu_util.h"

#define NR_VCPUS	2
#define COMPUTING	1		/* vCPU 1 computes, vCPU 0 dirties */
/*
 * As qemu_migration_test: little RAM (QEMU's zero-page scan is slow under
 * TCG); vCPU 0 writes its 512 KiB at 100 pages/s (400 KiB/s), against a
 * link of 256 KiB/s that needs 2 s a pass: every pass finds it all dirty.
 */
#define MIG_RAM_MIB	32
#define MIG_PAGES	128
#define RATE		100.0
#define MAX_BW		(256 << 10)
#define NOCONV_SYNCS	5		/* passes that show it does not converge */
/*
 * The controller's defaults are for real guests (a vCPU under 4 MiB/s is
 * not dirtying, the strongest limit 1 MiB/s).  Here the dirtying vCPU
 * shares the machine with the computing one and QEMU, and the module
 * counted 13 to 40 of its pages a second; the computing vCPU dirties its
 * status page, 1 or 2 a second.
 */
#define IDLE_RATE	"16K"
#define MIN_LIMIT	"4K"
#define MIN_SAID	"4 KiB/s"	/* as converge says it */
#define MIN_PAGES	1		/* in the module's pages/s */
#define WITHIN_S	30		/* a deadline that can be met */
#define TIGHT_S		1		/* one that cannot */
#define CV_MS		120000		/* converge ends with the migration */
#define SIGINT_MS	1000		/* and within a second of SIGINT */

#define STARTS(s, prefix)	(!strncmp((s), (prefix), strlen(prefix)))

FIXTURE(qconv) {
	bool ready;
	struct qm_pair p;
	struct cli_child cv;
	double t0;			/* converge started */
	char out[QK_OUT_MAX], err[8192];
};

FIXTURE_VARIANT(qconv) {
	unsigned int ring_entries;	/* 0: QEMU's dirty bitmap */
};

FIXTURE_VARIANT_ADD(qconv, ring) { 4096 };
FIXTURE_VARIANT_ADD(qconv, bitmap) { 0 };

FIXTURE_SETUP(qconv)
{
	const char *why = "";

	self->cv.pidfd = self->cv.out = self->cv.err = -1;
	if (!kmod_present(&why))
		SKIP(return, "%s: these tests run inside the Debian kernels (make vmcheck)", why);
	self->ready = true;
}

FIXTURE_TEARDOWN(qconv)
{
	cli_end(&self->cv);
	qm_stop(&self->p);
}

/*
 * The migration of the dirtying guest under way, still active after
 * NOCONV_SYNCS passes; the computing vCPU's rounds per second from QEMU's
 * second dirty sync to now, its unthrottled speed, into *speed.
 */
static void start_non_converging(struct __test_metadata *_metadata, FIXTURE_DATA(qconv) *self,
				 unsigned int ring_entries, double *speed)
{
	struct qg_opts o = {
		.nr_vcpus = NR_VCPUS, .ram_mib = MIG_RAM_MIB, .ring_entries = ring_entries,
		.pages = MIG_PAGES, .rate = RATE, .compute_mask = 1U << COMPUTING,
		.second_qmp = true,
	};
	struct qmp_migration m;
	double t0;

	qm_migrate(_metadata, &self->p, &o, MAX_BW);
	qm_follow(_metadata, &self->p.src, &m, 90, false, 2, NULL);
	t0 = now_s();
	qm_follow(_metadata, &self->p.src, &m, 90, false, NOCONV_SYNCS, NULL);
	TH_LOG("%s after %llu dirty syncs: %llu bytes remaining, %.2f Mb/s", m.status,
	       (unsigned long long)m.dirty_sync_count, (unsigned long long)m.remaining, m.mbps);
	ASSERT_STREQ("active", m.status) TH_LOG("it should not converge by itself");
	ASSERT_GE(m.dirty_sync_count, (uint64_t)NOCONV_SYNCS);
	*speed = qg_rate(&self->p.src, COMPUTING, t0, now_s());
	ASSERT_GT(*speed, 0) TH_LOG("the computing vCPU did not run");
}

/* `kvmmig converge` on the source, on its own QMP monitor; @within: a deadline. */
static void start_converge(struct __test_metadata *_metadata, FIXTURE_DATA(qconv) *self,
			   const char *within)
{
	char pid[16];
	const char *args[] = {
		"converge", "--pid", pid, "--qmp", self->p.src.sock2, "--json",
		"--idle-rate", IDLE_RATE, "--min-limit", MIN_LIMIT,
		within ? "--converge-within" : NULL, within, NULL,
	};

	snprintf(pid, sizeof(pid), "%d", self->p.src.pid);
	self->t0 = now_s();
	ASSERT_EQ(0, cli_start(&self->cv, args));
}

/* Converge's JSON event @event (the last one), parsed; NULL if none. */
static struct json_object *cv_event(FIXTURE_DATA(qconv) *self, const char *event)
{
	char needle[64], *p, *last = NULL, *e;
	struct json_object *o;

	snprintf(needle, sizeof(needle), "{\"event\":\"%s\"", event);
	cli_output(self->cv.out, self->out, sizeof(self->out));
	for (p = self->out; (p = strstr(p, needle)); p++)
		last = p;
	if (!last)
		return NULL;
	e = strchr(last, '\n');
	if (e)
		*e = '\0';
	o = json_tokener_parse(last);
	if (e)
		*e = '\n';
	return o;
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* vCPU @i's member @key in the end event's "vcpus" array, or -1. */
static int64_t end_vcpu(struct json_object *end, unsigned int i, const char *key)
{
	struct json_object *a = jget(end, "vcpus");

	if (!a || (size_t)i >= json_object_array_length(a))
		return -1;
	a = jget(json_object_array_get_idx(a, i), key);
	return a ? json_object_get_int64(a) : -1;
}

/*
 * The module's view of converge's session while it runs: every
 * QM_POLL_US until the migration ends, the first time a limit was seen
 * on vCPU 0 into *limit_t, and the computing vCPU must never be limited.
 * *active_t: when the source was last seen active.
 */
static void watch_until_done(struct __test_metadata *_metadata, FIXTURE_DATA(qconv) *self,
			     double *limit_t, double *active_t, uint64_t *strongest)
{
	uint64_t last_sync = 0;
	double deadline = now_s() + CV_MS / 1000.0;
	struct qmp_migration m;
	struct kv_seen w;

	*limit_t = *active_t = 0;
	*strongest = 0;
	do {
		ASSERT_EQ(0, kv_module_view(self->p.src.pid, self->cv.pid, &w));
		EXPECT_EQ(0ULL, w.limit[COMPUTING]) TH_LOG("the computing vCPU is limited");
		EXPECT_EQ(0U, w.cpu_throttle[COMPUTING]);
		if (w.limit[0] && !*limit_t)
			*limit_t = now_s();
		if (w.limit[0] && (!*strongest || w.limit[0] < *strongest))
			*strongest = w.limit[0];
		qm_follow(_metadata, &self->p.src, &m, 0, true, 0, active_t);
		if (m.dirty_sync_count != last_sync) {
			last_sync = m.dirty_sync_count;
			TH_LOG("%.2f: dirty sync %llu, %llu bytes left, %.2f Mb/s; vCPU 0 limit %llu pages/s",
			       now_s() - self->t0, (unsigned long long)last_sync,
			       (unsigned long long)m.remaining, m.mbps,
			       (unsigned long long)w.limit[0]);
		}
		if (!strcmp(m.status, "completed"))
			return;
		if (cli_wait(&self->cv, 0) != -ETIMEDOUT) {
			/*
			 * Converge follows the same migration on its own monitor
			 * and may see it complete between this poll and that
			 * wait: only a migration still unfinished now is wrong.
			 */
			qm_follow(_metadata, &self->p.src, &m, 0, true, 0, active_t);
			ASSERT_STREQ("completed", m.status)
				TH_LOG("converge ended before the migration: %s %s",
				       cli_output(self->cv.out, self->out, sizeof(self->out)),
				       cli_output(self->cv.err, self->err, sizeof(self->err)));
			return;
		}
		usleep(QM_POLL_US);
	} while (now_s() < deadline);
	ASSERT_STREQ("completed", m.status)
		TH_LOG("not completed in %d s under converge: %s", CV_MS / 1000,
		       cli_output(self->cv.out, self->out, sizeof(self->out)));
}

/* Converge has ended by itself with status @want; its end event. */
static struct json_object *converge_ended(struct __test_metadata *_metadata,
					  FIXTURE_DATA(qconv) *self, int want)
{
	struct json_object *end;

	ASSERT_EQ(0, cli_wait(&self->cv, 10000))
		TH_LOG("converge still runs after the migration ended");
	EXPECT_EQ(want, cli_exit_status(&self->cv))
		TH_LOG("%s", cli_output(self->cv.err, self->err, sizeof(self->err)));
	end = cv_event(self, "end");
	ASSERT_NE(NULL, end) TH_LOG("no end event: %s", self->out);
	TH_LOG("converge: %s", json_object_to_json_string(end));
	return end;
}

/* No session of converge's, none at all, on QEMU's VM: no limit left. */
static void nothing_left(struct __test_metadata *_metadata, FIXTURE_DATA(qconv) *self,
			 pid_t cv_pid)
{
	struct kv_seen w;

	ASSERT_EQ(0, kv_module_view(self->p.src.pid, cv_pid, &w));
	EXPECT_EQ(0U, w.session) TH_LOG("converge's session outlived it");
	EXPECT_EQ(0U, w.sessions) TH_LOG("a session (and its limits) is left on QEMU's VM");
}

/*
 * The migration completes under converge by a deadline that can be met;
 * only vCPU 0 is limited; the computing vCPU keeps its speed; the report
 * says converged, met, the limits, lifted; the destination checks out.
 */
TEST_F_TIMEOUT(qconv, converges_within_deadline, 300)
{
	double free_speed, during, limit_t, active_t, t0, t;
	char within[16];
	struct json_object *end;
	uint64_t strongest;
	pid_t cv_pid;

	if (!self->ready)
		return;
	start_non_converging(_metadata, self, variant->ring_entries, &free_speed);
	snprintf(within, sizeof(within), "%d", WITHIN_S);
	start_converge(_metadata, self, within);
	t0 = self->t0;
	cv_pid = self->cv.pid;
	watch_until_done(_metadata, self, &limit_t, &active_t, &strongest);
	TH_LOG("completed %.1f s after converge started (deadline %d s); vCPU 0 limited %.1f s in, down to %llu pages/s",
	       now_s() - t0, WITHIN_S, limit_t ? limit_t - t0 : -1,
	       (unsigned long long)strongest);
	ASSERT_NE(0, limit_t) TH_LOG("no dirty limit was ever seen on vCPU 0");
	end = converge_ended(_metadata, self, 0);
	EXPECT_STREQ("completed", json_object_get_string(jget(end, "end")));
	EXPECT_TRUE(json_object_is_type(jget(end, "converged_s"), json_type_double));
	EXPECT_TRUE(json_object_get_boolean(jget(end, "throttled")));
	EXPECT_TRUE(json_object_get_boolean(jget(end, "lifted")));
	EXPECT_EQ(WITHIN_S, json_object_get_int(jget(end, "converge_within_s")));
	EXPECT_TRUE(json_object_get_boolean(jget(end, "deadline_met")));
	/* The report's limits are the module's: bytes/s against pages/s. */
	EXPECT_GT(end_vcpu(end, 0, "strongest_limit"), 0);
	EXPECT_LE((uint64_t)end_vcpu(end, 0, "strongest_limit") / QG_PAGE_SIZE, strongest)
		TH_LOG("the module held vCPU 0 at %llu pages/s", (unsigned long long)strongest);
	EXPECT_EQ(0, end_vcpu(end, COMPUTING, "strongest_limit"));
	json_object_put(end);
	nothing_left(_metadata, self, cv_pid);

	/* Second by second, beside the dirty syncs logged above. */
	for (t = t0 - 6; t + 1 <= active_t; t += 1)
		TH_LOG("%.0f-%.0f: computing vCPU at %.0f rounds/s", t - t0, t + 1 - t0,
		       qg_rate(&self->p.src, COMPUTING, t, t + 1));
	during = qg_rate(&self->p.src, COMPUTING, limit_t, active_t);
	TH_LOG("computing vCPU: %.0f rounds/s before converge, %.0f under its limits (%.1f%%)",
	       free_speed, during, 100 * during / free_speed);
	EXPECT_GE(during, 0.95 * free_speed);
	EXPECT_EQ(NULL, qg_check_errors(&self->p.src, self->err, sizeof(self->err)))
		TH_LOG("source: %s", self->err);
	qm_check_destination(_metadata, &self->p);
}

/*
 * A deadline that cannot be met (a second, against a backlog that takes
 * two at the full bandwidth): converge says so, once, in plain words with
 * the controller's reason (the `why` of its limits event), sets its
 * strongest limit, and still lifts it when the migration completes.
 */
TEST_F_TIMEOUT(qconv, infeasible_deadline_said_and_lifted, 300)
{
	double free_speed, limit_t, active_t;
	struct json_object *end, *limits;
	char want[512], within[16];
	const char *why;
	uint64_t strongest;
	pid_t cv_pid;

	if (!self->ready)
		return;
	start_non_converging(_metadata, self, variant->ring_entries, &free_speed);
	snprintf(within, sizeof(within), "%d", TIGHT_S);
	start_converge(_metadata, self, within);
	cv_pid = self->cv.pid;
	watch_until_done(_metadata, self, &limit_t, &active_t, &strongest);
	end = converge_ended(_metadata, self, 0);
	EXPECT_STREQ("completed", json_object_get_string(jget(end, "end")));
	EXPECT_FALSE(json_object_get_boolean(jget(end, "deadline_met")));
	EXPECT_TRUE(json_object_get_boolean(jget(end, "lifted")));
	EXPECT_EQ((uint64_t)MIN_PAGES, strongest) TH_LOG("not the strongest limit, %s", MIN_LIMIT);
	json_object_put(end);
	nothing_left(_metadata, self, cv_pid);

	/* The first infeasible limits event carries the reason; stderr says it. */
	cli_output(self->cv.out, self->out, sizeof(self->out));
	limits = NULL;
	{
		char *p = strstr(self->out, "\"verdict\":\"infeasible\""), *b, *e;

		ASSERT_NE(NULL, p) TH_LOG("no infeasible verdict: %s", self->out);
		for (b = p; b > self->out && b[-1] != '\n'; b--)
			;
		e = strchr(p, '\n');
		ASSERT_NE(NULL, e);
		*e = '\0';
		limits = json_tokener_parse(b);
	}
	why = json_object_get_string(jget(limits, "why"));
	ASSERT_NE(NULL, why);
	snprintf(want, sizeof(want), "kvmmig converge: the deadline of %d s cannot be met: %s\n",
		 TIGHT_S, why);
	cli_output(self->cv.err, self->err, sizeof(self->err));
	TH_LOG("stderr: %s", self->err);
	/* Said once; again only if it had become feasible in between. */
	EXPECT_TRUE(STARTS(self->err, want)) TH_LOG("expected: %s", want);
	EXPECT_TRUE(STARTS(why, "even with every dirtying vCPU limited to " MIN_SAID " the guest dirties ") ||
		    STARTS(why, "the deadline (1.0 s, less the 300 ms downtime) has passed with "))
		TH_LOG("%s", why);
	json_object_put(limits);
}

/*
 * SIGINT (Ctrl-C) while converge holds vCPU 0 at a limit: every limit is
 * gone, as the module says, and the command has ended within a second,
 * with its report.
 */
TEST_F_TIMEOUT(qconv, sigint_lifts_every_limit, 300)
{
	double free_speed, deadline, t;
	struct json_object *end;
	struct kv_seen w;
	pid_t cv_pid;

	if (!self->ready)
		return;
	start_non_converging(_metadata, self, variant->ring_entries, &free_speed);
	start_converge(_metadata, self, NULL);
	cv_pid = self->cv.pid;
	deadline = now_s() + CV_MS / 1000.0;
	do {
		ASSERT_EQ(0, kv_module_view(self->p.src.pid, cv_pid, &w));
		if (w.limit[0])
			break;
		ASSERT_EQ(-ETIMEDOUT, cli_wait(&self->cv, 200))
			TH_LOG("converge ended: %s %s",
			       cli_output(self->cv.out, self->out, sizeof(self->out)),
			       cli_output(self->cv.err, self->err, sizeof(self->err)));
	} while (now_s() < deadline);
	ASSERT_NE(0ULL, w.limit[0]) TH_LOG("no limit on vCPU 0 in %d s", CV_MS / 1000);
	TH_LOG("vCPU 0 held at %llu pages/s: SIGINT", (unsigned long long)w.limit[0]);
	t = now_s();
	ASSERT_EQ(0, kill(cv_pid, SIGINT));
	ASSERT_EQ(0, cli_wait(&self->cv, 10000)) TH_LOG("converge still runs 10 s after SIGINT");
	t = now_s() - t;
	TH_LOG("converge ended %.3f s after SIGINT", t);
	EXPECT_LE(t, SIGINT_MS / 1000.0);
	EXPECT_EQ(0, cli_exit_status(&self->cv))
		TH_LOG("%s", cli_output(self->cv.err, self->err, sizeof(self->err)));
	nothing_left(_metadata, self, cv_pid);
	end = cv_event(self, "end");
	ASSERT_NE(NULL, end) TH_LOG("no end event: %s", self->out);
	TH_LOG("converge: %s", json_object_to_json_string(end));
	EXPECT_STREQ("stopped by SIGINT", json_object_get_string(jget(end, "end")));
	EXPECT_TRUE(json_object_get_boolean(jget(end, "lifted")));
	json_object_put(end);
}

TEST_HARNESS_MAIN
