// SPDX-License-Identifier: GPL-2.0-only
/*
 * Live migration that fails, in every way issue 5 lists: a cancel in each
 * state (before and during setup, the first pass, a throttled later pass,
 * switchover), the connection dropped mid-pass and mid-switchover, the
 * destination killed, the stream corrupted or truncated at offsets a
 * fixed-seed PRNG picks in each part of the stream (hello, record headers,
 * configuration, page entries and data, vCPU state, END), and a version
 * mismatch.  Each case checks the exact outcome: mig_source_run() fails
 * with FAILED or CANCELLED and a message, the source guest runs on intact
 * (source_intact()), and the destination exits DEST_RECEIVE_FAILED (never
 * DEST_OK with memory it should have refused) or is the one we killed.
 * Faults come from a TCP proxy thread between the two sides and are
 * triggered from the progress callback, so they land in a known state; a
 * watchdog turns a migration in which neither side gives up into a failure
 * that says so.  Documentation/testing-migration.rst lists the cases.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "clock.h"
#include "csum.h"
#include "kselftest_harness.h"
#include "mig_internal.h"
#include "mig_proxy.h"
#include "mig_test_util.h"
#include "net.h"
#include "stream.h"

#define GUEST_RAM	(32ULL << 20)
#define CAPPED_LINK	(48ULL << 20)	/* bytes/s, below incr's dirty rate */
#define SPARSE_PAGES	256		/* a sparse guest writes only its first MiB */
#define FAULT_SEED	0x6b766d6d69676661ULL
#define WATCHDOG_S	30		/* a side that never gives up is a failure */

/* ---- what the progress callback does, and when ---- */

enum trigger {
	TRIG_NONE,
	TRIG_BEFORE,		/* before mig_source_run() */
	TRIG_SETUP,		/* the proxy sees the main connection arrive */
	TRIG_FIRST_PASS,	/* a progress sample inside pass 1 */
	TRIG_PASS_END,		/* the sample after pass 1's sync, between passes */
	TRIG_THROTTLED,		/* a sample in a later pass with a throttle on */
	TRIG_SWITCHOVER,	/* the SWITCHOVER sample, before the guest pauses */
};

enum action {
	ACT_NONE,
	ACT_CANCEL,
	ACT_DROP,		/* the proxy cuts every connection */
	ACT_KILL,		/* SIGKILL the destination */
};

struct fail_ctx {
	enum trigger trig;
	enum action act;
	struct proxy *px;
	unsigned int nr_conns;		/* the migration's connections */
	pid_t dest_pid;
	const struct fail_dest *dest;
	volatile sig_atomic_t cancel;
	bool fired;
	enum mig_state fired_state;
	uint64_t fired_pass;
	unsigned int fired_throttle;
};

static void fail_act(struct fail_ctx *c)
{
	switch (c->act) {
	case ACT_CANCEL:
		kvmmig_cancel_set(&c->cancel, 1);
		break;
	case ACT_DROP:
		/*
		 * Mid-pass means every channel is up and the destination has
		 * taken the session (the source may be a pass ahead of what
		 * it has read); a drop in setup is another case.
		 */
		proxy_wait_conns(c->px, c->nr_conns);
		fail_dest_wait_accepted(c->dest, WATCHDOG_S * 1000 / 2);
		proxy_drop(c->px);
		break;
	case ACT_KILL:
		kill(c->dest_pid, SIGKILL);
		break;
	default:
		break;
	}
}

static bool fail_due(const struct fail_ctx *c, enum mig_state state, const struct mig_sample *s)
{
	switch (c->trig) {
	case TRIG_FIRST_PASS:
		return state == MIG_ACTIVE && s->pass == 1 && !s->sync;
	case TRIG_PASS_END:
		return state == MIG_ACTIVE && s->pass == 1 && s->sync;
	case TRIG_THROTTLED:
		return state == MIG_ACTIVE && s->pass >= 2 && s->throttle_pct;
	case TRIG_SWITCHOVER:
		return state == MIG_SWITCHOVER;
	default:
		return false;
	}
}

static void fail_progress(void *opaque, enum mig_state state, const struct mig_sample *s,
			  const struct mig_report *r)
{
	struct fail_ctx *c = opaque;

	if (c->fired || !fail_due(c, state, s))
		return;
	c->fired = true;
	c->fired_state = state;
	c->fired_pass = s->pass;
	c->fired_throttle = s->throttle_pct;
	fail_act(c);
}

/* ---- where in the stream a fault lands ---- */

enum region {
	REG_HELLO,
	REG_CONFIG_HDR,		/* main channel */
	REG_CONFIG,
	REG_VCPU,		/* main channel, sent at switchover */
	REG_END,
	REG_PAGES_HDR,		/* multifd channel, one of the first records */
	REG_PAGES_ENTRIES,
	REG_PAGES_DATA,
};

/* xorshift64*: a fixed seed per case, so every run hits the same bytes. */
static uint64_t fault_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/*
 * Byte range of @reg.  Pages go without zero detection on one multifd
 * channel, so every record of pass 1 carries exactly MIG_MAX_BATCH pages
 * (the system slot and the RAM slots are multiples of a batch) and record
 * @k starts at a known offset.
 */
static void fault_region(const struct vm *vm, enum region reg, uint64_t k, uint64_t *lo,
			 uint64_t *hi)
{
	const uint64_t hello = sizeof(struct mig_hello), rec = sizeof(struct mig_rec);
	const uint64_t config = hello + rec + mig_config_size(vm->nr_slots);
	const uint64_t vcpu = rec + sizeof(struct mig_vcpu) + sizeof(struct vcpu_state_blob);
	const uint64_t entries = sizeof(struct mig_pages) + MIG_MAX_BATCH * sizeof(uint64_t);
	const uint64_t pages = rec + entries + MIG_MAX_BATCH * (uint64_t)MIG_PAGE_SIZE;
	const uint64_t at = hello + k * pages;

	switch (reg) {
	case REG_HELLO:
		*lo = 0, *hi = hello;
		break;
	case REG_CONFIG_HDR:
		*lo = hello, *hi = hello + rec;
		break;
	case REG_CONFIG:
		*lo = hello + rec, *hi = config;
		break;
	case REG_VCPU:
		*lo = config, *hi = config + vm->cfg.nr_vcpus * vcpu;
		break;
	case REG_END:
		*lo = config + vm->cfg.nr_vcpus * vcpu;
		*hi = *lo + rec + sizeof(struct mig_handover);
		break;
	case REG_PAGES_HDR:
		*lo = at, *hi = at + rec;
		break;
	case REG_PAGES_ENTRIES:
		*lo = at + rec, *hi = at + rec + entries;
		break;
	case REG_PAGES_DATA:
		*lo = at + rec + entries, *hi = at + pages;
		break;
	}
}

static const char *const region_names[] = {
	[REG_HELLO] = "hello",
	[REG_CONFIG_HDR] = "CONFIG header",
	[REG_CONFIG] = "CONFIG payload",
	[REG_VCPU] = "VCPU records",
	[REG_END] = "END record",
	[REG_PAGES_HDR] = "PAGES header",
	[REG_PAGES_ENTRIES] = "PAGES entries",
	[REG_PAGES_DATA] = "page data",
};

/* ---- the common run and its checks ---- */

struct fail_case {
	enum trigger trig;
	enum action act;
	enum fault_kind fault;
	unsigned int conn;
	enum region reg;
	unsigned int nth;		/* seed for the offset */
	bool throttled;			/* auto-converge on a capped link */
	bool sparse;			/* the guest writes SPARSE_PAGES pages only */
	unsigned int channels;
	enum mig_state expect;		/* MIG_FAILED or MIG_CANCELLED */
	const char *src_says;		/* the errors say one of these ('|') */
	const char *dest_says;
	bool dest_ignores;		/* the main hello is refused: the receiver goes on */
};

struct fail_run {
	struct vm *vm;
	struct fail_dest dest;
	struct proxy px;
	struct fail_ctx ctx;
	struct mig_report rep;
	/* the watchdog: kills the destination if the migration hangs */
	pthread_t wd;
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	bool wd_started, wd_done, hung;
};

static void fail_params(struct mig_params *p, const struct fail_case *fc)
{
	mig_params_init(p);
	p->multifd_channels = fc->channels ? fc->channels : 1;
	p->zero_page_detection = fc->fault == FAULT_NONE;
	p->max_passes = 400;
	p->downtime_limit_ms = 500;
	if (fc->throttled) {
		p->policy = MIG_POLICY_AUTO_CONVERGE;
		p->max_bandwidth = CAPPED_LINK;
		p->cpu_throttle_initial = 80;
		p->cpu_throttle_increment = 19;
	}
	/*
	 * A guest that hardly ran on a loaded host could converge before the
	 * throttle starts; with nothing fitting the limit it cannot.
	 */
	if (fc->trig == TRIG_THROTTLED)
		p->downtime_limit_ms = 1;
}

/* @error is not empty and names one of @what's '|'-separated words. */
static bool error_says(const char *error, const char *what)
{
	char word[64];
	size_t n;

	if (!error[0] || !what)
		return error[0];
	for (;;) {
		n = strcspn(what, "|");
		snprintf(word, sizeof(word), "%.*s", (int)n, what);
		if (strcasestr(error, word))
			return true;
		if (!what[n])
			return false;
		what += n + 1;
	}
}

/*
 * A guest that dirties only its first SPARSE_PAGES pages: after pass 1 the
 * pages to send are a few bitmap words at the start of a slot.
 */
static struct vm *source_guest_sparse(void)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = GUEST_RAM,
		.nr_slots = 2,
		.guest = {
			.workload = WORKLOAD_INCR,
			.mem_gpa = GUEST_RAM_GPA,
			.mem_pages = SPARSE_PAGES,
		},
	};
	struct vm *vm;
	int b = dirty_prepare_config(DIRTY_AUTO, &cfg);

	if (b < 0 || vm_create(&cfg, &vm))
		return NULL;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	usleep(200000);
	return vm;
}

/*
 * source_intact(), allowing for a host so loaded that no vCPU ran in its
 * 200 ms window; a stopped guest stays stopped through every retry, and
 * then @why says what its vCPUs were doing.
 */
static int source_still_intact(struct vm *vm, char *why, size_t len)
{
	unsigned int i;
	size_t n;
	int ret = 0;

	for (i = 0; i < 10; i++) {
		ret = source_intact(vm, why, len);
		if (!ret || !strstr(why, "no progress"))
			return ret;
	}
	for (i = 0; i < vm->cfg.nr_vcpus && (n = strlen(why)) < len; i++) {
		const struct vcpu *v = &vm->vcpus[i];

		snprintf(why + n, len - n, "; vCPU %u: state %d, pause_req %d, %llu loops, %llu exits, %llu ring-full exits, throttle %u%%",
			 i, v->state, v->pause_req, (unsigned long long)v->area->loops,
			 (unsigned long long)v->exits, (unsigned long long)vm->kv->vcpus[i].ring_full_exits,
			 v->throttle_pct);
	}
	return ret;
}

static void *fail_watchdog(void *arg)
{
	struct fail_run *run = arg;
	struct timespec ts;
	int ret = 0;

	/* wd_cond runs on CLOCK_MONOTONIC (fail_watchdog_start()). */
	ts = deadline_in_ns(CLOCK_MONOTONIC, WATCHDOG_S * NSEC_PER_SEC);
	pthread_mutex_lock(&run->wd_lock);
	while (!run->wd_done && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&run->wd_cond, &run->wd_lock, &ts);
	if (!run->wd_done) {
		/* Not reaped yet (see fail_check()): the pid is still the child's. */
		run->hung = true;
		kill(run->dest.pid, SIGKILL);
	}
	pthread_mutex_unlock(&run->wd_lock);
	return NULL;
}

static int fail_watchdog_start(struct fail_run *run)
{
	pthread_condattr_t a;

	pthread_mutex_init(&run->wd_lock, NULL);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&run->wd_cond, &a);
	pthread_condattr_destroy(&a);
	if (pthread_create(&run->wd, NULL, fail_watchdog, run))
		return -1;
	run->wd_started = true;
	return 0;
}

static void fail_watchdog_stop(struct fail_run *run)
{
	if (!run->wd_started)
		return;
	pthread_mutex_lock(&run->wd_lock);
	run->wd_done = true;
	pthread_cond_signal(&run->wd_cond);
	pthread_mutex_unlock(&run->wd_lock);
	pthread_join(run->wd, NULL);
	run->wd_started = false;
}

static void fail_setup(struct __test_metadata *_metadata, struct fail_run *run,
		       const struct fail_case *fc)
{
	enum dirty_backend backend = DIRTY_AUTO;

	run->dest.pid = 0;
	run->dest.errfd = -1;
	run->vm = fc->sparse ? source_guest_sparse() : source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(run->vm, NULL);
	ASSERT_EQ(fail_dest_start(&run->dest), 0);
}

static void fail_teardown(struct fail_run *run)
{
	fail_watchdog_stop(run);
	proxy_stop(&run->px);
	fail_dest_kill(&run->dest);
	mig_report_free(&run->rep);
	if (run->vm)
		vm_destroy(run->vm);
}

/*
 * The destination set the source's main channel aside (its hello was
 * corrupt, cut or of another version): the source fails with its guest
 * intact, the receiver is still listening, and a clean migration of the
 * same guest to it afterwards completes and passes the memory check.
 */
static void fail_check_ignored(struct __test_metadata *_metadata, struct fail_run *run,
			       const struct fail_case *fc, int ret)
{
	struct mig_source_opts o = { .to = run->dest.addr, .progress_interval_s = 0.05 };
	struct mig_report rep = { 0 };
	char why[768];
	int st;

	proxy_stop(&run->px);
	TH_LOG("source: %s: %s", mig_state_name(run->rep.state), run->rep.error);
	ASSERT_TRUE(run->px.hit);
	ASSERT_NE(ret, 0);
	ASSERT_EQ(run->rep.state, fc->expect);
	ASSERT_TRUE(error_says(run->rep.error, fc->src_says));
	ASSERT_EQ(source_still_intact(run->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	ASSERT_EQ(waitpid(run->dest.pid, &st, WNOHANG), 0) {
		TH_LOG("the receiver ended after a refused hello");
	}
	/*
	 * The same guest, as a user would retry: its first migration had
	 * started dirty tracking, which must start over cleanly (the dirty
	 * ring's indices run on in KVM).
	 */
	fail_params(&o.params, &(struct fail_case){ .fault = FAULT_NONE });
	ret = mig_source_run(run->vm->kv, &o, &rep);
	waitid(P_PID, run->dest.pid, &(siginfo_t){ 0 }, WEXITED | WNOWAIT);
	fail_watchdog_stop(run);
	st = fail_dest_wait(&run->dest);
	TH_LOG("then a clean migration: %s: %s; destination exit %d: %s",
	       mig_state_name(rep.state), rep.error, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
	       run->dest.error);
	ASSERT_FALSE(run->hung);
	EXPECT_EQ(ret, 0);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == DEST_OK);
	mig_report_free(&rep);
}

static void fail_check(struct __test_metadata *_metadata, struct fail_run *run,
		       const struct fail_case *fc)
{
	struct mig_source_opts o = {
		.to = run->dest.addr,
		.cancel = &run->ctx.cancel,
		.progress = fail_progress,
		.opaque = &run->ctx,
		.progress_interval_s = 0.05,
	};
	struct proxy_fault *f = &run->px.fault;
	struct fail_ctx *c = &run->ctx;
	uint64_t lo = 0, hi = 1, seed = FAULT_SEED ^ (fc->nth + 1) * 0x9e3779b97f4a7c15ULL;
	char why[768];
	siginfo_t info;
	int ret, st;

	fail_params(&o.params, fc);
	c->trig = fc->trig;
	c->act = fc->act;
	c->px = &run->px;
	c->nr_conns = o.params.multifd_channels + 1;
	c->dest_pid = run->dest.pid;
	c->dest = &run->dest;
	if (fc->fault == FAULT_VERSION) {
		f->kind = FAULT_VERSION;
		f->off = offsetof(struct mig_hello, version);
		f->len = sizeof(uint32_t);
		f->bytes[0] = MIG_VERSION + 1;
	} else if (fc->fault != FAULT_NONE) {
		fault_region(run->vm, fc->reg, fault_rand(&seed) % 8, &lo, &hi);
		f->kind = fc->fault;
		f->conn = fc->conn;
		/* A cut at the very start would be a refused connection. */
		f->off = lo + fault_rand(&seed) % (hi - lo) + (fc->fault == FAULT_CUT && !lo);
		f->bytes[0] = fault_rand(&seed) % 255 + 1;
		TH_LOG("%s connection %u at byte %llu (%s, bytes %llu-%llu)",
		       fc->fault == FAULT_CUT ? "cut" : "corrupt", fc->conn,
		       (unsigned long long)f->off, region_names[fc->reg], (unsigned long long)lo,
		       (unsigned long long)hi - 1);
	}
	if (fc->trig == TRIG_SETUP)
		run->px.cancel_on_accept = &c->cancel;
	if (fc->fault != FAULT_NONE || fc->act == ACT_DROP || fc->trig == TRIG_SETUP) {
		ASSERT_EQ(proxy_start(&run->px, run->dest.addr), 0);
		o.to = run->px.addr;
	}
	if (fc->trig == TRIG_BEFORE)
		fail_act(c);
	ASSERT_EQ(fail_watchdog_start(run), 0);

	ret = mig_source_run(run->vm->kv, &o, &run->rep);
	if (fc->dest_ignores) {
		fail_check_ignored(_metadata, run, fc, ret);
		return;
	}
	if (fc->trig == TRIG_BEFORE) {
		/*
		 * Cancelled before it began: no connection was even made, so
		 * the destination is untouched and still waits for a source.
		 */
		fail_watchdog_stop(run);
		memset(&info, 0, sizeof(info));
		ASSERT_EQ(waitid(P_PID, run->dest.pid, &info, WEXITED | WNOHANG | WNOWAIT), 0);
		ASSERT_EQ(info.si_pid, 0) TH_LOG("the destination exited: it was contacted");
		ASSERT_EQ(ret, -ECANCELED);
		ASSERT_TRUE(run->rep.state == MIG_CANCELLED);
		ASSERT_TRUE(error_says(run->rep.error, fc->src_says));
		ASSERT_EQ(source_still_intact(run->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
		return;
	}
	/* Exited but not reaped: the watchdog may still kill it by its pid. */
	waitid(P_PID, run->dest.pid, &info, WEXITED | WNOWAIT);
	fail_watchdog_stop(run);
	st = fail_dest_wait(&run->dest);
	proxy_stop(&run->px);
	TH_LOG("source: %s after %llu passes, max throttle %u%%: %s",
	       mig_state_name(run->rep.state), (unsigned long long)run->rep.passes,
	       run->rep.max_throttle_pct, run->rep.error);
	TH_LOG("destination: %s %d: %s", WIFSIGNALED(st) ? "signal" : "exit",
	       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), run->dest.error);
	if (c->fired)
		TH_LOG("fault injected in state %s, pass %llu, throttle %u%%",
		       mig_state_name(c->fired_state), (unsigned long long)c->fired_pass,
		       c->fired_throttle);
	ASSERT_FALSE(run->hung) {
		TH_LOG("neither side gave up within %d s: the destination was killed", WATCHDOG_S);
	}

	/* The fault happened where it was meant to. */
	if (fc->trig >= TRIG_FIRST_PASS)
		ASSERT_TRUE(c->fired);
	if (fc->fault != FAULT_NONE)
		ASSERT_TRUE(run->px.hit);
	if (fc->trig == TRIG_THROTTLED)
		ASSERT_GT(c->fired_throttle, 0U);

	ASSERT_NE(ret, 0);
	ASSERT_EQ(run->rep.state, fc->expect);
	ASSERT_TRUE(error_says(run->rep.error, fc->src_says));
	ASSERT_EQ(source_still_intact(run->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	if (fc->act == ACT_KILL) {
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		return;
	}
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), DEST_RECEIVE_FAILED);
	ASSERT_TRUE(error_says(run->dest.error, fc->dest_says));
}

/* ---- cancel, a dropped link, a killed destination ---- */

FIXTURE(event) {
	struct fail_run run;
};

FIXTURE_VARIANT(event) {
	struct fail_case fc;
};

/* What the errors must say, in one word or another. */
#define SAYS_CANCEL	"cancel"
#define SAYS_LINK	"send failed|receive failed|closed|reset|broken pipe"
#define SAYS_EOF	"closed|reset"
#define SAYS_CORRUPT	"corrupt|not a kvmmig|version"

#define EVENT(name, t, a, thr, ch, sp)						\
	FIXTURE_VARIANT_ADD(event, name) {					\
		.fc = {								\
			.trig = TRIG_##t, .act = ACT_##a, .throttled = thr,	\
			.channels = ch, .sparse = sp,				\
			.expect = ACT_##a == ACT_CANCEL ? MIG_CANCELLED : MIG_FAILED, \
			.src_says = ACT_##a == ACT_CANCEL ? SAYS_CANCEL : SAYS_LINK, \
			.dest_says = ACT_##a == ACT_CANCEL ? SAYS_CANCEL : SAYS_EOF, \
		},							\
	}

EVENT(cancel_before_setup, BEFORE, CANCEL, false, 1, false);
EVENT(cancel_during_setup, SETUP, CANCEL, false, 1, false);
EVENT(cancel_first_pass, FIRST_PASS, CANCEL, false, 1, false);
EVENT(cancel_first_pass_4ch, FIRST_PASS, CANCEL, false, 4, false);
EVENT(cancel_pass_end, PASS_END, CANCEL, false, 1, false);
EVENT(cancel_throttled_pass, THROTTLED, CANCEL, true, 1, false);
EVENT(cancel_switchover, SWITCHOVER, CANCEL, false, 1, false);
EVENT(cancel_switchover_throttled, SWITCHOVER, CANCEL, true, 1, false);
/* Nothing left to send near a 64-word boundary of the dirty bitmap. */
EVENT(cancel_pass_end_sparse, PASS_END, CANCEL, false, 1, true);
EVENT(cancel_switchover_sparse, SWITCHOVER, CANCEL, false, 1, true);
EVENT(drop_first_pass, FIRST_PASS, DROP, false, 1, false);
EVENT(drop_first_pass_4ch, FIRST_PASS, DROP, false, 4, false);
EVENT(drop_throttled_pass, THROTTLED, DROP, true, 1, false);
EVENT(drop_switchover, SWITCHOVER, DROP, false, 1, false);
EVENT(drop_switchover_4ch, SWITCHOVER, DROP, false, 4, false);
EVENT(drop_switchover_sparse, SWITCHOVER, DROP, false, 1, true);
EVENT(kill_dest_first_pass, FIRST_PASS, KILL, false, 1, false);
EVENT(kill_dest_first_pass_4ch, FIRST_PASS, KILL, false, 4, false);
EVENT(kill_dest_throttled_pass, THROTTLED, KILL, true, 1, false);
EVENT(kill_dest_switchover, SWITCHOVER, KILL, false, 1, false);

FIXTURE_SETUP(event)
{
	fail_setup(_metadata, &self->run, &variant->fc);
}

FIXTURE_TEARDOWN(event)
{
	fail_teardown(&self->run);
}

TEST_F_TIMEOUT(event, source_survives, 150)
{
	fail_check(_metadata, &self->run, &variant->fc);
}

/* ---- the stream corrupted, truncated, or of another version ---- */

FIXTURE(stream) {
	struct fail_run run;
};

FIXTURE_VARIANT(stream) {
	struct fail_case fc;
};

#define STREAM(name, f, c, r, n)						\
	FIXTURE_VARIANT_ADD(stream, name) {					\
		.fc = {								\
			.fault = FAULT_##f, .conn = c, .reg = REG_##r, .nth = n, \
			.expect = MIG_FAILED,					\
			.dest_says = FAULT_##f == FAULT_CUT ? SAYS_EOF : SAYS_CORRUPT, \
			.dest_ignores = c == 0 && REG_##r == REG_HELLO,		\
		},							\
	}

STREAM(flip_main_hello_0, FLIP, 0, HELLO, 0);
STREAM(flip_main_hello_1, FLIP, 0, HELLO, 1);
STREAM(flip_main_config_hdr, FLIP, 0, CONFIG_HDR, 2);
STREAM(flip_main_config_0, FLIP, 0, CONFIG, 3);
STREAM(flip_main_config_1, FLIP, 0, CONFIG, 4);
STREAM(flip_main_vcpu_0, FLIP, 0, VCPU, 5);
STREAM(flip_main_vcpu_1, FLIP, 0, VCPU, 6);
STREAM(flip_main_end, FLIP, 0, END, 7);
STREAM(flip_ch1_hello, FLIP, 1, HELLO, 8);
STREAM(flip_ch1_pages_hdr_0, FLIP, 1, PAGES_HDR, 9);
STREAM(flip_ch1_pages_hdr_1, FLIP, 1, PAGES_HDR, 10);
STREAM(flip_ch1_entries, FLIP, 1, PAGES_ENTRIES, 11);
STREAM(flip_ch1_data_0, FLIP, 1, PAGES_DATA, 12);
STREAM(flip_ch1_data_1, FLIP, 1, PAGES_DATA, 13);
STREAM(flip_ch1_data_2, FLIP, 1, PAGES_DATA, 14);
STREAM(cut_main_hello, CUT, 0, HELLO, 15);
STREAM(cut_main_config, CUT, 0, CONFIG, 16);
STREAM(cut_main_vcpu, CUT, 0, VCPU, 17);
STREAM(cut_main_end, CUT, 0, END, 18);
STREAM(cut_ch1_hello, CUT, 1, HELLO, 19);
STREAM(cut_ch1_pages_hdr, CUT, 1, PAGES_HDR, 20);
STREAM(cut_ch1_entries, CUT, 1, PAGES_ENTRIES, 21);
STREAM(cut_ch1_data_0, CUT, 1, PAGES_DATA, 22);
STREAM(cut_ch1_data_1, CUT, 1, PAGES_DATA, 23);

FIXTURE_VARIANT_ADD(stream, version_mismatch) {
	/* The destination's refusal reaches the source, not a mere broken pipe. */
	.fc = { .fault = FAULT_VERSION, .conn = 0, .expect = MIG_FAILED, .dest_says = "version",
		.src_says = "destination failed: migration stream version", .dest_ignores = true },
};

FIXTURE_SETUP(stream)
{
	fail_setup(_metadata, &self->run, &variant->fc);
}

FIXTURE_TEARDOWN(stream)
{
	fail_teardown(&self->run);
}

TEST_F_TIMEOUT(stream, source_survives, 150)
{
	fail_check(_metadata, &self->run, &variant->fc);
}

/* ---- a source that hangs up while the destination awaits its page channels ---- */

struct lone_dest {
	pthread_t thread;
	struct mig_report rep;
	int port, ret;
	volatile int listening;
};

static void lone_dest_listening(void *opaque, int port)
{
	struct lone_dest *d = opaque;

	d->port = port;
	__atomic_store_n(&d->listening, 1, __ATOMIC_RELEASE);
}

static void *lone_dest_thread(void *arg)
{
	struct lone_dest *d = arg;
	struct mig_dest_opts o = {
		.listen = "tcp:127.0.0.1:0",
		.listening = lone_dest_listening,
		.opaque = d,
		DEST_CHILD_VMM,
	};

	d->ret = mig_dest_run(&o, &d->rep);
	return NULL;
}

/*
 * The main channel's hello announces two page channels and the
 * configuration follows, then the source is gone: the destination must say
 * so at once, not wait out its 30 s for channels that will never come.
 */
TEST(source_gone_before_its_channels)
{
	struct vm_config vc = { .nr_vcpus = 1, .ram_bytes = GUEST_RAM, .nr_slots = 1 };
	struct mig_hello h = { .session = 42, .nr_channels = 3 };
	struct lone_dest d = { 0 };
	struct mig_config *cfg;
	struct mig_chan c;
	char addr[64];
	struct vm *vm;
	size_t len;
	int fd;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_EQ(vm_create(&vc, &vm), 0);
	cfg = mig_config_of(vm->kv, &len);
	ASSERT_NE(cfg, NULL);
	ASSERT_EQ(pthread_create(&d.thread, NULL, lone_dest_thread, &d), 0);
	while (!__atomic_load_n(&d.listening, __ATOMIC_ACQUIRE))
		usleep(1000);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", d.port);
	fd = net_connect(addr, NULL);
	ASSERT_GE(fd, 0);
	mig_chan_init(&c, fd, 0);
	mig_hello_seal(&h);
	ASSERT_EQ(net_write_all(fd, &h, sizeof(h), NULL), 0);
	ASSERT_EQ(mig_chan_send(&c, MIG_REC_CONFIG, cfg, len), 0);
	close(fd);
	pthread_join(d.thread, NULL);
	EXPECT_EQ(d.ret, -ECONNRESET);
	EXPECT_EQ((int)d.rep.state, (int)MIG_FAILED);
	EXPECT_TRUE(error_says(d.rep.error, "closed")) {
		TH_LOG("destination: %s", d.rep.error);
	}
	free(cfg);
	vm_destroy(vm);
}

/* ---- the same refusal, without a migration around it ---- */

static int hello_check_version(uint32_t version, bool reseal)
{
	struct mig_hello h = { .nr_channels = 1 };

	mig_hello_seal(&h);
	h.version = version;
	if (reseal)
		h.crc = crc32c(0, &h, offsetof(struct mig_hello, crc));
	return mig_hello_check(&h);
}

TEST(hello_version_mismatch)
{
	unsigned int i;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_EQ(hello_check_version(MIG_VERSION, false), 0);
	for (i = 0; i < 4; i++) {
		/* 0, the next one, a far one; with a valid CRC and a stale one. */
		uint32_t v = (uint32_t[]){ 0, MIG_VERSION + 1, 0x01000001, UINT32_MAX }[i];

		ASSERT_EQ(hello_check_version(v, true), -EPROTONOSUPPORT);
		ASSERT_TRUE(error_says(kvmmig_last_error(), "version")) {
			TH_LOG("error: %s", kvmmig_last_error());
		}
		ASSERT_EQ(hello_check_version(v, false), -EPROTONOSUPPORT);
		ASSERT_TRUE(error_says(kvmmig_last_error(), "version"));
	}
}

TEST_HARNESS_MAIN
