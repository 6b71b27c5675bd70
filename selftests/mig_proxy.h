/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A TCP proxy for the migration tests, between the source and the
 * destination: it forwards every connection through two threads and can
 * corrupt a byte, overwrite a field, cut a connection at an offset, drop
 * the whole link (now and for later connections), or act on one record of
 * the stream by type - lose it, delay it, rewrite and reseal it, or capture
 * it - in either direction.  migration_fail_test and
 * migration_handover_test inject their faults through it.
 */
#ifndef KVMMIG_MIG_PROXY_H
#define KVMMIG_MIG_PROXY_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "stream.h"

#define PROXY_MAX_CONNS	16
#define PROXY_BUF	(64 << 10)

enum fault_kind {
	FAULT_NONE,
	FAULT_FLIP,	/* XOR bytes[0] into byte @off of connection @conn */
	FAULT_VERSION,	/* the hello's version field becomes 2, its CRC left stale */
	FAULT_CUT,	/* close both sides after @off bytes */
	FAULT_RECORD,	/* act on the first record of type @rec_type (enum rec_action) */
};

/* What FAULT_RECORD does to its record. */
enum rec_action {
	REC_CUT,	/* lose it: connection @conn breaks just before it */
	REC_DROP_LINK,	/* lose it: every connection breaks, new ones are refused */
	REC_DELAY,	/* hold it for @delay_ms, then forward it */
	REC_REPLACE,	/* @edit rewrites its payload; the proxy reseals it */
	REC_CAPTURE,	/* copy header and payload to @edit_opaque, forward it */
};

struct proxy_fault {
	enum fault_kind kind;
	unsigned int conn;	/* in accept order: 0 is the main channel */
	uint64_t off;		/* in the source -> destination direction */
	uint8_t bytes[4];	/* FLIP: the XOR mask; VERSION: the new field */
	unsigned int len;	/* VERSION: bytes to overwrite */
	/* FAULT_RECORD: on connection @conn, in the direction @down says */
	uint32_t rec_type;
	bool down;		/* destination -> source */
	enum rec_action act;
	unsigned int delay_ms;
	void (*edit)(struct mig_rec *r, void *payload, void *opaque);
	void *edit_opaque;
};

struct proxy;

/* One direction of one connection. */
struct proxy_pipe {
	struct proxy *px;
	unsigned int conn;
	int in, out;
	bool up;		/* source -> destination: the faults apply */
	pthread_t thread;
	bool started;
};

struct proxy {
	int lfd;
	char addr[64];		/* what the source connects to */
	char dest[64];		/* the real destination */
	struct proxy_fault fault;
	/* set when the main connection arrives: a cancel during setup */
	volatile sig_atomic_t *cancel_on_accept;
	pthread_t thread;
	bool started;
	volatile bool stop;
	pthread_mutex_t lock;	/* conns, their fds, dropped */
	bool dropped;
	unsigned int nr_conns;
	int fds[PROXY_MAX_CONNS][2];	/* source side, destination side */
	unsigned int done[PROXY_MAX_CONNS];	/* directions finished */
	struct proxy_pipe pipes[PROXY_MAX_CONNS][2];
	bool hit;		/* the fault was applied */
	uint64_t session;	/* FAULT_RECORD: the session its hello named */
};

/* Wake both directions of @conn; their threads then close it. */
static inline void proxy_cut_locked(struct proxy *px, unsigned int conn)
{
	unsigned int d;

	for (d = 0; d < 2; d++)
		if (px->fds[conn][d] >= 0)
			shutdown(px->fds[conn][d], SHUT_RDWR);
}

/*
 * The last direction out closes both sockets, as a process that dies or a
 * link that goes down would: more data from the peer then meets a reset
 * (a socket merely shut down would take it in silently until its window
 * fills, and the sender would block).
 */
static inline void proxy_pipe_done(struct proxy *px, unsigned int conn)
{
	unsigned int d;

	pthread_mutex_lock(&px->lock);
	proxy_cut_locked(px, conn);
	if (++px->done[conn] == 2) {
		for (d = 0; d < 2; d++) {
			close(px->fds[conn][d]);
			px->fds[conn][d] = -1;
		}
	}
	pthread_mutex_unlock(&px->lock);
}

/* The link goes down: every connection, now and later. */
static inline void proxy_drop(struct proxy *px)
{
	unsigned int k;

	pthread_mutex_lock(&px->lock);
	px->dropped = true;
	for (k = 0; k < px->nr_conns; k++)
		proxy_cut_locked(px, k);
	pthread_mutex_unlock(&px->lock);
}

/* MSG_NOSIGNAL: a peer that is gone must not take the test with it. */
static inline int proxy_send_all(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= n;
	}
	return 0;
}

/* Apply the fault to bytes [@pos, @pos + @n) of @conn; how many to forward. */
static inline size_t proxy_fault_apply(struct proxy *px, unsigned int conn, uint8_t *buf, uint64_t pos,
				size_t n, bool *cut)
{
	const struct proxy_fault *f = &px->fault;
	unsigned int i;

	if (f->kind == FAULT_NONE || conn != f->conn)
		return n;
	switch (f->kind) {
	case FAULT_FLIP:
		if (f->off >= pos && f->off < pos + n) {
			buf[f->off - pos] ^= f->bytes[0];
			px->hit = true;
		}
		break;
	case FAULT_VERSION:
		for (i = 0; i < f->len; i++) {
			if (f->off + i >= pos && f->off + i < pos + n) {
				buf[f->off + i - pos] = f->bytes[i];
				px->hit = true;
			}
		}
		break;
	case FAULT_CUT:
		if (pos + n >= f->off) {
			*cut = px->hit = true;
			return f->off - pos;
		}
		break;
	default:
		break;
	}
	return n;
}

static inline int proxy_read_full(int fd, void *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf = (uint8_t *)buf + n;
		len -= n;
	}
	return 0;
}

/* Apply FAULT_RECORD to @r; false: the connection ends here. */
static inline bool proxy_record_fault(struct proxy *px, struct mig_rec *r)
{
	const struct proxy_fault *f = &px->fault;

	px->hit = true;
	switch (f->act) {
	case REC_CUT:
		return false;
	case REC_DROP_LINK:
		proxy_drop(px);
		return false;
	case REC_DELAY:
		usleep(f->delay_ms * 1000);
		break;
	case REC_REPLACE:
		f->edit(r, r + 1, f->edit_opaque);
		mig_rec_seal(r, r->type, r->seq, r + 1, r->len);
		break;
	case REC_CAPTURE:
		memcpy(f->edit_opaque, r, sizeof(*r) + r->len);
		break;
	}
	return true;
}

/*
 * Forward record by record (after the hello, upstream), for FAULT_RECORD;
 * @apply in the direction the fault is for.
 */
static inline void proxy_pipe_records(struct proxy_pipe *p, bool apply)
{
	const size_t hello = p->up ? sizeof(struct mig_hello) : 0;
	struct mig_rec *r = malloc(sizeof(*r) + MIG_MAX_PAYLOAD);
	bool pending = true;

	if (!r || proxy_read_full(p->in, r, hello) || proxy_send_all(p->out, (void *)r, hello)) {
		free(r);
		return;
	}
	if (hello)
		__atomic_store_n(&p->px->session, ((struct mig_hello *)r)->session,
				 __ATOMIC_RELEASE);
	for (;;) {
		if (proxy_read_full(p->in, r, sizeof(*r)) || r->len > MIG_MAX_PAYLOAD ||
		    proxy_read_full(p->in, r + 1, r->len))
			break;
		if (pending && apply && r->type == p->px->fault.rec_type) {
			pending = false;
			if (!proxy_record_fault(p->px, r))
				break;
		}
		if (proxy_send_all(p->out, (void *)r, sizeof(*r) + r->len))
			break;
	}
	free(r);
}

static inline void *proxy_pipe_thread(void *arg)
{
	struct proxy_pipe *p = arg;
	const struct proxy_fault *f = &p->px->fault;
	uint8_t *buf = malloc(PROXY_BUF);
	bool cut = false;
	uint64_t pos = 0;
	size_t fwd;
	ssize_t n;

	if (f->kind == FAULT_RECORD && p->conn == f->conn) {
		proxy_pipe_records(p, p->up != f->down);
		cut = true;
	}
	while (buf && !cut) {
		n = read(p->in, buf, PROXY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fwd = p->up ? proxy_fault_apply(p->px, p->conn, buf, pos, n, &cut) : (size_t)n;
		if (fwd && proxy_send_all(p->out, buf, fwd))
			break;
		pos += n;
	}
	/* One direction gone takes the other with it. */
	proxy_pipe_done(p->px, p->conn);
	free(buf);
	return NULL;
}

static inline void proxy_add_conn(struct proxy *px, int src)
{
	unsigned int k = px->nr_conns, d;
	int dst;

	if (px->dropped || k == PROXY_MAX_CONNS) {
		close(src);
		return;
	}
	if (!k && px->cancel_on_accept)
		kvmmig_cancel_set(px->cancel_on_accept, 1);
	dst = net_connect(px->dest, NULL);
	if (dst < 0) {
		close(src);
		return;
	}
	px->fds[k][0] = src;
	px->fds[k][1] = dst;
	for (d = 0; d < 2; d++) {
		struct proxy_pipe *p = &px->pipes[k][d];

		p->px = px;
		p->conn = k;
		p->up = !d;
		p->in = px->fds[k][d];
		p->out = px->fds[k][!d];
		p->started = !pthread_create(&p->thread, NULL, proxy_pipe_thread, p);
	}
	px->nr_conns++;
}

static inline void *proxy_accept_thread(void *arg)
{
	struct proxy *px = arg;
	struct pollfd pfd = { .fd = px->lfd, .events = POLLIN };
	int fd;

	/* A destination that is gone is one of the faults, not news. */
	kvmmig_log_quiet(true);
	while (!px->stop) {
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		fd = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&px->lock);
		proxy_add_conn(px, fd);
		pthread_mutex_unlock(&px->lock);
	}
	return NULL;
}

static inline int proxy_start(struct proxy *px, const char *dest)
{
	int port;

	pthread_mutex_init(&px->lock, NULL);
	snprintf(px->dest, sizeof(px->dest), "%s", dest);
	px->lfd = net_listen("tcp:127.0.0.1:0", &port);
	if (px->lfd < 0)
		return -1;
	snprintf(px->addr, sizeof(px->addr), "tcp:127.0.0.1:%d", port);
	if (pthread_create(&px->thread, NULL, proxy_accept_thread, px))
		return -1;
	px->started = true;
	return 0;
}

/*
 * Wait until the proxy has taken @n connections: the source may be sending
 * on a channel the proxy has not accepted yet (it is in the backlog).
 */
static inline void proxy_wait_conns(struct proxy *px, unsigned int n)
{
	unsigned int i, have = 0;

	for (i = 0; i < 1000 && have < n; i++) {
		pthread_mutex_lock(&px->lock);
		have = px->nr_conns;
		pthread_mutex_unlock(&px->lock);
		if (have < n)
			usleep(10000);
	}
}

/* The link comes back: new connections are forwarded again. */
static inline void proxy_undrop(struct proxy *px)
{
	pthread_mutex_lock(&px->lock);
	px->dropped = false;
	pthread_mutex_unlock(&px->lock);
}

static inline void proxy_stop(struct proxy *px)
{
	unsigned int k, d;

	if (!px->started)
		return;
	px->stop = true;
	pthread_join(px->thread, NULL);
	proxy_drop(px);
	for (k = 0; k < px->nr_conns; k++) {
		for (d = 0; d < 2; d++) {
			if (px->pipes[k][d].started)
				pthread_join(px->pipes[k][d].thread, NULL);
			else
				proxy_pipe_done(px, k);
		}
	}
	close(px->lfd);
	px->started = false;
}

#endif /* KVMMIG_MIG_PROXY_H */
