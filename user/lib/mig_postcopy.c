// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source side of postcopy (Documentation/postcopy.rst): when a
 * migration with postcopy-ram switches, the discard set it sends at the
 * switch, and the postcopy phase that follows COMMIT.  In that phase the
 * guest runs on the destination and this side's paused copy is the only
 * one of the pages still missing there: the return-path thread serves the
 * destination's requests (urgent batches, on the preempt channel when
 * there is one), the migration thread walks the discard set in background
 * batches over every multifd channel, continuing after the last request
 * (the hint), until the destination says every page is placed.  A cancel
 * is refused; a broken link pauses and the source reconnects, with the
 * destination's map of what it holds, until it succeeds or the recovery
 * timeout says the guest is lost.  Its copy is never resumed.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "log.h"
#include "mig_internal.h"

#define MIG_PC_RETRY_MS		250	/* between reconnection attempts */
#define MIG_PC_TICK_MS		10	/* waiting for POSTCOPY_DONE: deadlines polled */

/* ---- the switch ---- */

bool mig_postcopy_due(struct mig_src *s)
{
	uint64_t pending = mig_sync_pending(&s->sync) * MIG_PAGE_SIZE;
	uint64_t before = s->pc_prev_pending;
	unsigned int after = s->p.postcopy_after_passes ? s->p.postcopy_after_passes : 1;
	const char *why = NULL;

	s->pc_prev_pending = pending;
	if (!s->p.postcopy_ram)
		return false;
	if (kvmmig_cancelled(s->opts->start_postcopy))
		why = "migrate-start-postcopy";
	else if (s->p.postcopy_start == MIG_POSTCOPY_START_PASSES && s->pass >= after)
		why = "x-postcopy-start passes";
	else if (s->p.postcopy_start == MIG_POSTCOPY_START_AUTO && s->pass >= 2 &&
		 pending * 10 > before * 9)
		why = "the pass did not shrink what is left by a tenth";
	else if (s->p.postcopy_start == MIG_POSTCOPY_START_AUTO && s->p.max_passes &&
		 s->pass >= s->p.max_passes)
		why = "max-passes reached";
	if (why)
		kvmmig_info("switching to postcopy after pass %llu: %s (%llu bytes still dirty, %llu after the pass before)",
			    (unsigned long long)s->pass, why, (unsigned long long)pending,
			    (unsigned long long)before);
	return why;
}

/* One DISCARD record of words [@from, @to) of @slot, the zero words at its ends trimmed. */
static int mig_send_discard_run(struct mig_src *s, struct mig_bitmap_rec *b, unsigned int slot,
				uint64_t from, uint64_t to)
{
	const unsigned long *map = s->sync.bmap[slot];

	while (from < to && !map[from])
		from++;
	while (to > from && !map[to - 1])
		to--;
	if (from == to)
		return 0;
	b->slot = slot;
	b->nr_words = to - from;
	b->first = from * BITS_PER_LONG;
	memcpy(b->words, &map[from], b->nr_words * sizeof(uint64_t));
	return mig_send_main(s, MIG_REC_DISCARD, b, sizeof(*b) + b->nr_words * sizeof(uint64_t));
}

/*
 * The guest is paused and the last sync merged everything into bmap: that
 * is what the destination holds stale or never got.  One DISCARD per 1 GiB
 * run of a slot that holds a set bit; bmap stays the discard set.
 */
int mig_postcopy_send_discard(struct mig_src *s)
{
	struct mig_bitmap_rec *b;
	unsigned int i;
	uint64_t w;
	int ret = 0;

	b = malloc(sizeof(*b) + MIG_MAX_BITMAP_WORDS * sizeof(uint64_t));
	if (!b)
		return -ENOMEM;
	for (i = 0; i < s->sync.nr_slots && !ret; i++) {
		uint64_t nwords = BITMAP_WORDS(s->sync.npages[i]);

		for (w = 0; w < nwords && !ret; w += MIG_MAX_BITMAP_WORDS)
			ret = mig_send_discard_run(s, b, i, w, w + MIG_MAX_BITMAP_WORDS < nwords ?
							    w + MIG_MAX_BITMAP_WORDS : nwords);
	}
	free(b);
	s->pc_gen = s->sync.gen + 1;
	s->pc_left = mig_sync_pending(&s->sync);
	s->pc_slot = 0;
	s->pc_word = 0;
	return ret;
}

void mig_postcopy_commit(struct mig_src *s)
{
	unsigned int i;

	/*
	 * The senders are idle (the switch drained the queue): from COMMIT
	 * on, a cancel must not cut their I/O short.
	 */
	for (i = 0; i < s->nr_senders; i++)
		s->senders[i].chan.wait.cancel = NULL;
	s->main.wait.cancel = NULL;
	__atomic_store_n(&s->pc_progress_ms, now_ms(), __ATOMIC_RELAXED);
	__atomic_store_n(&s->postcopy, true, __ATOMIC_SEQ_CST);
	s->rep->postcopy = true;
	s->rep->postcopy_preempt = s->preempt;
}

/* ---- the return path: requests and the destination's last word ---- */

/* Take pages [page, page + count) of @slot out of the discard set: the request sends them. */
static void mig_pc_clear(struct mig_src *s, unsigned int slot, uint64_t page, uint32_t count)
{
	unsigned long *map = s->sync.bmap[slot];
	uint64_t end = page + count, n = 0;

	while (page < end) {
		uint64_t w = page / BITS_PER_LONG, stop = (w + 1) * BITS_PER_LONG;
		unsigned long mask;

		if (stop > end)
			stop = end;
		mask = (stop - page == BITS_PER_LONG ? ~0UL : (1UL << (stop - page)) - 1) <<
		       (page % BITS_PER_LONG);
		n += __builtin_popcountl(__atomic_fetch_and(&map[w], ~mask, __ATOMIC_RELAXED) & mask);
		page = stop;
	}
	__atomic_sub_fetch(&s->pc_left, n, __ATOMIC_RELAXED);
}

/*
 * A request is sent whether or not the page went already (the destination
 * drops a duplicate): this side is paused, its pages do not change.
 */
static int mig_pc_request(struct mig_src *s, const struct mig_rec *rec)
{
	const struct mig_req *r = s->rp_buf;
	struct mig_job job = { .kind = MIG_JOB_URGENT, .gen = s->pc_gen };
	uint32_t i;

	if (mig_req_check(s->cfg, r, rec->len)) {
		kvmmig_err("the destination sent a page request outside the guest (hostile or corrupt input), taken as a broken link: %s",
			   kvmmig_last_error());
		return -EBADMSG;
	}
	job.slot = r->slot;
	job.count = r->count;
	for (i = 0; i < r->count; i++)
		job.idx[i] = r->page + i;
	mig_pc_clear(s, r->slot, r->page, r->count);
	__atomic_add_fetch(&s->pc_requests, r->count, __ATOMIC_RELAXED);
	if (s->p.postcopy_hint) {
		/* One hint at a time: a new one only once the walk took the last. */
		pthread_mutex_lock(&s->qlock);
		if (!s->hint_set) {
			s->hint_set = true;
			s->hint_slot = r->slot;
			s->hint_page = r->page + r->count;
		}
		pthread_mutex_unlock(&s->qlock);
	}
	return mig_queue_urgent(s, &job);
}

static int mig_pc_done_rec(struct mig_src *s, const struct mig_rec *rec)
{
	const struct mig_postcopy_done *d = s->rp_buf;

	if (rec->len != sizeof(*d) || d->session != s->session) {
		kvmmig_err("the destination sent a POSTCOPY_DONE of %u bytes (expected %zu) for session %016llx (ours: %016llx): hostile or corrupt input, taken as a broken link",
			   rec->len, sizeof(*d), rec->len == sizeof(*d) ?
			   (unsigned long long)d->session : 0ULL, (unsigned long long)s->session);
		return -EBADMSG;
	}
	pthread_mutex_lock(&s->rplock);
	s->done = *d;
	__atomic_store_n(&s->pc_done, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&s->rpcond);
	pthread_mutex_unlock(&s->rplock);
	return 0;
}

int mig_postcopy_rp_record(struct mig_src *s, const struct mig_rec *rec)
{
	__atomic_store_n(&s->pc_progress_ms, now_ms(), __ATOMIC_RELAXED);
	if (rec->type == MIG_REC_POSTCOPY_DONE)
		return mig_pc_done_rec(s, rec);
	return mig_pc_request(s, rec);
}

/* ---- the background walk ---- */

/* The lowest @n set bits of @bits. */
static unsigned long mig_low_bits(unsigned long bits, unsigned int n)
{
	unsigned long take = 0;

	while (bits && n--) {
		take |= bits & -bits;
		bits &= bits - 1;
	}
	return take;
}

/*
 * The next background batch from the cursor, one slot's pages, wrapping;
 * a hint left by a request moves the cursor first.  False: nothing left.
 */
static bool mig_pc_batch(struct mig_src *s, struct mig_job *job)
{
	uint64_t steps = s->sync.nr_slots;
	unsigned int i;

	for (i = 0; i < s->sync.nr_slots; i++)
		steps += BITMAP_WORDS(s->sync.npages[i]);
	job->count = 0;
	job->gen = s->pc_gen;
	job->kind = MIG_JOB_BACKGROUND;
	pthread_mutex_lock(&s->qlock);
	if (s->hint_set) {
		s->pc_slot = s->hint_slot;
		s->pc_word = s->hint_page / BITS_PER_LONG;
		s->hint_set = false;
	}
	pthread_mutex_unlock(&s->qlock);
	while (steps-- && job->count < MIG_MAX_BATCH) {
		unsigned long *map = s->sync.bmap[s->pc_slot];
		unsigned long bits, want, take;

		if (s->pc_word >= BITMAP_WORDS(s->sync.npages[s->pc_slot])) {
			if (job->count)
				break;
			s->pc_slot = (s->pc_slot + 1) % s->sync.nr_slots;
			s->pc_word = 0;
			continue;
		}
		bits = __atomic_load_n(&map[s->pc_word], __ATOMIC_RELAXED);
		want = mig_low_bits(bits, MIG_MAX_BATCH - job->count);
		/* The return path may have taken some since; nothing sets bits now. */
		take = want & __atomic_fetch_and(&map[s->pc_word], ~want, __ATOMIC_RELAXED);
		job->slot = s->pc_slot;
		__atomic_sub_fetch(&s->pc_left, __builtin_popcountl(take), __ATOMIC_RELAXED);
		while (take) {
			job->idx[job->count++] = s->pc_word * BITS_PER_LONG + __builtin_ctzl(take);
			take &= take - 1;
		}
		/* A full batch may leave bits of this word for the next one. */
		if (want == bits)
			s->pc_word++;
	}
	return job->count;
}

/* ---- the postcopy loop ---- */

static void mig_pc_refuse_cancel(struct mig_src *s)
{
	if (s->pc_cancel_said || !kvmmig_cancelled(s->opts->cancel))
		return;
	s->pc_cancel_said = true;
	kvmmig_err("cannot cancel in postcopy: the guest runs on the destination and needs this source's pages (session %016llx); the migration goes on",
		   (unsigned long long)s->session);
}

/*
 * Between batches: 1 once POSTCOPY_DONE came, 0 to go on, or why the link
 * is broken (a channel's failure, a record that has no place in postcopy,
 * no progress within io-timeout while only the destination can make it).
 */
static int mig_pc_tick(struct mig_src *s, bool waiting)
{
	unsigned int io = s->p.io_timeout_ms;
	uint32_t type = 0;
	int ret = 0;

	mig_pc_refuse_cancel(s);
	mig_progress_tick(s);
	pthread_mutex_lock(&s->rplock);
	if (waiting && !s->pc_done && !s->rp_have && !s->rp_err) {
		struct timespec ts = deadline_in_ns(CLOCK_MONOTONIC, MIG_PC_TICK_MS * NSEC_PER_MSEC);

		pthread_cond_timedwait(&s->rpcond, &s->rplock, &ts);
	}
	if (s->rp_have) {
		/* A late STARTED answers a COMMIT this side re-delivered: nothing to do. */
		type = s->rp_rec.type == MIG_REC_STARTED ? 0 : s->rp_rec.type;
		s->rp_have = false;
		pthread_cond_broadcast(&s->rpcond);
	}
	pthread_mutex_unlock(&s->rplock);
	if (__atomic_load_n(&s->pc_done, __ATOMIC_ACQUIRE))
		return 1;
	if (type) {
		kvmmig_err("the destination sent a %s record in postcopy, expected REQ or POSTCOPY_DONE: taken as a broken link",
			   mig_rec_name(type));
		ret = -EPROTO;
	} else if (__atomic_load_n(&s->error, __ATOMIC_RELAXED)) {
		ret = __atomic_load_n(&s->error, __ATOMIC_RELAXED);
	} else if (waiting && io && now_ms() - __atomic_load_n(&s->pc_progress_ms,
							       __ATOMIC_RELAXED) > io) {
		kvmmig_err("postcopy: every page is sent but the destination said nothing for %u ms (--io-timeout)",
			   io);
		ret = -ETIMEDOUT;
	}
	if (ret)
		mig_src_fail(s, ret);
	return ret;
}

/* Stream the discard set until POSTCOPY_DONE (0) or the link breaks. */
static int mig_pc_stream(struct mig_src *s)
{
	struct mig_job job;
	int ret;

	for (;;) {
		bool idle = !__atomic_load_n(&s->pc_left, __ATOMIC_RELAXED);

		ret = mig_pc_tick(s, idle);
		if (ret)
			return ret > 0 ? 0 : ret;
		if (!idle && mig_pc_batch(s, &job)) {
			ret = mig_queue_job(s, &job);
			/* After POSTCOPY_DONE the destination may close under a sender. */
			if (ret)
				return __atomic_load_n(&s->pc_done, __ATOMIC_ACQUIRE) ? 0 : ret;
		}
	}
}

/* ---- recovery ---- */

/* Every thread and channel of the broken link gone; nothing queued. */
static void mig_pc_teardown(struct mig_src *s, int err)
{
	unsigned int i;

	mig_src_fail(s, err);
	mig_rp_stop(s);
	mig_stop_senders(s);
	pthread_mutex_lock(&s->qlock);
	for (i = 0; s->senders && i < s->nr_senders; i++)
		mig_chan_close(&s->senders[i].chan);
	s->qhead = s->qcount = s->qbusy = 0;
	s->uqhead = s->uqcount = 0;
	s->hint_set = false;
	pthread_mutex_unlock(&s->qlock);
	mig_chan_close(&s->main);
}

/*
 * The destination's RECV_MAP records, then SYNC: what it does not hold is
 * the discard set again.
 */
static int mig_pc_read_map(struct mig_src *s)
{
	const struct mig_bitmap_rec *b = s->rp_buf;
	struct mig_rec rec;
	unsigned int i;
	uint32_t j;
	int ret;

	for (i = 0; i < s->sync.nr_slots; i++)
		bitmap_fill(s->sync.bmap[i], s->sync.npages[i]);
	/* The map is due like any record: an attempt must end. */
	s->main.idle_timeout_ms = s->p.io_timeout_ms ? s->p.io_timeout_ms : NET_IO_TIMEOUT_MS;
	for (;;) {
		ret = mig_chan_recv(&s->main, &rec, s->rp_buf);
		if (ret)
			return ret;
		if (rec.type == MIG_REC_SYNC)
			break;
		if (rec.type == MIG_REC_ACK) {
			struct mig_ack *ack = s->rp_buf;

			ack->msg[sizeof(ack->msg) - 1] = '\0';
			kvmmig_err("the destination refused the recovery: %s",
				   rec.len == sizeof(*ack) ? ack->msg : "(a malformed ACK)");
			return -ECONNREFUSED;
		}
		if (rec.type != MIG_REC_RECV_MAP) {
			kvmmig_err("the destination sent %s on a recovered link, expected RECV_MAP or SYNC",
				   mig_rec_name(rec.type));
			return -EPROTO;
		}
		ret = mig_bitmap_rec_check(s->cfg, b, rec.len, "RECV_MAP");
		if (ret)
			return ret;
		for (j = 0; j < b->nr_words; j++)
			s->sync.bmap[b->slot][b->first / BITS_PER_LONG + j] &= ~b->words[j];
	}
	s->main.idle_timeout_ms = 0;
	s->pc_left = mig_sync_pending(&s->sync);
	s->pc_slot = 0;
	s->pc_word = 0;
	return 0;
}

/* One attempt at a new link: channels, the map, senders and return path running. */
static int mig_pc_reconnect(struct mig_src *s)
{
	int ret;

	pthread_mutex_lock(&s->qlock);
	s->error = 0;
	s->stop = false;
	pthread_mutex_unlock(&s->qlock);
	s->hello_flags = MIG_HELLO_RECOVER | MIG_HELLO_POSTCOPY;
	ret = mig_connect_channel(s, &s->main, 0);
	if (ret)
		return ret;
	s->state = MIG_POSTCOPY_RECOVER;
	ret = mig_start_senders(s);
	if (!ret)
		ret = mig_pc_read_map(s);
	if (!ret)
		ret = mig_rp_start(s);
	if (ret)
		mig_pc_teardown(s, ret);
	else
		__atomic_store_n(&s->pc_progress_ms, now_ms(), __ATOMIC_RELAXED);
	return ret;
}

/* A settle command while paused: RESUME_AT points the reconnection elsewhere. */
static void mig_pc_settle(struct mig_src *s, int lfd)
{
	enum mig_settle_cmd cmd;
	char addr[sizeof(s->to_buf)], host[256], port[16], msg[320];
	int cfd;

	cfd = mig_settle_take_at(lfd, s->session, &cmd, addr, sizeof(addr));
	if (cfd < 0)
		return;
	if (cmd != MIG_SETTLE_RESUME_AT) {
		mig_settle_reply(cfd, -EINVAL, "this source is in postcopy-paused: only `kvmmig migrate --resume tcp:HOST:PORT --settle SESSION` applies");
	} else if (net_parse_addr(addr, host, sizeof(host), port, sizeof(port))) {
		snprintf(msg, sizeof(msg), "bad address \"%s\": expected tcp:HOST:PORT", addr);
		mig_settle_reply(cfd, -EINVAL, msg);
	} else {
		snprintf(s->to_buf, sizeof(s->to_buf), "%s", addr);
		s->to = s->to_buf;
		snprintf(msg, sizeof(msg), "the source reconnects to %s", addr);
		mig_settle_reply(cfd, 0, msg);
		kvmmig_info("postcopy-paused: reconnecting to %s from now on", addr);
	}
	close(cfd);
}

/* Wait out the rest of one retry period, serving settle commands. */
static void mig_pc_retry_wait(struct mig_src *s, int lfd, int64_t until)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int64_t left;

	while ((left = until - now_ms()) > 0) {
		mig_pc_refuse_cancel(s);
		mig_progress_tick(s);
		if (lfd < 0) {
			usleep(left * 1000);
			break;
		}
		if (poll(&p, 1, left) == 1)
			mig_pc_settle(s, lfd);
	}
}

/*
 * Said in full; the report's error has room for less, so its "last" part
 * is shortened to keep the verdict whole.
 */
static void mig_pc_say_lost(struct mig_src *s, unsigned int limit, const char *last)
{
	static const char fmt[] = "postcopy failed: the destination did not come back within %u ms (last: %s); the guest ran there and this source's copy is stale, so it is not resumed: the guest is lost unless the destination still runs it";
	int room = (int)sizeof(s->rep->error) - 1 - snprintf(NULL, 0, fmt, limit, "");
	char brief[sizeof(s->rep->error)], msg[sizeof(fmt) + 2 * sizeof(brief)];

	kvmmig_err(fmt, limit, last);
	mig_src_fail(s, -ETIMEDOUT);
	if ((int)strlen(last) > room && room > 3)
		snprintf(brief, sizeof(brief), "%.*s...", room - 3, last);
	else
		snprintf(brief, sizeof(brief), "%s", last);
	snprintf(msg, sizeof(msg), fmt, limit, brief);
	memcpy(s->rep->error, msg, sizeof(s->rep->error) - 1);
	s->rep->error[sizeof(s->rep->error) - 1] = '\0';
}

/*
 * The link broke (@err): postcopy-paused until a new link carries on, or
 * until postcopy-recover-timeout, after which the guest is lost.
 */
static int mig_pc_recover(struct mig_src *s, int err)
{
	unsigned int limit = s->p.postcopy_recover_timeout_ms;
	int64_t t0 = now_ms(), attempt;
	unsigned long long id = s->session;
	char last[sizeof(s->rep->error)];
	int lfd, ret;

	snprintf(last, sizeof(last), "%s", s->rep->error[0] ? s->rep->error : kvmmig_last_error());
	mig_pc_teardown(s, err);
	s->state = MIG_POSTCOPY_PAUSED;
	mig_sample(s, false);
	kvmmig_info("postcopy-paused (session %016llx): %s; this source keeps its copy and reconnects to %s every %d ms; to point it at another address: `kvmmig migrate --resume tcp:HOST:PORT --settle %016llx`",
		    id, last, s->to, MIG_PC_RETRY_MS, id);
	lfd = mig_settle_listen(true, s->session);
	for (;;) {
		attempt = now_ms();
		if (limit && attempt - t0 >= limit) {
			ret = -ETIMEDOUT;
			break;
		}
		kvmmig_log_quiet(true);
		ret = mig_pc_reconnect(s);
		kvmmig_log_quiet(false);
		if (!ret)
			break;
		snprintf(last, sizeof(last), "%s", kvmmig_last_error());
		s->state = MIG_POSTCOPY_PAUSED;
		mig_pc_retry_wait(s, lfd, attempt + MIG_PC_RETRY_MS);
	}
	if (lfd >= 0)
		close(lfd);
	if (ret) {
		mig_pc_say_lost(s, limit, last);
		return ret;
	}
	s->rep->postcopy_recoveries++;
	s->state = MIG_POSTCOPY_ACTIVE;
	kvmmig_info("postcopy: the link is back (recovery %u), %llu pages still to send",
		    s->rep->postcopy_recoveries, (unsigned long long)s->pc_left);
	mig_sample(s, false);
	return 0;
}

/* What this side counted so far, into the report (the migration thread's). */
void mig_postcopy_counts(struct mig_src *s)
{
	s->rep->postcopy_requests = __atomic_load_n(&s->pc_requests, __ATOMIC_RELAXED);
	s->rep->postcopy_urgent_pages = __atomic_load_n(&s->pc_urgent, __ATOMIC_RELAXED);
	s->rep->postcopy_background_pages = __atomic_load_n(&s->pc_background, __ATOMIC_RELAXED);
}

int mig_postcopy_run(struct mig_src *s)
{
	struct mig_report *rep = s->rep;
	int ret;

	s->state = MIG_POSTCOPY_ACTIVE;
	kvmmig_info("postcopy: the guest runs on the destination; %llu pages still to send",
		    (unsigned long long)s->pc_left);
	mig_sample(s, false);
	while ((ret = mig_pc_stream(s))) {
		ret = mig_pc_recover(s, ret);
		if (ret) {
			mig_postcopy_counts(s);
			return ret;
		}
	}
	rep->postcopy_s = now_s() - s->t_started;
	/* The destination holds every page: what is still queued is not needed. */
	pthread_mutex_lock(&s->qlock);
	s->qcount = s->uqcount = 0;
	pthread_mutex_unlock(&s->qlock);
	mig_stop_senders(s);
	/* A sender cut short by the destination's close after DONE failed nothing. */
	rep->error[0] = '\0';
	mig_postcopy_counts(s);
	rep->postcopy_remote_faults = s->done.remote_faults;
	rep->postcopy_blocktime_ns = s->done.blocktime_ns;
	rep->postcopy_dropped = s->done.dropped;
	memcpy(rep->postcopy_fault_us_hist, s->done.fault_us_hist,
	       sizeof(rep->postcopy_fault_us_hist));
	return 0;
}
