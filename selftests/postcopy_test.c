// SPDX-License-Identifier: GPL-2.0-only
/*
 * Postcopy live migration (Documentation/postcopy.rst) end to end, a
 * source in this process and a destination child over loopback TCP.  The
 * matrix: preempt (off, on) x the page hint (off, on) x multifd channels
 * (1, 4) x zero-page detection (on, off), an incr guest that switches to
 * postcopy after its first pass on a link capped far below its dirty rate
 * (and once at a migrate-start-postcopy in the middle of pass 1), and a
 * random guest: each completes in postcopy, the destination's guest runs
 * on and its memory passes the check (incr: QEMU's one-edge check; random:
 * every page as the source's paused copy holds it, or written after the
 * switch), and the guest's faults on missing pages are counted.  Then a
 * guest precopy cannot move (it fails at max-passes) that postcopy moves;
 * seed 004: pages precopy skipped as zero and the guest first writes in
 * postcopy never hang a vCPU; and the failures: a cancel before the switch
 * (the source runs on) and after it (refused, the migration completes), the
 * link cut in postcopy (both sides pause, then recover over a new link: the
 * same address, or another one given to the source; and once with the first
 * recovery cut too), the destination killed (the source says the guest is
 * lost and never resumes its copy), the source killed (the destination
 * pauses, then gives up at its postcopy recover timeout).
 */
#include <pthread.h>

#include "kselftest_harness.h"
#include "postcopy_util.h"

#define GUEST_RAM		(64ULL << 20)
#define GUEST_PAGES		(GUEST_RAM / GUEST_PAGE_SIZE)
#define CAPPED_LINK		(32ULL << 20)	/* bytes/s, far below incr's dirty rate */
#define RECOVER_MS		30000	/* either side's postcopy recover timeout */
#define SHORT_RECOVER_MS	2000	/* ... where the other side is dead */
#define EVENT_WAIT_MS		(EVENT_WAIT_S * 1000)
#define DEST_END_S		60	/* for the destination to end after the source */
#define RANDOM_VALUE		0x5eed0001c0ffee01ULL	/* what a random guest writes */
#define WIDE_VALUE		0x5eed0002c0ffee02ULL	/* ... once its working set grew */

/* ---- what every case shares ---- */

static void pc_params(struct mig_params *p, unsigned int channels, bool zero)
{
	mig_params_init(p);
	p->multifd_channels = channels;
	p->zero_page_detection = zero;
	p->max_bandwidth = CAPPED_LINK;
	/* Only an empty dirty set fits: precopy cannot end on its own. */
	p->downtime_limit_ms = 1;
	p->max_passes = 4;		/* a migration that never switches fails soon */
	p->postcopy_ram = true;
	p->postcopy_start = MIG_POSTCOPY_START_PASSES;
	p->postcopy_after_passes = 1;
	p->postcopy_recover_timeout_ms = RECOVER_MS;
}

static void pc_opts(struct mig_source_opts *o, const char *to, struct pc_watch *w)
{
	memset(o, 0, sizeof(*o));
	o->to = to;
	o->cancel = &w->cancel;
	o->start_postcopy = &w->start_postcopy;
	o->progress = pc_watch_progress;
	o->opaque = w;
	o->progress_interval_s = 0.05;
}

static void pc_log_report(struct __test_metadata *_metadata, const char *who,
			  const struct mig_report *r)
{
	TH_LOG("%s: %s in %.2f s, %llu passes, %llu zero pages; postcopy %s%s for %.2f s: %llu requests, %llu urgent and %llu background pages, %llu remote faults, blocktime %.1f ms, %llu dropped, %u recoveries%s%s",
	       who, mig_state_name(r->state), r->total_s, (unsigned long long)r->passes,
	       (unsigned long long)r->zero_pages, r->postcopy ? "yes" : "no",
	       r->postcopy_preempt ? " (preempt)" : "", r->postcopy_s,
	       (unsigned long long)r->postcopy_requests,
	       (unsigned long long)r->postcopy_urgent_pages,
	       (unsigned long long)r->postcopy_background_pages,
	       (unsigned long long)r->postcopy_remote_faults, r->postcopy_blocktime_ns / 1e6,
	       (unsigned long long)r->postcopy_dropped, r->postcopy_recoveries,
	       r->error[0] ? ": " : "", r->error);
}

/* What the destination child did, and its log when something went wrong. */
static void pc_log_dest(struct __test_metadata *_metadata, const struct pc_dest *d, bool full)
{
	int st = d->status;

	TH_LOG("destination: %s %d%s, events: started %u, paused %u",
	       st != -1 && WIFSIGNALED(st) ? "signal" : "exit",
	       st == -1 ? -1 : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
	       d->hung ? " (killed: it did not end within its deadline)" : "",
	       d->seen[PC_EV_STARTED], d->seen[PC_EV_PAUSED]);
	if (d->area->reported)
		pc_log_report(_metadata, "destination", &d->area->rep);
	if (full)
		TH_LOG("destination log:\n%s", d->area->log);
}

/* @error is not empty and names one of @what's '|'-separated words. */
static bool says(const char *error, const char *what)
{
	char word[64];
	size_t n;

	for (;;) {
		n = strcspn(what, "|");
		snprintf(word, sizeof(word), "%.*s", (int)n, what);
		if (error[0] && strcasestr(error, word))
			return true;
		if (!what[n])
			return false;
		what += n + 1;
	}
}

/*
 * A migration that went through postcopy and completed: both sides say
 * so, the destination's guest ran on and passed its memory check, and the
 * guest's touches of pages still on the source were counted.
 */
static void pc_check_completed(struct __test_metadata *_metadata, const struct mig_report *rep,
			       int ret, const struct pc_watch *w, const struct pc_dest *d)
{
	const struct mig_report *dr = &d->area->rep;

	ASSERT_EQ(ret, 0);
	ASSERT_EQ(rep->state, (enum mig_state)MIG_COMPLETED);
	ASSERT_TRUE(rep->postcopy);
	ASSERT_GE(w->entered[MIG_POSTCOPY_ACTIVE], 1U);
	/* DEST_OK: it ran on and its memory passed the check. */
	ASSERT_TRUE(pc_dest_exited(d, DEST_OK));
	ASSERT_TRUE(d->area->reported);
	ASSERT_EQ(dr->state, (enum mig_state)MIG_COMPLETED);
	ASSERT_TRUE(dr->postcopy);
	ASSERT_EQ(d->seen[PC_EV_STARTED], 1U);
	/*
	 * Every page the guest writes after the switch was dirty when it
	 * stopped on the source: its first writes there fault on missing
	 * pages, and those are asked for and sent urgently.
	 */
	ASSERT_GT(dr->postcopy_remote_faults, 0ULL);
	ASSERT_GT(dr->postcopy_requests, 0ULL);
	ASSERT_GT(rep->postcopy_remote_faults, 0ULL);
	ASSERT_GT(rep->postcopy_requests, 0ULL);
	ASSERT_GT(rep->postcopy_urgent_pages, 0ULL);
}

/* ---- the matrix ---- */

FIXTURE(matrix) {
	struct vm *vm;
	struct pc_dest dest;
	struct pc_watch w;
	struct mig_report rep;
};

FIXTURE_VARIANT(matrix) {
	bool preempt, hint, zero;
	unsigned int channels;
	enum guest_workload workload;
	uint64_t wss;			/* random: the working set of each vCPU */
	bool prefill;			/* ... every page holds its value from the start */
	bool start_in_pass1;		/* migrate-start-postcopy in the middle of pass 1 */
};

#define PC_MATRIX(pre, hi, ch, z)						\
	FIXTURE_VARIANT_ADD(matrix, incr_##pre##_##hi##_ch##ch##_##z) {		\
		.preempt = !strcmp(#pre, "preempt"), .hint = !strcmp(#hi, "hint"), \
		.channels = ch, .zero = !strcmp(#z, "zero"),			\
		.workload = WORKLOAD_INCR,					\
	}
#define PC_MATRIX_CZ(pre, hi)							\
	PC_MATRIX(pre, hi, 1, zero); PC_MATRIX(pre, hi, 1, nozero);		\
	PC_MATRIX(pre, hi, 4, zero); PC_MATRIX(pre, hi, 4, nozero)

PC_MATRIX_CZ(nopreempt, nohint);
PC_MATRIX_CZ(nopreempt, hint);
PC_MATRIX_CZ(preempt, nohint);
PC_MATRIX_CZ(preempt, hint);

FIXTURE_VARIANT_ADD(matrix, random_preempt_hint_ch4_zero) {
	.preempt = true, .hint = true, .channels = 4, .zero = true,
	.workload = WORKLOAD_RANDOM,
};

/* Pages pass 1 never reached must go in postcopy too. */
FIXTURE_VARIANT_ADD(matrix, incr_started_in_pass1) {
	.hint = true, .channels = 1, .zero = true, .workload = WORKLOAD_INCR,
	.start_in_pass1 = true,
};

/* ... also those the guest does not write again (incr writes every page all the time). */
FIXTURE_VARIANT_ADD(matrix, random_started_in_pass1) {
	.hint = true, .channels = 1, .zero = true, .workload = WORKLOAD_RANDOM,
	.wss = GUEST_PAGES / 2 / 4, .prefill = true, .start_in_pass1 = true,
};

FIXTURE_SETUP(matrix)
{
	uint64_t i;

	self->dest.evfd = -1;
	pc_watch_init(&self->w);
	self->vm = pc_guest(variant->workload, GUEST_RAM, variant->wss,
			    variant->workload == WORKLOAD_RANDOM ? RANDOM_VALUE : 0);
	ASSERT_NE(self->vm, NULL) TH_LOG("no guest, or it did not run within %d s", GUEST_PROGRESS_S);
	for (i = 0; variant->prefill && i < GUEST_PAGES; i++)
		*(volatile uint64_t *)workload_page(self->vm, i) = RANDOM_VALUE;
	self->dest.recover_timeout_ms = RECOVER_MS;
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
}

FIXTURE_TEARDOWN(matrix)
{
	pc_dest_free(&self->dest);
	mig_report_free(&self->rep);
	vm_destroy(self->vm);
}

TEST_F_TIMEOUT(matrix, migrates, 300)
{
	struct mig_source_opts o;
	struct mig_params *p = &o.params;
	char why[256];
	int ret;

	pc_opts(&o, self->dest.addr, &self->w);
	pc_params(p, variant->channels, variant->zero);
	p->postcopy_preempt = variant->preempt;
	p->postcopy_hint = variant->hint;
	if (variant->start_in_pass1) {
		p->postcopy_start = MIG_POSTCOPY_START_MANUAL;
		self->w.at = MIG_ACTIVE;
		self->w.at_pass = 1;
		self->w.act = PC_ACT_START;
	}
	ret = mig_source_run(self->vm->kv, &o, &self->rep);
	pc_dest_wait(&self->dest, DEST_END_S);
	pc_log_report(_metadata, "source", &self->rep);
	pc_log_dest(_metadata, &self->dest, !pc_dest_exited(&self->dest, DEST_OK));

	pc_check_completed(_metadata, &self->rep, ret, &self->w, &self->dest);
	/* It switched where it was told to: in pass 1, or right after it. */
	if (variant->start_in_pass1) {
		ASSERT_TRUE(self->w.fired);
		ASSERT_EQ(self->w.precopy_syncs, 0U);
	} else {
		ASSERT_EQ(self->w.precopy_syncs, 1U);
	}
	ASSERT_EQ(self->rep.postcopy_preempt, variant->preempt);
	/* The destination's figures reach the source with POSTCOPY_DONE. */
	ASSERT_EQ(self->rep.postcopy_requests, self->dest.area->rep.postcopy_requests);
	if (!variant->zero) {
		ASSERT_EQ(self->rep.zero_pages, 0ULL);
	} else {
		/* Most of a fresh guest's system slot is zero. */
		ASSERT_GT(self->rep.zero_pages, 0ULL);
	}
	if (variant->workload == WORKLOAD_RANDOM) {
		ASSERT_EQ(pc_random_compare(self->vm, self->dest.area, RANDOM_VALUE, 0, why,
					    sizeof(why)), 0) TH_LOG("%s", why);
	}
}

/* ---- what precopy cannot do and postcopy can ---- */

FIXTURE(pc) {
	struct vm *vm;
	struct pc_dest dest, dest2;
	struct pc_watch w;
	struct mig_report rep;
};

FIXTURE_SETUP(pc)
{
	self->dest.evfd = self->dest2.evfd = -1;
	pc_watch_init(&self->w);
	self->vm = pc_guest(WORKLOAD_INCR, GUEST_RAM, 0, 0);
	ASSERT_NE(self->vm, NULL) TH_LOG("no guest, or it did not run within %d s", GUEST_PROGRESS_S);
	self->dest.recover_timeout_ms = self->dest2.recover_timeout_ms = RECOVER_MS;
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
}

FIXTURE_TEARDOWN(pc)
{
	pc_dest_free(&self->dest);
	pc_dest_free(&self->dest2);
	mig_report_free(&self->rep);
	vm_destroy(self->vm);
}

/*
 * No throttle, a link far slower than the guest dirties: precopy gives up
 * at max-passes, the source guest runs on; the same migration with
 * postcopy (auto: it switches when a pass no longer shrinks what is left)
 * completes.
 */
TEST_F_TIMEOUT(pc, precopy_fails_postcopy_completes, 300)
{
	struct mig_source_opts o;
	struct mig_params *p = &o.params;
	char why[768];
	int ret;

	pc_opts(&o, self->dest.addr, &self->w);
	mig_params_init(p);
	p->max_bandwidth = CAPPED_LINK;
	p->max_passes = 2;
	ret = mig_source_run(self->vm->kv, &o, &self->rep);
	pc_dest_wait(&self->dest, DEST_END_S);
	pc_log_report(_metadata, "precopy alone", &self->rep);
	ASSERT_EQ(ret, -ETIMEDOUT);
	ASSERT_EQ(self->rep.state, (enum mig_state)MIG_FAILED);
	ASSERT_TRUE(says(self->rep.error, "did not converge in 2 passes"));
	ASSERT_FALSE(self->rep.postcopy);
	ASSERT_EQ(self->w.entered[MIG_POSTCOPY_ACTIVE], 0U);
	ASSERT_TRUE(pc_dest_exited(&self->dest, DEST_RECEIVE_FAILED));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	mig_report_free(&self->rep);

	ASSERT_EQ(pc_dest_start(&self->dest2), 0);
	pc_watch_init(&self->w);
	o.to = self->dest2.addr;
	p->postcopy_ram = true;
	p->postcopy_recover_timeout_ms = RECOVER_MS;
	ASSERT_EQ(p->postcopy_start, (enum mig_postcopy_start)MIG_POSTCOPY_START_AUTO);
	ret = mig_source_run(self->vm->kv, &o, &self->rep);
	pc_dest_wait(&self->dest2, DEST_END_S);
	pc_log_report(_metadata, "with postcopy", &self->rep);
	pc_log_dest(_metadata, &self->dest2, !pc_dest_exited(&self->dest2, DEST_OK));
	pc_check_completed(_metadata, &self->rep, ret, &self->w, &self->dest2);
	ASSERT_LE(self->rep.passes, 2ULL);
}

/* ---- seed 004: zero pages skipped in precopy, first written in postcopy ---- */

#define SLICE_PAGES	(GUEST_PAGES / 2)	/* each of the 2 vCPUs' */
#define WRITTEN_PAGES	(SLICE_PAGES / 2)	/* the working set before the switch */

FIXTURE(zero) {
	struct vm *vm;
	struct pc_dest dest;
	struct pc_watch w;
	struct mig_report rep;
};

FIXTURE_VARIANT(zero) {
	bool zero_detection;
};

/* Zero pages go as zero records, and the fresh destination never writes them. */
FIXTURE_VARIANT_ADD(zero, skipped) {
	.zero_detection = true,
};

/* The same guest with every page sent as data: nothing is left unwritten. */
FIXTURE_VARIANT_ADD(zero, sent) {
	.zero_detection = false,
};

/* The first @n pages of each vCPU's slice hold @value, the rest of it zero: 1, else 0. */
static int zero_layout(struct vm *vm, uint64_t n, uint64_t value)
{
	uint64_t i, v;

	for (v = 0; v < 2; v++)
		for (i = 0; i < SLICE_PAGES; i++)
			if (*(volatile uint64_t *)workload_page(vm, v * SLICE_PAGES + i) !=
			    (i < n ? value : 0))
				return 0;
	return 1;
}

FIXTURE_SETUP(zero)
{
	unsigned int i;

	self->dest.evfd = -1;
	pc_watch_init(&self->w);
	self->vm = pc_guest(WORKLOAD_RANDOM, GUEST_RAM, WRITTEN_PAGES, RANDOM_VALUE);
	ASSERT_NE(self->vm, NULL) TH_LOG("no guest, or it did not run within %d s", GUEST_PROGRESS_S);
	/* Every page of the working set written before the migration starts. */
	for (i = 0; i < GUEST_PROGRESS_S * 20 && !zero_layout(self->vm, WRITTEN_PAGES,
							     RANDOM_VALUE); i++)
		usleep(50000);
	ASSERT_TRUE(zero_layout(self->vm, WRITTEN_PAGES, RANDOM_VALUE));
	self->dest.recover_timeout_ms = RECOVER_MS;
	self->dest.widen_to = WIDE_VALUE;
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
}

FIXTURE_TEARDOWN(zero)
{
	pc_dest_free(&self->dest);
	mig_report_free(&self->rep);
	vm_destroy(self->vm);
}

/*
 * The random guest writes half of each vCPU's slice until postcopy
 * starts, then (the destination child widens its working set) all of it:
 * its first writes to the other half, zero until then, fault while the
 * background stream still has the written half to send.  A vCPU that
 * waited for such a page for ever would fail the destination's progress
 * check or its page deadline.
 */
TEST_F_TIMEOUT(zero, never_hang_a_vcpu, 300)
{
	struct mig_source_opts o;
	uint64_t i, v, wide = 0;
	char why[256];
	int ret;

	pc_opts(&o, self->dest.addr, &self->w);
	pc_params(&o.params, 1, variant->zero_detection);
	/*
	 * Postcopy lasts while the written half trickles in, and the pages
	 * the guest asks for overtake it: it soon writes the other half.
	 */
	o.params.max_bandwidth = CAPPED_LINK / 4;
	o.params.postcopy_preempt = true;
	ret = mig_source_run(self->vm->kv, &o, &self->rep);
	pc_dest_wait(&self->dest, DEST_END_S);
	pc_log_report(_metadata, "source", &self->rep);
	pc_log_dest(_metadata, &self->dest, !pc_dest_exited(&self->dest, DEST_OK));

	pc_check_completed(_metadata, &self->rep, ret, &self->w, &self->dest);
	/* The source's copy is the guest at the switch: half of each slice zero. */
	ASSERT_TRUE(zero_layout(self->vm, WRITTEN_PAGES, RANDOM_VALUE));
	if (variant->zero_detection) {
		ASSERT_GE(self->rep.zero_pages, 2 * (SLICE_PAGES - WRITTEN_PAGES));
	} else {
		ASSERT_EQ(self->rep.zero_pages, 0ULL);
	}
	ASSERT_EQ(pc_random_compare(self->vm, self->dest.area, RANDOM_VALUE, WIDE_VALUE, why,
				    sizeof(why)), 0) TH_LOG("%s", why);
	for (v = 0; v < 2; v++)
		for (i = WRITTEN_PAGES; i < SLICE_PAGES; i++)
			wide += self->dest.area->vals[v * SLICE_PAGES + i] == WIDE_VALUE;
	TH_LOG("%llu pages zero at the switch were written on the destination, the first %.3f s into postcopy, which lasted %.3f s",
	       (unsigned long long)wide, self->dest.area->zero_touched_s,
	       self->dest.area->rep.postcopy_s);
	ASSERT_GT(wide, 0ULL);
	/*
	 * ... and while pages were still missing: a vCPU that waited on such
	 * a page would have written it only once postcopy ended (when the
	 * memory is no longer registered with userfaultfd).
	 */
	ASSERT_GE(self->dest.area->zero_touched_s, 0);
	ASSERT_LT(self->dest.area->zero_touched_s, self->dest.area->rep.postcopy_s);
}

/* ---- failures ---- */

enum pc_mend {
	PC_MEND_RECONNECT,	/* the link comes back: the source reconnects */
	PC_MEND_CUT_AGAIN,	/* ... but the first new connection breaks after its hello */
	PC_MEND_ELSEWHERE,	/* a new address, given to the source (RESUME_AT) */
};

/*
 * The operator, once both sides are in postcopy-paused (or the wait for
 * that ends): mends the link as @how says.
 */
struct pc_operator {
	struct pc_watch *w;
	struct pc_dest *dest;
	struct proxy *px, *px2;
	enum pc_mend how;
	bool src_paused, dest_paused;
	bool over;			/* the source's migration returned (atomic) */
	unsigned int cut_conn;
	int settle;
	char answer[256];
	pthread_t thread;
	bool started;
};

static void *pc_operator_thread(void *arg)
{
	struct pc_operator *op = arg;
	double until;

	kvmmig_log_quiet(true);
	/* Both sides, in either order; a migration that ended will not pause. */
	until = now_s() + EVENT_WAIT_MS / 1000.0;
	while (!(op->src_paused && op->dest_paused) && now_s() < until &&
	       !__atomic_load_n(&op->over, __ATOMIC_ACQUIRE)) {
		op->src_paused = pc_watch_entered(op->w, MIG_POSTCOPY_PAUSED) > 0;
		op->dest_paused = pc_dest_wait_event(op->dest, PC_EV_PAUSED, 1, 10);
		usleep(5000);
	}
	switch (op->how) {
	case PC_MEND_RECONNECT:
		proxy_undrop(op->px);
		break;
	case PC_MEND_CUT_AGAIN:
		pthread_mutex_lock(&op->px->lock);
		op->cut_conn = op->px->nr_conns;
		op->px->fault.conn = op->cut_conn;
		op->px->fault.off = sizeof(struct mig_hello);
		op->px->fault.kind = FAULT_CUT;
		pthread_mutex_unlock(&op->px->lock);
		proxy_undrop(op->px);
		break;
	case PC_MEND_ELSEWHERE:
		op->settle = proxy_start(op->px2, op->dest->addr);
		if (op->settle)
			break;
		/* The source serves settle commands between its attempts. */
		until = now_s() + EVENT_WAIT_MS / 1000.0;
		do {
			op->settle = mig_settle_at(true, op->dest->session, MIG_SETTLE_RESUME_AT,
						   op->px2->addr, op->answer, sizeof(op->answer));
			if (op->settle != -ECONNREFUSED && op->settle != -ENOENT)
				break;
			usleep(100000);
		} while (now_s() < until);
		break;
	}
	return NULL;
}

FIXTURE(fail) {
	struct vm *vm;
	struct pc_dest dest;
	struct pc_watch w;
	struct proxy px, px2;
	struct pc_operator op;
	struct mig_report rep;
};

FIXTURE_SETUP(fail)
{
	self->dest.evfd = -1;
	pc_watch_init(&self->w);
	kvmmig_set_log(pc_src_log_hook, KVMMIG_LOG_INFO);
	self->vm = pc_guest(WORKLOAD_INCR, GUEST_RAM, 0, 0);
	ASSERT_NE(self->vm, NULL) TH_LOG("no guest, or it did not run within %d s", GUEST_PROGRESS_S);
	self->dest.recover_timeout_ms = RECOVER_MS;
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
}

FIXTURE_TEARDOWN(fail)
{
	if (self->op.started)
		pthread_join(self->op.thread, NULL);
	proxy_stop(&self->px);
	proxy_stop(&self->px2);
	pc_dest_free(&self->dest);
	mig_report_free(&self->rep);
	vm_destroy(self->vm);
}

/* Migrate, with the fault the case set in self->w; the destination's end awaited. */
static int fail_run(struct __test_metadata *_metadata, FIXTURE_DATA(fail) *self,
		    struct mig_source_opts *o)
{
	int ret;

	ret = mig_source_run(self->vm->kv, o, &self->rep);
	__atomic_store_n(&self->op.over, true, __ATOMIC_RELEASE);
	if (self->op.started) {
		pthread_join(self->op.thread, NULL);
		self->op.started = false;
	}
	pc_dest_wait(&self->dest, DEST_END_S);
	pc_log_report(_metadata, "source", &self->rep);
	if (self->w.fired)
		TH_LOG("fault injected in %s, pass %llu", mig_state_name(self->w.at),
		       (unsigned long long)self->w.fired_pass);
	pc_log_dest(_metadata, &self->dest, true);
	return ret;
}

/* A cancel before the switch: the source guest runs on, intact; the destination gives up. */
static void fail_cancelled(struct __test_metadata *_metadata, FIXTURE_DATA(fail) *self, int ret)
{
	char why[768];

	ASSERT_TRUE(self->w.fired);
	ASSERT_EQ(ret, -ECANCELED);
	ASSERT_EQ(self->rep.state, (enum mig_state)MIG_CANCELLED);
	ASSERT_TRUE(says(self->rep.error, "cancel"));
	ASSERT_FALSE(self->rep.postcopy);
	ASSERT_EQ(self->w.entered[MIG_POSTCOPY_ACTIVE], 0U);
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	ASSERT_TRUE(pc_dest_exited(&self->dest, DEST_RECEIVE_FAILED));
	ASSERT_EQ(self->dest.seen[PC_EV_STARTED], 0U);
	ASSERT_TRUE(says(self->dest.area->rep.error, "cancel"));
}

/* A cancel at the first sample of @at (from pass 1 on), postcopy starting as @start says. */
static void fail_cancel(struct __test_metadata *_metadata, FIXTURE_DATA(fail) *self,
			enum mig_state at, enum mig_postcopy_start start)
{
	struct mig_source_opts o;
	int ret;

	pc_opts(&o, self->dest.addr, &self->w);
	pc_params(&o.params, 1, true);
	o.params.postcopy_start = start;
	self->w.at = at;
	self->w.at_pass = 1;
	self->w.act = PC_ACT_CANCEL;
	ret = fail_run(_metadata, self, &o);
	fail_cancelled(_metadata, self, ret);
}

/* Postcopy may be switched to, but never is: cancelled in pass 1. */
TEST_F_TIMEOUT(fail, cancel_in_precopy, 300)
{
	fail_cancel(_metadata, self, MIG_ACTIVE, MIG_POSTCOPY_START_MANUAL);
}

/* Cancelled as the switch to postcopy begins, before END: the cancel wins. */
TEST_F_TIMEOUT(fail, cancel_at_the_switch, 300)
{
	fail_cancel(_metadata, self, MIG_SWITCHOVER, MIG_POSTCOPY_START_PASSES);
}

/* In postcopy the guest needs this source: a cancel is refused, saying why. */
TEST_F_TIMEOUT(fail, cancel_in_postcopy_refused, 300)
{
	struct mig_source_opts o;
	int ret;

	pc_opts(&o, self->dest.addr, &self->w);
	pc_params(&o.params, 1, true);
	self->w.at = MIG_POSTCOPY_ACTIVE;
	self->w.act = PC_ACT_CANCEL;
	ret = fail_run(_metadata, self, &o);
	ASSERT_TRUE(self->w.fired);
	pc_check_completed(_metadata, &self->rep, ret, &self->w, &self->dest);
	ASSERT_TRUE(pc_src_log_has("cannot cancel in postcopy")) {
		TH_LOG("source log:\n%s", pc_src_log);
	}
}

/*
 * The proxy drops the link at the start of postcopy: both sides enter
 * postcopy-paused (the source's progress, the destination's log), then
 * the link is mended as @how says and the migration completes.
 */
static void fail_cut(struct __test_metadata *_metadata, FIXTURE_DATA(fail) *self,
		     enum pc_mend how)
{
	const struct mig_report *dr = &self->dest.area->rep;
	struct mig_source_opts o;
	int ret;

	ASSERT_EQ(proxy_start(&self->px, self->dest.addr), 0);
	pc_opts(&o, self->px.addr, &self->w);
	o.tls.psk_file = self->dest.psk_file;
	pc_params(&o.params, 2, true);
	o.params.postcopy_preempt = true;
	self->w.at = MIG_POSTCOPY_ACTIVE;
	self->w.act = PC_ACT_DROP;
	self->w.px = &self->px;
	self->op = (struct pc_operator){
		.w = &self->w, .dest = &self->dest, .px = &self->px, .px2 = &self->px2,
		.how = how,
	};
	ASSERT_EQ(pthread_create(&self->op.thread, NULL, pc_operator_thread, &self->op), 0);
	self->op.started = true;
	ret = fail_run(_metadata, self, &o);
	TH_LOG("paused: source %d, destination %d; source entered postcopy-paused %u times",
	       self->op.src_paused, self->op.dest_paused,
	       self->w.entered[MIG_POSTCOPY_PAUSED]);

	ASSERT_TRUE(self->w.fired);
	ASSERT_TRUE(self->op.src_paused);
	ASSERT_TRUE(self->op.dest_paused);
	pc_check_completed(_metadata, &self->rep, ret, &self->w, &self->dest);
	ASSERT_GE(self->rep.postcopy_recoveries, 1U);
	ASSERT_GE(dr->postcopy_recoveries, 1U);
	if (how == PC_MEND_CUT_AGAIN) {
		/* The first recovery's link broke too, after its hello. */
		ASSERT_TRUE(self->px.hit);
	}
	if (how == PC_MEND_ELSEWHERE) {
		TH_LOG("settle: %d: %s", self->op.settle, self->op.answer);
		ASSERT_EQ(self->op.settle, 0);
		/* The recovery went through the new address. */
		ASSERT_GT(self->px2.nr_conns, 0U);
	}
}

TEST_F_TIMEOUT(fail, cut_in_postcopy_recovered, 300)
{
	fail_cut(_metadata, self, PC_MEND_RECONNECT);
}

/*
 * The same over TLS-PSK: the fault thread's requests and the main thread's
 * answers share the main channel's TLS session, the new link makes new
 * sessions, and nothing is sent on one session by two threads at once.
 */
TEST_F_TIMEOUT(fail, cut_in_postcopy_recovered_tls, 300)
{
	char psk[] = "/tmp/kvmmig-pc-psk-XXXXXX";
	static const char key[] = "qemu:00112233445566778899aabbccddeeff\n";
	int fd = mkstemp(psk);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, key, strlen(key)), (ssize_t)strlen(key));
	close(fd);
	/* The fixture's destination is plaintext: this one demands TLS. */
	pc_dest_free(&self->dest);
	self->dest = (struct pc_dest){ .evfd = -1, .recover_timeout_ms = RECOVER_MS,
				       .psk_file = psk };
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
	fail_cut(_metadata, self, PC_MEND_RECONNECT);
	unlink(psk);
	ASSERT_NE(self->rep.tls, NULL);
	TH_LOG("record layer: %s", self->rep.tls);
}

TEST_F_TIMEOUT(fail, cut_in_postcopy_and_in_recovery, 300)
{
	fail_cut(_metadata, self, PC_MEND_CUT_AGAIN);
}

TEST_F_TIMEOUT(fail, cut_in_postcopy_resumed_elsewhere, 300)
{
	fail_cut(_metadata, self, PC_MEND_ELSEWHERE);
}

/*
 * SIGKILL to the destination in postcopy: the guest's only running copy
 * is gone.  The source waits for it until its recover timeout, then fails
 * saying the guest is lost, and its stale copy stays stopped.
 */
TEST_F_TIMEOUT(fail, destination_killed_in_postcopy, 300)
{
	struct mig_source_opts o;
	int ret, st;

	pc_opts(&o, self->dest.addr, &self->w);
	pc_params(&o.params, 1, true);
	o.params.postcopy_recover_timeout_ms = SHORT_RECOVER_MS;
	self->w.at = MIG_POSTCOPY_ACTIVE;
	self->w.act = PC_ACT_KILL;
	self->w.pid = self->dest.pid;
	ret = fail_run(_metadata, self, &o);
	st = self->dest.status;

	ASSERT_TRUE(self->w.fired);
	ASSERT_FALSE(self->dest.hung);
	ASSERT_TRUE(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ASSERT_NE(ret, 0);
	ASSERT_EQ(self->rep.state, (enum mig_state)MIG_FAILED);
	ASSERT_TRUE(self->rep.postcopy);
	ASSERT_GE(self->w.entered[MIG_POSTCOPY_PAUSED], 1U);
	ASSERT_TRUE(says(self->rep.error, "guest is lost")) {
		TH_LOG("source error: %s", self->rep.error);
	}
	ASSERT_TRUE(self->rep.source_stopped);
	ASSERT_TRUE(pc_guest_stands_still(self->vm));
	ASSERT_EQ(vm_failure(self->vm), NULL);
}

/* ---- the source killed in postcopy ---- */

FIXTURE(lost_source) {
	struct pc_dest dest;
	pid_t src;
	int state_fd;
};

FIXTURE_SETUP(lost_source)
{
	self->src = 0;
	self->state_fd = -1;
	self->dest.evfd = -1;
	self->dest.recover_timeout_ms = SHORT_RECOVER_MS;
	ASSERT_EQ(pc_dest_start(&self->dest), 0);
}

FIXTURE_TEARDOWN(lost_source)
{
	if (self->src > 0) {
		kill(self->src, SIGKILL);
		waitpid(self->src, NULL, 0);
	}
	if (self->state_fd >= 0)
		close(self->state_fd);
	pc_dest_free(&self->dest);
}

/* The source in a child: its guest, a migration; every state it enters, a byte on @fd. */
static void lost_source_child(const char *to, int fd)
{
	struct mig_source_opts o;
	struct mig_report rep;
	struct pc_watch w;
	struct vm *vm;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pc_watch_init(&w);
	w.state_fd = fd;
	vm = pc_guest(WORKLOAD_INCR, GUEST_RAM, 0, 0);
	if (!vm)
		_exit(2);
	pc_opts(&o, to, &w);
	pc_params(&o.params, 1, true);
	_exit(mig_source_run(vm->kv, &o, &rep) ? 1 : 0);
}

/* Wait for the source child to enter @state: true, or false at the deadline or its end. */
static bool lost_source_wait(int fd, enum mig_state state, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	double until = now_s() + timeout_ms / 1000.0;
	uint8_t b;
	int left;

	while ((left = (int)((until - now_s()) * 1000)) > 0) {
		if (poll(&p, 1, left) != 1 || read(fd, &b, 1) != 1)
			return false;
		if (b == state)
			return true;
	}
	return false;
}

/*
 * SIGKILL to the source in postcopy: the destination's guest cannot get
 * its missing pages.  It pauses, says so, waits for a recovery until its
 * recover timeout, then gives up.
 */
TEST_F_TIMEOUT(lost_source, source_killed_in_postcopy, 300)
{
	const struct mig_report *dr = &self->dest.area->rep;
	bool active, started, paused;
	int sfd[2], st;

	ASSERT_EQ(pipe2(sfd, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	self->src = fork();
	ASSERT_GE(self->src, 0);
	if (!self->src) {
		close(sfd[0]);
		lost_source_child(self->dest.addr, sfd[1]);
	}
	close(sfd[1]);
	self->state_fd = sfd[0];
	active = lost_source_wait(self->state_fd, MIG_POSTCOPY_ACTIVE, EVENT_WAIT_MS * 2);
	started = pc_dest_wait_event(&self->dest, PC_EV_STARTED, 1, EVENT_WAIT_MS);
	kill(self->src, SIGKILL);
	waitpid(self->src, &st, 0);
	self->src = 0;
	paused = pc_dest_wait_event(&self->dest, PC_EV_PAUSED, 1, EVENT_WAIT_MS);
	pc_dest_wait(&self->dest, SHORT_RECOVER_MS / 1000 + DEST_END_S);
	TH_LOG("source: postcopy-active %d, killed %d; destination: started %d, paused %d",
	       active, WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, started, paused);
	pc_log_dest(_metadata, &self->dest, true);

	ASSERT_TRUE(active);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ASSERT_TRUE(started);
	ASSERT_TRUE(paused);
	ASSERT_TRUE(pc_dest_exited(&self->dest, DEST_RECEIVE_FAILED));
	ASSERT_TRUE(self->dest.area->reported);
	ASSERT_EQ(dr->state, (enum mig_state)MIG_FAILED);
	ASSERT_TRUE(dr->postcopy);
	ASSERT_TRUE(says(dr->error, "did not come back|recover|timed out"));
}

TEST_HARNESS_MAIN
