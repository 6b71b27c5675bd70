// SPDX-License-Identifier: GPL-2.0-only
/*
 * The demand-fill engine (user/lib/page_fill.c) on plain memory, without a
 * guest or a snapshot: threads touch the pages of two "memslots" and block
 * until the page provider places them, from the fault thread itself or
 * asynchronously from another thread as a postcopy receiver will; a
 * background filler places the rest.  Every page's contents are checked
 * (zero pages included), each page is placed once and late copies are
 * dropped; the spatial-locality hint moves the background filler; a
 * provider that never answers fails the fill at its deadline, a cancel
 * fails it at once; and after the end nothing is registered any more: the
 * memory's VmFlags lose "um" and touching a page never placed no longer
 * blocks.  A postcopy destination's additions: pages present from the
 * start are never asked for and a fault on one never populated reads
 * zeros at once (seed 004); a suspended deadline fails nothing, and the
 * pages waited on are asked for again after a lost link; a fault thread in
 * real time collects the answers itself, one held to nice -5 never does.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cancel.h"
#include "clock.h"
#include "kselftest_harness.h"
#include "log.h"
#include "page_fill.h"
#include "test_util.h"
#include "thread_nice.h"

#define SLOT_PAGES	512
#define NR_SLOTS	2
#define PAGE		4096UL
#define WAIT_MS		20000	/* a generous deadline for a loaded host */

static void quiet_log(int level, const char *msg)
{
}

/* What page @i of slot @s holds: zeros for every fourth page, else its number. */
static uint64_t pattern(unsigned int s, uint64_t i)
{
	return i % 4 == 0 ? 0 : 0x1000000000ULL * (s + 1) + i;
}

static void fill_pattern(uint8_t *buf, unsigned int s, uint64_t i)
{
	uint64_t *w = (uint64_t *)buf;
	unsigned int k;

	for (k = 0; k < PAGE / 8; k++)
		w[k] = pattern(s, i);
}

/* The provider's side: where requests go and how they are answered. */
struct provider {
	struct page_fill *pf;
	bool async;			/* queue requests for the answering thread */
	bool ignore;			/* never answer */
	bool twice;			/* answer every request twice (a late duplicate) */
	pthread_mutex_t lock;
	uint64_t queue[SLOT_PAGES * NR_SLOTS];	/* slot << 32 | page */
	unsigned int head, tail;
	int stop;
	int error;
	unsigned int collects;		/* atomic: calls of collect() */
};

static long place_one(struct provider *p, unsigned int s, uint64_t i)
{
	uint8_t buf[PAGE];

	if (!pattern(s, i))
		return page_fill_place(p->pf, s, i, NULL, 1);
	fill_pattern(buf, s, i);
	return page_fill_place(p->pf, s, i, buf, 1);
}

static int request(void *opaque, unsigned int slot, uint64_t page)
{
	struct provider *p = opaque;
	long n;

	if (p->ignore)
		return 0;
	if (p->async) {
		pthread_mutex_lock(&p->lock);
		p->queue[p->tail++ % (SLOT_PAGES * NR_SLOTS)] = (uint64_t)slot << 32 | page;
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	n = place_one(p, slot, page);
	if (n >= 0 && p->twice)
		n = place_one(p, slot, page);
	return n < 0 ? (int)n : 0;
}

/* The asynchronous answerer, as a postcopy receive thread would be. */
static void *answer_thread(void *arg)
{
	struct provider *p = arg;

	while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = 0;
		bool got = false;

		pthread_mutex_lock(&p->lock);
		if (p->head != p->tail) {
			r = p->queue[p->head++ % (SLOT_PAGES * NR_SLOTS)];
			got = true;
		}
		pthread_mutex_unlock(&p->lock);
		if (!got) {
			usleep(100);
			continue;
		}
		if (place_one(p, r >> 32, (uint32_t)r) < 0 ||
		    (p->twice && place_one(p, r >> 32, (uint32_t)r) < 0)) {
			p->error = -1;
			break;
		}
	}
	return NULL;
}

/* A background filler: chunks of 8 pages from page_fill_next(), placed whole. */
static void *background_thread(void *arg)
{
	struct provider *p = arg;
	uint8_t *buf = malloc(8 * PAGE);
	uint64_t first, n, i;
	unsigned int s;
	int ret;

	while (buf && (ret = page_fill_next(p->pf, 8, &s, &first, &n)) == 1) {
		for (i = 0; i < n; i++)
			fill_pattern(buf + i * PAGE, s, first + i);
		/* Zero pages too come as data here: placing them as data is just as right. */
		if (page_fill_place(p->pf, s, first, buf, n) < 0)
			break;
		usleep(200);	/* slow enough that the touchers fault */
	}
	free(buf);
	return NULL;
}

struct toucher {
	uint8_t *mem[NR_SLOTS];
	unsigned int first, step;
	uint64_t bad;			/* first page that read wrong, +1 */
	int done;
};

static void *touch_pages(void *arg)
{
	struct toucher *t = arg;
	unsigned int s, i;

	for (i = t->first; i < SLOT_PAGES && !t->bad; i += t->step) {
		for (s = 0; s < NR_SLOTS; s++) {
			const uint64_t *w = (const uint64_t *)(t->mem[s] + i * PAGE);

			if (w[0] != pattern(s, i) || w[PAGE / 8 - 1] != pattern(s, i)) {
				t->bad = s * SLOT_PAGES + i + 1;
				break;
			}
		}
	}
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Wait up to @ms for t->done; was it set? */
static bool toucher_done(struct toucher *t, unsigned int ms)
{
	uint64_t until = now_ms() + ms;

	while (!__atomic_load_n(&t->done, __ATOMIC_ACQUIRE) && now_ms() < (int64_t)until)
		usleep(1000);
	return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}

FIXTURE(fill) {
	struct kvmmig_vm *vm;
	uint8_t *mem[NR_SLOTS];
	struct provider p;
	volatile sig_atomic_t cancel;
};

FIXTURE_SETUP(fill)
{
	unsigned int s;

	self->vm = calloc(1, sizeof(*self->vm));
	ASSERT_NE(self->vm, NULL);
	self->vm->nr_slots = NR_SLOTS;
	for (s = 0; s < NR_SLOTS; s++) {
		self->mem[s] = mmap(NULL, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(self->mem[s], MAP_FAILED);
		/* Written before the fill: discard must throw this away. */
		memset(self->mem[s], 0xee, SLOT_PAGES * PAGE);
		self->vm->slots[s] = (struct kvmmig_slot){
			.id = s, .gpa = s * SLOT_PAGES * PAGE, .size = SLOT_PAGES * PAGE,
			.hva = self->mem[s],
		};
	}
	pthread_mutex_init(&self->p.lock, NULL);
}

FIXTURE_TEARDOWN(fill)
{
	unsigned int s;

	for (s = 0; s < NR_SLOTS; s++)
		munmap(self->mem[s], SLOT_PAGES * PAGE);
	free(self->vm);
}

/* Start a fill of the fixture's slots with @p's provider. */
static int start(struct __test_metadata *_metadata, struct kvmmig_vm *vm, struct provider *p,
		 bool hint, unsigned int timeout_ms, volatile sig_atomic_t *cancel)
{
	struct page_fill_opts o = {
		.request = request, .opaque = p, .discard = true, .hint = hint,
		.timeout_ms = timeout_ms, .cancel = cancel,
	};
	int ret = page_fill_start(vm, &o, &p->pf);

	if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP)
		TH_LOG("no userfaultfd here: %s", kvmmig_last_error());
	return ret;
}

/* Wait up to WAIT_MS for @st.waited to reach @n; was it? */
static bool waited_for(struct page_fill *pf, uint64_t n)
{
	uint64_t until = now_ms() + WAIT_MS;
	struct page_fill_stats st;

	do {
		page_fill_stats(pf, &st);
		if (st.waited >= n)
			return true;
		usleep(1000);
	} while (now_ms() < (int64_t)until);
	return false;
}

/* Wait up to WAIT_MS for page_fill_missing() to come down to @n; did it? */
static bool missing_down_to(struct page_fill *pf, uint64_t n)
{
	uint64_t until = now_ms() + WAIT_MS;

	while (page_fill_missing(pf) > n && now_ms() < (int64_t)until)
		usleep(1000);
	return page_fill_missing(pf) <= n;
}

/*
 * Four threads touch every page of both slots while a background filler
 * places chunks; requests are answered @async-ly or in the fault thread.
 */
static void run_touchers(struct __test_metadata *_metadata, FIXTURE_DATA(fill) *self,
			 bool async, bool twice)
{
	struct toucher t[4];
	struct page_fill_stats st;
	pthread_t th[4], ans, bg;
	unsigned int i, zero = 0;

	self->p.async = async;
	self->p.twice = twice;
	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, WAIT_MS, NULL), 0);
	ASSERT_EQ(uffd_missing_flag(self->mem[0]), 1);
	if (async)
		ASSERT_EQ(pthread_create(&ans, NULL, answer_thread, &self->p), 0);
	for (i = 0; i < 4; i++) {
		t[i] = (struct toucher){ .mem = { self->mem[0], self->mem[1] }, .first = i,
					 .step = 4 };
		ASSERT_EQ(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	}
	/* A loaded host may run the filler first: the touchers must have faulted. */
	ASSERT_TRUE(waited_for(self->p.pf, 1));
	ASSERT_EQ(pthread_create(&bg, NULL, background_thread, &self->p), 0);
	ASSERT_EQ(page_fill_wait(self->p.pf, WAIT_MS), 0) TH_LOG("%s", kvmmig_last_error());
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ASSERT_EQ(t[i].bad, 0ULL) TH_LOG("page %llu read wrong",
						 (unsigned long long)t[i].bad - 1);
	}
	pthread_join(bg, NULL);
	__atomic_store_n(&self->p.stop, 1, __ATOMIC_RELEASE);
	if (async)
		pthread_join(ans, NULL);
	ASSERT_EQ(self->p.error, 0);
	ASSERT_EQ(page_fill_end(self->p.pf, &st), 0) TH_LOG("%s", kvmmig_last_error());
	TH_LOG("%llu faults, %llu requests, %llu demand, %llu background, %llu zero, %llu dropped, blocktime %.1f ms, p50 %llu us, p99 %llu us",
	       (unsigned long long)st.faults, (unsigned long long)st.requests,
	       (unsigned long long)st.pages_demand, (unsigned long long)st.pages_background,
	       (unsigned long long)st.zero_pages, (unsigned long long)st.dropped,
	       st.blocktime_ns / 1e6,
	       (unsigned long long)lat_hist_percentile_us(st.fault_us_hist, 50),
	       (unsigned long long)lat_hist_percentile_us(st.fault_us_hist, 99));
	/* Each page placed exactly once; the touchers had to wait for some. */
	ASSERT_EQ(st.pages_demand + st.pages_background, (uint64_t)NR_SLOTS * SLOT_PAGES);
	ASSERT_GT(st.requests, 0ULL);
	/* A requested page the background claimed first counts as background. */
	ASSERT_GT(st.pages_demand, 0ULL);
	ASSERT_LE(st.pages_demand, st.requests);
	ASSERT_GE(st.faults, st.requests);
	ASSERT_EQ(lat_hist_count(st.fault_us_hist) > 0, true);
	ASSERT_GT(st.blocktime_ns, 0ULL);
	/* Requested zero pages went in as zero pages; the background's as data. */
	for (i = 0; i < NR_SLOTS * SLOT_PAGES; i++)
		zero += pattern(i / SLOT_PAGES, i % SLOT_PAGES) == 0;
	ASSERT_LE(st.zero_pages, zero);
	/* Every request was answered twice: one copy each at least was dropped. */
	if (twice)
		ASSERT_GE(st.dropped, st.requests);
	/* Unregistered: no "um" left. */
	ASSERT_EQ(uffd_missing_flag(self->mem[0]), 0);
	ASSERT_EQ(uffd_missing_flag(self->mem[1]), 0);
}

TEST_F_TIMEOUT(fill, served_in_fault_thread, 120)
{
	run_touchers(_metadata, self, false, false);
}

TEST_F_TIMEOUT(fill, served_async_with_duplicates, 120)
{
	run_touchers(_metadata, self, true, true);
}

/* Zero pages asked for are placed, read as zeros, and counted. */
TEST_F_TIMEOUT(fill, zero_pages_placed, 60)
{
	struct toucher t = { .mem = { self->mem[0], self->mem[1] }, .first = 0, .step = 4 };
	struct page_fill_stats st;
	pthread_t th;

	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, WAIT_MS, NULL), 0);
	/* Pages 0, 4, 8, ...: all zero pages, in both slots. */
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	ASSERT_TRUE(toucher_done(&t, WAIT_MS));
	pthread_join(th, NULL);
	ASSERT_EQ(t.bad, 0ULL);
	/* A placement wakes the reader before the fill counts it. */
	ASSERT_TRUE(missing_down_to(self->p.pf, (uint64_t)NR_SLOTS * SLOT_PAGES * 3 / 4));
	page_fill_stats(self->p.pf, &st);
	ASSERT_EQ(st.zero_pages, (uint64_t)NR_SLOTS * SLOT_PAGES / 4);
	ASSERT_EQ(st.pages_demand, (uint64_t)NR_SLOTS * SLOT_PAGES / 4);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_wait(self->p.pf, 10), -ETIMEDOUT);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "256 of 1024 pages placed"), NULL);
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), 0);
}

/*
 * With the hint, the background continues right after the page a fault
 * asked for; without it, from the start.
 */
static void check_hint(struct __test_metadata *_metadata, FIXTURE_DATA(fill) *self, bool hint)
{
	struct toucher t = { .mem = { self->mem[0], self->mem[1] }, .first = 101,
			     .step = SLOT_PAGES };
	uint64_t first, n, page;
	unsigned int s;
	pthread_t th;

	ASSERT_EQ(start(_metadata, self->vm, &self->p, hint, WAIT_MS, NULL), 0);
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	ASSERT_TRUE(toucher_done(&t, WAIT_MS));
	pthread_join(th, NULL);
	ASSERT_EQ(t.bad, 0ULL);
	ASSERT_EQ(page_fill_next(self->p.pf, 1, &s, &first, &n), 1);
	/* Slot 0's page 101 was asked for first; slot 1's found the hint taken. */
	ASSERT_EQ(s, 0U);
	ASSERT_EQ(first, hint ? 102ULL : 0ULL);
	ASSERT_EQ(n, 1ULL);
	ASSERT_EQ(page_fill_take_hint(self->p.pf, &s, &page), 0);	/* consumed */
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), 0);
}

TEST_F_TIMEOUT(fill, hint_moves_background, 60)
{
	check_hint(_metadata, self, true);
}

TEST_F_TIMEOUT(fill, no_hint_background_in_order, 60)
{
	check_hint(_metadata, self, false);
}

/*
 * A provider that never answers: the fill fails at its deadline, named;
 * the thread stays blocked until the end, then reads the never-placed page
 * as zeros (nothing registered any more).
 */
TEST_F_TIMEOUT(fill, deadline_then_nothing_registered, 60)
{
	struct toucher t = { .mem = { self->mem[0], self->mem[1] }, .first = 5,
			     .step = SLOT_PAGES };
	pthread_t th;

	self->p.ignore = true;
	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, 300, NULL), 0);
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_wait(self->p.pf, WAIT_MS), -ETIMEDOUT);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "was not placed within 300 ms"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	/* Failed, not resolved: the page stays missing and its reader waits. */
	ASSERT_FALSE(toucher_done(&t, 200));
	ASSERT_EQ(page_fill_place(self->p.pf, 0, 5, NULL, 1), -ETIMEDOUT);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), -ETIMEDOUT);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_EQ(uffd_missing_flag(self->mem[0]), 0);
	ASSERT_TRUE(toucher_done(&t, WAIT_MS));
	pthread_join(th, NULL);
	ASSERT_NE(t.bad, 0ULL);		/* page 5 of slot 0 reads zeros, not its pattern */
	ASSERT_EQ(self->mem[1][7 * PAGE], 0);	/* discarded, never placed, no fault */
}

/* A cancel fails the fill at once with -ECANCELED. */
TEST_F_TIMEOUT(fill, cancel, 60)
{
	struct toucher t = { .mem = { self->mem[0], self->mem[1] }, .first = 9,
			     .step = SLOT_PAGES };
	pthread_t th;

	self->p.ignore = true;
	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, WAIT_MS, &self->cancel), 0);
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	ASSERT_FALSE(toucher_done(&t, 100));
	kvmmig_cancel_set(&self->cancel, 1);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_wait(self->p.pf, WAIT_MS), -ECANCELED);
	ASSERT_NE(strstr(kvmmig_last_error(), "cancelled"), NULL);
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), -ECANCELED);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_TRUE(toucher_done(&t, WAIT_MS));
	pthread_join(th, NULL);
}

/*
 * Slot 0's first 256 pages are present (as a postcopy destination's clean
 * precopy pages): 0..127 populated with 0xee, 128..255 never populated (a
 * zero page precopy skipped).  Reading them asks for nothing: the first read
 * as they are, the others as zeros placed at once; a page not present is
 * asked for; a copy of a present page is dropped; the claimed bitmap says
 * which pages are held.
 */
TEST_F_TIMEOUT(fill, present_pages_held_zero_filled, 60)
{
	unsigned long present[SLOT_PAGES / 64] = { ~0UL, ~0UL, ~0UL, ~0UL };
	struct page_fill_opts o = { .request = request, .opaque = &self->p,
				    .timeout_ms = WAIT_MS };
	struct page_fill_stats st;
	uint64_t claimed[SLOT_PAGES / 64];
	uint8_t buf[PAGE];
	unsigned int s;
	int ret;

	o.present[0] = present;
	ASSERT_EQ(madvise(self->mem[0] + 128 * PAGE, (SLOT_PAGES - 128) * PAGE, MADV_DONTNEED), 0);
	ASSERT_EQ(madvise(self->mem[1], SLOT_PAGES * PAGE, MADV_DONTNEED), 0);
	ret = page_fill_start(self->vm, &o, &self->p.pf);
	if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP)
		SKIP(return, "no userfaultfd here: %s", kvmmig_last_error());
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(page_fill_missing(self->p.pf), (uint64_t)NR_SLOTS * SLOT_PAGES - 256);
	ASSERT_EQ(self->mem[0][10 * PAGE], 0xee);
	ASSERT_EQ(self->mem[0][200 * PAGE + 7], 0);
	ASSERT_EQ(self->mem[0][201 * PAGE], 0);
	/* Page 301 is not present: the provider places its pattern. */
	ASSERT_EQ(*(volatile uint64_t *)(self->mem[0] + 301 * PAGE), pattern(0, 301));
	memset(buf, 0x55, sizeof(buf));
	ASSERT_EQ(page_fill_place(self->p.pf, 0, 200, buf, 1), 0);	/* present: dropped */
	ASSERT_EQ(self->mem[0][200 * PAGE], 0);
	/* The copy wakes the reader before the fill counts the page: wait for the count. */
	ASSERT_TRUE(missing_down_to(self->p.pf, (uint64_t)NR_SLOTS * SLOT_PAGES - 257));
	page_fill_stats(self->p.pf, &st);
	ASSERT_EQ(st.requests, 1ULL);
	ASSERT_EQ(st.present_faults, 2ULL);
	ASSERT_EQ(st.waited, 1ULL);
	ASSERT_EQ(st.pages_demand, 1ULL);
	ASSERT_EQ(st.dropped, 1ULL);
	ASSERT_EQ(page_fill_copy_claimed(self->p.pf, 0, 0, SLOT_PAGES / 64, claimed), 0);
	for (s = 0; s < 4; s++)
		ASSERT_EQ(claimed[s], ~0ULL);
	ASSERT_EQ(claimed[4], 1ULL << (301 - 256));
	ASSERT_EQ(claimed[5], 0ULL);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_copy_claimed(self->p.pf, 0, 4, SLOT_PAGES / 64, claimed), -EINVAL);
	ASSERT_EQ(page_fill_wait(self->p.pf, 10), -ETIMEDOUT);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "257 of 1024 pages placed"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), 0);
}

/* Present pages with discard: refused, named. */
TEST_F(fill, present_with_discard_refused)
{
	unsigned long present[SLOT_PAGES / 64] = { 1 };
	struct page_fill_opts o = { .request = request, .opaque = &self->p, .discard = true };
	struct page_fill *pf;

	o.present[1] = present;
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_start(self->vm, &o, &pf), -EINVAL);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "discard and present pages in slot 1"), NULL);
}

/*
 * A provider whose requests are lost (a postcopy link down): with the
 * deadline suspended the fill waits past it without failing; asked again,
 * the provider answers and the waiting thread reads its page.
 */
TEST_F_TIMEOUT(fill, deadline_suspended_then_rerequested, 60)
{
	struct toucher t = { .mem = { self->mem[0], self->mem[1] }, .first = 5,
			     .step = SLOT_PAGES };
	struct page_fill_stats st;
	pthread_t th;

	self->p.ignore = true;
	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, 300, NULL), 0);
	page_fill_suspend_deadline(self->p.pf, true);
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	ASSERT_TRUE(waited_for(self->p.pf, 1));	/* page 5 of slot 0 */
	/* Three deadlines long: nothing fails, nothing is placed. */
	ASSERT_FALSE(toucher_done(&t, 900));
	ASSERT_EQ(page_fill_place(self->p.pf, 1, 100, NULL, 1), 1);
	self->p.ignore = false;
	ASSERT_EQ(page_fill_rerequest(self->p.pf), 1);
	page_fill_suspend_deadline(self->p.pf, false);
	ASSERT_TRUE(toucher_done(&t, WAIT_MS));
	pthread_join(th, NULL);
	ASSERT_EQ(t.bad, 0ULL);
	ASSERT_TRUE(missing_down_to(self->p.pf, (uint64_t)NR_SLOTS * SLOT_PAGES - 3));
	page_fill_stats(self->p.pf, &st);
	ASSERT_EQ(st.requests, 3ULL);	/* slot 0's page twice, then slot 1's */
	ASSERT_EQ(st.pages_demand, 2ULL);
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), 0);
}

/* Answers the fault thread collects itself (page_fill_opts.collect): the queued requests. */
static int collect(void *opaque)
{
	struct provider *p = opaque;
	uint64_t r;
	bool got;

	__atomic_add_fetch(&p->collects, 1, __ATOMIC_RELAXED);
	do {
		pthread_mutex_lock(&p->lock);
		got = p->head != p->tail;
		if (got)
			r = p->queue[p->head++ % (SLOT_PAGES * NR_SLOTS)];
		pthread_mutex_unlock(&p->lock);
		if (got && place_one(p, r >> 32, (uint32_t)r) < 0)
			return -EIO;
	} while (got);
	return 0;
}

static void *urgency_probe(void *arg)
{
	*(enum kvmmig_urgency *)arg = kvmmig_thread_urgent("the probe");
	return NULL;
}

/* What an urgent thread of this process gets (a thread of its own, thrown away). */
static enum kvmmig_urgency urgency_here(void)
{
	enum kvmmig_urgency u = KVMMIG_URGENCY_NONE;
	pthread_t t;

	if (!pthread_create(&t, NULL, urgency_probe, &u))
		pthread_join(t, NULL);
	return u;
}

/*
 * Four threads touch every page; requests only queue, and nothing but the
 * fault thread's collect() answers them: with real time and two cores it
 * collects the answers while the faults wait, and every page is placed.
 * Held to nice -5 it never calls collect() (it would keep the answer's
 * sender off a core), and the queued requests wait for another thread.
 */
static void collect_run(struct __test_metadata *_metadata, FIXTURE_DATA(fill) *self, bool rt)
{
	struct page_fill_opts o = {
		.request = request, .opaque = &self->p, .discard = true, .timeout_ms = WAIT_MS,
		.collect = collect, .spin_us = 100,
	};
	struct toucher t[4];
	struct page_fill_stats st;
	pthread_t th[4], ans;
	unsigned int i;

	if (!rt)
		kvmmig_thread_urgent_limit(KVMMIG_URGENCY_NICE);
	if (rt && urgency_here() != KVMMIG_URGENCY_RT)
		SKIP(return, "this process may not take real-time scheduling: the fault thread never waits on its core");
	if (kvmmig_thread_cpus() < 2)
		SKIP(return, "one CPU: the fault thread never waits on its core");
	self->p.async = true;
	ASSERT_EQ(page_fill_start(self->vm, &o, &self->p.pf), 0);
	for (i = 0; i < 4; i++) {
		t[i] = (struct toucher){ .mem = { self->mem[0], self->mem[1] }, .first = i,
					 .step = 4 };
		ASSERT_EQ(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	}
	if (!rt) {
		ASSERT_TRUE(waited_for(self->p.pf, 1));
		ASSERT_FALSE(toucher_done(&t[0], 500));
		ASSERT_EQ(__atomic_load_n(&self->p.collects, __ATOMIC_RELAXED), 0U);
		ASSERT_EQ(pthread_create(&ans, NULL, answer_thread, &self->p), 0);
	}
	ASSERT_EQ(page_fill_wait(self->p.pf, WAIT_MS), 0) TH_LOG("%s", kvmmig_last_error());
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ASSERT_EQ(t[i].bad, 0ULL) TH_LOG("page %llu read wrong",
						 (unsigned long long)t[i].bad - 1);
	}
	if (!rt) {
		__atomic_store_n(&self->p.stop, 1, __ATOMIC_RELEASE);
		pthread_join(ans, NULL);
	}
	ASSERT_EQ(page_fill_end(self->p.pf, &st), 0) TH_LOG("%s", kvmmig_last_error());
	kvmmig_thread_urgent_limit(KVMMIG_URGENCY_RT);
	TH_LOG("%llu faults, %llu requests, %llu waits on the core, %llu ended with every fault served, %u collects",
	       (unsigned long long)st.faults, (unsigned long long)st.requests,
	       (unsigned long long)st.spins, (unsigned long long)st.spin_hits, self->p.collects);
	ASSERT_EQ(st.pages_demand, (uint64_t)NR_SLOTS * SLOT_PAGES);
	if (rt) {
		ASSERT_GT(st.spin_hits, 0ULL);
		ASSERT_LE(st.spin_hits, st.spins);
		ASSERT_GE(self->p.collects, st.spins);
	} else {
		ASSERT_EQ(st.spins, 0ULL);
		ASSERT_EQ(self->p.collects, 0U);
	}
}

TEST_F_TIMEOUT(fill, answers_collected_by_fault_thread, 60)
{
	collect_run(_metadata, self, true);
}

TEST_F_TIMEOUT(fill, no_collecting_without_real_time, 60)
{
	collect_run(_metadata, self, false);
}

TEST_F(fill, bad_arguments_named)
{
	struct page_fill_opts o = { 0 };
	struct page_fill *pf;
	uint64_t first, n;
	unsigned int s;

	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(page_fill_start(self->vm, &o, &pf), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "request callback"), NULL);
	ASSERT_EQ(start(_metadata, self->vm, &self->p, false, WAIT_MS, NULL), 0);
	ASSERT_EQ(page_fill_place(self->p.pf, 2, 0, NULL, 1), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "inside one of the 2 slots"), NULL);
	ASSERT_EQ(page_fill_place(self->p.pf, 0, SLOT_PAGES - 1, NULL, 2), -EINVAL);
	ASSERT_EQ(page_fill_next(self->p.pf, 3, &s, &first, &n), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "power of two"), NULL);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	/* A bad placement fails the fill: the provider cannot be trusted any more. */
	ASSERT_EQ(page_fill_end(self->p.pf, NULL), -EINVAL);
}

TEST_HARNESS_MAIN
