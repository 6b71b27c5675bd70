// SPDX-License-Identifier: GPL-2.0-only
/*
 * The two-phase handover at the end of a migration (Documentation/
 * handover.rst) under every single fault: each message of the commit
 * protocol (END, PREPARED, COMMIT, STARTED) is lost with its connection,
 * lost with the whole link, delayed past the deadline or forged, in turn,
 * through the fault proxy (mig_proxy.h).  Each case checks that exactly one
 * guest runs - the source's (running, intact, and the destination exited
 * without a guest) or the destination's (its memory check passed, the
 * source's stopped) - or, where neither side can know, that both printed
 * the settle command and kept the guest paused; the test then settles it
 * as an operator would and checks the result, including a --resume-source
 * refused because the destination runs the guest.
 */
#include <pthread.h>

#include "kselftest_harness.h"
#include "mig_proxy.h"
#include "mig_test_util.h"

#define GUEST_RAM	(32ULL << 20)
#define HANDOVER_MS	1500		/* --handover-timeout of both sides */
#define LONG_DELAY_MS	(2 * HANDOVER_MS + 500)
#define SHORT_DELAY_MS	200
#define SETTLE_WAIT_S	40		/* the settle thread gives up after this */

enum outcome {
	SOURCE_RUNS,	/* the source guest runs; the destination kept nothing */
	DEST_RUNS,	/* the destination guest ran and passed; the source's stopped */
};

/* What the operator does once the handover is undecided. */
enum settle_plan {
	SETTLE_NONE,
	SETTLE_DEST_DISCARD,		/* the source runs: drop the destination's copy */
	SETTLE_DEST_START,		/* start there, then --resume-source is refused */
	SETTLE_SOURCE_RESUME,		/* the destination is unreachable: resume, then discard there */
	SETTLE_RESUME_REFUSED,		/* the destination runs: --resume-source is refused */
};

enum forgery { FORGE_NONE, FORGE_DIGEST, FORGE_NONCE, FORGE_ACK, FORGE_REPLAY };

struct ho_case {
	bool fault;
	uint32_t rec;
	bool down;
	enum rec_action act;
	unsigned int delay_ms;
	enum forgery forge;
	bool src_undecided, dest_undecided;	/* each must print its settle command */
	enum settle_plan settle;
	enum outcome expect;
	const char *src_says;			/* the source's error, for SOURCE_RUNS */
};

/* ---- the source's log: where its settle command is printed ---- */

static pthread_mutex_t src_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char src_log[16384];

static void src_log_hook(int level, const char *msg)
{
	size_t n;

	fprintf(stderr, "kvmmig: %s\n", msg);
	pthread_mutex_lock(&src_log_lock);
	n = strlen(src_log);
	snprintf(src_log + n, sizeof(src_log) - n, "%s\n", msg);
	pthread_mutex_unlock(&src_log_lock);
}

static bool src_log_has(const char *what)
{
	bool ret;

	pthread_mutex_lock(&src_log_lock);
	ret = strstr(src_log, what);
	pthread_mutex_unlock(&src_log_lock);
	return ret;
}

/* ---- forgeries the proxy writes into a record ---- */

static uint8_t replay_rec[sizeof(struct mig_rec) + sizeof(struct mig_handover)];

static void forge(struct mig_rec *r, void *payload, void *opaque)
{
	struct mig_handover *h = payload;
	struct mig_ack *ack = payload;

	switch (*(enum forgery *)opaque) {
	case FORGE_DIGEST:
		h->ch[1].digest ^= 1;
		break;
	case FORGE_NONCE:
		h->nonce ^= 1;
		break;
	case FORGE_ACK:
		/* The old protocol's "resumed": status 0. */
		r->type = MIG_REC_ACK;
		r->len = sizeof(*ack);
		memset(ack, 0, sizeof(*ack));
		break;
	case FORGE_REPLAY:
		memcpy(payload, replay_rec + sizeof(*r), sizeof(struct mig_handover));
		break;
	default:
		break;
	}
}

/* ---- one migration through the proxy ---- */

struct ho_run {
	struct vm *vm;
	struct fail_dest dest;
	struct proxy px;
	struct mig_report rep;
	enum forgery forge;
	const struct ho_case *hc;
	/* the operator */
	pthread_t settler;
	bool settler_started;
	bool src_was_paused;		/* while undecided, its guest did not move */
	int dest_settle, src_settle;	/* what the settle commands returned */
	char src_answer[256];
};

/* Its counters stand still over 200 ms, five times in a row. */
static bool guest_stands_still(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < 5; i++) {
		uint64_t a = guest_loops(vm);

		usleep(40000);
		if (guest_loops(vm) != a)
			return false;
	}
	return true;
}

/* A settle command, retried while the other side is not waiting yet. */
static int settle_retry(bool source, uint64_t session, enum mig_settle_cmd cmd, char *answer,
			size_t len)
{
	double until = now_s() + SETTLE_WAIT_S;
	int ret;

	do {
		ret = mig_settle(source, session, cmd, answer, len);
		if (ret != -ECONNREFUSED)
			return ret;
		usleep(100000);
	} while (now_s() < until);
	return ret;
}

static bool wait_src_undecided(void)
{
	double until = now_s() + SETTLE_WAIT_S;

	while (!src_log_has("handover undecided") && now_s() < until)
		usleep(50000);
	return src_log_has("handover undecided");
}

static void *ho_settler(void *arg)
{
	struct ho_run *run = arg;
	char answer[256];
	unsigned int i;
	uint64_t id = 0;

	kvmmig_log_quiet(true);
	run->dest_settle = run->src_settle = 1;
	if (run->hc->src_undecided && wait_src_undecided())
		run->src_was_paused = guest_stands_still(run->vm);
	/* The proxy has seen the main channel's hello by the time anything is undecided. */
	for (i = 0; i < SETTLE_WAIT_S * 100; i++) {
		id = __atomic_load_n(&run->px.session, __ATOMIC_ACQUIRE);
		if (id)
			break;
		usleep(10000);
	}
	switch (run->hc->settle) {
	case SETTLE_DEST_DISCARD:
		run->dest_settle = settle_retry(false, id, MIG_SETTLE_DISCARD, answer,
						sizeof(answer));
		break;
	case SETTLE_DEST_START:
		run->dest_settle = settle_retry(false, id, MIG_SETTLE_START, answer,
						sizeof(answer));
		/* The destination runs: the source may not resume. */
		__attribute__((fallthrough));
	case SETTLE_RESUME_REFUSED:
		proxy_undrop(&run->px);
		run->src_settle = settle_retry(true, id, MIG_SETTLE_RESUME, run->src_answer,
					       sizeof(run->src_answer));
		break;
	case SETTLE_SOURCE_RESUME:
		run->src_settle = settle_retry(true, id, MIG_SETTLE_RESUME, run->src_answer,
					       sizeof(run->src_answer));
		run->dest_settle = settle_retry(false, id, MIG_SETTLE_DISCARD, answer,
						sizeof(answer));
		break;
	default:
		break;
	}
	/* Settled: the destination's guest, if it runs, may finish now. */
	fail_dest_release(&run->dest);
	return NULL;
}

static void ho_fault(struct ho_run *run, const struct ho_case *hc)
{
	struct proxy_fault *f = &run->px.fault;

	f->kind = hc->fault ? FAULT_RECORD : FAULT_NONE;
	f->conn = 0;
	f->rec_type = hc->rec;
	f->down = hc->down;
	f->act = hc->forge ? REC_REPLACE : hc->act;
	f->delay_ms = hc->delay_ms;
	f->edit = forge;
	run->forge = hc->forge;
	f->edit_opaque = &run->forge;
}

/* Migrate run->vm through the proxy; the source's return value. */
static int ho_migrate(struct __test_metadata *_metadata, struct ho_run *run)
{
	struct mig_source_opts o = {
		.to = run->px.addr,
		.progress_interval_s = 0.05,
		.handover_timeout_ms = HANDOVER_MS,
	};

	mig_params_init(&o.params);
	o.params.downtime_limit_ms = 500;
	o.params.max_passes = 400;
	run->dest.handover_timeout_ms = HANDOVER_MS;
	run->dest.log_all = true;
	/* It must still run, and answer, when --resume-source asks it. */
	run->dest.hold = run->hc->settle == SETTLE_DEST_START ||
			 run->hc->settle == SETTLE_RESUME_REFUSED;
	EXPECT_EQ(fail_dest_start(&run->dest), 0);
	EXPECT_EQ(proxy_start(&run->px, run->dest.addr), 0);
	if (run->hc->settle) {
		run->settler_started = !pthread_create(&run->settler, NULL, ho_settler, run);
		EXPECT_TRUE(run->settler_started);
	}
	return mig_source_run(run->vm->kv, &o, &run->rep);
}

/* Capture a genuine PREPARED of an earlier migration, for FORGE_REPLAY. */
static void ho_capture_prepared(struct __test_metadata *_metadata)
{
	static const struct ho_case capture = {
		.fault = true, .rec = MIG_REC_PREPARED, .down = true, .act = REC_CAPTURE,
	};
	enum dirty_backend backend = DIRTY_AUTO;
	struct ho_run run = { .hc = &capture };

	run.vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(run.vm, NULL);
	ho_fault(&run, &capture);
	run.px.fault.edit_opaque = replay_rec;
	ASSERT_EQ(ho_migrate(_metadata, &run), 0);
	proxy_stop(&run.px);
	ASSERT_EQ(WEXITSTATUS(fail_dest_wait(&run.dest)), DEST_OK);
	ASSERT_EQ(((struct mig_rec *)replay_rec)->type, (uint32_t)MIG_REC_PREPARED);
	mig_report_free(&run.rep);
	vm_destroy(run.vm);
}

FIXTURE(handover) {
	struct ho_run run;
};

FIXTURE_VARIANT(handover) {
	struct ho_case hc;
};

#define LOSE(name, r, dn, how, exp)						\
	FIXTURE_VARIANT_ADD(handover, name) {					\
		.hc = { .fault = true, .rec = MIG_REC_##r, .down = dn,		\
			.act = REC_##how, .expect = exp },			\
	}

/* A connection lost just before each message: a new connection settles it. */
LOSE(cut_before_end, END, false, CUT, SOURCE_RUNS);
LOSE(cut_before_prepared, PREPARED, true, CUT, SOURCE_RUNS);
LOSE(cut_before_commit, COMMIT, false, CUT, DEST_RUNS);
LOSE(cut_before_started, STARTED, true, CUT, DEST_RUNS);
/* The whole link lost before END: the destination has not prepared. */
LOSE(drop_link_before_end, END, false, DROP_LINK, SOURCE_RUNS);

/* The whole link lost: no new connection either, so an operator settles it. */
FIXTURE_VARIANT_ADD(handover, drop_link_before_prepared) {
	.hc = { .fault = true, .rec = MIG_REC_PREPARED, .down = true, .act = REC_DROP_LINK,
		.dest_undecided = true, .settle = SETTLE_DEST_DISCARD, .expect = SOURCE_RUNS },
};

FIXTURE_VARIANT_ADD(handover, drop_link_before_commit_start) {
	.hc = { .fault = true, .rec = MIG_REC_COMMIT, .act = REC_DROP_LINK,
		.src_undecided = true, .dest_undecided = true, .settle = SETTLE_DEST_START,
		.expect = DEST_RUNS },
};

FIXTURE_VARIANT_ADD(handover, drop_link_before_commit_resume) {
	.hc = { .fault = true, .rec = MIG_REC_COMMIT, .act = REC_DROP_LINK,
		.src_undecided = true, .dest_undecided = true, .settle = SETTLE_SOURCE_RESUME,
		.expect = SOURCE_RUNS },
};

FIXTURE_VARIANT_ADD(handover, drop_link_before_started) {
	.hc = { .fault = true, .rec = MIG_REC_STARTED, .down = true, .act = REC_DROP_LINK,
		.src_undecided = true, .settle = SETTLE_RESUME_REFUSED, .expect = DEST_RUNS },
};

#define DELAY(name, r, dn, ms, exp)						\
	FIXTURE_VARIANT_ADD(handover, name) {					\
		.hc = { .fault = true, .rec = MIG_REC_##r, .down = dn,		\
			.act = REC_DELAY, .delay_ms = ms, .expect = exp },	\
	}

DELAY(delay_end, END, false, SHORT_DELAY_MS, DEST_RUNS);
DELAY(delay_prepared_past_deadline, PREPARED, true, LONG_DELAY_MS, SOURCE_RUNS);
DELAY(delay_commit_past_deadline, COMMIT, false, LONG_DELAY_MS, DEST_RUNS);
DELAY(delay_started_past_deadline, STARTED, true, LONG_DELAY_MS, DEST_RUNS);

#define FORGE(name, r, dn, f, exp, says)					\
	FIXTURE_VARIANT_ADD(handover, name) {					\
		.hc = { .fault = true, .rec = MIG_REC_##r, .down = dn,		\
			.forge = FORGE_##f, .expect = exp, .src_says = says },	\
	}

FORGE(forged_prepared_digest, PREPARED, true, DIGEST, SOURCE_RUNS, "channel 1 received");
FORGE(forged_prepared_nonce, PREPARED, true, NONCE, SOURCE_RUNS, "stale or forged");
FORGE(forged_ack_for_prepared, PREPARED, true, ACK, SOURCE_RUNS, "destination failed");
FORGE(replayed_prepared, PREPARED, true, REPLAY, SOURCE_RUNS, "stale or forged");
FORGE(forged_commit_nonce, COMMIT, false, NONCE, DEST_RUNS, NULL);
FORGE(forged_started_nonce, STARTED, true, NONCE, DEST_RUNS, NULL);

FIXTURE_VARIANT_ADD(handover, no_fault) {
	.hc = { .expect = DEST_RUNS },
};

FIXTURE_SETUP(handover)
{
	enum dirty_backend backend = DIRTY_AUTO;

	kvmmig_set_log(src_log_hook, KVMMIG_LOG_ERR);
	if (variant->hc.forge == FORGE_REPLAY)
		ho_capture_prepared(_metadata);
	self->run.hc = &variant->hc;
	self->run.dest.pid = 0;
	self->run.dest.errfd = -1;
	self->run.vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->run.vm, NULL);
}

FIXTURE_TEARDOWN(handover)
{
	if (self->run.settler_started)
		pthread_join(self->run.settler, NULL);
	proxy_stop(&self->run.px);
	fail_dest_kill(&self->run.dest);
	mig_report_free(&self->run.rep);
	if (self->run.vm)
		vm_destroy(self->run.vm);
}

static void ho_check_undecided(struct __test_metadata *_metadata, struct ho_run *run)
{
	const struct ho_case *hc = run->hc;
	char cmd[96];

	if (hc->src_undecided) {
		snprintf(cmd, sizeof(cmd), "kvmmig migrate --settle %016llx",
			 (unsigned long long)run->px.session);
		EXPECT_TRUE(src_log_has(cmd)) TH_LOG("the source did not print `%s`", cmd);
		EXPECT_TRUE(run->src_was_paused);
	}
	if (hc->dest_undecided) {
		snprintf(cmd, sizeof(cmd), "kvmmig receive --settle %016llx",
			 (unsigned long long)run->px.session);
		EXPECT_NE(strstr(run->dest.error, cmd), NULL)
			TH_LOG("the destination did not print `%s`", cmd);
	}
	switch (hc->settle) {
	case SETTLE_DEST_DISCARD:
		EXPECT_EQ(run->dest_settle, 0);
		break;
	case SETTLE_DEST_START:
		EXPECT_EQ(run->dest_settle, 0);
		__attribute__((fallthrough));
	case SETTLE_RESUME_REFUSED:
		/* Refused, or the source found the destination running first. */
		EXPECT_NE(run->src_settle, 0) TH_LOG("--resume-source: %s", run->src_answer);
		break;
	case SETTLE_SOURCE_RESUME:
		EXPECT_EQ(run->src_settle, 0);
		EXPECT_EQ(run->dest_settle, 0);
		break;
	default:
		break;
	}
}

TEST_F_TIMEOUT(handover, one_guest, 150)
{
	struct ho_run *run = &self->run;
	const struct ho_case *hc = run->hc;
	char why[768];
	unsigned int i;
	int ret, st;

	ho_fault(run, hc);
	ret = ho_migrate(_metadata, run);
	if (run->settler_started)
		pthread_join(run->settler, NULL);
	run->settler_started = false;
	st = fail_dest_wait(&run->dest);
	proxy_stop(&run->px);
	TH_LOG("source: %s: %s", mig_state_name(run->rep.state), run->rep.error);
	TH_LOG("destination: exit %d: %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
	       run->dest.error);
	if (hc->fault)
		ASSERT_TRUE(run->px.hit) TH_LOG("the fault never applied");
	ho_check_undecided(_metadata, run);
	ASSERT_TRUE(WIFEXITED(st));
	if (hc->expect == SOURCE_RUNS) {
		ASSERT_NE(ret, 0);
		ASSERT_EQ((int)run->rep.state, (int)MIG_FAILED);
		if (hc->src_says)
			ASSERT_NE(strcasestr(run->rep.error, hc->src_says), NULL)
				TH_LOG("the source's error does not say '%s'", hc->src_says);
		ASSERT_EQ(WEXITSTATUS(st), DEST_RECEIVE_FAILED);
		ret = -1;
		for (i = 0; i < 10 && ret; i++)
			ret = source_intact(run->vm, why, sizeof(why));
		ASSERT_EQ(ret, 0) TH_LOG("%s", why);
	} else {
		ASSERT_EQ(ret, 0);
		ASSERT_EQ((int)run->rep.state, (int)MIG_COMPLETED);
		ASSERT_EQ(WEXITSTATUS(st), DEST_OK);
		ASSERT_TRUE(guest_stands_still(run->vm));
	}
}

TEST_HARNESS_MAIN
