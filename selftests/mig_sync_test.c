// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of the sync engine (user/lib/mig_sync.c), no KVM: a scripted
 * dirty source reports the pages the test wrote since its previous
 * collection, and the test plays the sending walk itself, taking a page out
 * of bmap when it "sends" it, as mig_queue_pages() does.  A model keeps, per
 * page, the step of its latest write, its latest report by a collection
 * (the initial full bmap counts as one) and its latest send.  After every
 * sync that merges into bmap, a page must be in bmap exactly when its
 * latest report came after its latest send: never lost (a page written
 * after its latest send is always reported later), never resent for a
 * dirtying its copy on the wire already holds (the seed's iter_bmap /
 * shadow_bmap rule).  Named cases walk through the rule; then every
 * sequence of up to SEQ_LEN steps over three pages in two slots, in each
 * sync mode, and long random sequences over multi-word slots.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "kselftest_harness.h"
#include "mig_sync.h"

#define MAX_PAGES	256
#define INTERVAL_MS	1000
#define SEQ_LEN		6

/* Steps of a script; the page steps take a page number. */
enum step { STEP_DIRTY, STEP_SEND, STEP_TIMER, STEP_ITER, NR_STEPS };

struct world {
	struct dirty_source ds;
	struct mig_sync y;
	unsigned int nr_slots;
	uint64_t npages[MIG_MAX_SLOTS];
	unsigned int nr_pages;		/* over all slots, in slot order */
	double now;			/* seconds, advanced by the script */
	int t;				/* step number */
	int collect_err;		/* while set, collections fail with it */
	unsigned int collections;
	uint64_t reported;		/* by the latest collection */
	unsigned long written[BITMAP_WORDS(MAX_PAGES)];	/* not yet collected */
	int last_write[MAX_PAGES], last_report[MAX_PAGES], last_send[MAX_PAGES];
	uint64_t iteration_syncs;	/* merges into bmap the test saw */
	uint64_t dropped;		/* pages the syncs said they dropped */
	char why[256];			/* the first broken rule */
};

/* Global page @p as (slot, index in the slot). */
static void page_loc(const struct world *w, unsigned int p, unsigned int *slot, uint64_t *idx)
{
	unsigned int s = 0;

	while (p >= w->npages[s])
		p -= w->npages[s++];
	*slot = s;
	*idx = p;
}

static bool in_map(const struct world *w, unsigned long *const *maps, unsigned int p)
{
	unsigned int slot;
	uint64_t idx;

	page_loc(w, p, &slot, &idx);
	return bitmap_test_bit(maps[slot], idx);
}

static bool in_bmap(const struct world *w, unsigned int p)
{
	return in_map(w, w->y.bmap, p);
}

/* The scripted backend: what was written since the last collection. */
static int script_collect(struct dirty_source *ds, struct dirty_set *out)
{
	struct world *w = ds->priv;
	unsigned int p, slot;
	uint64_t idx;

	w->collections++;
	if (w->collect_err)
		return w->collect_err;
	w->reported = 0;
	for (p = 0; p < w->nr_pages; p++) {
		if (!bitmap_test_bit(w->written, p))
			continue;
		page_loc(w, p, &slot, &idx);
		bitmap_set_bit(out->bitmaps[slot], idx);
		w->last_report[p] = w->t;
		w->reported++;
	}
	memset(w->written, 0, sizeof(w->written));
	return w->reported;
}

static void script_stop(struct dirty_source *ds)
{
}

static const struct dirty_source_ops script_ops = {
	.name = "script",
	.collect = script_collect,
	.stop = script_stop,
};

static int world_init(struct world *w, enum mig_sync_mode mode, unsigned int nr_slots,
		      const uint64_t *npages)
{
	struct mig_sync_config cfg = {
		.nr_slots = nr_slots,
		.npages = npages,
		.nr_vcpus = 1,
		.mode = mode,
		.interval_ms = INTERVAL_MS,
	};
	unsigned int i;

	memset(w, 0, sizeof(*w));
	w->ds.ops = &script_ops;
	w->ds.priv = w;
	w->nr_slots = nr_slots;
	for (i = 0; i < nr_slots; i++) {
		w->npages[i] = npages[i];
		w->nr_pages += npages[i];
	}
	for (i = 0; i < w->nr_pages; i++) {
		w->last_write[i] = -1;
		w->last_send[i] = -1;
		w->last_report[i] = 0;	/* bmap starts full */
	}
	w->now = 100.0;
	return mig_sync_init(&w->y, &w->ds, &cfg, w->now);
}

/* Records the first broken rule; false from then on. */
static bool fail(struct world *w, const char *fmt, unsigned int p, long long a, long long b)
{
	if (!w->why[0])
		snprintf(w->why, sizeof(w->why), fmt, p, a, b);
	return false;
}

/*
 * After a merge into bmap: a page is pending exactly when a collection
 * reported it after its latest send.  Written after its latest send and
 * absent would be a lost page; present with its latest send after its
 * latest report, a needless resend.
 */
static bool check_merged(struct world *w)
{
	unsigned int p;

	for (p = 0; p < w->nr_pages; p++) {
		bool want = w->last_report[p] > w->last_send[p];

		if (w->last_write[p] > w->last_send[p] && !in_bmap(w, p))
			return fail(w, "page %u lost: written at step %lld, last sent at %lld",
				    p, w->last_write[p], w->last_send[p]);
		if (in_bmap(w, p) != want)
			return fail(w, "page %u resent: last reported at step %lld, last sent at %lld",
				    p, w->last_report[p], w->last_send[p]);
	}
	return true;
}

/* Between merges: a page written after its latest send is somewhere. */
static bool check_tracked(struct world *w)
{
	unsigned int p;

	for (p = 0; p < w->nr_pages; p++)
		if (w->last_write[p] > w->last_send[p] && !in_bmap(w, p) &&
		    !in_map(w, w->y.iter_bmap, p) && !bitmap_test_bit(w->written, p))
			return fail(w, "page %u untracked: written at step %lld, last sent at %lld",
				    p, w->last_write[p], w->last_send[p]);
	return true;
}

/* What a sync returned, against what the script saw it do. */
static bool check_result(struct world *w, const struct mig_sync_result *r, bool ran,
			 uint64_t collections, uint64_t pending_before)
{
	uint64_t pending = mig_sync_pending(&w->y);

	if (r->ran != ran || w->collections != collections + ran)
		return fail(w, "sync ran %u, expected %lld (collections %lld)", r->ran, ran,
			    w->collections - collections);
	if (!ran)
		return pending == pending_before ||
		       fail(w, "no sync, yet bmap went from %u to %lld pages", pending_before,
			    pending, 0);
	if (r->found != w->reported)
		return fail(w, "sync says it found %u pages, the source reported %lld",
			    r->found, w->reported, 0);
	w->dropped += r->dropped;
	if (r->background)
		return (pending == pending_before && !r->merged) ||
		       fail(w, "background sync touched bmap: %u -> %lld pages, merged %lld",
			    pending_before, pending, r->merged);
	if (pending - pending_before != r->merged)
		return fail(w, "sync says it merged %u pages, bmap grew by %lld", r->merged,
			    pending - pending_before, 0);
	w->iteration_syncs++;
	if (w->y.gen != 1 + w->iteration_syncs)
		return fail(w, "generation %u after %lld merges", w->y.gen, w->iteration_syncs, 0);
	return check_merged(w);
}

/* Would the timer run a sync now (the engine's documented rules)? */
static bool timer_due(const struct world *w)
{
	return w->y.mode != MIG_SYNC_LEGACY && w->iteration_syncs >= 1;
}

/* One step; false (and w->why) when a rule broke. */
static bool world_step(struct world *w, enum step step, unsigned int p,
		       struct mig_sync_result *r)
{
	uint64_t collections = w->collections, pending = mig_sync_pending(&w->y);
	unsigned int slot;
	uint64_t idx;
	bool ran;

	w->t++;
	memset(r, 0, sizeof(*r));
	switch (step) {
	case STEP_DIRTY:
		bitmap_set_bit(w->written, p);
		w->last_write[p] = w->t;
		break;
	case STEP_SEND:
		/* The walk sends only what bmap holds, and clears it first. */
		page_loc(w, p, &slot, &idx);
		if (bitmap_test_bit(w->y.bmap[slot], idx)) {
			bitmap_clear_bit(w->y.bmap[slot], idx);
			w->last_send[p] = w->t;
		}
		break;
	case STEP_TIMER:
		w->now += INTERVAL_MS / 1000.0;
		ran = timer_due(w);
		if (mig_sync_timer(&w->y, w->now, r))
			return fail(w, "timer sync failed at step %u", w->t, 0, 0);
		if (!check_result(w, r, ran, collections, pending))
			return false;
		break;
	case STEP_ITER:
		if (mig_sync_iteration(&w->y, w->now, r))
			return fail(w, "iteration sync failed at step %u", w->t, 0, 0);
		if (!check_result(w, r, true, collections, pending))
			return false;
		break;
	default:
		return fail(w, "bad step %u", step, 0, 0);
	}
	return check_tracked(w);
}

static const char *const step_names[NR_STEPS] = { "dirty", "send", "timer", "iter" };

/* A script as text, for the log of a failure. */
static void script_text(char *buf, size_t len, const unsigned int *steps, unsigned int n)
{
	size_t off = 0;
	unsigned int i;

	buf[0] = 0;
	for (i = 0; i < n && off < len; i++) {
		enum step st = steps[i] >> 8;

		if (st == STEP_DIRTY || st == STEP_SEND)
			off += snprintf(buf + off, len - off, "%s %s(%u)", i ? "," : "",
					step_names[st], steps[i] & 0xff);
		else
			off += snprintf(buf + off, len - off, "%s %s", i ? "," : "",
					step_names[st]);
	}
}

#define S(step, page)	((step) << 8 | (page))

/* Runs @steps (S() values) then, with @close, an iteration sync. */
static bool world_run(struct world *w, const unsigned int *steps, unsigned int n, bool close,
		      struct mig_sync_result *last)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (!world_step(w, steps[i] >> 8, steps[i] & 0xff, last))
			return false;
	return !close || world_step(w, STEP_ITER, 0, last);
}

static const uint64_t three_pages[] = { 2, 1 };	/* pages 0, 1 in slot 0; 2 in slot 1 */

FIXTURE(sync) {
	struct world w;
};

FIXTURE_SETUP(sync)
{
	ASSERT_EQ(0, world_init(&self->w, MIG_SYNC_BACKGROUND, 2, three_pages));
}

FIXTURE_TEARDOWN(sync)
{
	mig_sync_free(&self->w.y);
}

/*
 * The first pass sends every page; page 1 is written during it, so the
 * first iteration sync puts it in bmap again: the start of the named cases.
 */
static const unsigned int first_pass[] = {
	S(STEP_SEND, 0), S(STEP_DIRTY, 1), S(STEP_SEND, 1), S(STEP_SEND, 2), S(STEP_ITER, 0),
};

#define RUN(w, steps, close, r) do {						\
	if (!world_run(w, steps, sizeof(steps) / sizeof(steps[0]), close, r))	\
		TH_LOG("%s", (w)->why);						\
	ASSERT_EQ(0, (w)->why[0]);						\
} while (0)

TEST_F(sync, sent_after_background_sync_not_resent)
{
	static const unsigned int steps[] = {
		S(STEP_DIRTY, 1), S(STEP_TIMER, 0),
	};
	static const unsigned int after[] = { S(STEP_SEND, 1), S(STEP_ITER, 0) };
	struct mig_sync_result r;

	RUN(&self->w, first_pass, false, &r);
	ASSERT_TRUE(in_bmap(&self->w, 1));
	RUN(&self->w, steps, false, &r);
	/* Found by the background sync while still pending in the pass. */
	ASSERT_TRUE(r.background);
	ASSERT_EQ(1U, r.found);
	ASSERT_TRUE(in_map(&self->w, self->w.y.iter_bmap, 1));
	ASSERT_TRUE(in_map(&self->w, self->w.y.shadow_bmap, 1));
	RUN(&self->w, after, false, &r);
	EXPECT_FALSE(in_bmap(&self->w, 1));
	EXPECT_EQ(1U, r.dropped);
	EXPECT_EQ(0U, r.merged);
	EXPECT_EQ(0U, mig_sync_pending(&self->w.y));
}

TEST_F(sync, dirtied_again_after_send_resent)
{
	static const unsigned int steps[] = {
		S(STEP_DIRTY, 1), S(STEP_TIMER, 0), S(STEP_SEND, 1), S(STEP_DIRTY, 1),
		S(STEP_ITER, 0),
	};
	struct mig_sync_result r;

	RUN(&self->w, first_pass, false, &r);
	RUN(&self->w, steps, false, &r);
	EXPECT_TRUE(in_bmap(&self->w, 1));
	EXPECT_EQ(1U, r.merged);
	EXPECT_EQ(1U, mig_sync_pending(&self->w.y));
}

/* Dirtied after its send in the pass: only iter_bmap holds it until the merge. */
TEST_F(sync, found_by_background_sync_after_send_not_lost)
{
	static const unsigned int steps[] = {
		S(STEP_DIRTY, 0), S(STEP_TIMER, 0), S(STEP_ITER, 0),
	};
	struct mig_sync_result r;

	RUN(&self->w, first_pass, false, &r);
	RUN(&self->w, steps, false, &r);
	EXPECT_TRUE(in_bmap(&self->w, 0));
	EXPECT_EQ(0U, r.dropped);
	EXPECT_EQ(1U, r.merged);
}

/* Two background syncs: the second must not forget what was sent after the first. */
TEST_F(sync, sent_between_background_syncs_not_resent)
{
	static const unsigned int steps[] = {
		S(STEP_DIRTY, 1), S(STEP_TIMER, 0), S(STEP_SEND, 1), S(STEP_TIMER, 0),
	};
	struct mig_sync_result r;

	RUN(&self->w, first_pass, false, &r);
	RUN(&self->w, steps, false, &r);
	EXPECT_EQ(1U, r.dropped);
	EXPECT_FALSE(in_map(&self->w, self->w.y.iter_bmap, 1));
	RUN(&self->w, (unsigned int[]){ S(STEP_ITER, 0) }, false, &r);
	EXPECT_FALSE(in_bmap(&self->w, 1));
}

TEST_F(sync, failed_collection_changes_nothing)
{
	struct mig_sync_result r;
	uint64_t gen, pending;

	RUN(&self->w, first_pass, false, &r);
	bitmap_set_bit(self->w.written, 2);
	gen = self->w.y.gen;
	pending = mig_sync_pending(&self->w.y);
	self->w.collect_err = -EIO;
	EXPECT_EQ(-EIO, mig_sync_iteration(&self->w.y, self->w.now, &r));
	EXPECT_FALSE(r.ran);
	EXPECT_EQ(gen, self->w.y.gen);
	EXPECT_EQ(pending, mig_sync_pending(&self->w.y));
	self->w.now += 10;
	EXPECT_EQ(-EIO, mig_sync_timer(&self->w.y, self->w.now, &r));
	EXPECT_FALSE(r.ran);
	EXPECT_EQ(pending, mig_sync_pending(&self->w.y));
}

/* The timer: not in the first pass, not before the interval, never in legacy mode. */
TEST(timer_rules)
{
	static const enum mig_sync_mode modes[] = {
		MIG_SYNC_LEGACY, MIG_SYNC_BACKGROUND, MIG_SYNC_PERIODIC,
	};
	struct mig_sync_result r;
	struct world w;
	unsigned int i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ASSERT_EQ(0, world_init(&w, modes[i], 2, three_pages));
		ASSERT_EQ(0, mig_sync_timer(&w.y, w.now + 10, &r));
		EXPECT_FALSE(r.ran);	/* first pass */
		ASSERT_EQ(0, mig_sync_iteration(&w.y, w.now, &r));
		EXPECT_EQ(2U, w.y.gen);
		ASSERT_EQ(0, mig_sync_timer(&w.y, w.now + INTERVAL_MS / 1000.0 - 0.001, &r));
		EXPECT_FALSE(r.ran);	/* too early */
		bitmap_set_bit(w.written, 2);
		ASSERT_EQ(0, mig_sync_timer(&w.y, w.now + INTERVAL_MS / 1000.0, &r));
		EXPECT_EQ(modes[i] != MIG_SYNC_LEGACY, r.ran);
		EXPECT_EQ(modes[i] == MIG_SYNC_BACKGROUND, r.background);
		/* Periodic merges at once, as an iteration sync. */
		EXPECT_EQ(modes[i] == MIG_SYNC_PERIODIC ? 3U : 2U, w.y.gen);
		EXPECT_EQ(modes[i] != MIG_SYNC_LEGACY, w.collections == 3);
		mig_sync_free(&w.y);
	}
}

TEST(bad_config)
{
	static const uint64_t npages[MIG_MAX_SLOTS + 1] = { 1 };
	struct mig_sync_config cfg = {
		.nr_slots = MIG_MAX_SLOTS + 1, .npages = npages, .nr_vcpus = 1,
	};
	struct dirty_source ds = { .ops = &script_ops };
	struct mig_sync y;

	EXPECT_EQ(-EINVAL, mig_sync_init(&y, &ds, &cfg, 0));
	mig_sync_free(&y);
	cfg.nr_slots = 1;
	cfg.mode = NR_MIG_SYNC_MODES;
	EXPECT_EQ(-EINVAL, mig_sync_init(&y, &ds, &cfg, 0));
	mig_sync_free(&y);
}

/*
 * Every script of up to SEQ_LEN steps over three pages, each closed by an
 * iteration sync, from the start and from after a first pass.
 */
FIXTURE(every_script) {
	unsigned long scripts;
	uint64_t dropped;	/* by every sync of every script */
};

FIXTURE_VARIANT(every_script) {
	enum mig_sync_mode mode;
};

FIXTURE_VARIANT_ADD(every_script, legacy) { MIG_SYNC_LEGACY };
FIXTURE_VARIANT_ADD(every_script, background) { MIG_SYNC_BACKGROUND };
FIXTURE_VARIANT_ADD(every_script, periodic) { MIG_SYNC_PERIODIC };

FIXTURE_SETUP(every_script)
{
}

FIXTURE_TEARDOWN(every_script)
{
}

/* The steps over three pages: dirty and send each, timer, iteration sync. */
static unsigned int alphabet(unsigned int *a)
{
	unsigned int n = 0, p;

	for (p = 0; p < 3; p++) {
		a[n++] = S(STEP_DIRTY, p);
		a[n++] = S(STEP_SEND, p);
	}
	a[n++] = S(STEP_TIMER, 0);
	a[n++] = S(STEP_ITER, 0);
	return n;
}

TEST_F(every_script, no_page_lost_none_resent)
{
	unsigned int a[8], na = alphabet(a), steps[SEQ_LEN], digit[SEQ_LEN];
	unsigned int len, i, start;
	struct mig_sync_result r;
	struct world w;
	char text[512];

	for (start = 0; start < 2; start++) {
		for (len = 0; len <= SEQ_LEN; len++) {
			memset(digit, 0, sizeof(digit));
			do {
				for (i = 0; i < len; i++)
					steps[i] = a[digit[i]];
				ASSERT_EQ(0, world_init(&w, variant->mode, 2, three_pages));
				if (!start || world_run(&w, first_pass, 5, false, &r))
					world_run(&w, steps, len, true, &r);
				mig_sync_free(&w.y);
				self->dropped += w.dropped;
				if (w.why[0]) {
					script_text(text, sizeof(text), steps, len);
					TH_LOG("%s: after%s:%s", w.why,
					       start ? " the first pass" : " init", text);
				}
				ASSERT_EQ(0, w.why[0]);
				self->scripts++;
				/* The next script: count in base na. */
				for (i = 0; i < len && ++digit[i] == na; i++)
					digit[i] = 0;
			} while (i < len);
		}
	}
	TH_LOG("%lu scripts, %llu pages dropped from iter_bmap", self->scripts,
	       (unsigned long long)self->dropped);
	/* Only background syncs fill iter_bmap; they must have had pages to drop. */
	EXPECT_EQ(variant->mode == MIG_SYNC_BACKGROUND, self->dropped > 0);
}

/* xorshift64*: reproducible, so a failure can be replayed. */
static uint64_t rnd(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dULL;
}

/*
 * Long random scripts over slots of several words, with tails (130 pages)
 * and a slot of one page: the word-at-a-time merges against the model.
 */
TEST_F(every_script, random_multiword)
{
	static const uint64_t npages[] = { 130, 1, 64 };
	uint64_t state = 0x9e3779b97f4a7c15ULL;
	struct mig_sync_result r;
	unsigned int run, i, p;
	struct world w;

	for (run = 0; run < 20; run++) {
		ASSERT_EQ(0, world_init(&w, variant->mode, 3, npages));
		for (i = 0; i < 5000 && !w.why[0]; i++) {
			unsigned int x = rnd(&state) % 100;

			p = rnd(&state) % w.nr_pages;
			if (x < 45)
				world_step(&w, STEP_DIRTY, p, &r);
			else if (x < 93)
				world_step(&w, STEP_SEND, p, &r);
			else if (x < 98)
				world_step(&w, STEP_TIMER, 0, &r);
			else
				world_step(&w, STEP_ITER, 0, &r);
		}
		if (!w.why[0])
			world_step(&w, STEP_ITER, 0, &r);
		mig_sync_free(&w.y);
		self->dropped += w.dropped;
		if (w.why[0])
			TH_LOG("run %u, step %u: %s", run, i, w.why);
		ASSERT_EQ(0, w.why[0]);
	}
	EXPECT_EQ(variant->mode == MIG_SYNC_BACKGROUND, self->dropped > 0);
}

TEST_HARNESS_MAIN
