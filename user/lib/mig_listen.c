// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination's listener (see mig_listen.h): accepts connections, reads
 * their hellos side by side without blocking, each against its own
 * deadline, and hands the caller only a connection of the session it waits
 * for.  Everything else is closed and named, so a port scanner, a slow or
 * silent peer, or a second source never disturbs the migration in progress.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mig_listen.h"
#include "migrate.h"
#include "net.h"

void mig_listener_init(struct mig_listener *l)
{
	unsigned int i;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++)
		l->pend[i].fd = -1;
}

int mig_listener_open(struct mig_listener *l, const char *addr, int *port, int hello_timeout_ms)
{
	mig_listener_init(l);
	l->hello_timeout_ms = hello_timeout_ms > 0 ? hello_timeout_ms : MIG_HELLO_TIMEOUT_MS;
	l->fd = net_listen(addr, port);
	return l->fd < 0 ? l->fd : 0;
}

void mig_listener_close(struct mig_listener *l)
{
	unsigned int i;

	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++) {
		tls_sess_free(l->pend[i].tls);
		l->pend[i].tls = NULL;
		if (l->pend[i].fd >= 0)
			close(l->pend[i].fd);
		l->pend[i].fd = -1;
	}
	tls_sess_free(mig_listener_take_tls(l));
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* Close a pending connection, saying whose it was and why it was set aside. */
static void mig_ignore(struct mig_listener *l, struct mig_pending *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void mig_ignore(struct mig_listener *l, struct mig_pending *p, const char *fmt, ...)
{
	char why[240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(l->last_ignored, sizeof(l->last_ignored), "%s: %s", p->peer, why);
	l->nr_ignored++;
	kvmmig_err("ignored the connection from %s: %s", p->peer, why);
	tls_sess_free(p->tls);
	p->tls = NULL;
	close(p->fd);
	p->fd = -1;
}

struct tls_sess *mig_listener_take_tls(struct mig_listener *l)
{
	struct tls_sess *s = l->taken_tls;

	l->taken_tls = NULL;
	return s;
}

/* Tell the main channel of a source we will not serve why, as an ACK. */
static void mig_refuse_source(struct mig_pending *p, int status, const char *why)
{
	struct mig_ack ack = { .status = status };
	struct mig_chan c;

	snprintf(ack.msg, sizeof(ack.msg), "%s", why);
	mig_chan_init(&c, p->fd, 0);
	c.tls = p->tls;
	/* A peer that reads nothing cannot hold us here. */
	c.wait.timeout_ms = NET_TICK_MS;
	kvmmig_log_quiet(true);
	mig_chan_send(&c, MIG_REC_ACK, &ack, sizeof(ack));
	kvmmig_log_quiet(false);
}

static void mig_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN], port[8];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "an unknown peer");
		return;
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static struct mig_pending *mig_pending_slot(struct mig_listener *l)
{
	struct mig_pending *oldest = &l->pend[0];
	unsigned int i;

	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++) {
		if (l->pend[i].fd < 0)
			return &l->pend[i];
		if (l->pend[i].deadline < oldest->deadline)
			oldest = &l->pend[i];
	}
	/* The newest may be the good one: the oldest has had its chance. */
	mig_ignore(l, oldest, "no hello yet, and a newer connection needs its place (at most %d handshakes pending)",
		   MIG_LISTEN_MAX_PENDING);
	return oldest;
}

static int mig_pending_accept(struct mig_listener *l)
{
	struct mig_pending *p;
	int fd;

	/* The listener is readable: this does not wait. */
	fd = net_accept(l->fd, NULL, 1000, -1);
	if (fd < 0)
		return fd;
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		close(fd);
		return 0;
	}
	p = mig_pending_slot(l);
	p->fd = fd;
	p->got = 0;
	p->events = POLLIN;
	p->deadline = now_s() + l->hello_timeout_ms / 1000.0;
	mig_peer_name(fd, p->peer, sizeof(p->peer));
	if (l->tls && tls_sess_start(l->tls, fd, p->peer, NULL, &p->tls))
		mig_ignore(l, p, "%s", kvmmig_last_error());
	return 0;
}

enum { HELLO_IGNORED, HELLO_WANTED, HELLO_PARKED };

/*
 * A complete hello: HELLO_WANTED if it is what @w waits for; HELLO_PARKED
 * for a page channel that came before its main channel (their hellos race)
 * and is kept, until its deadline, for when that session starts; else the
 * connection is set aside (a main channel we cannot serve is told why).
 */
static int mig_hello_wanted(struct mig_listener *l, struct mig_pending *p,
			    const struct mig_want *w)
{
	const struct mig_hello *h = &p->h;
	int ret;

	/*
	 * A source re-delivering its handover decision (handover.rst), or
	 * a channel of a postcopy's new link (postcopy.rst).
	 */
	if (w->recover && (h->flags & MIG_HELLO_RECOVER)) {
		bool pc = h->flags & MIG_HELLO_POSTCOPY;

		kvmmig_log_quiet(true);
		ret = mig_hello_check_recover(h);
		kvmmig_log_quiet(false);
		if (!ret && h->session == w->session &&
		    (!pc || (w->postcopy && h->nr_channels == w->nr_channels)))
			return HELLO_WANTED;
		if (!ret && pc && h->session == w->session)
			mig_ignore(l, p, "channel %u of %u of a postcopy recovery of session %016llx, expected %s",
				   h->channel, h->nr_channels, (unsigned long long)h->session,
				   w->postcopy ? "the session's number of channels" :
						 "none: this session is not in postcopy");
		else
			mig_ignore(l, p, "a recovery connection of session %016llx, expected session %016llx%s%s",
				   (unsigned long long)h->session, (unsigned long long)w->session,
				   ret ? ": " : "", ret ? kvmmig_last_error() : "");
		return HELLO_IGNORED;
	}
	kvmmig_log_quiet(true);
	ret = mig_hello_check(h);
	kvmmig_log_quiet(false);
	if (ret) {
		if (ret == -EPROTONOSUPPORT && !h->channel)
			mig_refuse_source(p, ret, kvmmig_last_error());
		mig_ignore(l, p, "%s", kvmmig_last_error());
		return HELLO_IGNORED;
	}
	if (w->new_session)
		return h->channel ? HELLO_PARKED : HELLO_WANTED;
	if (!h->channel) {
		char why[160];

		snprintf(why, sizeof(why),
			 "the destination is busy: it receives another migration (session %016llx)",
			 (unsigned long long)w->session);
		mig_refuse_source(p, -EBUSY, why);
		mig_ignore(l, p, "a second source (session %016llx) while receiving session %016llx",
			   (unsigned long long)h->session, (unsigned long long)w->session);
		return HELLO_IGNORED;
	}
	if (h->session != w->session || h->nr_channels != w->nr_channels) {
		mig_ignore(l, p, "channel %u of %u of session %016llx, expected one of %u of session %016llx",
			   h->channel, h->nr_channels, (unsigned long long)h->session,
			   w->nr_channels, (unsigned long long)w->session);
		return HELLO_IGNORED;
	}
	if (w->taken[h->channel]) {
		mig_ignore(l, p, "channel %u of session %016llx is already connected",
			   h->channel, (unsigned long long)h->session);
		return HELLO_IGNORED;
	}
	return HELLO_WANTED;
}

/* Its hello is complete (it is parked until its main channel comes). */
static bool mig_pending_parked(const struct mig_pending *p)
{
	return p->got == sizeof(p->h);
}

/* Hand @p's connection (and its TLS session) over, blocking again. */
static int mig_pending_take(struct mig_listener *l, struct mig_pending *p)
{
	int fd = p->fd;

	l->taken_tls = p->tls;
	p->tls = NULL;
	p->fd = -1;
	fcntl(fd, F_SETFL, 0);
	return fd;
}

/*
 * Some of @p's hello: through its TLS session (which may hold whole
 * records poll() cannot see: read until it has nothing) or the socket.
 * The count, 0 at a close, -EAGAIN, or -errno with the message in
 * kvmmig_last_error().
 */
static ssize_t mig_pending_recv(struct mig_pending *p)
{
	ssize_t n, got = 0;
	int ret;

	if (!p->tls) {
		n = read(p->fd, (char *)&p->h + p->got, sizeof(p->h) - p->got);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return -EAGAIN;
		if (n < 0) {
			ret = -errno;
			kvmmig_log_quiet(true);
			kvmmig_err("receive failed: %s", strerror(-ret));
			kvmmig_log_quiet(false);
			return ret;
		}
		return n;
	}
	kvmmig_log_quiet(true);
	ret = tls_sess_step(p->tls, &p->events);
	while (!ret && p->got + got < sizeof(p->h)) {
		n = tls_sess_recv_some(p->tls, (char *)&p->h + p->got + got,
				       sizeof(p->h) - p->got - got, &p->events);
		if (n <= 0) {
			ret = n ? n : (got ? 0 : -ECONNRESET);
			break;
		}
		got += n;
	}
	kvmmig_log_quiet(false);
	if (got)
		return got;
	return ret == -ECONNRESET ? 0 : ret ? ret : -EAGAIN;
}

/* Read what has come of @p's hello; its fd if it is complete and wanted. */
static int mig_pending_read(struct mig_listener *l, struct mig_pending *p,
			    const struct mig_want *w)
{
	ssize_t n;

	n = mig_pending_recv(p);
	if (n == -EAGAIN)
		return -EAGAIN;
	if (n < 0) {
		mig_ignore(l, p, "%s", kvmmig_last_error());
		return -EAGAIN;
	}
	if (!n) {
		mig_ignore(l, p, "closed after %zu of %zu hello bytes", p->got, sizeof(p->h));
		return -EAGAIN;
	}
	p->got += n;
	if (p->got < sizeof(p->h) || mig_hello_wanted(l, p, w) != HELLO_WANTED)
		return -EAGAIN;
	return mig_pending_take(l, p);
}

/* A parked page channel whose session @w now waits for, or -EAGAIN. */
static int mig_parked_take(struct mig_listener *l, const struct mig_want *w, struct mig_hello *h)
{
	unsigned int i;

	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++) {
		struct mig_pending *p = &l->pend[i];

		if (p->fd >= 0 && mig_pending_parked(p) && mig_hello_wanted(l, p, w) == HELLO_WANTED) {
			*h = p->h;
			return mig_pending_take(l, p);
		}
	}
	return -EAGAIN;
}

static void mig_pending_expire(struct mig_listener *l, double now)
{
	unsigned int i;

	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++) {
		struct mig_pending *p = &l->pend[i];

		if (p->fd < 0 || now < p->deadline)
			continue;
		if (mig_pending_parked(p))
			mig_ignore(l, p, "channel %u of session %016llx, whose main channel did not come within the hello deadline of %d ms",
				   p->h.channel, (unsigned long long)p->h.session, l->hello_timeout_ms);
		else
			mig_ignore(l, p, "%zu of %zu hello bytes within the hello deadline of %d ms",
				   p->got, sizeof(p->h), l->hello_timeout_ms);
	}
}

/* How long poll() may sleep: until the next deadline, at most 100 ms (cancel). */
static int mig_poll_ms(const struct mig_listener *l, double now, double end)
{
	double t = now + 0.1;
	unsigned int i;

	if (end >= 0 && end < t)
		t = end;
	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++)
		if (l->pend[i].fd >= 0 && l->pend[i].deadline < t)
			t = l->pend[i].deadline;
	return t > now ? (int)((t - now) * 1000) + 1 : 0;
}

int mig_listener_next(struct mig_listener *l, const struct mig_want *w, struct mig_hello *h,
		      int timeout_ms, const volatile sig_atomic_t *cancel, int watch_fd)
{
	double now = now_s(), end = timeout_ms >= 0 ? now + timeout_ms / 1000.0 : -1;
	struct pollfd pfd[2 + MIG_LISTEN_MAX_PENDING];
	struct mig_pending *slot[MIG_LISTEN_MAX_PENDING];
	unsigned int i, n;
	int ret, fd;
	bool busy;

	fd = mig_parked_take(l, w, h);
	if (fd >= 0)
		return fd;
	for (;;) {
		if (kvmmig_cancelled(cancel)) {
			kvmmig_err("cancelled while waiting for a connection");
			return -ECANCELED;
		}
		if (end >= 0 && now >= end) {
			kvmmig_err("no valid connection within %d ms", timeout_ms);
			return -ETIMEDOUT;
		}
		pfd[0] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
		/* Only a hang-up: data on it is the caller's, read later. */
		pfd[1] = (struct pollfd){ .fd = watch_fd, .events = POLLRDHUP };
		for (i = 0, n = 2; i < MIG_LISTEN_MAX_PENDING; i++) {
			/* A parked one is not read on: what follows its hello waits. */
			if (l->pend[i].fd < 0 || mig_pending_parked(&l->pend[i]))
				continue;
			slot[n - 2] = &l->pend[i];
			pfd[n++] = (struct pollfd){ .fd = l->pend[i].fd, .events = l->pend[i].events };
		}
		ret = poll(pfd, n, mig_poll_ms(l, now, end));
		if (ret < 0 && errno != EINTR) {
			kvmmig_err("poll on the listening socket failed: %s", strerror(errno));
			return -errno;
		}
		busy = false;
		for (i = 2; ret > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			busy = true;
			fd = mig_pending_read(l, slot[i - 2], w);
			if (fd >= 0) {
				*h = slot[i - 2]->h;
				return fd;
			}
		}
		if (ret > 0 && pfd[0].revents) {
			busy = true;
			fd = mig_pending_accept(l);
			if (fd < 0)
				return fd;
		}
		/*
		 * The hang-up last: a connection that came before it (a page
		 * channel the source gave up on) is judged and named first.
		 */
		if (ret > 0 && watch_fd >= 0 && pfd[1].revents && !busy)
			return -ECONNRESET;
		now = now_s();
		/*
		 * Deadlines only after a poll: a hello that arrived while the
		 * caller was away (creating the guest on a loaded host, say) is
		 * read before its connection can be judged too slow.
		 */
		mig_pending_expire(l, now);
	}
}

int mig_listener_thread_start(struct mig_listener_thread *t, void *(*fn)(void *), void *arg,
			      const char *what)
{
	int ret;

	if (pipe2(t->stop, O_CLOEXEC) < 0) {
		ret = -errno;
		kvmmig_err("cannot make the stop pipe of the %s: %s", what, strerror(errno));
		return ret;
	}
	ret = -pthread_create(&t->thread, NULL, fn, arg);
	if (ret) {
		kvmmig_err("cannot start the %s: %s", what, strerror(-ret));
		return ret;
	}
	t->started = true;
	return 0;
}

void mig_listener_thread_stop(struct mig_listener_thread *t)
{
	unsigned int i;

	if (t->stop[1] >= 0)
		close(t->stop[1]);
	t->stop[1] = -1;
	if (t->started)
		pthread_join(t->thread, NULL);
	t->started = false;
	for (i = 0; i < 2; i++) {
		if (t->stop[i] >= 0)
			close(t->stop[i]);
		t->stop[i] = -1;
	}
}
