/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Demand fill of a VM's memory with userfaultfd MISSING mode
 * (Documentation/page-fill.rst): the engine under a lazy snapshot restore
 * and under a postcopy destination (mig_dest_postcopy.c).  Every memslot is registered
 * once; a fault thread reads faults in batches and asks a page provider
 * for each page nobody has placed or asked for yet; the provider answers,
 * at once or later and from any thread, with page_fill_place(), which
 * claims each page in a bitmap (one atomic OR: a page is placed exactly
 * once, later copies of it are dropped), places it with UFFDIO_COPY (or
 * UFFDIO_ZEROPAGE for a zero page: a zero page must be placed too, or a
 * vCPU touching it would wait for ever, seed 004) and wakes whoever waits
 * on it.  Background fillers take chunks with page_fill_next() and place
 * them the same way.  Nothing is placed that the provider did not hand
 * over: a fill that fails leaves the missing pages missing, so a guest
 * can never run on with wrong memory.
 *
 * How a postcopy destination uses it: page_fill_start() before the first
 * resume, with request() sending a page request (slot, page) on the
 * return path and never waiting for the answer; the receive threads call
 * page_fill_place() for every page that arrives, requested or not (the
 * precopy stream's leftovers and the urgent channel alike), zero pages with
 * data NULL; duplicates are dropped by the bitmap.  With hint set, the
 * destination can read page_fill_take_hint() to tell the source where the
 * guest was last seen (seed 003's spatial-locality hint); a local filler
 * gets it through page_fill_next() for free.  page_fill_stats() feeds the
 * report (faults, blocktime, latency histogram).
 *
 * Functions return 0 (or a count) or a negative errno and say what failed
 * with kvmmig_err().
 */
#ifndef KVMMIG_PAGE_FILL_H
#define KVMMIG_PAGE_FILL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvmmig_vm.h"
#include "lat_hist.h"

#define PAGE_FILL_TIMEOUT_MS	30000	/* default deadline of one requested page */

struct page_fill;

struct page_fill_opts {
	/*
	 * A fault is waiting on page @page of slot @slot (an index into
	 * vm->slots[]) and nobody has placed or asked for it: fetch it.
	 * Called from the fault thread, once per page; it may place the page
	 * itself before returning, or queue the request and return at once.
	 * A negative errno fails the fill.
	 */
	int (*request)(void *opaque, unsigned int slot, uint64_t page);
	void *opaque;
	/*
	 * Optional: place the answers that have arrived, without waiting for
	 * more (0 when none had, or -errno, which fails the fill).  After
	 * asking for a page the fault thread calls it in a loop, for at most
	 * spin_us, until no fault waits: on a loaded host a thread woken by
	 * the answer waits for a core for milliseconds, while the answer
	 * takes tens of microseconds, and the fault thread is on a core
	 * already.  Only when the fault thread got real-time scheduling
	 * (thread_nice.h) and may run on two CPUs or more: otherwise its
	 * loop would keep the answer's sender off the core it needs.
	 */
	int (*collect)(void *opaque);
	unsigned int spin_us;
	/*
	 * Throw away what the slots hold before registering them
	 * (MADV_DONTNEED), so that every page faults until placed: a VMM may
	 * have written to its fresh memory (the built-in one loads its code).
	 * Private anonymous memory only.
	 */
	bool discard;
	/* After a request, page_fill_next() goes on right after its page (seed 003). */
	bool hint;
	/* A requested page not placed within this fails the fill (0: PAGE_FILL_TIMEOUT_MS). */
	unsigned int timeout_ms;
	/*
	 * Pages the VM holds already, per slot (an index into vm->slots[];
	 * NULL: none), bit i for page i, copied at the start: a postcopy
	 * destination's pages that precopy sent and nobody dirtied since.
	 * They are claimed and counted placed from the start, never asked
	 * for; a fault on one that was never populated (a zero page precopy
	 * skipped on a fresh slot) is answered at once with UFFDIO_ZEROPAGE
	 * (seed 004).  Not with discard, which would throw them away.
	 */
	const unsigned long *present[MIG_MAX_SLOTS];
	const volatile sig_atomic_t *cancel;	/* fails the fill with -ECANCELED */
};

struct page_fill_stats {
	uint64_t faults;		/* fault events read */
	uint64_t requests;		/* pages asked of the provider */
	uint64_t pages_demand;		/* placed after a fault asked for them */
	uint64_t pages_background;	/* every other page placed */
	uint64_t zero_pages;		/* of those, placed with UFFDIO_ZEROPAGE */
	uint64_t dropped;		/* placed again: late duplicates, dropped */
	uint64_t blocktime_ns;		/* summed time faulting threads waited */
	uint64_t waited;		/* faults that had to wait for their page */
	uint64_t present_faults;	/* faults on present pages, zero-filled at once */
	uint64_t spins;			/* times the fault thread waited on a core for answers */
	uint64_t spin_hits;		/* of those, ended with every fault served */
	/* from reading a fault to placing its page */
	uint64_t fault_us_hist[LAT_HIST_SLOTS];
};

/*
 * Register every slot of @vm (each page-aligned, private anonymous
 * memory) and start the fault thread.  @vm is not running yet or paused.
 */
int page_fill_start(struct kvmmig_vm *vm, const struct page_fill_opts *o,
		    struct page_fill **out);

/*
 * Place @npages pages from page @page of slot @slot: @data holds them, or
 * NULL for zero pages.  Any thread, any time until page_fill_end().  Pages
 * already claimed are skipped (dropped).  Returns the pages placed here, or
 * -errno, which also fails the fill: -EINVAL for a range outside the slot,
 * -EEXIST for a page populated behind the fill's back (not discarded), the
 * fill's own error once it failed.
 */
long page_fill_place(struct page_fill *pf, unsigned int slot, uint64_t page,
		     const void *data, uint64_t npages);

/*
 * The next chunk to fill in the background: @chunk-page aligned (@chunk a
 * power of two), shorter at a slot's end, with at least one page nobody
 * has claimed; after a request (with hint set) the one right after the
 * requested page, else from a cursor that walks all slots in order and
 * wraps.  1 with *@slot, *@first, *@n set; 0 when every page is claimed;
 * -errno once the fill failed.
 */
int page_fill_next(struct page_fill *pf, uint64_t chunk, unsigned int *slot, uint64_t *first,
		   uint64_t *n);

/* The pending hint, consumed (a new one is taken only once it was): 1, or 0 for none. */
int page_fill_take_hint(struct page_fill *pf, unsigned int *slot, uint64_t *page);

/*
 * Fail the fill with @err (the first failure wins) after saying why with
 * kvmmig_err() in this thread: the fault thread stops serving, waiters stay
 * waiting, and page_fill_wait() and page_fill_end() return @err with that
 * message, said again (once) in their caller's thread.
 */
void page_fill_fail(struct page_fill *pf, int err);

/*
 * Wait until every page is placed: 0; the fill's error (-ECANCELED for a
 * cancel), its message said again in this thread; -ETIMEDOUT after
 * @timeout_ms (the fill goes on).
 */
int page_fill_wait(struct page_fill *pf, unsigned int timeout_ms);

/*
 * Suspend (@on) or resume the per-page deadline: a postcopy whose link
 * broke waits for a recovery instead, under a deadline of its own.  On
 * resume every waiter's deadline starts again from now (its latency and
 * blocktime still count from its fault).
 */
void page_fill_suspend_deadline(struct page_fill *pf, bool on);

/*
 * Ask the provider again for every page a thread waits on now (their
 * requests were lost with a broken link): the number asked, or the
 * provider's -errno, which fails the fill.
 */
int page_fill_rerequest(struct page_fill *pf);

/*
 * Copy @nr_words words of slot @slot's `claimed` bitmap from word
 * @first_word into @out (bits past the slot's end are 0): the pages this
 * side holds or is placing.  0, or -EINVAL for a range outside the slot.
 */
int page_fill_copy_claimed(struct page_fill *pf, unsigned int slot, uint64_t first_word,
			   uint64_t nr_words, uint64_t *out);

/* The fill's error (its message not said again), or 0. */
int page_fill_error(struct page_fill *pf);

/* Pages not placed yet, of all slots. */
uint64_t page_fill_missing(struct page_fill *pf);

/* A copy of the counters so far. */
void page_fill_stats(struct page_fill *pf, struct page_fill_stats *st);

/*
 * Stop the fault thread, unregister every slot and free @pf: the fill's
 * error, or 0.  After a failure, pause the guest first: a missing page then
 * reads as zeros.
 */
int page_fill_end(struct page_fill *pf, struct page_fill_stats *st);

#endif /* KVMMIG_PAGE_FILL_H */
