// SPDX-License-Identifier: GPL-2.0-only
/*
 * The userfaultfd wrapper (user/lib/uffd.c) on real memory: a thread
 * touches registered pages and blocks until the handler places them, as a
 * postcopy destination's vCPUs do; pages placed by a "background" copy are
 * not placed twice and their readers are not woken wrongly; zero pages
 * read as zeros; write-protected pages fault on the first write only, and
 * the handler sees the old contents first, as a background snapshot does.
 * Every page's contents are checked, not just the counts.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "log.h"
#include "uffd.h"

#define NPAGES		256
#define PAGE		4096UL
#define WAIT_MS		20000	/* a generous deadline for a loaded host */

static void quiet_log(int level, const char *msg)
{
}

/* What page @i holds once placed: its index everywhere, or zeros for every fourth. */
static uint64_t pattern(unsigned int i)
{
	return i % 4 == 0 ? 0 : 0x1000000000ULL + i;
}

struct toucher {
	uint8_t *mem;
	unsigned int first, step;
	bool write;
	uint64_t bad;			/* pages that read wrong, +1 */
	bool done;
};

static void *touch_pages(void *arg)
{
	struct toucher *t = arg;
	unsigned int i;

	for (i = t->first; i < NPAGES; i += t->step) {
		uint64_t *p = (uint64_t *)(t->mem + i * PAGE);

		if (t->write) {
			*p = 0xdead0000 + i;
		} else if (p[0] != pattern(i) || p[PAGE / 8 - 1] != pattern(i)) {
			t->bad = i + 1;
			break;
		}
	}
	__atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Place what @f asks for: a copy of the pattern, or a zero page. */
static int serve(struct uffd *u, uint8_t *mem, const struct uffd_fault *f, unsigned int *placed)
{
	unsigned int i = (f->addr - (uintptr_t)mem) / PAGE;
	uint64_t page[PAGE / 8];
	long n;

	for (unsigned int w = 0; w < PAGE / 8; w++)
		page[w] = pattern(i);
	n = uffd_place(u, (void *)(uintptr_t)f->addr, pattern(i) ? page : NULL, PAGE);
	if (n == PAGE)
		(*placed)++;
	return n < 0 ? (int)n : 0;
}

FIXTURE(missing) {
	struct uffd u;
	uint8_t *mem;
};

FIXTURE_SETUP(missing)
{
	self->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(self->mem, MAP_FAILED);
	ASSERT_EQ(uffd_open(&self->u, UFFD_MISSING), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(uffd_register(&self->u, self->mem, NPAGES * PAGE, UFFD_MISSING), 0);
}

FIXTURE_TEARDOWN(missing)
{
	uffd_close(&self->u);
	munmap(self->mem, NPAGES * PAGE);
}

/* Two threads fault every page; each page is placed once and reads right. */
TEST_F_TIMEOUT(missing, every_page_placed_once, 60)
{
	struct toucher t[2] = {
		{ .mem = self->mem, .first = 0, .step = 1 },
		{ .mem = self->mem, .first = NPAGES / 2, .step = 1 },
	};
	struct uffd_fault f[UFFD_MAX_BATCH];
	unsigned int placed = 0, faults = 0;
	pthread_t th[2];
	int i, n;

	for (i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	while (!__atomic_load_n(&t[0].done, __ATOMIC_ACQUIRE) ||
	       !__atomic_load_n(&t[1].done, __ATOMIC_ACQUIRE)) {
		n = uffd_wait(&self->u, WAIT_MS, NULL);
		ASSERT_GE(n, 0);
		if (!n)
			break;	/* both threads may have finished meanwhile */
		n = uffd_read_faults(&self->u, f, UFFD_MAX_BATCH);
		ASSERT_GE(n, 0);
		for (i = 0; i < n; i++) {
			ASSERT_FALSE(f[i].wp);
			ASSERT_GT(f[i].tid, 0U);
			ASSERT_EQ(serve(&self->u, self->mem, &f[i], &placed), 0)
				TH_LOG("%s", kvmmig_last_error());
		}
		faults += n;
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		ASSERT_EQ(t[i].bad, 0ULL) TH_LOG("page %llu read wrong",
						 (unsigned long long)t[i].bad - 1);
	}
	/* Every page once; the threads overlap, so some faults find it placed. */
	ASSERT_EQ(placed, (unsigned int)NPAGES);
	ASSERT_GE(faults, (unsigned int)NPAGES);
}

/*
 * A background copy places a run before anyone touches it: no fault comes
 * for it, a second placement says "already there", and a run that is
 * partly placed is finished around the placed page.
 */
TEST_F(missing, background_then_request)
{
	uint8_t *buf = malloc(8 * PAGE);
	struct uffd_fault f[4];
	unsigned int i;

	ASSERT_NE(buf, NULL);
	for (i = 0; i < 8; i++)
		memset(buf + i * PAGE, 0x11 * (i + 1), PAGE);
	/* Page 3 first, alone; then the run 0..7 around it. */
	ASSERT_EQ(uffd_place(&self->u, self->mem + 3 * PAGE, buf + 3 * PAGE, PAGE), (long)PAGE);
	ASSERT_EQ(uffd_place(&self->u, self->mem + 3 * PAGE, buf, PAGE), 0L);
	ASSERT_EQ(uffd_place(&self->u, self->mem, buf, 8 * PAGE), (long)(8 * PAGE));
	for (i = 0; i < 8; i++)
		ASSERT_EQ(self->mem[i * PAGE + 17], (uint8_t)(0x11 * (i + 1)));
	/* Zero pages the same way. */
	ASSERT_EQ(uffd_place(&self->u, self->mem + 8 * PAGE, NULL, 4 * PAGE), (long)(4 * PAGE));
	ASSERT_EQ(uffd_place(&self->u, self->mem + 8 * PAGE, NULL, PAGE), 0L);
	for (i = 8 * PAGE; i < 12 * PAGE; i++)
		ASSERT_EQ(self->mem[i], 0);
	/* Nothing is queued: the placed pages never faulted. */
	ASSERT_EQ(uffd_read_faults(&self->u, f, 4), 0);
	free(buf);
}

TEST_F(missing, bad_ranges_named)
{
	struct uffd none;
	void *p;

	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(uffd_place(&self->u, self->mem + 1, NULL, PAGE), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "page-aligned"), NULL);
	ASSERT_EQ(uffd_place(&self->u, self->mem, NULL, 100), -EINVAL);
	ASSERT_EQ(uffd_register(&self->u, self->mem, 0, UFFD_MISSING), -EINVAL);
	ASSERT_EQ(uffd_open(&none, 0), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "modes"), NULL);
	/* Outside any registration: the kernel's refusal, named. */
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_LT(uffd_place(&self->u, p, NULL, PAGE), 0);
	ASSERT_NE(strstr(kvmmig_last_error(), "UFFDIO_ZEROPAGE"), NULL);
	munmap(p, PAGE);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
}

/* A wait with nothing queued ends at its deadline, or at once on cancel. */
TEST_F(missing, wait_deadline_and_cancel)
{
	volatile sig_atomic_t cancel = 1;

	ASSERT_EQ(uffd_wait(&self->u, 50, NULL), 0);
	ASSERT_EQ(uffd_wait(&self->u, -1, &cancel), -ECANCELED);
}

/*
 * Write-protect, as a background snapshot does: the first write to each
 * protected page faults, the handler saves the page as it was and lifts
 * the protection; a second write to it does not fault.
 */
TEST(wp_saves_old_contents)
{
	struct toucher t = { .first = 0, .step = 1, .write = true };
	uint64_t *saved = calloc(NPAGES, sizeof(*saved));
	struct uffd_fault f[UFFD_MAX_BATCH];
	unsigned int i, faults = 0;
	struct uffd u;
	pthread_t th;
	uint8_t *mem;
	int n, ret;

	ASSERT_NE(saved, NULL);
	mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ASSERT_NE(mem, MAP_FAILED);
	for (i = 0; i < NPAGES; i++)
		*(uint64_t *)(mem + i * PAGE) = 0x5a5a0000 + i;
	ret = uffd_open(&u, UFFD_WP);
	if (ret == -EOPNOTSUPP)
		SKIP(return, "no userfaultfd write-protect: %s", kvmmig_last_error());
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(uffd_register(&u, mem, NPAGES * PAGE, UFFD_WP), 0)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(uffd_protect(&u, mem, NPAGES * PAGE, true), 0);
	t.mem = mem;
	ASSERT_EQ(pthread_create(&th, NULL, touch_pages, &t), 0);
	while (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE)) {
		n = uffd_wait(&u, WAIT_MS, NULL);
		ASSERT_GE(n, 0);
		if (!n)
			break;
		n = uffd_read_faults(&u, f, UFFD_MAX_BATCH);
		ASSERT_GE(n, 0);
		for (i = 0; i < (unsigned int)n; i++) {
			unsigned int pg = (f[i].addr - (uintptr_t)mem) / PAGE;

			ASSERT_TRUE(f[i].wp);
			ASSERT_TRUE(f[i].write);
			ASSERT_LT(pg, (unsigned int)NPAGES);
			ASSERT_EQ(saved[pg], 0ULL);	/* one fault per page */
			saved[pg] = *(uint64_t *)(mem + pg * PAGE);
			ASSERT_EQ(uffd_protect(&u, mem + pg * PAGE, PAGE, false), 0);
		}
		faults += n;
	}
	pthread_join(th, NULL);
	ASSERT_EQ(faults, (unsigned int)NPAGES);
	for (i = 0; i < NPAGES; i++) {
		ASSERT_EQ(saved[i], 0x5a5a0000ULL + i);
		ASSERT_EQ(*(uint64_t *)(mem + i * PAGE), 0xdead0000ULL + i);
	}
	/* Unprotected now: writing again faults no more. */
	for (i = 0; i < NPAGES; i++)
		*(uint64_t *)(mem + i * PAGE) = i;
	ASSERT_EQ(uffd_read_faults(&u, f, UFFD_MAX_BATCH), 0);
	uffd_close(&u);
	munmap(mem, NPAGES * PAGE);
	free(saved);
}

TEST_HARNESS_MAIN
