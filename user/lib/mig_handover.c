// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source's end of a migration (Documentation/handover.rst): the return
 * path, a thread that reads the main channel for the whole migration so
 * that a destination which gives up is heard at once (and every blocked
 * sender is woken), and the two-phase handover that follows the stream.
 * END carries a random nonce and what every channel sent; the destination
 * answers PREPARED with what it counted itself; only an answer equal to
 * END makes the source commit.  Before COMMIT it may resume its guest,
 * after it never on its own: it re-delivers COMMIT on new connections and,
 * when nothing settles it within the deadline, waits for an operator.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mig_internal.h"
#include "thread_nice.h"

#define MIG_RECOVER_RETRY_MS	250
#define MIG_SETTLE_PROBE_S	5
/* Telling a destination to discard its copy: best effort, bounded. */
#define MIG_ABORT_WORD_MS	1000
#define MIG_ABORT_CANCEL_MS	300	/* ... after a signal, which ends us within 1 s */

static unsigned int mig_handover_timeout(const struct mig_src *s)
{
	return s->opts->handover_timeout_ms ? s->opts->handover_timeout_ms :
					      MIG_HANDOVER_TIMEOUT_MS;
}

/* From COMMIT of a postcopy END a cancel is refused (mig_postcopy.c). */
static bool mig_cancel_asked(const struct mig_src *s)
{
	return kvmmig_cancelled(s->opts->cancel) &&
	       !__atomic_load_n(&s->postcopy, __ATOMIC_RELAXED);
}

/* ---- the return path ---- */

/* Every channel, so that a sender blocked on a dead peer returns. */
void mig_shutdown_channels(struct mig_src *s)
{
	unsigned int i;

	pthread_mutex_lock(&s->qlock);
	for (i = 0; s->senders && i < s->nr_senders; i++)
		if (s->senders[i].chan.fd >= 0)
			shutdown(s->senders[i].chan.fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->qlock);
	shutdown(s->main.fd, SHUT_RDWR);
}

static int mig_rp_peer_error(const struct mig_src *s, const struct mig_rec *rec)
{
	struct mig_ack *ack = s->rp_buf;

	if (rec->len != sizeof(*ack)) {
		kvmmig_err("the destination sent a %u-byte ACK, expected %zu", rec->len,
			   sizeof(*ack));
		return -EPROTO;
	}
	ack->msg[sizeof(ack->msg) - 1] = '\0';
	kvmmig_err("the destination failed: %s", ack->msg[0] ? ack->msg : "(no reason given)");
	return ack->status < 0 ? ack->status : -EIO;
}

static void *mig_rp_thread(void *arg)
{
	struct mig_src *s = arg;
	struct mig_rec rec;
	bool handover, ack;
	int ret;

	/* In postcopy it reads the requests that vCPUs on the destination wait for. */
	if (s->p.postcopy_ram)
		kvmmig_thread_urgent("the return path");

	/* Its failure reaches the report through mig_src_fail() or rp_msg. */
	kvmmig_log_quiet(true);
	do {
		ret = mig_chan_recv(&s->rp_chan, &rec, s->rp_buf);
		/* Postcopy's requests are served here, never waiting on the migration thread. */
		if (!ret && __atomic_load_n(&s->postcopy, __ATOMIC_RELAXED) &&
		    (rec.type == MIG_REC_REQ || rec.type == MIG_REC_POSTCOPY_DONE)) {
			ret = mig_postcopy_rp_record(s, &rec);
			if (!ret)
				continue;
		}
		ack = !ret && rec.type == MIG_REC_ACK;
		if (ack)
			ret = mig_rp_peer_error(s, &rec);
		pthread_mutex_lock(&s->rplock);
		/* It said it failed: it has discarded, or never had, its copy. */
		s->peer_failed |= ack;
		handover = s->rp_handover;
		if (!ret && !handover) {
			kvmmig_err("the destination sent a %s record before the stream ended",
				   mig_rec_name(rec.type));
			ret = -EPROTO;
		}
		if (ret) {
			s->rp_err = ret;
			snprintf(s->rp_msg, sizeof(s->rp_msg), "%s", kvmmig_last_error());
		} else {
			s->rp_rec = rec;
			s->rp_have = true;
		}
		pthread_cond_broadcast(&s->rpcond);
		/* One answer at a time: the buffer is the migration thread's now. */
		while (s->rp_have && !s->rp_stopping)
			pthread_cond_wait(&s->rpcond, &s->rplock);
		if (s->rp_stopping)
			ret = ret ?: -ECANCELED;
		pthread_mutex_unlock(&s->rplock);
	} while (!ret);
	/*
	 * In postcopy a broken return path is a broken link: the migration
	 * pauses; after POSTCOPY_DONE the destination may close at will.
	 */
	if (!handover || (__atomic_load_n(&s->postcopy, __ATOMIC_RELAXED) &&
			  !__atomic_load_n(&s->pc_done, __ATOMIC_ACQUIRE))) {
		mig_src_fail(s, ret);
		mig_shutdown_channels(s);
	}
	return NULL;
}

int mig_rp_start(struct mig_src *s)
{
	int ret;

	/*
	 * Its own view of the main channel, for receiving only: a cancel is
	 * the migration thread's to act on, and the destination may rightly
	 * say nothing for a whole migration (TCP keepalive watches it).
	 */
	s->rp_chan = s->main;
	s->rp_chan.wait.cancel = NULL;
	s->rp_chan.idle_timeout_ms = 0;
	/* Again after a postcopy recovery: a new channel, nothing pending. */
	s->rp_have = false;
	s->rp_stopping = false;
	s->rp_err = 0;
	ret = pthread_create(&s->rp_thread, NULL, mig_rp_thread, s);
	if (ret) {
		kvmmig_err("cannot start the return-path thread: %s", strerror(ret));
		return -ret;
	}
	s->rp_started = true;
	return 0;
}

/* Sleep on rpcond (held) for 10 ms at most: deadlines and cancel are polled. */
static void mig_rp_tick(struct mig_src *s)
{
	/* rpcond runs on CLOCK_MONOTONIC (mig_cond_init_monotonic()). */
	struct timespec ts = deadline_in_ns(CLOCK_MONOTONIC, 10 * NSEC_PER_MSEC);

	pthread_cond_timedwait(&s->rpcond, &s->rplock, &ts);
}

/* Wait up to @ms for the return path to end: the destination's last word. */
void mig_rp_linger(struct mig_src *s, unsigned int ms)
{
	double until = now_s() + ms / 1000.0;

	pthread_mutex_lock(&s->rplock);
	while (s->rp_started && !s->rp_err && now_s() < until)
		mig_rp_tick(s);
	pthread_mutex_unlock(&s->rplock);
}

void mig_rp_stop(struct mig_src *s)
{
	if (!s->rp_started)
		return;
	pthread_mutex_lock(&s->rplock);
	/* From now on it fails nothing: the migration has its outcome. */
	s->rp_handover = true;
	s->rp_stopping = true;
	s->rp_have = false;
	pthread_cond_broadcast(&s->rpcond);
	pthread_mutex_unlock(&s->rplock);
	shutdown(s->main.fd, SHUT_RDWR);
	pthread_join(s->rp_thread, NULL);
	s->rp_started = false;
}

/*
 * The next answer from the destination, of type @want, within @ms.  An
 * ABORT instead of STARTED is the destination discarding its copy.
 */
static int mig_rp_wait(struct mig_src *s, uint32_t want, struct mig_handover *out,
		       unsigned int ms, bool cancellable)
{
	double until = now_s() + ms / 1000.0;
	struct mig_rec rec = { 0 };
	int ret = 0;

	pthread_mutex_lock(&s->rplock);
	while (!s->rp_have && !s->rp_err && !ret) {
		if (cancellable && mig_cancel_asked(s)) {
			kvmmig_err("migration cancelled while waiting for %s", mig_rec_name(want));
			ret = -ECANCELED;
		} else if (now_s() >= until) {
			kvmmig_err("no %s from the destination within %u ms (--handover-timeout)",
				   mig_rec_name(want), ms);
			ret = -ETIMEDOUT;
		} else {
			mig_rp_tick(s);
		}
	}
	if (!ret && s->rp_have) {
		rec = s->rp_rec;
		if (rec.len == sizeof(*out))
			memcpy(out, s->rp_buf, sizeof(*out));
		s->rp_have = false;
		pthread_cond_broadcast(&s->rpcond);
	} else if (!ret) {
		kvmmig_err("waiting for %s: %s", mig_rec_name(want), s->rp_msg);
		ret = s->rp_err;
	}
	pthread_mutex_unlock(&s->rplock);
	if (ret)
		return ret;
	ret = mig_handover_check(out, rec.len, mig_rec_name(rec.type));
	if (!ret && rec.type == MIG_REC_ABORT && want == MIG_REC_STARTED)
		ret = mig_handover_match(&s->end, out, false, "the destination's ABORT") ?:
		      -ECONNABORTED;
	else if (!ret && rec.type != want)
		ret = -EPROTO;
	if (ret == -EPROTO && rec.type != want)
		kvmmig_err("the destination answered %s, expected %s", mig_rec_name(rec.type),
			   mig_rec_name(want));
	if (ret == -ECONNABORTED)
		kvmmig_err("the destination gave up the handover and discarded its copy");
	return ret;
}

/*
 * An answer that came late on the main channel, after its wait gave up:
 * STARTED or ABORT for this handover, or 0.
 */
static int mig_rp_late(struct mig_src *s)
{
	struct mig_handover got;
	bool have;
	int ret;

	pthread_mutex_lock(&s->rplock);
	have = s->rp_have;
	pthread_mutex_unlock(&s->rplock);
	if (!have)
		return 0;
	kvmmig_log_quiet(true);
	ret = mig_rp_wait(s, MIG_REC_STARTED, &got, 0, false);
	if (!ret)
		ret = mig_handover_match(&s->end, &got, false, "the destination's STARTED");
	kvmmig_log_quiet(false);
	return !ret ? MIG_REC_STARTED : ret == -ECONNABORTED ? MIG_REC_ABORT : 0;
}

/* ---- records on the main channel, counted for END ---- */

int mig_send_tallied(struct mig_chan *c, struct mig_tally *t, uint32_t type,
		     const struct iovec *iov, int iovcnt)
{
	mig_tally_sent(t, type, c->tx_seq, iov, iovcnt);
	return mig_chan_sendv(c, type, iov, iovcnt);
}

int mig_send_main(struct mig_src *s, uint32_t type, const void *payload, uint32_t len)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	return mig_send_tallied(&s->main, &s->main_tally, type, &iov, len ? 1 : 0);
}

/* ---- re-delivering a decision on a new connection ---- */

/*
 * Connect, say @type (COMMIT or ABORT) for this handover and return the
 * destination's answer, STARTED or ABORT, all within @ms.
 */
static int mig_recover_once(struct mig_src *s, uint32_t type, unsigned int ms)
{
	struct net_wait cw = {
		.timeout_ms = s->p.connect_timeout_ms && s->p.connect_timeout_ms < ms ?
			      s->p.connect_timeout_ms : ms,
	};
	struct mig_hello h = {
		.session = s->session,
		.nr_channels = 1,
		.flags = MIG_HELLO_RECOVER,
	};
	struct mig_handover got;
	struct mig_chan c;
	struct mig_rec rec;
	void *buf;
	int fd, ret;

	buf = malloc(MIG_MAX_PAYLOAD);
	if (!buf)
		return -ENOMEM;
	fd = net_connect(s->to, &cw);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	mig_chan_init(&c, fd, 0);
	mig_chan_limit(&c, ms, NULL);
	c.idle_timeout_ms = ms;
	mig_hello_seal(&h);
	ret = s->tls ? mig_chan_start_tls(&c, s->tls, s->to, s->tls_host, NULL) : 0;
	if (!ret)
		ret = mig_chan_write(&c, &h, sizeof(h));
	if (!ret)
		ret = mig_chan_send(&c, type, &s->end, sizeof(s->end));
	if (!ret)
		ret = mig_chan_recv(&c, &rec, buf);
	if (!ret && rec.type == MIG_REC_ACK) {
		struct mig_ack *ack = buf;

		ack->msg[sizeof(ack->msg) - 1] = '\0';
		kvmmig_err("the destination refused the re-delivered %s: %s", mig_rec_name(type),
			   rec.len == sizeof(*ack) ? ack->msg : "(a malformed ACK)");
		ret = -EPROTO;
	} else if (!ret && rec.type != MIG_REC_STARTED && rec.type != MIG_REC_ABORT) {
		kvmmig_err("the destination answered the re-delivered %s with %s",
			   mig_rec_name(type), mig_rec_name(rec.type));
		ret = -EPROTO;
	} else if (!ret) {
		memcpy(&got, buf, rec.len <= sizeof(got) ? rec.len : sizeof(got));
		ret = mig_handover_check(&got, rec.len, mig_rec_name(rec.type)) ?:
		      mig_handover_match(&s->end, &got, false, mig_rec_name(rec.type)) ?:
		      (int)rec.type;
	}
	mig_chan_close(&c);
	free(buf);
	return ret;
}

/* ---- undecided: the operator settles it ---- */

static void mig_say_undecided(const struct mig_src *s)
{
	unsigned long long id = s->session;

	kvmmig_err("handover undecided (session %016llx): COMMIT was sent but the destination did not confirm it; this guest stays paused. "
		   "If `kvmmig receive` still waits on the destination, run there `kvmmig receive --settle %016llx --start`, then here `kvmmig migrate --settle %016llx --discard`; "
		   "if the destination is gone, run here `kvmmig migrate --settle %016llx --resume-source`",
		   id, id, id, id);
}

/* --resume-source: unless the destination says it runs the guest. */
static int mig_settle_resume(struct mig_src *s, int cfd)
{
	int ret = mig_recover_once(s, MIG_REC_ABORT, 2000);

	if (ret == MIG_REC_STARTED) {
		mig_settle_reply(cfd, -EBUSY, "refused: the destination runs the guest (it answered STARTED); this side's copy is discarded");
		return 0;
	}
	mig_settle_reply(cfd, 0, ret == MIG_REC_ABORT ?
			 "the source guest runs; the destination discarded its copy" :
			 "the source guest runs; the destination did not answer: if it still waits, discard its copy with `kvmmig receive --settle ... --discard`");
	s->committed = false;
	kvmmig_err("handover undecided: the operator resumed the source guest");
	return -ECONNABORTED;
}

/* 0: the destination runs the guest; -ECONNABORTED: resume here; else stay stopped. */
static int mig_settle_wait(struct mig_src *s)
{
	struct pollfd p = { .events = POLLIN };
	double probe = now_s() + MIG_SETTLE_PROBE_S;
	enum mig_settle_cmd cmd;
	int cfd, ret = 1;

	p.fd = mig_settle_listen(true, s->session);
	mig_say_undecided(s);
	while (ret > 0) {
		int late = mig_rp_late(s);

		if (late) {
			ret = late == MIG_REC_STARTED ? 0 : -ECONNABORTED;
		} else if (mig_cancel_asked(s)) {
			kvmmig_err("cancelled with the handover undecided: this side's copy is discarded; the destination may hold the guest paused (`kvmmig receive --settle %016llx --start` there)",
				   (unsigned long long)s->session);
			ret = -ECANCELED;
		} else if (now_s() >= probe) {
			/* The destination may be back: ask it again, quietly. */
			kvmmig_log_quiet(true);
			ret = mig_recover_once(s, MIG_REC_COMMIT, 1000);
			kvmmig_log_quiet(false);
			ret = ret == MIG_REC_STARTED ? 0 : ret == MIG_REC_ABORT ? -ECONNABORTED : 1;
			probe = now_s() + MIG_SETTLE_PROBE_S;
		} else if (p.fd >= 0 && poll(&p, 1, 200) == 1) {
			cfd = mig_settle_take(p.fd, s->session, &cmd);
			if (cfd < 0)
				continue;
			if (cmd == MIG_SETTLE_DISCARD) {
				mig_settle_reply(cfd, 0, "the source's copy is discarded");
				ret = 0;
			} else if (cmd == MIG_SETTLE_RESUME) {
				ret = mig_settle_resume(s, cfd);
			} else if (cmd == MIG_SETTLE_START) {
				mig_settle_reply(cfd, -EINVAL, "start is the destination's: `kvmmig receive --settle ... --start`");
			} else {
				mig_settle_reply(cfd, -EINVAL, "this source waits for an undecided handover, not in postcopy-paused: use --discard or --resume-source");
			}
			close(cfd);
		} else if (p.fd < 0) {
			usleep(200000);
		}
	}
	if (ret == -ECONNABORTED)
		s->committed = false;
	if (p.fd >= 0)
		close(p.fd);
	return ret;
}

/* COMMIT sent, STARTED not heard: say COMMIT again until it is settled. */
static int mig_redeliver_commit(struct mig_src *s)
{
	double until = now_s() + mig_handover_timeout(s) / 1000.0;
	int ret;

	kvmmig_info("handover: %s; re-delivering COMMIT", kvmmig_last_error());
	while (now_s() < until) {
		/* The answer may have come late on the main channel after all. */
		ret = mig_rp_late(s);
		if (!ret) {
			kvmmig_log_quiet(true);
			ret = mig_recover_once(s, MIG_REC_COMMIT, mig_handover_timeout(s));
			kvmmig_log_quiet(false);
		}
		if (ret == MIG_REC_STARTED)
			return 0;
		if (ret == MIG_REC_ABORT) {
			s->committed = false;
			kvmmig_err("the destination gave up the handover and discarded its copy");
			return -ECONNABORTED;
		}
		usleep(MIG_RECOVER_RETRY_MS * 1000);
	}
	return mig_settle_wait(s);
}

/* ---- the handover ---- */

static void mig_end_fill(struct mig_src *s)
{
	struct mig_handover *e = &s->end;
	unsigned int i;

	memset(e, 0, sizeof(*e));
	e->session = s->session;
	if (getrandom(&e->nonce, sizeof(e->nonce), 0) != sizeof(e->nonce))
		e->nonce = s->session ^ (uint64_t)(now_s() * 1e9) * 0x9e3779b97f4a7c15ULL;
	e->passes = s->pass;
	e->pages = s->pages_sent + s->zero_pages;
	e->nr_channels = s->nr_senders + 1;
	e->flags = s->end_flags;
	e->ch[0] = s->main_tally;
	for (i = 0; i < s->nr_senders; i++)
		e->ch[i + 1] = s->senders[i].tally;
}

int mig_handover(struct mig_src *s)
{
	unsigned int ms = mig_handover_timeout(s);
	struct mig_handover got;
	int ret;

	mig_end_fill(s);
	/* END and COMMIT go out whole: a cancel acts between them, not inside. */
	s->main.wait.cancel = NULL;
	pthread_mutex_lock(&s->rplock);
	s->rp_handover = true;
	pthread_mutex_unlock(&s->rplock);
	ret = mig_send_main(s, MIG_REC_END, &s->end, sizeof(s->end));
	if (!ret)
		ret = mig_rp_wait(s, MIG_REC_PREPARED, &got, ms, true);
	if (!ret)
		ret = mig_handover_match(&s->end, &got, true, "the destination's PREPARED");
	if (ret)
		return ret;
	/* The point of no return: from here this side never resumes on its own. */
	s->committed = true;
	if (s->end.flags & MIG_HANDOVER_POSTCOPY)
		mig_postcopy_commit(s);
	kvmmig_info("handover: the destination holds all of it, paused; COMMIT (session %016llx)",
		    (unsigned long long)s->session);
	ret = mig_send_main(s, MIG_REC_COMMIT, &s->end, sizeof(s->end));
	if (!ret)
		ret = mig_rp_wait(s, MIG_REC_STARTED, &got, ms, false);
	if (!ret)
		ret = mig_handover_match(&s->end, &got, false, "the destination's STARTED");
	if (ret == -ECONNABORTED)
		s->committed = false;
	else if (ret)
		ret = mig_redeliver_commit(s);
	return ret;
}

/*
 * The source guest runs again: make sure a destination that got END
 * discards its copy now rather than wait for a deadline.  Best effort.
 */
void mig_handover_abort(struct mig_src *s)
{
	unsigned int ms = mig_cancel_asked(s) ? MIG_ABORT_CANCEL_MS : MIG_ABORT_WORD_MS;
	struct mig_handover got;
	bool sent;
	int ret;

	/* Even after an error ACK: a forged one must not leave the destination waiting. */
	if (!s->end.session)
		return;
	kvmmig_log_quiet(true);
	sent = !mig_send_main(s, MIG_REC_ABORT, &s->end, sizeof(s->end));
	ret = sent ? mig_rp_wait(s, MIG_REC_ABORT, &got, ms, false) : -EPIPE;
	/*
	 * After a signal the budget is spent once: an ABORT that went out on
	 * a live main channel reaches the destination without our waiting.
	 */
	if (ret && !(sent && mig_cancel_asked(s)))
		mig_recover_once(s, MIG_REC_ABORT, ms);
	kvmmig_log_quiet(false);
}
