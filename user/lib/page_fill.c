// SPDX-License-Identifier: GPL-2.0-only
/*
 * Demand fill with userfaultfd MISSING mode (see page_fill.h,
 * Documentation/page-fill.rst).  Three bitmaps per slot: `claimed` (one
 * atomic OR makes a thread the only placer of up to 64 pages), `placed`
 * (set once the kernel has the page) and `requested` (asked of the
 * provider once).  A fault on a page not yet placed is recorded as a
 * waiter with the time it was read; placing the page ends the wait, which
 * gives the fault's latency and the blocktime, and a waiter older than the
 * deadline fails the fill.  `placed` and the waiters change together under
 * pf->lock, so a fault read after its page was placed is never recorded
 * (it is only woken, which is harmless), and one read before always ends.
 * Pages the caller says are present (a postcopy destination's clean
 * precopy pages) start claimed and placed; a fault on one that the kernel
 * has not populated is a zero page nobody wrote, filled with
 * UFFDIO_ZEROPAGE on the spot.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bitmap.h"
#include "cancel.h"
#include "clock.h"
#include "log.h"
#include "page_fill.h"
#include "thread_nice.h"
#include "uffd.h"

#define PF_TICK_MS	100	/* how often the fault thread looks at deadlines and cancel */
/*
 * Faults tracked at once: one per thread that can touch guest RAM (vCPUs,
 * the VMM's); beyond that a fault is still served, but neither timed nor
 * held to the deadline.
 */
#define PF_MAX_WAITS	256

struct pf_slot {
	uint8_t *hva;
	uint64_t npages;
	unsigned long *claimed;		/* atomic: placed or being placed */
	unsigned long *placed;		/* under lock (read atomically) */
	unsigned long *requested;	/* atomic: asked of the provider */
	unsigned long *present;		/* held from the start (read only), or NULL */
};

/* A thread waiting on a page, since t0. */
struct pf_wait {
	unsigned int slot;
	uint32_t tid;
	uint64_t page;
	uint64_t t0;
	uint64_t dl;		/* its deadline runs from here (a resume restarts it) */
};

struct page_fill {
	struct kvmmig_vm *vm;
	struct page_fill_opts o;
	struct uffd u;
	unsigned int nr_slots;
	unsigned int nr_registered;
	struct pf_slot slots[MIG_MAX_SLOTS];
	uint64_t total;			/* pages in all slots */
	uint64_t nr_claimed;		/* atomic */
	pthread_t fault_thread;
	bool thread_started;
	int stop;			/* atomic: the fault thread ends */

	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* placed == total, or error */
	uint64_t placed;
	int error;
	char why[512];			/* the failing thread's message */
	bool said;			/* a failure was said in the waiter's thread */
	struct pf_wait waits[PF_MAX_WAITS];
	unsigned int nr_waits;
	bool deadline_off;		/* page_fill_suspend_deadline() */
	unsigned int cur_slot;		/* page_fill_next()'s cursor */
	uint64_t cur_page;
	bool hint_valid;
	unsigned int hint_slot;
	uint64_t hint_page;
	struct page_fill_stats st;	/* counters also added atomically outside lock */
};

static void pf_stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static bool pf_bit(const unsigned long *map, uint64_t nr)
{
	return __atomic_load_n(&map[nr / BITS_PER_LONG], __ATOMIC_ACQUIRE) &
	       (1UL << (nr % BITS_PER_LONG));
}

/* Set bit @nr; was it already set? */
static bool pf_test_and_set(unsigned long *map, uint64_t nr)
{
	unsigned long bit = 1UL << (nr % BITS_PER_LONG);

	return __atomic_fetch_or(&map[nr / BITS_PER_LONG], bit, __ATOMIC_ACQ_REL) & bit;
}

/* The slot holding @addr, with the page's index, or -1. */
static int pf_slot_of(const struct page_fill *pf, uint64_t addr, uint64_t *page)
{
	unsigned int i;

	for (i = 0; i < pf->nr_slots; i++) {
		uint64_t base = (uintptr_t)pf->slots[i].hva;

		if (addr >= base && addr - base < pf->slots[i].npages * MIG_PAGE_SIZE) {
			*page = (addr - base) / MIG_PAGE_SIZE;
			return i;
		}
	}
	return -1;
}

void page_fill_fail(struct page_fill *pf, int err)
{
	pthread_mutex_lock(&pf->lock);
	if (!pf->error) {
		pf->error = err < 0 ? err : -EIO;
		snprintf(pf->why, sizeof(pf->why), "%s", kvmmig_last_error());
	}
	__atomic_store_n(&pf->stop, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
}

/*
 * The fill's error, said once more in the calling thread (the failing one
 * was quiet), unless page_fill_wait() said it already.
 */
static int pf_say_error(struct page_fill *pf)
{
	int err;

	pthread_mutex_lock(&pf->lock);
	err = pf->error;
	if (err && !pf->said)
		kvmmig_err("%s", pf->why);
	pf->said |= err != 0;
	pthread_mutex_unlock(&pf->lock);
	return err;
}

static int pf_error(struct page_fill *pf)
{
	int err;

	pthread_mutex_lock(&pf->lock);
	err = pf->error;
	pthread_mutex_unlock(&pf->lock);
	return err;
}

/* Record that @tid waits on @page of @slot, unless already placed: false then. Under lock. */
static bool pf_add_wait(struct page_fill *pf, unsigned int slot, uint64_t page, uint32_t tid)
{
	unsigned int i;

	if (pf_bit(pf->slots[slot].placed, page))
		return false;
	/* A thread that faults again on the same page (a signal woke it) waits once. */
	for (i = 0; i < pf->nr_waits; i++)
		if (pf->waits[i].slot == slot && pf->waits[i].page == page &&
		    pf->waits[i].tid == tid)
			return true;
	pf->st.waited++;
	if (pf->nr_waits < PF_MAX_WAITS) {
		uint64_t now = now_ns();

		pf->waits[pf->nr_waits++] = (struct pf_wait){
			.slot = slot, .page = page, .tid = tid, .t0 = now, .dl = now,
		};
	}
	return true;
}

/* The waits on [@first, @first + @n) of @slot end now. Under lock. */
static void pf_end_waits(struct page_fill *pf, unsigned int slot, uint64_t first, uint64_t n)
{
	uint64_t now = now_ns();
	unsigned int i = 0;

	while (i < pf->nr_waits) {
		struct pf_wait *w = &pf->waits[i];

		if (w->slot != slot || w->page < first || w->page >= first + n) {
			i++;
			continue;
		}
		pf->st.blocktime_ns += now - w->t0;
		lat_hist_add(pf->st.fault_us_hist, (now - w->t0) / 1000);
		*w = pf->waits[--pf->nr_waits];
	}
}

/* The provider was asked: with hint on, the background goes on after this page. */
static void pf_set_hint(struct page_fill *pf, unsigned int slot, uint64_t page)
{
	if (!pf->o.hint)
		return;
	pthread_mutex_lock(&pf->lock);
	/* One pending hint; a new one only after the last was taken (seed 003). */
	if (!pf->hint_valid) {
		pf->hint_valid = true;
		pf->hint_slot = slot;
		pf->hint_page = page + 1;
	}
	pthread_mutex_unlock(&pf->lock);
}

/*
 * A fault on a present page: the kernel does not have it, so it is a zero
 * page precopy never wrote (seed 004); fill it now.  -EEXIST inside
 * uffd_place() means it was populated meanwhile: it only wakes.
 */
static int pf_serve_present(struct page_fill *pf, void *addr)
{
	long ret = uffd_place(&pf->u, addr, NULL, MIG_PAGE_SIZE);

	if (ret < 0)
		return ret;
	pf_stat_add(&pf->st.present_faults, 1);
	return 0;
}

/* A fault read: served at once (0), left waiting on its page (1), or -errno. */
static int pf_serve_fault(struct page_fill *pf, const struct uffd_fault *f)
{
	void *addr = (void *)(uintptr_t)f->addr;
	bool waits;
	uint64_t page;
	int slot, ret;

	pf_stat_add(&pf->st.faults, 1);
	slot = pf_slot_of(pf, f->addr, &page);
	if (slot < 0)
		return uffd_wake(&pf->u, addr, MIG_PAGE_SIZE);	/* not ours: never sleep on it */
	if (pf->slots[slot].present && pf_bit(pf->slots[slot].present, page))
		return pf_serve_present(pf, addr);
	pthread_mutex_lock(&pf->lock);
	waits = pf_add_wait(pf, slot, page, f->tid);
	pthread_mutex_unlock(&pf->lock);
	if (!waits)
		/* Placed meanwhile: its placement woke the thread; be sure. */
		return uffd_wake(&pf->u, addr, MIG_PAGE_SIZE);
	/* Claimed by a background placer, or asked for already: its placement wakes. */
	if (pf_bit(pf->slots[slot].claimed, page) ||
	    pf_test_and_set(pf->slots[slot].requested, page))
		return 1;
	pf_stat_add(&pf->st.requests, 1);
	pf_set_hint(pf, slot, page);
	ret = pf->o.request(pf->o.opaque, slot, page);
	if (ret > 0)
		ret = -EIO;
	return ret ? ret : 1;
}

/* Serve the faults that are there, without waiting: 1 if one waits now, 0, or -errno. */
static int pf_serve_faults(struct page_fill *pf)
{
	struct uffd_fault f[UFFD_MAX_BATCH];
	int n, i, ret = 0, waits = 0;

	n = uffd_read_faults(&pf->u, f, UFFD_MAX_BATCH);
	for (i = 0; i < n && ret >= 0; i++) {
		ret = pf_serve_fault(pf, &f[i]);
		waits |= ret > 0;
	}
	if (n < 0)
		return n;
	return ret < 0 ? ret : waits;
}

/*
 * Faults wait on answers on their way: collect them on this core for at
 * most spin_us, serving new faults meanwhile, rather than sleep and leave
 * the answer to a thread that must first be given a core.  0 or -errno.
 */
static int pf_spin(struct page_fill *pf)
{
	uint64_t end = now_ns() + (uint64_t)pf->o.spin_us * NSEC_PER_USEC;
	int ret = 0;

	pf_stat_add(&pf->st.spins, 1);
	while (ret >= 0) {
		ret = pf->o.collect(pf->o.opaque);
		if (ret > 0)
			ret = -EIO;
		if (ret < 0)
			break;
		/* Read unlocked: a stale count only spins once more, or stops early. */
		if (!__atomic_load_n(&pf->nr_waits, __ATOMIC_RELAXED)) {
			pf_stat_add(&pf->st.spin_hits, 1);
			break;
		}
		if (now_ns() >= end)
			break;
		ret = pf_serve_faults(pf);
		__builtin_ia32_pause();
	}
	return ret < 0 ? ret : 0;
}

/* Has a thread waited on a page longer than the deadline? Named, -ETIMEDOUT. */
static int pf_check_deadline(struct page_fill *pf)
{
	uint64_t limit = (uint64_t)pf->o.timeout_ms * NSEC_PER_MSEC, now = now_ns();
	struct pf_wait late = { 0 };
	unsigned int i;
	bool found = false;

	pthread_mutex_lock(&pf->lock);
	for (i = 0; i < pf->nr_waits && !found && !pf->deadline_off; i++) {
		if (now - pf->waits[i].dl > limit) {
			late = pf->waits[i];
			found = true;
		}
	}
	pthread_mutex_unlock(&pf->lock);
	if (!found)
		return 0;
	kvmmig_err("page %llu of memslot %u (gpa 0x%llx) was not placed within %u ms of its fault: the page provider never answered",
		   (unsigned long long)late.page, pf->vm->slots[late.slot].id,
		   (unsigned long long)(pf->vm->slots[late.slot].gpa + late.page * MIG_PAGE_SIZE),
		   pf->o.timeout_ms);
	return -ETIMEDOUT;
}

static void *pf_fault_thread(void *arg)
{
	struct page_fill *pf = arg;
	enum kvmmig_urgency urgency;
	bool spin;
	int ret = 0;

	/* Its failure is said once, by the thread that waits for the fill. */
	kvmmig_log_quiet(true);
	/* A vCPU waits on every fault this thread reads. */
	urgency = kvmmig_thread_urgent("page fill's fault thread");
	/*
	 * Waiting on a core for the answers pays only in real time and with a
	 * core to spare for whoever sends them: at nice -5 on a 2-core host
	 * it kept the source's threads off a core (postcopy_perf: p50 72 ->
	 * 108 us, p99 no better), and on one core it would only delay them.
	 */
	spin = pf->o.collect && pf->o.spin_us && urgency == KVMMIG_URGENCY_RT &&
	       kvmmig_thread_cpus() > 1;
	while (!ret && !__atomic_load_n(&pf->stop, __ATOMIC_ACQUIRE)) {
		ret = uffd_wait(&pf->u, PF_TICK_MS, NULL);
		if (ret > 0)
			ret = pf_serve_faults(pf);
		if (ret > 0 && spin)
			ret = pf_spin(pf);
		if (ret > 0)
			ret = 0;
		if (!ret && kvmmig_cancelled(pf->o.cancel)) {
			kvmmig_err("the page fill was cancelled");
			ret = -ECANCELED;
		}
		if (!ret)
			ret = pf_check_deadline(pf);
	}
	if (ret)
		page_fill_fail(pf, ret);
	return NULL;
}

/* Claim the pages [@lo, @hi) of bitmap word @w: the mask of those now ours. */
static unsigned long pf_claim_word(struct pf_slot *s, uint64_t w, unsigned int lo, unsigned int hi)
{
	unsigned long mask = (hi == BITS_PER_LONG ? ~0UL : (1UL << hi) - 1) & ~((1UL << lo) - 1);

	return mask & ~__atomic_fetch_or(&s->claimed[w], mask, __ATOMIC_ACQ_REL);
}

/* Pages now placed: mark them, end their waits, count them. */
static void pf_mark_placed(struct page_fill *pf, unsigned int slot, uint64_t first, uint64_t n,
			   bool zero)
{
	struct pf_slot *s = &pf->slots[slot];
	uint64_t i, demand = 0;

	pthread_mutex_lock(&pf->lock);
	for (i = first; i < first + n; i++) {
		__atomic_fetch_or(&s->placed[i / BITS_PER_LONG], 1UL << (i % BITS_PER_LONG),
				  __ATOMIC_RELEASE);
		demand += pf_bit(s->requested, i);
	}
	pf_end_waits(pf, slot, first, n);
	pf->st.pages_demand += demand;
	pf->st.pages_background += n - demand;
	if (zero)
		pf->st.zero_pages += n;
	pf->placed += n;
	if (pf->placed == pf->total)
		pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
}

/* Place the claimed run [@first, @first + @n) of @slot from @src (NULL: zeros). */
static int pf_place_run(struct page_fill *pf, unsigned int slot, uint64_t first, uint64_t n,
			const uint8_t *src)
{
	uint8_t *dst = pf->slots[slot].hva + first * MIG_PAGE_SIZE;
	long ret = uffd_place(&pf->u, dst, src, n * MIG_PAGE_SIZE);

	if (ret < 0)
		return ret;
	if (ret != (long)(n * MIG_PAGE_SIZE)) {
		/* Only we place claimed pages: someone else populated it. */
		kvmmig_err("page %llu of memslot %u was populated behind the page fill (memory not discarded before registering?)",
			   (unsigned long long)first, pf->vm->slots[slot].id);
		return -EEXIST;
	}
	pf_mark_placed(pf, slot, first, n, !src);
	return 0;
}

static int pf_check_range(struct page_fill *pf, unsigned int slot, uint64_t page, uint64_t npages)
{
	if (slot >= pf->nr_slots || !npages || page >= pf->slots[slot].npages ||
	    npages > pf->slots[slot].npages - page) {
		kvmmig_err("pages %llu+%llu of slot %u: expected a non-empty range inside one of the %u slots",
			   (unsigned long long)page, (unsigned long long)npages, slot,
			   pf->nr_slots);
		return -EINVAL;
	}
	return 0;
}

long page_fill_place(struct page_fill *pf, unsigned int slot, uint64_t page,
		     const void *data, uint64_t npages)
{
	const uint8_t *src = data;
	uint64_t p = page, end = page + npages, placed = 0;
	int ret = pf_check_range(pf, slot, page, npages);

	if (!ret)
		ret = pf_error(pf);
	while (!ret && p < end) {
		uint64_t w = p / BITS_PER_LONG, base = w * BITS_PER_LONG;
		unsigned int lo = p - base, hi = end - base < BITS_PER_LONG ? end - base :
									 BITS_PER_LONG;
		unsigned long mine = pf_claim_word(&pf->slots[slot], w, lo, hi);

		pf_stat_add(&pf->nr_claimed, __builtin_popcountl(mine));
		while (mine && !ret) {
			unsigned int a = __builtin_ctzl(mine), b = a;

			while (b < BITS_PER_LONG && mine & (1UL << b))
				b++;
			mine &= b < BITS_PER_LONG ? ~((1UL << b) - 1) : 0;
			ret = pf_place_run(pf, slot, base + a, b - a,
					   src ? src + (base + a - page) * MIG_PAGE_SIZE : NULL);
			placed += b - a;
		}
		p = base + hi;
	}
	if (ret) {
		page_fill_fail(pf, ret);
		return ret;
	}
	pf_stat_add(&pf->st.dropped, npages - placed);
	return placed;
}

int page_fill_take_hint(struct page_fill *pf, unsigned int *slot, uint64_t *page)
{
	int ret = 0;

	pthread_mutex_lock(&pf->lock);
	if (pf->hint_valid) {
		*slot = pf->hint_slot;
		*page = pf->hint_page;
		pf->hint_valid = false;
		ret = 1;
	}
	pthread_mutex_unlock(&pf->lock);
	return ret;
}

/* Does [@first, @first + @n) of @slot hold a page nobody claimed? */
static bool pf_chunk_open(struct page_fill *pf, unsigned int slot, uint64_t first, uint64_t n)
{
	uint64_t i;

	for (i = first; i < first + n; i++)
		if (!pf_bit(pf->slots[slot].claimed, i))
			return true;
	return false;
}

/* The cursor's chunk, then the cursor past it (wrapping). Under lock. */
static void pf_cursor_take(struct page_fill *pf, uint64_t chunk, unsigned int *slot,
			   uint64_t *first, uint64_t *n)
{
	uint64_t npages = pf->slots[pf->cur_slot].npages;

	*slot = pf->cur_slot;
	*first = pf->cur_page & ~(chunk - 1);
	*n = npages - *first < chunk ? npages - *first : chunk;
	pf->cur_page = *first + *n;
	if (pf->cur_page >= npages) {
		pf->cur_page = 0;
		pf->cur_slot = (pf->cur_slot + 1) % pf->nr_slots;
	}
}

int page_fill_next(struct page_fill *pf, uint64_t chunk, unsigned int *slot, uint64_t *first,
		   uint64_t *n)
{
	uint64_t tried = 0;
	int ret;

	if (!chunk || chunk & (chunk - 1)) {
		kvmmig_err("page fill chunk of %llu pages: expected a power of two",
			   (unsigned long long)chunk);
		return -EINVAL;
	}
	pthread_mutex_lock(&pf->lock);
	ret = pf->error;
	if (!ret && pf->hint_valid && pf->hint_page < pf->slots[pf->hint_slot].npages) {
		pf->cur_slot = pf->hint_slot;
		pf->cur_page = pf->hint_page;
	}
	pf->hint_valid = false;
	/* At most one lap over all pages, and none once all are claimed. */
	while (!ret && tried < pf->total &&
	       __atomic_load_n(&pf->nr_claimed, __ATOMIC_ACQUIRE) < pf->total) {
		pf_cursor_take(pf, chunk, slot, first, n);
		tried += *n;
		if (pf_chunk_open(pf, *slot, *first, *n)) {
			ret = 1;
			break;
		}
	}
	pthread_mutex_unlock(&pf->lock);
	return ret;
}

int page_fill_wait(struct page_fill *pf, unsigned int timeout_ms)
{
	struct timespec until = deadline_in_ns(CLOCK_MONOTONIC, timeout_ms * NSEC_PER_MSEC);
	int ret = 0;

	uint64_t placed;

	pthread_mutex_lock(&pf->lock);
	while (!pf->error && pf->placed < pf->total && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&pf->cond, &pf->lock, &until);
	placed = pf->placed;
	ret = pf->error;
	pthread_mutex_unlock(&pf->lock);
	if (ret)
		return pf_say_error(pf);
	if (placed < pf->total) {
		kvmmig_err("the page fill did not finish within %u ms: %llu of %llu pages placed",
			   timeout_ms, (unsigned long long)placed, (unsigned long long)pf->total);
		/* A caller that fails the fill for it has said why. */
		pthread_mutex_lock(&pf->lock);
		pf->said = true;
		pthread_mutex_unlock(&pf->lock);
		return -ETIMEDOUT;
	}
	return 0;
}

_Static_assert(sizeof(struct page_fill_stats) % sizeof(uint64_t) == 0,
	       "page_fill_stats is read as an array of counters");

void page_fill_stats(struct page_fill *pf, struct page_fill_stats *st)
{
	const uint64_t *from = (const uint64_t *)&pf->st;
	uint64_t *to = (uint64_t *)st;
	size_t i;

	/* Some counters move outside the lock: each is read whole. */
	pthread_mutex_lock(&pf->lock);
	for (i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pf->lock);
}

void page_fill_suspend_deadline(struct page_fill *pf, bool on)
{
	uint64_t now = now_ns();
	unsigned int i;

	pthread_mutex_lock(&pf->lock);
	pf->deadline_off = on;
	for (i = 0; !on && i < pf->nr_waits; i++)
		pf->waits[i].dl = now;
	pthread_mutex_unlock(&pf->lock);
}

int page_fill_rerequest(struct page_fill *pf)
{
	struct pf_wait w[PF_MAX_WAITS];
	unsigned int i, j, n, asked = 0;
	int ret = 0;

	pthread_mutex_lock(&pf->lock);
	n = pf->nr_waits;
	memcpy(w, pf->waits, n * sizeof(w[0]));
	pthread_mutex_unlock(&pf->lock);
	for (i = 0; i < n && !ret; i++) {
		bool again = false;

		/* Threads waiting on one page: asked once. */
		for (j = 0; j < i && !again; j++)
			again = w[j].slot == w[i].slot && w[j].page == w[i].page;
		if (again || pf_bit(pf->slots[w[i].slot].claimed, w[i].page))
			continue;
		pf_stat_add(&pf->st.requests, 1);
		ret = pf->o.request(pf->o.opaque, w[i].slot, w[i].page);
		if (ret > 0)
			ret = -EIO;
		asked++;
	}
	if (ret) {
		page_fill_fail(pf, ret);
		return ret;
	}
	return asked;
}

int page_fill_copy_claimed(struct page_fill *pf, unsigned int slot, uint64_t first_word,
			   uint64_t nr_words, uint64_t *out)
{
	uint64_t i, words = slot < pf->nr_slots ? BITMAP_WORDS(pf->slots[slot].npages) : 0;

	if (first_word >= words || nr_words > words - first_word) {
		kvmmig_err("words %llu+%llu of slot %u's bitmap: expected a range inside one of the %u slots' (%llu words)",
			   (unsigned long long)first_word, (unsigned long long)nr_words, slot,
			   pf->nr_slots, (unsigned long long)words);
		return -EINVAL;
	}
	for (i = 0; i < nr_words; i++)
		out[i] = __atomic_load_n(&pf->slots[slot].claimed[first_word + i],
					 __ATOMIC_ACQUIRE);
	return 0;
}

int page_fill_error(struct page_fill *pf)
{
	return pf_error(pf);
}

uint64_t page_fill_missing(struct page_fill *pf)
{
	uint64_t n;

	pthread_mutex_lock(&pf->lock);
	n = pf->total - pf->placed;
	pthread_mutex_unlock(&pf->lock);
	return n;
}

static void pf_free(struct page_fill *pf)
{
	unsigned int i;

	for (i = 0; i < pf->nr_slots; i++) {
		free(pf->slots[i].claimed);
		free(pf->slots[i].placed);
		free(pf->slots[i].requested);
		free(pf->slots[i].present);
	}
	pthread_cond_destroy(&pf->cond);
	pthread_mutex_destroy(&pf->lock);
	free(pf);
}

/* Stop the thread, unregister what was registered: the first error of the teardown. */
static int pf_teardown(struct page_fill *pf)
{
	int ret = 0, r;

	__atomic_store_n(&pf->stop, 1, __ATOMIC_RELEASE);
	if (pf->thread_started)
		pthread_join(pf->fault_thread, NULL);
	while (pf->nr_registered) {
		struct pf_slot *s = &pf->slots[--pf->nr_registered];

		r = uffd_unregister(&pf->u, s->hva, s->npages * MIG_PAGE_SIZE);
		if (!ret)
			ret = r;
	}
	uffd_close(&pf->u);
	return ret;
}

int page_fill_end(struct page_fill *pf, struct page_fill_stats *st)
{
	int ret = pf_teardown(pf), err = pf_say_error(pf);

	if (st)
		page_fill_stats(pf, st);
	pf_free(pf);
	return err ? err : ret;
}

/* Pages held from the start: claimed and placed, and remembered for their faults. */
static int pf_init_present(struct page_fill *pf, struct pf_slot *s, const unsigned long *present,
			   size_t words)
{
	unsigned int tail = s->npages % BITS_PER_LONG;
	uint64_t n = 0;
	size_t w;

	s->present = malloc(words * sizeof(unsigned long));
	if (!s->present)
		return -ENOMEM;
	memcpy(s->present, present, words * sizeof(unsigned long));
	/* No bit past the slot's end: it would count a page that is not there. */
	if (tail)
		s->present[words - 1] &= (1UL << tail) - 1;
	for (w = 0; w < words; w++) {
		s->claimed[w] = s->placed[w] = s->present[w];
		n += __builtin_popcountl(s->present[w]);
	}
	pf->placed += n;
	pf->nr_claimed += n;
	return 0;
}

static int pf_init_slot(struct page_fill *pf, unsigned int i)
{
	const struct kvmmig_slot *ks = &pf->vm->slots[i];
	struct pf_slot *s = &pf->slots[i];
	size_t words = BITMAP_WORDS(kvmmig_slot_pages(ks));

	s->hva = ks->hva;
	s->npages = kvmmig_slot_pages(ks);
	s->claimed = calloc(words, sizeof(unsigned long));
	s->placed = calloc(words, sizeof(unsigned long));
	s->requested = calloc(words, sizeof(unsigned long));
	if (!s->claimed || !s->placed || !s->requested)
		return -ENOMEM;
	pf->total += s->npages;
	if (pf->o.present[i])
		return pf_init_present(pf, s, pf->o.present[i], words);
	if (pf->o.discard && madvise(s->hva, ks->size, MADV_DONTNEED)) {
		int err = errno;

		kvmmig_err("cannot discard memslot %u before the page fill: %s", ks->id,
			   strerror(err));
		return -err;
	}
	return 0;
}

static int pf_register(struct page_fill *pf)
{
	int ret = uffd_open(&pf->u, UFFD_MISSING);

	while (!ret && pf->nr_registered < pf->nr_slots) {
		struct pf_slot *s = &pf->slots[pf->nr_registered];

		ret = uffd_register(&pf->u, s->hva, s->npages * MIG_PAGE_SIZE, UFFD_MISSING);
		if (!ret)
			pf->nr_registered++;
	}
	return ret;
}

int page_fill_start(struct kvmmig_vm *vm, const struct page_fill_opts *o,
		    struct page_fill **out)
{
	struct page_fill *pf;
	pthread_condattr_t ca;
	unsigned int i;
	int ret = 0;

	if (!o->request) {
		kvmmig_err("page fill without a request callback: expected a page provider");
		return -EINVAL;
	}
	for (i = 0; o->discard && i < vm->nr_slots; i++) {
		if (o->present[i]) {
			kvmmig_err("page fill with discard and present pages in slot %u: discard would throw them away; expected one or the other",
				   i);
			return -EINVAL;
		}
	}
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	pf->vm = vm;
	pf->o = *o;
	if (!pf->o.timeout_ms)
		pf->o.timeout_ms = PAGE_FILL_TIMEOUT_MS;
	pf->u.fd = -1;
	pf->nr_slots = vm->nr_slots;
	pthread_mutex_init(&pf->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pf->cond, &ca);
	pthread_condattr_destroy(&ca);
	for (i = 0; !ret && i < pf->nr_slots; i++)
		ret = pf_init_slot(pf, i);
	if (!ret)
		ret = pf_register(pf);
	if (!ret) {
		ret = -pthread_create(&pf->fault_thread, NULL, pf_fault_thread, pf);
		pf->thread_started = !ret;
	}
	if (ret) {
		pf_teardown(pf);
		pf_free(pf);
		return ret;
	}
	*out = pf;
	return 0;
}
