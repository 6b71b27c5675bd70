// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP plumbing for migration (see net.h).  Sends use MSG_NOSIGNAL so a
 * destination that dies gives the source -EPIPE, not SIGPIPE.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static void net_tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
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

int net_accept(int lfd, volatile int *cancel, int timeout_ms, int watch_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = lfd, .events = POLLIN },
		/* Only a hang-up: data on it is the caller's, read later. */
		{ .fd = watch_fd, .events = POLLRDHUP },
	};
	int waited = 0, fd;

	for (;;) {
		if (cancel && *cancel)
			return -ECANCELED;
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

int net_connect(const char *addr)
{
	struct addrinfo *res, *ai;
	int fd = -1, err = 0, ret;

	ret = net_resolve(addr, false, &res);
	if (ret)
		return ret;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		kvmmig_err("cannot connect to %s: %s", addr, strerror(err));
		return -err;
	}
	net_tune(fd);
	return fd;
}

int net_writev_all(int fd, struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { 0 };
	ssize_t n;

	while (iovcnt > 0) {
		msg.msg_iov = iov;
		msg.msg_iovlen = iovcnt;
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kvmmig_err("send failed: %s", strerror(errno));
			return -errno;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	return 0;
}

int net_write_all(int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return net_writev_all(fd, &iov, 1);
}

int net_read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kvmmig_err("receive failed: %s", strerror(errno));
			return -errno;
		}
		if (n == 0) {
			kvmmig_err("connection closed by the peer (%zu of %zu bytes received)",
				   got, len);
			return -ECONNRESET;
		}
		got += n;
	}
	return 0;
}

void mig_chan_init(struct mig_chan *c, int fd, unsigned int index)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->index = index;
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
	ret = net_writev_all(c->fd, v, iovcnt + 1);
	if (!ret)
		c->tx_bytes += sizeof(rec) + len;
	return ret;
}

int mig_chan_send(struct mig_chan *c, uint32_t type, const void *payload, uint32_t len)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	return mig_chan_sendv(c, type, &iov, len ? 1 : 0);
}

int mig_chan_recv(struct mig_chan *c, struct mig_rec *rec, void *buf)
{
	int ret;

	ret = net_read_all(c->fd, rec, sizeof(*rec));
	if (!ret)
		ret = mig_rec_check_header(rec, c->rx_seq);
	if (!ret)
		ret = net_read_all(c->fd, buf, rec->len);
	if (!ret)
		ret = mig_rec_check_payload(rec, buf);
	if (ret)
		return ret;
	c->rx_seq++;
	c->rx_bytes += sizeof(*rec) + rec->len;
	return 0;
}
