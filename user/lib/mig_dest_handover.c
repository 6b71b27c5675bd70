// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination's half of the handover (Documentation/handover.rst):
 * with the whole guest here and its vCPU state loaded, answer PREPARED and
 * wait for the decision: COMMIT or ABORT on the main channel, or on a new
 * connection if the source had to reconnect (an answer thread owns the
 * listener from PREPARED on and takes those), or, after the deadline, an
 * operator's settle command.  COMMIT starts the guest (the VMM's resume)
 * and is answered STARTED, also to every later re-delivery; ABORT
 * discards this copy.  A failure is told to the source here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mig_dest_internal.h"

enum mig_decision { DECIDE_WAIT, DECIDE_START, DECIDE_DISCARD };

/* Each read and write of a recovery connection: a stray one holds nothing up. */
#define MIG_RECOVERY_IO_MS	1000

static unsigned int mig_dest_handover_timeout(const struct mig_dst *d)
{
	return d->opts->handover_timeout_ms ? d->opts->handover_timeout_ms :
					      MIG_HANDOVER_TIMEOUT_MS;
}

/* One record from @c that decides this handover: COMMIT or ABORT, or -errno. */
static int mig_dest_read_decision(struct mig_dst *d, struct mig_chan *c, void *buf)
{
	struct mig_rec rec;
	int ret;

	ret = mig_chan_recv(c, &rec, buf);
	if (ret)
		return ret;
	if (rec.type != MIG_REC_COMMIT && rec.type != MIG_REC_ABORT) {
		kvmmig_err("a %s record where COMMIT or ABORT was expected",
			   mig_rec_name(rec.type));
		return -EPROTO;
	}
	ret = mig_handover_check(buf, rec.len, mig_rec_name(rec.type));
	if (!ret)
		ret = mig_handover_match(&d->end, buf, false, mig_rec_name(rec.type));
	return ret ? ret : (int)rec.type;
}

/*
 * The record of a recovery connection (the listener checked its hello: a
 * MIG_HELLO_RECOVER of this session): COMMIT or ABORT of this handover.
 */
static int mig_dest_recovery_take(struct mig_dst *d, int fd, struct mig_chan *c, void *buf)
{
	int ret;

	mig_chan_init(c, fd, 0);
	c->tls = mig_listener_take_tls(&d->lis);
	mig_chan_limit(c, MIG_RECOVERY_IO_MS, NULL);
	c->idle_timeout_ms = MIG_RECOVERY_IO_MS;
	kvmmig_log_quiet(true);
	ret = mig_dest_read_decision(d, c, buf);
	kvmmig_log_quiet(false);
	if (ret < 0)
		kvmmig_info("turned away a recovery connection: %s", kvmmig_last_error());
	return ret;
}

/* Answer @type (STARTED, ABORT) for this handover on @c, best effort. */
static void mig_dest_answer(struct mig_dst *d, struct mig_chan *c, uint32_t type)
{
	int ret;

	if (c->fd < 0)
		return;
	/* Postcopy's requests go out on the main channel as soon as the guest runs. */
	if (c == &d->main)
		mig_dest_postcopy_send_lock(d);
	ret = mig_chan_send(c, type, &d->end, sizeof(d->end));
	if (c == &d->main)
		mig_dest_postcopy_send_unlock(d);
	if (ret)
		kvmmig_info("could not answer %s: %s", mig_rec_name(type), kvmmig_last_error());
}

/* A re-delivered decision, passed from the answer thread to the main thread. */
struct mig_recovered {
	int type;		/* MIG_REC_COMMIT or MIG_REC_ABORT */
	struct mig_chan chan;	/* to answer on */
};

/*
 * From PREPARED until we exit, this thread owns the listener: it takes
 * recovery connections (anything else is set aside, a second source told
 * the destination is busy) and reads their decision.  Before the guest
 * starts it passes them to the main thread; once it runs, it answers
 * STARTED itself, whatever the source asks.
 */
static void *mig_dest_answer_thread(void *arg)
{
	struct mig_dst *d = arg;
	bool taken[MIG_MAX_CHANNELS];
	const struct mig_want w = {
		.recover = true,
		.postcopy = d->pc,
		.session = d->hello.session,
		.nr_channels = d->hello.nr_channels,
		.taken = taken,
	};
	struct mig_recovered r;
	void *buf = malloc(MIG_MAX_PAYLOAD);
	struct mig_hello h;
	int fd;

	memset(taken, true, sizeof(taken));
	while (buf && (fd = mig_listener_next(&d->lis, &w, &h, -1, NULL, d->answer.stop[0])) >= 0) {
		if (h.flags & MIG_HELLO_POSTCOPY) {
			mig_dest_postcopy_offer(d, fd, mig_listener_take_tls(&d->lis), &h);
			continue;
		}
		r.type = mig_dest_recovery_take(d, fd, &r.chan, buf);
		if (r.type > 0 && __atomic_load_n(&d->started, __ATOMIC_ACQUIRE)) {
			mig_dest_answer(d, &r.chan, MIG_REC_STARTED);
		} else if (r.type > 0 && write(d->recovered[1], &r, sizeof(r)) == sizeof(r)) {
			continue;	/* the main thread answers and closes it */
		}
		mig_chan_close(&r.chan);
	}
	free(buf);
	return NULL;
}

static int mig_dest_answer_start(struct mig_dst *d)
{
	int ret;

	if (pipe2(d->recovered, O_CLOEXEC)) {
		ret = -errno;
		kvmmig_err("cannot make the handover's pipe: %s", strerror(errno));
		return ret;
	}
	return mig_listener_thread_start(&d->answer, mig_dest_answer_thread, d,
					 "handover's answer thread");
}

void mig_dest_answer_stop(struct mig_dst *d)
{
	struct mig_recovered r;
	unsigned int i;

	mig_listener_thread_stop(&d->answer);
	/* Decisions nobody took: their sources ask again, or are answered here. */
	if (d->recovered[1] >= 0)
		close(d->recovered[1]);
	while (d->recovered[0] >= 0 && read(d->recovered[0], &r, sizeof(r)) == sizeof(r))
		mig_chan_close(&r.chan);
	for (i = 0; i < 2; i++) {
		if (d->recovered[i] >= 0)
			close(d->recovered[i]);
		d->recovered[i] = -1;
	}
}

static void mig_dest_say_undecided(const struct mig_dst *d, unsigned int ms)
{
	unsigned long long id = d->hello.session;

	kvmmig_err("handover undecided (session %016llx): the guest is here, complete and paused, but neither COMMIT nor ABORT came within %u ms. "
		   "If `kvmmig migrate` still waits on the source, run here `kvmmig receive --settle %016llx --start`, then there `kvmmig migrate --settle %016llx --discard`; "
		   "if the source guest runs, run here `kvmmig receive --settle %016llx --discard`",
		   id, ms, id, id, id);
}

/* A settle command: its decision, with the connection to answer on. */
static enum mig_decision mig_dest_settle_take(struct mig_dst *d, int sfd, int *cfd)
{
	enum mig_settle_cmd cmd;

	*cfd = mig_settle_take(sfd, d->hello.session, &cmd);
	if (*cfd < 0)
		return DECIDE_WAIT;
	if (cmd == MIG_SETTLE_START)
		return DECIDE_START;
	if (cmd == MIG_SETTLE_DISCARD)
		return DECIDE_DISCARD;
	mig_settle_reply(*cfd, -EINVAL, "resume-source is the source's: `kvmmig migrate --settle ... --resume-source`");
	close(*cfd);
	*cfd = -1;
	return DECIDE_WAIT;
}

/* A record or a connection on @p: the decision it brings, answered on @c. */
static enum mig_decision mig_dest_poll_one(struct mig_dst *d, struct pollfd *p, bool is_main,
					   struct mig_chan *c)
{
	int ret;

	if (is_main) {
		ret = mig_dest_read_decision(d, &d->main, d->buf);
		if (ret < 0) {
			kvmmig_info("the main channel is gone after PREPARED (%s): waiting for the source to re-deliver its decision",
				    kvmmig_last_error());
			p->fd = -1;
			return DECIDE_WAIT;
		}
		c->fd = d->main.fd;
	} else {
		struct mig_recovered r;

		if (read(p->fd, &r, sizeof(r)) != sizeof(r))
			return DECIDE_WAIT;
		*c = r.chan;
		c->wait.what = c->name;
		ret = r.type;
	}
	return ret == MIG_REC_COMMIT ? DECIDE_START : DECIDE_DISCARD;
}

/*
 * Wait for the decision: COMMIT or ABORT on the main channel or a recovery
 * connection within the deadline; after it, also a settle command.
 */
static enum mig_decision mig_dest_await(struct mig_dst *d, struct mig_chan *c, int *cfd)
{
	unsigned int ms = mig_dest_handover_timeout(d);
	double until = now_s() + ms / 1000.0;
	struct pollfd p[3] = {
		{ .fd = d->main.fd, .events = POLLIN },
		{ .fd = d->recovered[0], .events = POLLIN },
		{ .fd = -1, .events = POLLIN },
	};
	enum mig_decision dec = DECIDE_WAIT;

	while (dec == DECIDE_WAIT) {
		if (kvmmig_cancelled(d->opts->cancel)) {
			kvmmig_err("cancelled during the handover: this copy of the guest is discarded; if the source did not hear it, resume it there with `kvmmig migrate --settle %016llx --resume-source`",
				   (unsigned long long)d->hello.session);
			break;
		}
		if (p[2].fd == -1 && now_s() >= until) {
			mig_dest_say_undecided(d, ms);
			p[2].fd = mig_settle_listen(false, d->hello.session);
			if (p[2].fd < 0)
				p[2].fd = -2;	/* not again: poll ignores it */
		}
		if (poll(p, 3, 200) <= 0)
			continue;
		if (p[0].revents)
			dec = mig_dest_poll_one(d, &p[0], true, c);
		else if (p[1].revents)
			dec = mig_dest_poll_one(d, &p[1], false, c);
		else if (p[2].revents)
			dec = mig_dest_settle_take(d, p[2].fd, cfd);
	}
	if (p[2].fd >= 0)
		close(p[2].fd);
	return dec;
}

int mig_dest_handover(struct mig_dst *d)
{
	struct mig_chan c = { .fd = -1 }, *ac;
	enum mig_decision dec;
	int cfd = -1, ret;

	/* The listener is the answer thread's from now on: recovery connections. */
	mig_listener_thread_stop(&d->gate);
	ret = mig_dest_answer_start(d);
	if (ret)
		return ret;
	if (mig_chan_send(&d->main, MIG_REC_PREPARED, &d->own, sizeof(d->own)))
		kvmmig_info("PREPARED could not be sent (%s): waiting for the source to reconnect",
			    kvmmig_last_error());
	d->prepared = true;
	dec = mig_dest_await(d, &c, &cfd);
	if (dec == DECIDE_WAIT)
		return -ECANCELED;
	/* The answer goes where the decision came from. */
	ac = c.fd == d->main.fd ? &d->main : &c;
	if (dec == DECIDE_DISCARD) {
		d->source_aborted = true;
		if (cfd >= 0)
			mig_settle_reply(cfd, 0, "this copy of the guest is discarded");
		else
			mig_dest_answer(d, ac, MIG_REC_ABORT);
		kvmmig_err(cfd >= 0 ? "the operator discarded this copy of the guest" :
			   "the source aborted the handover and runs its guest on: this copy is discarded");
		ret = -ECONNABORTED;
	} else {
		ret = kvmmig_vm_resume(d->vm);
		if (!ret) {
			__atomic_store_n(&d->started, true, __ATOMIC_RELEASE);
			if (cfd >= 0)
				mig_settle_reply(cfd, 0, "the guest runs on the destination");
			else
				mig_dest_answer(d, ac, MIG_REC_STARTED);
		} else if (cfd >= 0) {
			mig_settle_reply(cfd, ret, kvmmig_last_error());
		}
	}
	if (cfd >= 0)
		close(cfd);
	if (c.fd >= 0 && c.fd != d->main.fd)
		mig_chan_close(&c);
	return ret;
}

/*
 * A failure, told to the source: before PREPARED an ACK with the reason;
 * after it an ABORT for this handover, which a committed source also
 * trusts (it carries the nonce): this copy is discarded, resume yours.
 */
void mig_send_ack(struct mig_dst *d, int status)
{
	struct mig_ack ack = { .status = status };

	/* Once the guest ran here (postcopy), there is no copy to discard. */
	if (d->main.fd < 0 || d->source_aborted || __atomic_load_n(&d->started, __ATOMIC_ACQUIRE))
		return;
	/* Said even after a cancel, briefly: the source waits for it. */
	d->main.wait.cancel = NULL;
	d->main.wait.timeout_ms = 1000;
	if (d->prepared) {
		mig_dest_answer(d, &d->main, MIG_REC_ABORT);
		return;
	}
	snprintf(ack.msg, sizeof(ack.msg), "%s", kvmmig_last_error());
	mig_chan_send(&d->main, MIG_REC_ACK, &ack, sizeof(ack));
}
