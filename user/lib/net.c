// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP plumbing for migration (see net.h).  Sends use MSG_NOSIGNAL so a
 * destination that dies gives the source -EPIPE, not SIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "csum.h"
#include "log.h"
#include "net.h"

int net_parse_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *h, *colon;
	size_t n;

	if (strncmp(addr, "tcp:", 4))
		goto bad;
	h = addr + 4;
	if (*h == '[') {
		const char *end = strchr(h, ']');

		if (!end || end[1] != ':')
			goto bad;
		n = end - h - 1;
		h++;
		colon = end + 1;
	} else {
		colon = strrchr(h, ':');
		if (!colon)
			goto bad;
		n = colon - h;
	}
	if (n >= hlen || !colon[1] || strlen(colon + 1) >= plen)
		goto bad;
	/* getaddrinfo() would take 99999 modulo 65536: a port is checked here. */
	if (strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5 ||
	    strtoul(colon + 1, NULL, 10) > 65535) {
		kvmmig_err("address '%s': port '%s' is not a number from 0 to 65535", addr,
			   colon + 1);
		return -EINVAL;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
bad:
	kvmmig_err("address '%s': expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:4444", addr);
	return -EINVAL;
}

static int net_resolve(const char *addr, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = passive ? AI_PASSIVE : 0,
	};
	char host[256], port[16];
	int ret;

	ret = net_parse_addr(addr, host, sizeof(host), port, sizeof(port));
	if (ret)
		return ret;
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (ret) {
		kvmmig_err("cannot resolve %s: %s", addr, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	return 0;
}

/*
 * Big buffers for throughput; keepalive so that a quiet channel whose peer
 * host or link died is noticed (about 20 s); TCP_USER_TIMEOUT so that data
 * nobody acknowledges (a peer gone without a reset reaching us, a zero
 * window that never opens) fails the connection instead of retrying for
 * many minutes.
 */
static void net_tune(int fd)
{
	int one = 1, buf = 4 << 20, idle = 10, intvl = 3, cnt = 3;
	unsigned int user_timeout = NET_IO_TIMEOUT_MS;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

static bool net_cancelled(const struct net_wait *w)
{
	return w && kvmmig_cancelled(w->cancel);
}

int net_poll(int fd, short events, const struct net_wait *w, int64_t deadline, int limit_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	const char *what = w && w->what ? w->what : "the peer";
	int64_t left;
	int tick;

	for (;;) {
		left = deadline ? deadline - now_ms() : NET_TICK_MS;
		tick = left < 0 ? 0 : left < NET_TICK_MS ? (int)left : NET_TICK_MS;
		/*
		 * Readiness first: what has completed (a connection the peer
		 * already took) wins over a cancel that came at the same time.
		 * An error or hang-up shows as readiness: the I/O call says which.
		 */
		if (poll(&pfd, 1, tick) > 0)
			return 0;
		if (net_cancelled(w)) {
			kvmmig_err("cancelled while waiting on %s", what);
			return -ECANCELED;
		}
		if (deadline && now_ms() >= deadline) {
			kvmmig_err("%s: no progress for %.1f s, giving up", what, limit_ms / 1000.0);
			return -ETIMEDOUT;
		}
	}
}

int64_t net_deadline(const struct net_wait *w)
{
	return w && w->timeout_ms > 0 ? now_ms() + w->timeout_ms : 0;
}

int net_listen(const char *addr, int *port_out)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res;
	int fd, one = 1, ret;

	ret = net_resolve(addr, true, &res);
	if (ret)
		return ret;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto err;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0)
		goto err;
	freeaddrinfo(res);
	if (port_out && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*port_out = ntohs(ss.ss_family == AF_INET6 ?
				  ((struct sockaddr_in6 *)&ss)->sin6_port :
				  ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
err:
	ret = -errno;
	kvmmig_err("cannot listen on %s: %s", addr, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return ret;
}

int net_accept(int lfd, const volatile sig_atomic_t *cancel, int timeout_ms, int watch_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = lfd, .events = POLLIN },
		/* Only a hang-up: data on it is the caller's, read later. */
		{ .fd = watch_fd, .events = POLLRDHUP },
	};
	int waited = 0, fd;

	for (;;) {
		if (kvmmig_cancelled(cancel)) {
			kvmmig_err("cancelled while waiting on a connection");
			return -ECANCELED;
		}
		if (timeout_ms >= 0 && waited >= timeout_ms) {
			kvmmig_err("no connection within %d ms", timeout_ms);
			return -ETIMEDOUT;
		}
		if (poll(pfd, watch_fd >= 0 ? 2 : 1, 100) > 0) {
			if (pfd[0].revents)
				break;
			if (pfd[1].revents) {
				kvmmig_err("the peer closed its connection while a new one was awaited");
				return -ECONNRESET;
			}
		}
		waited += 100;
	}
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		kvmmig_err("accept failed: %s", strerror(errno));
		return -errno;
	}
	net_tune(fd);
	return fd;
}

/* connect() that gives up at @deadline or on cancel: a non-blocking connect. */
static int net_connect_one(const struct addrinfo *ai, const struct net_wait *w, int64_t deadline)
{
	socklen_t len = sizeof(int);
	int fd, err, flags;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		err = -errno;
		goto fail;
	}
	err = net_poll(fd, POLLOUT, w, deadline, w->timeout_ms);
	if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (err > 0)
		err = -err;
	if (err)
		goto fail;
	flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return err;
}

int net_connect(const char *addr, const struct net_wait *w)
{
	struct net_wait dflt = { .timeout_ms = NET_CONNECT_TIMEOUT_MS };
	struct net_wait cw = w ? *w : dflt;
	struct addrinfo *res, *ai;
	int64_t deadline;
	int fd = -EHOSTUNREACH, ret;
	char what[300];

	ret = net_resolve(addr, false, &res);
	if (ret)
		return ret;
	snprintf(what, sizeof(what), "a connection to %s", addr);
	cw.what = what;
	deadline = net_deadline(&cw);
	for (ai = res; ai; ai = ai->ai_next) {
		fd = net_connect_one(ai, &cw, deadline);
		if (fd >= 0 || fd == -ETIMEDOUT || fd == -ECANCELED)
			break;
	}
	freeaddrinfo(res);
	if (fd == -ETIMEDOUT || fd == -ECANCELED)
		return fd;	/* net_poll() said so */
	if (fd < 0) {
		kvmmig_err("cannot connect to %s: %s", addr, strerror(-fd));
		return fd;
	}
	net_tune(fd);
	return fd;
}

/* Step @iov past @n bytes done; the buffers left. */
static int net_iov_advance(struct iovec **iov, int iovcnt, size_t n)
{
	while (iovcnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		iovcnt--;
	}
	if (iovcnt > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
	return iovcnt;
}

/*
 * Sends never block in the kernel: MSG_DONTWAIT, and net_poll() between
 * attempts, so that a peer that stops reading meets the deadline and a
 * cancel is seen within a tick.
 */
int net_writev_all(int fd, struct iovec *iov, int iovcnt, const struct net_wait *w)
{
	struct msghdr msg = { 0 };
	int64_t deadline = net_deadline(w);
	ssize_t n;
	int ret;

	while (iovcnt > 0) {
		msg.msg_iov = iov;
		msg.msg_iovlen = iovcnt;
		n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				kvmmig_err("send failed: %s", strerror(errno));
				return -errno;
			}
			ret = net_poll(fd, POLLOUT, w, deadline, w ? w->timeout_ms : 0);
			if (ret)
				return ret;
			continue;
		}
		deadline = net_deadline(w);
		iovcnt = net_iov_advance(&iov, iovcnt, n);
	}
	return 0;
}

int net_write_all(int fd, const void *buf, size_t len, const struct net_wait *w)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return net_writev_all(fd, &iov, 1, w);
}

static ssize_t net_recv_plain(void *ctx, void *buf, size_t len, short *events)
{
	int fd = *(int *)ctx;
	ssize_t n;

	do {
		n = recv(fd, buf, len, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	n = -errno;
	if (n == -EAGAIN) {
		*events = POLLIN;
		return n;
	}
	kvmmig_err("receive failed: %s", strerror(-n));
	return n;
}

int net_read_with(int fd, net_recv_fn recv_some, void *ctx, void *buf, size_t len,
		  const struct net_wait *w, int first_ms)
{
	int64_t deadline = first_ms > 0 ? now_ms() + first_ms : 0;
	int limit_ms = first_ms;
	short events = POLLIN;
	size_t got = 0;
	ssize_t n;
	int ret;

	while (got < len) {
		n = recv_some(ctx, (char *)buf + got, len - got, &events);
		if (n == -EAGAIN) {
			ret = net_poll(fd, events, w, deadline, limit_ms);
			if (ret)
				return ret;
			continue;
		}
		if (n < 0)
			return n;
		if (n == 0) {
			kvmmig_err("connection closed by the peer (%zu of %zu bytes received)",
				   got, len);
			return -ECONNRESET;
		}
		got += n;
		deadline = net_deadline(w);
		limit_ms = w ? w->timeout_ms : 0;
	}
	return 0;
}

/* Read @len bytes; the first may take @first_ms (0: no limit). */
static int net_read_from(int fd, void *buf, size_t len, const struct net_wait *w, int first_ms)
{
	return net_read_with(fd, net_recv_plain, &fd, buf, len, w, first_ms);
}

int net_read_all(int fd, void *buf, size_t len, const struct net_wait *w)
{
	return net_read_from(fd, buf, len, w, w ? w->timeout_ms : 0);
}

void mig_chan_set_index(struct mig_chan *c, unsigned int index)
{
	c->index = index;
	if (index)
		snprintf(c->name, sizeof(c->name), "multifd channel %u", index);
	else
		snprintf(c->name, sizeof(c->name), "main channel");
	c->wait.what = c->name;
}

void mig_chan_init(struct mig_chan *c, int fd, unsigned int index)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->wait.timeout_ms = NET_IO_TIMEOUT_MS;
	mig_chan_set_index(c, index);
}

void mig_chan_limit(struct mig_chan *c, int io_timeout_ms, const volatile sig_atomic_t *cancel)
{
	unsigned int user_timeout = io_timeout_ms;

	c->wait.timeout_ms = io_timeout_ms;
	c->wait.cancel = cancel;
	setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

int mig_chan_start_tls(struct mig_chan *c, struct tls_creds *creds, const char *peer,
		       const char *hostname, const struct net_wait *wait)
{
	struct net_wait w = wait ? *wait : c->wait;
	char what[160];

	snprintf(what, sizeof(what), "the TLS handshake with %s", peer);
	w.what = what;
	return tls_sess_handshake(creds, c->fd, peer, hostname, &w, &c->tls);
}

void mig_chan_close(struct mig_chan *c)
{
	tls_sess_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The transport hook: TLS (GnuTLS's record layer or kTLS), or the plain socket. */
static int mig_chan_writev_all(struct mig_chan *c, struct iovec *iov, int iovcnt)
{
	if (c->tls)
		return tls_sess_writev_all(c->tls, iov, iovcnt, &c->wait);
	return net_writev_all(c->fd, iov, iovcnt, &c->wait);
}

static int mig_chan_read_from(struct mig_chan *c, void *buf, size_t len,
			      const struct net_wait *w, int first_ms)
{
	if (c->tls)
		return tls_sess_read_all(c->tls, buf, len, w, first_ms);
	return net_read_from(c->fd, buf, len, w, first_ms);
}

int mig_chan_read(struct mig_chan *c, void *buf, size_t len, const struct net_wait *w)
{
	return mig_chan_read_from(c, buf, len, w, w ? w->timeout_ms : 0);
}

int mig_chan_write(struct mig_chan *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return mig_chan_writev_all(c, &iov, 1);
}

int mig_chan_writev(struct mig_chan *c, struct iovec *iov, int iovcnt)
{
	return mig_chan_writev_all(c, iov, iovcnt);
}

int mig_chan_sendv(struct mig_chan *c, uint32_t type, const struct iovec *iov, int iovcnt)
{
	struct iovec v[MIG_MAX_BATCH + 4];
	struct mig_rec rec;
	uint32_t len = 0, crc = 0;
	int i, ret;

	if (iovcnt > MIG_MAX_BATCH + 3)
		return -E2BIG;
	for (i = 0; i < iovcnt; i++) {
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
		v[i + 1] = iov[i];
	}
	rec.type = type;
	rec.len = len;
	rec.seq = c->tx_seq++;
	rec.crc = crc;
	rec.hcrc = crc32c(0, &rec, offsetof(struct mig_rec, hcrc));
	v[0].iov_base = &rec;
	v[0].iov_len = sizeof(rec);
	ret = mig_chan_writev_all(c, v, iovcnt + 1);
	if (!ret)
		c->tx_bytes += sizeof(rec) + len;
	return ret;
}

int mig_chan_send(struct mig_chan *c, uint32_t type, const void *payload, uint32_t len)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	return mig_chan_sendv(c, type, &iov, len ? 1 : 0);
}

int mig_chan_recv_header(struct mig_chan *c, struct mig_rec *rec)
{
	int ret;

	ret = mig_chan_read_from(c, rec, sizeof(*rec), &c->wait, c->idle_timeout_ms);
	if (!ret)
		ret = mig_rec_check_header(rec, c->rx_seq);
	return ret;
}

void mig_chan_recv_done(struct mig_chan *c, const struct mig_rec *rec)
{
	c->rx_seq++;
	c->rx_bytes += sizeof(*rec) + rec->len;
}

bool mig_chan_readable(struct mig_chan *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	if (c->tls && tls_sess_pending(c->tls))
		return true;
	/* POLLHUP and POLLERR count: the read that follows says what went wrong. */
	return poll(&pfd, 1, 0) > 0;
}

int mig_chan_recv(struct mig_chan *c, struct mig_rec *rec, void *buf)
{
	int ret;

	ret = mig_chan_recv_header(c, rec);
	if (!ret)
		ret = mig_chan_read(c, buf, rec->len, &c->wait);
	if (!ret)
		ret = mig_rec_check_payload(rec, buf);
	if (ret)
		return ret;
	mig_chan_recv_done(c, rec);
	return 0;
}

/*
 * Scattered reads, plaintext only: recvmsg() fills as many of the buffers
 * as the socket holds, one system call for a whole batch of pages.
 */
int mig_chan_readv(struct mig_chan *c, struct iovec *iov, int iovcnt)
{
	int64_t deadline = net_deadline(&c->wait);
	struct msghdr msg = { 0 };
	size_t want = 0;
	ssize_t n;
	int i, ret;

	if (c->tls) {
		kvmmig_err("%s: scattered reads are for plaintext channels", c->name);
		return -EINVAL;
	}
	for (i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	while (iovcnt > 0) {
		msg.msg_iov = iov;
		msg.msg_iovlen = iovcnt;
		n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			ret = net_poll(c->fd, POLLIN, &c->wait, deadline, c->wait.timeout_ms);
			if (ret)
				return ret;
			continue;
		}
		if (n < 0) {
			kvmmig_err("receive failed: %s", strerror(errno));
			return -errno;
		}
		if (n == 0) {
			kvmmig_err("connection closed by the peer (%zu bytes of a record's pages missing)",
				   want);
			return -ECONNRESET;
		}
		want -= n;
		deadline = net_deadline(&c->wait);
		iovcnt = net_iov_advance(&iov, iovcnt, n);
	}
	return 0;
}
