// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination's postcopy (Documentation/postcopy.rst).  At CONFIG it
 * checks that postcopy can work here (private anonymous guest memory that
 * a userfaultfd in MISSING mode can serve); DISCARD records name the pages
 * whose precopy copies went stale.  Before PREPARED of a postcopy END the
 * stale copies are thrown away and page_fill takes the guest's memory,
 * every other page present.  Once the guest runs, the fault thread asks
 * the source for each missing page it touches (REQ on the main channel,
 * never waiting for the answer) and one receiver thread per page channel
 * places whatever arrives; when every page is placed, POSTCOPY_DONE tells
 * the source.  A broken link pauses postcopy, never the guest: a vCPU on a
 * missing page waits while the listener takes a new link of the session
 * (mig_dest_postcopy_recover.c), until postcopy_recover_timeout_ms, after
 * which the guest is stopped for good.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "log.h"
#include "mig_dest_internal.h"
#include "mig_dest_postcopy.h"
#include "page_fill.h"
#include "thread_nice.h"
#include "uffd.h"

/* Is [@start, @end) private anonymous memory?  Else what backs it, in @what. */
static bool pc_private_anon(uintptr_t start, uintptr_t end, char *what, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512], perms[8], path[300];
	unsigned long lo, hi, inode;
	uintptr_t covered = start;
	bool ok = true;

	if (!f) {
		snprintf(what, len, "memory /proc/self/maps cannot describe (%s)", strerror(errno));
		return false;
	}
	while (ok && covered < end && fgets(line, sizeof(line), f)) {
		path[0] = 0;
		if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %299[^\n]", &lo, &hi, perms, &inode,
			   path) < 4 || hi <= covered || lo >= end)
			continue;
		/* A private mapping of no file: anonymous memory (named "[anon:...]" maybe). */
		ok = lo <= covered && perms[3] == 'p' && !inode;
		if (!ok)
			snprintf(what, len, "a %s mapping of %s", perms[3] == 'p' ? "private" : "shared",
				 path[0] && path[0] != '[' ? path : "anonymous memory");
		covered = hi;
	}
	fclose(f);
	if (ok && covered < end) {
		snprintf(what, len, "memory not all mapped");
		ok = false;
	}
	return ok;
}

/* Can a userfaultfd in MISSING mode serve every slot?  Registered, then let go. */
static int pc_check_uffd(struct kvmmig_vm *vm)
{
	struct uffd u = { .fd = -1 };
	unsigned int i, n = 0;
	int ret = uffd_open(&u, UFFD_MISSING);

	for (; !ret && n < vm->nr_slots; n++)
		ret = uffd_register(&u, vm->slots[n].hva, vm->slots[n].size, UFFD_MISSING);
	if (ret)
		n--;
	for (i = 0; i < n; i++)
		uffd_unregister(&u, vm->slots[i].hva, vm->slots[i].size);
	uffd_close(&u);
	if (ret)
		kvmmig_err("postcopy needs a userfaultfd in MISSING mode on the guest's memory: %s",
			   kvmmig_last_error());
	return ret;
}

static int pc_check_memory(struct mig_dst *d)
{
	unsigned int i;
	char what[360];

	for (i = 0; i < d->vm->nr_slots; i++) {
		const struct kvmmig_slot *s = &d->vm->slots[i];

		if (!pc_private_anon((uintptr_t)s->hva, (uintptr_t)s->hva + s->size, what,
				     sizeof(what))) {
			kvmmig_err("postcopy needs private anonymous guest memory: memslot %u (gpa 0x%llx) is %s",
				   s->id, (unsigned long long)s->gpa, what);
			return -EOPNOTSUPP;
		}
	}
	return pc_check_uffd(d->vm);
}

static int pc_pipe(int p[2], const char *what)
{
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK)) {
		int ret = -errno;

		kvmmig_err("cannot make postcopy's %s pipe: %s", what, strerror(-ret));
		return ret;
	}
	return 0;
}

int mig_dest_postcopy_check(struct mig_dst *d)
{
	struct mig_dst_pc *pc;
	unsigned int i;
	int ret;

	if (d->cfg->flags & MIG_CONFIG_PREEMPT && d->hello.nr_channels < 3) {
		kvmmig_err("postcopy-preempt with %u channels: expected at least 3 (the main channel, a multifd channel and the preempt channel)",
			   d->hello.nr_channels);
		return -EPROTO;
	}
	ret = pc_check_memory(d);
	if (ret)
		return ret;
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	d->pc = pc;
	pc->wake[0] = pc->wake[1] = pc->conns[0] = pc->conns[1] = pc->settle_fd = -1;
	pc->extra_thread = (struct mig_listener_thread)MIG_LISTENER_THREAD_INIT;
	mig_listener_init(&pc->extra);
	pthread_mutex_init(&pc->send_lock, NULL);
	pthread_mutex_init(&pc->preempt_lock, NULL);
	for (i = 0; i < d->vm->nr_slots; i++) {
		pc->discard[i] = calloc(BITMAP_WORDS(kvmmig_slot_pages(&d->vm->slots[i])),
					sizeof(unsigned long));
		if (!pc->discard[i])
			return -ENOMEM;
	}
	ret = pc_pipe(pc->wake, "wake-up");
	return ret ? ret : pc_pipe(pc->conns, "new link");
}

int mig_dest_postcopy_discard(struct mig_dst *d, const struct mig_rec *rec)
{
	const struct mig_bitmap_rec *b = d->buf;
	unsigned int i;
	int ret;

	if (!d->pc) {
		kvmmig_err("a DISCARD record, but CONFIG did not allow postcopy (no MIG_CONFIG_POSTCOPY)");
		return -EPROTO;
	}
	ret = mig_bitmap_rec_check(d->cfg, b, rec->len, "DISCARD");
	if (ret)
		return ret;
	for (i = 0; i < b->nr_words; i++)
		d->pc->discard[b->slot][b->first / 64 + i] |= b->words[i];
	return 0;
}

/* Throw away the stale copies of slot @i: one MADV_DONTNEED per run of discarded pages. */
static int pc_discard_slot(struct mig_dst *d, unsigned int i)
{
	const struct kvmmig_slot *s = &d->vm->slots[i];
	const unsigned long *map = d->pc->discard[i];
	uint64_t n = kvmmig_slot_pages(s), p = 0, q;

	while (p < n) {
		if (!(map[p / BITS_PER_LONG] >> (p % BITS_PER_LONG) & 1)) {
			p++;
			continue;
		}
		for (q = p + 1; q < n && map[q / BITS_PER_LONG] >> (q % BITS_PER_LONG) & 1; q++)
			;
		if (madvise((uint8_t *)s->hva + p * MIG_PAGE_SIZE, (q - p) * MIG_PAGE_SIZE,
			    MADV_DONTNEED)) {
			int ret = -errno;

			kvmmig_err("cannot discard pages %llu to %llu of memslot %u for postcopy: %s",
				   (unsigned long long)p, (unsigned long long)q - 1, s->id,
				   strerror(-ret));
			return ret;
		}
		p = q;
	}
	return 0;
}

/* Place the pages of a checked PAGES record: runs of neighbours, data or zeros, one call each. */
static int pc_place(struct page_fill *pf, const struct mig_pages *mp)
{
	const uint8_t *data = (const uint8_t *)&mp->entries[mp->count];
	uint32_t i = 0, j;

	while (i < mp->count) {
		bool zero = mp->entries[i] & MIG_PAGE_ZERO;
		uint64_t first = mp->entries[i] & MIG_PAGE_INDEX_MASK;
		long ret;

		for (j = i + 1; j < mp->count && (bool)(mp->entries[j] & MIG_PAGE_ZERO) == zero &&
		     (mp->entries[j] & MIG_PAGE_INDEX_MASK) == first + (j - i); j++)
			;
		ret = page_fill_place(pf, mp->slot, first, zero ? NULL : data, j - i);
		if (ret < 0)
			return ret;
		if (!zero)
			data += (size_t)(j - i) * MIG_PAGE_SIZE;
		i = j;
	}
	return 0;
}

/* Wake the main thread: a receiver ended, or placed the last page. */
static void pc_wake(struct mig_dst *d)
{
	if (write(d->pc->wake[1], "", 1) < 0) {
		/* Full: the main thread is woken already. */
	}
}

/* One record of page channel @r, checked and placed: 0, or -errno with a message. */
static int pc_receive_one(struct mig_dst *d, struct mig_receiver *r)
{
	struct mig_rec rec;
	int ret;

	ret = mig_chan_recv(&r->chan, &rec, r->buf);
	if (ret)
		return ret;
	if (rec.type != MIG_REC_PAGES) {
		kvmmig_err("unexpected %s record on page channel %u during postcopy",
			   mig_rec_name(rec.type), r->chan.index);
		return -EPROTO;
	}
	ret = mig_pages_check(d->cfg, r->buf, rec.len);
	if (!ret)
		ret = pc_place(d->pc->pf, r->buf);
	/* The last page: the main thread answers POSTCOPY_DONE now, not at its tick. */
	if (!ret && !page_fill_missing(d->pc->pf))
		pc_wake(d);
	return ret;
}

static struct mig_receiver *pc_preempt_receiver(struct mig_dst *d)
{
	return &d->receivers[d->nr_receivers - 1];
}

/*
 * Read what the preempt channel holds now, under preempt_lock: 0, or
 * -errno with the channel's failure recorded for the main thread (its
 * receiver thread ends on it).
 */
static int pc_preempt_drain(struct mig_dst *d, struct mig_receiver *r)
{
	int ret = 0;

	while (d->pc->preempt_open && !r->error && mig_chan_readable(&r->chan)) {
		ret = pc_receive_one(d, r);
		if (ret) {
			r->error = ret;
			snprintf(r->msg, sizeof(r->msg), "%s", kvmmig_last_error());
			/* Its receiver thread, in poll(), sees it at once. */
			shutdown(r->chan.fd, SHUT_RDWR);
		}
	}
	return r->error;
}

/*
 * The fault thread's page_fill collect(): the pages that have come on the
 * preempt channel, placed by the thread that asked for them while it still
 * has a core.  A broken channel is its receiver thread's to report, so it
 * never fails the fill here; a page that cannot be placed failed it
 * already.  Skipped while the receiver thread is reading.
 */
static int pc_collect(void *opaque)
{
	struct mig_dst *d = opaque;
	struct mig_dst_pc *pc = d->pc;

	if (pthread_mutex_trylock(&pc->preempt_lock))
		return 0;
	pc_preempt_drain(d, pc_preempt_receiver(d));
	pthread_mutex_unlock(&pc->preempt_lock);
	return 0;
}

/*
 * The preempt channel's receiver: waits for a record unlocked, so that the
 * fault thread may take it first, then reads under preempt_lock.
 */
static int pc_preempt_receive(struct mig_dst *d, struct mig_receiver *r)
{
	struct mig_dst_pc *pc = d->pc;
	int ret;

	kvmmig_thread_urgent(r->chan.name);
	for (;;) {
		pthread_mutex_lock(&pc->preempt_lock);
		ret = pc_preempt_drain(d, r);
		pthread_mutex_unlock(&pc->preempt_lock);
		if (ret)
			return ret;
		/*
		 * No deadline, as for any page channel's next record: the
		 * main thread watches progress, and shuts the channel down.
		 */
		net_poll(r->chan.fd, POLLIN, NULL, 0, 0);
	}
}

/* A page channel during postcopy: every PAGES record checked and placed, until it ends. */
static void *pc_receiver_thread(void *arg)
{
	struct mig_receiver *r = arg;
	struct mig_dst *d = r->dst;
	int ret;

	/* Its end is the main thread's to judge and say. */
	kvmmig_log_quiet(true);
	if ((d->cfg->flags & MIG_CONFIG_PREEMPT) && r == pc_preempt_receiver(d)) {
		/* Its failure may be the fault thread's, recorded already. */
		pc_preempt_receive(d, r);
	} else {
		do
			ret = pc_receive_one(d, r);
		while (!ret);
		r->error = ret;
		snprintf(r->msg, sizeof(r->msg), "%s", kvmmig_last_error());
	}
	__atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
	pc_wake(d);
	return NULL;
}

/*
 * The fault thread asks for a page: REQ on the main channel, never waiting
 * for the answer.  With the link down the request is lost; the recovery
 * asks again for every page still waited on.
 */
static int pc_request(void *opaque, unsigned int slot, uint64_t page)
{
	struct mig_dst *d = opaque;
	struct mig_dst_pc *pc = d->pc;
	const struct mig_req r = { .slot = slot, .count = 1, .page = page };

	pthread_mutex_lock(&pc->send_lock);
	if (pc->link_up && mig_chan_send(&d->main, MIG_REC_REQ, &r, sizeof(r))) {
		pc->link_up = false;
		snprintf(pc->why, sizeof(pc->why), "a page request failed: %s",
			 kvmmig_last_error());
		/* The main thread sees the break at once. */
		shutdown(d->main.fd, SHUT_RDWR);
	} else if (pc->link_up) {
		pc->requests_sent++;
	}
	pthread_mutex_unlock(&pc->send_lock);
	return 0;
}

int mig_dest_postcopy_prepare(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	unsigned int io = d->opts->io_timeout_ms ? d->opts->io_timeout_ms : NET_IO_TIMEOUT_MS;
	/*
	 * Twice the I/O timeout: a link that stops moving is found broken
	 * (pc_active(), after one) and the deadline suspended before a page
	 * waited on since just before can fail the fill, which is fatal.
	 */
	struct page_fill_opts o = {
		.request = pc_request, .opaque = d, .timeout_ms = 2 * io,
	};
	unsigned int i;
	size_t w;
	int ret = 0;

	for (i = 0; !ret && i < d->vm->nr_slots; i++) {
		size_t words = BITMAP_WORDS(kvmmig_slot_pages(&d->vm->slots[i]));
		unsigned long *present = malloc(words * sizeof(unsigned long));

		o.present[i] = present;
		if (!present) {
			ret = -ENOMEM;
			break;
		}
		for (w = 0; w < words; w++)
			present[w] = ~pc->discard[i][w];
		ret = pc_discard_slot(d, i);
	}
	if (d->cfg->flags & MIG_CONFIG_PREEMPT) {
		o.collect = pc_collect;
		o.spin_us = PC_COLLECT_US;
	}
	if (!ret)
		ret = page_fill_start(d->vm, &o, &pc->pf);
	for (i = 0; i < d->vm->nr_slots; i++)
		free((void *)o.present[i]);
	if (ret)
		return ret;
	/* Requests may go out as soon as the guest runs: STARTED takes send_lock too. */
	pc->link_up = true;
	/*
	 * The page channels are idle until COMMIT: their receivers start now,
	 * so that the first pages vCPUs ask for do not wait for threads to
	 * start.  A failed handover, this one's included, shuts down and joins
	 * them in mig_join_receivers(), and the main channel stays open for
	 * the ACK that says why.
	 */
	return mig_dest_pc_start_receivers(d);
}

void mig_dest_postcopy_send_lock(struct mig_dst *d)
{
	if (d->pc)
		pthread_mutex_lock(&d->pc->send_lock);
}

void mig_dest_postcopy_send_unlock(struct mig_dst *d)
{
	if (d->pc)
		pthread_mutex_unlock(&d->pc->send_lock);
}

int mig_dest_pc_start_receivers(struct mig_dst *d)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < d->nr_receivers; i++) {
		d->receivers[i].done = false;
		d->receivers[i].error = 0;
	}
	/* The fault thread may read the preempt channel from now on. */
	pthread_mutex_lock(&d->pc->preempt_lock);
	d->pc->preempt_open = true;
	pthread_mutex_unlock(&d->pc->preempt_lock);
	for (i = 0; !ret && i < d->nr_receivers; i++) {
		struct mig_receiver *r = &d->receivers[i];

		/* Postcopy cannot be cancelled: its channels ignore the cancel flag. */
		mig_chan_limit(&r->chan, d->main.wait.timeout_ms, NULL);
		ret = -pthread_create(&r->thread, NULL, pc_receiver_thread, r);
		r->started = !ret;
		if (ret)
			kvmmig_err("cannot start postcopy's receiver of page channel %u: %s",
				   r->chan.index, strerror(-ret));
	}
	return ret;
}

/* Stop and close every channel of the link (it broke, or postcopy ended). */
void mig_dest_pc_close_link(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	unsigned int i;

	/* First, unlocked: a request blocked in a send on it (holding the lock) fails now. */
	if (d->main.fd >= 0)
		shutdown(d->main.fd, SHUT_RDWR);
	pthread_mutex_lock(&pc->send_lock);
	pc->link_up = false;
	pthread_mutex_unlock(&pc->send_lock);
	for (i = 0; i < d->nr_receivers; i++) {
		struct mig_receiver *r = &d->receivers[i];

		if (r->chan.fd >= 0)
			shutdown(r->chan.fd, SHUT_RDWR);
		if (r->started)
			pthread_join(r->thread, NULL);
		r->started = false;
	}
	/* The fault thread leaves the preempt channel before it goes. */
	pthread_mutex_lock(&pc->preempt_lock);
	pc->preempt_open = false;
	pthread_mutex_unlock(&pc->preempt_lock);
	for (i = 0; i < d->nr_receivers; i++) {
		struct mig_receiver *r = &d->receivers[i];

		r->error = 0;
		pc->rx_old += r->chan.rx_bytes;
		mig_chan_close(&r->chan);
	}
	pc->rx_old += d->main.rx_bytes;
	pthread_mutex_lock(&pc->send_lock);
	mig_chan_close(&d->main);
	pthread_mutex_unlock(&pc->send_lock);
}

/* A receiver that ended: why, into pc->why; true if one did. */
static bool pc_receiver_ended(struct mig_dst *d)
{
	unsigned int i;

	for (i = 0; i < d->nr_receivers; i++) {
		struct mig_receiver *r = &d->receivers[i];

		if (r->started && __atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
			snprintf(d->pc->why, sizeof(d->pc->why), "page channel %u: %s",
				 r->chan.index, r->msg);
			return true;
		}
	}
	return false;
}

/* A record on the main channel during postcopy: only a re-delivered COMMIT is harmless. */
static bool pc_main_record(struct mig_dst *d)
{
	struct mig_rec rec;
	int ret;

	/* A break is said once, in the paused line. */
	kvmmig_log_quiet(true);
	ret = mig_chan_recv(&d->main, &rec, d->buf);
	kvmmig_log_quiet(false);
	if (!ret && rec.type == MIG_REC_COMMIT)
		return true;
	if (!ret)
		kvmmig_err("unexpected %s record on the main channel during postcopy",
			   mig_rec_name(rec.type));
	snprintf(d->pc->why, sizeof(d->pc->why), "main channel: %s", kvmmig_last_error());
	return false;
}

void mig_dest_pc_say_no_cancel(struct mig_dst *d)
{
	if (d->pc->cancel_said || !kvmmig_cancelled(d->opts->cancel))
		return;
	d->pc->cancel_said = true;
	kvmmig_info("cannot cancel in postcopy: the guest runs here and needs the source's pages; postcopy goes on");
}

static void pc_drain(int fd)
{
	char b[64];

	while (read(fd, b, sizeof(b)) > 0)
		;
}

/*
 * Postcopy with a link: 0 once every page is placed, PC_BROKEN when the
 * link breaks (any channel's error or EOF, no page placed within the I/O
 * timeout while pages are missing, or the source already opening a new
 * link), or the fill's error.
 */
static int pc_active(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	uint64_t missing, last = page_fill_missing(pc->pf);
	unsigned int io = d->main.wait.timeout_ms;
	double progress = now_s();

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = d->main.fd, .events = POLLIN },
			{ .fd = pc->wake[0], .events = POLLIN },
			{ .fd = pc->conns[0], .events = POLLIN },
		};
		int ret = page_fill_error(pc->pf);

		if (ret)
			return ret;
		missing = page_fill_missing(pc->pf);
		if (!missing)
			return 0;
		if (missing != last) {
			last = missing;
			progress = now_s();
		} else if (now_s() - progress > io / 1000.0) {
			snprintf(pc->why, sizeof(pc->why),
				 "no page arrived within %u ms (io-timeout) while %llu were missing",
				 io, (unsigned long long)missing);
			return PC_BROKEN;
		}
		pthread_mutex_lock(&pc->send_lock);
		ret = pc->link_up;
		pthread_mutex_unlock(&pc->send_lock);
		if (!ret)
			return PC_BROKEN;
		mig_dest_pc_say_no_cancel(d);
		if (poll(p, 3, PC_TICK_MS) <= 0)
			continue;
		/* The source saw the break first: its new link waits in the pipe. */
		if (p[2].revents) {
			snprintf(pc->why, sizeof(pc->why), "the source opened a new link");
			return PC_BROKEN;
		}
		if (p[0].revents && !pc_main_record(d))
			return PC_BROKEN;
		if (p[1].revents) {
			pc_drain(pc->wake[0]);
			if (pc_receiver_ended(d) && page_fill_missing(pc->pf))
				return PC_BROKEN;
		}
	}
}

/* Every page is placed: POSTCOPY_DONE with our figures.  0, or PC_BROKEN. */
static int pc_send_done(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	struct mig_postcopy_done dn = { .session = d->hello.session };
	struct page_fill_stats st;
	int ret;

	page_fill_stats(pc->pf, &st);
	pthread_mutex_lock(&pc->send_lock);
	dn.requests = pc->requests_sent;
	pthread_mutex_unlock(&pc->send_lock);
	dn.urgent_pages = st.pages_demand;
	dn.background_pages = st.pages_background;
	dn.remote_faults = st.waited;
	dn.blocktime_ns = st.blocktime_ns;
	dn.dropped = st.dropped;
	memcpy(dn.fault_us_hist, st.fault_us_hist, sizeof(dn.fault_us_hist));
	pthread_mutex_lock(&pc->send_lock);
	ret = mig_chan_send(&d->main, MIG_REC_POSTCOPY_DONE, &dn, sizeof(dn));
	pthread_mutex_unlock(&pc->send_lock);
	if (!ret)
		return 0;
	snprintf(pc->why, sizeof(pc->why), "POSTCOPY_DONE could not be sent: %s",
		 kvmmig_last_error());
	return PC_BROKEN;
}

/* After POSTCOPY_DONE the source closes; a while for it, then the link ends here. */
static void pc_await_close(struct mig_dst *d)
{
	unsigned int ms = d->opts->handover_timeout_ms ? d->opts->handover_timeout_ms :
							MIG_HANDOVER_TIMEOUT_MS;
	struct pollfd p = { .fd = d->main.fd, .events = POLLIN };
	double until = now_s() + ms / 1000.0;
	struct mig_rec rec;

	while (now_s() < until) {
		if (poll(&p, 1, PC_TICK_MS) <= 0)
			continue;
		kvmmig_log_quiet(true);
		if (mig_chan_recv(&d->main, &rec, d->buf)) {
			kvmmig_log_quiet(false);
			break;
		}
		kvmmig_log_quiet(false);
	}
	mig_dest_pc_close_link(d);
}

static void *pc_pause_thread(void *arg)
{
	struct mig_dst *d = arg;

	kvmmig_vm_pause(d->vm);
	return NULL;
}

/*
 * Stop a guest that cannot run on (its pages are gone with the source).
 * As snapshot_lazy.c: a vCPU waiting on a missing page cannot leave
 * KVM_RUN, so the pause runs in a thread of its own and, after
 * PC_PAUSE_MS, ending the fill lets those accesses complete (zeros) so
 * that KVM sees the pause before the guest runs again.  Never resumed.
 */
static void pc_stop_guest(struct mig_dst *d, int err)
{
	struct mig_dst_pc *pc = d->pc;
	pthread_t t;
	bool threaded = !pthread_create(&t, NULL, pc_pause_thread, d);

	page_fill_fail(pc->pf, err);
	if (threaded)
		usleep(PC_PAUSE_MS * 1000);
	kvmmig_log_quiet(true);
	page_fill_end(pc->pf, &pc->st);
	kvmmig_log_quiet(false);
	pc->pf = NULL;
	if (threaded)
		pthread_join(t, NULL);
	else
		kvmmig_vm_pause(d->vm);
}

int mig_dest_postcopy_run(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	int ret;

	pc->t_start = now_s();
	d->rep->state = MIG_POSTCOPY_ACTIVE;
	mig_chan_limit(&d->main, d->main.wait.timeout_ms, NULL);
	if (d->opts->postcopy_started)
		d->opts->postcopy_started(d->opts->opaque, d->vm);
	kvmmig_info("postcopy (session %016llx): the guest runs here, %llu pages still to come",
		    (unsigned long long)d->hello.session,
		    (unsigned long long)page_fill_missing(pc->pf));
	for (ret = 0;;) {
		if (!ret)
			ret = pc_active(d);
		if (!ret) {
			if (!pc->t_done)
				pc->t_done = now_s();
			ret = pc_send_done(d);
		}
		if (ret != PC_BROKEN)
			break;
		ret = mig_dest_pc_paused(d);
		if (ret)
			break;
	}
	if (ret) {
		/* The fill's own failure was quiet: say it here. */
		if (ret == page_fill_error(pc->pf))
			page_fill_wait(pc->pf, 0);
		pc_stop_guest(d, ret);
		mig_dest_pc_close_link(d);
		return ret;
	}
	pc_await_close(d);
	ret = page_fill_end(pc->pf, &pc->st);
	pc->pf = NULL;
	return ret;
}

void mig_dest_postcopy_report(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	struct mig_report *rep = d->rep;
	struct page_fill_stats *st = &pc->st;

	if (!pc->t_start)
		return;
	if (pc->pf)
		page_fill_stats(pc->pf, st);
	rep->postcopy = true;
	rep->postcopy_preempt = d->cfg->flags & MIG_CONFIG_PREEMPT;
	rep->postcopy_s = (pc->t_done ? pc->t_done : now_s()) - pc->t_start;
	rep->postcopy_requests = pc->requests_sent;
	rep->postcopy_urgent_pages = st->pages_demand;
	rep->postcopy_background_pages = st->pages_background;
	rep->postcopy_remote_faults = st->waited;
	rep->postcopy_blocktime_ns = st->blocktime_ns;
	rep->postcopy_dropped = st->dropped;
	memcpy(rep->postcopy_fault_us_hist, st->fault_us_hist, sizeof(st->fault_us_hist));
	rep->pages_sent += st->pages_demand + st->pages_background - st->zero_pages;
	rep->zero_pages += st->zero_pages;
	rep->bytes_sent += pc->rx_old;
}

void mig_dest_postcopy_free(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	unsigned int i;

	if (!pc)
		return;
	mig_listener_thread_stop(&pc->extra_thread);
	mig_listener_close(&pc->extra);
	if (pc->pf)
		page_fill_end(pc->pf, NULL);
	/* Channels of a new link nobody took. */
	if (pc->conns[0] >= 0) {
		struct pc_conn c;

		while (read(pc->conns[0], &c, sizeof(c)) == sizeof(c))
			mig_dest_pc_conn_close(&c);
	}
	for (i = 0; i < 2; i++) {
		if (pc->wake[i] >= 0)
			close(pc->wake[i]);
		if (pc->conns[i] >= 0)
			close(pc->conns[i]);
	}
	if (pc->settle_fd >= 0)
		close(pc->settle_fd);
	for (i = 0; i < MIG_MAX_SLOTS; i++)
		free(pc->discard[i]);
	pthread_mutex_destroy(&pc->send_lock);
	pthread_mutex_destroy(&pc->preempt_lock);
	free(pc);
	d->pc = NULL;
}
