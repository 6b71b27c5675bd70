// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiving end of `kvmmig snapshot --to tcp:` (see snapshot_sink.h):
 * one sender is accepted, its first record must announce a plausible file
 * size, and from then on every DATA record is checked to lie inside that
 * size and written at its offset into a file sink, so FILE.partial
 * becomes byte for byte what the sender's local file would have been.
 * COMMIT is honoured only when the header that arrived passes
 * snap_header_check() for that size; then the file is made durable and
 * renamed, and the sender told.  Anything else (a bad record, the sender
 * gone, a deadline, a cancel) ends it with a clear error sent back where
 * the connection still works, and no file.  The connection is TLS when
 * the options ask for it.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "net.h"
#include "snapshot.h"
#include "snapshot_sink.h"

struct snap_recv {
	const struct snap_recv_opts *o;
	struct snap_recv_report *r;
	struct mig_chan c;
	struct snap_sink *sink;
	struct tls_creds *creds;	/* NULL: plaintext */
	uint8_t *buf;			/* SNAP_NET_MAX_DATA, page-aligned for O_DIRECT */
	uint8_t hdr[SNAP_HEADER_SIZE];	/* the file's first block as it arrived */
	bool done;
};

static int snap_recv_reply(struct snap_recv *v, uint32_t type, const char *text)
{
	struct snap_net_rec h;
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)text, .iov_len = text ? strlen(text) : 0 },
	};

	if (iov[1].iov_len > SNAP_NET_MAX_MSG)
		iov[1].iov_len = SNAP_NET_MAX_MSG;
	snap_net_seal(&h, type, 0, iov[1].iov_len);
	return mig_chan_writev(&v->c, iov, iov[1].iov_len ? 2 : 1);
}

/* The first record: the file's size, which bounds every offset after it. */
static int snap_recv_open(struct snap_recv *v, const struct snap_net_rec *h)
{
	uint64_t max = v->o->max_file ? v->o->max_file : SNAP_NET_MAX_FILE;
	struct snap_sink_opts so = { .path = v->o->path, .direct = v->o->direct };
	int ret;

	if (h->type != SNAP_NET_OPEN || h->len) {
		kvmmig_err("snapshot stream: the first record has type %u and %u bytes, expected OPEN (%u) with none",
			   h->type, h->len, SNAP_NET_OPEN);
		return -EBADMSG;
	}
	if (h->off < SNAP_HEADER_SIZE || h->off % MIG_PAGE_SIZE || h->off > max) {
		kvmmig_err("snapshot stream: a file of %llu bytes announced, expected a multiple of %u from %u to %llu",
			   (unsigned long long)h->off, MIG_PAGE_SIZE, SNAP_HEADER_SIZE,
			   (unsigned long long)max);
		return -EBADMSG;
	}
	ret = snap_sink_open(&so, h->off, &v->sink);
	if (ret)
		return ret;
	v->r->file_size = h->off;
	v->r->direct = snap_sink_direct(v->sink);
	return snap_recv_reply(v, SNAP_NET_READY, NULL);
}

static int snap_recv_data(struct snap_recv *v, const struct snap_net_rec *h)
{
	int ret;

	if (!h->len || h->off > v->r->file_size || h->len > v->r->file_size - h->off) {
		kvmmig_err("snapshot stream: %u bytes at offset %llu, expected 1 or more inside the announced file of %llu bytes",
			   h->len, (unsigned long long)h->off,
			   (unsigned long long)v->r->file_size);
		return -EBADMSG;
	}
	ret = mig_chan_read(&v->c, v->buf, h->len, &v->c.wait);
	if (ret)
		return ret;
	/* Kept to check at COMMIT: the header is what a reader trusts first. */
	if (h->off < sizeof(v->hdr))
		memcpy(v->hdr + h->off, v->buf,
		       h->len < sizeof(v->hdr) - h->off ? h->len : sizeof(v->hdr) - h->off);
	v->r->bytes += h->len;
	return snap_sink_write(v->sink, v->buf, h->len, h->off);
}

/*
 * Nothing may follow COMMIT but the sender's wait for DONE: a sender that
 * has closed or sent more (its ABORT) gave up, say on a cancel while the
 * data was still on its way, and reports no snapshot; neither may this.
 */
static int snap_recv_sender_here(struct snap_recv *v)
{
	struct pollfd pfd = { .fd = v->c.fd, .events = POLLIN | POLLRDHUP };

	if (poll(&pfd, 1, 0) == 0)
		return 0;
	kvmmig_err("the sender gave up before the snapshot was committed");
	return -ECONNRESET;
}

/* The sender says it is complete: believe it only if the header agrees. */
static int snap_recv_commit(struct snap_recv *v)
{
	const struct snap_header *sh = (const void *)v->hdr;
	const struct mig_config *cfg;
	int ret;

	ret = snap_header_check(v->o->path, v->hdr, sizeof(v->hdr), v->r->file_size, &cfg);
	if (!ret && sh->file_size != v->r->file_size) {
		kvmmig_err("snapshot stream: the header says %llu bytes, the stream announced %llu",
			   (unsigned long long)sh->file_size,
			   (unsigned long long)v->r->file_size);
		ret = -EBADMSG;
	}
	if (!ret)
		ret = snap_sink_sync(v->sink);
	if (!ret)
		ret = snap_recv_sender_here(v);
	if (!ret)
		ret = snap_sink_commit(v->sink);
	if (!ret)
		ret = snap_recv_reply(v, SNAP_NET_DONE, NULL);
	v->done = !ret;
	return ret;
}

static int snap_recv_abort(struct snap_recv *v, const struct snap_net_rec *h)
{
	char text[SNAP_NET_MAX_MSG + 1] = "";
	int ret = mig_chan_read(&v->c, text, h->len, &v->c.wait);

	if (ret)
		return ret;
	kvmmig_err("the sender gave up the snapshot: %s", text[0] ? text : "(no reason given)");
	return -ECANCELED;
}

static int snap_recv_record(struct snap_recv *v)
{
	struct snap_net_rec h;
	int ret;

	ret = mig_chan_read(&v->c, &h, sizeof(h), &v->c.wait);
	if (ret == -ECONNRESET)
		kvmmig_err("the sender closed the connection before the snapshot was complete (%llu bytes received)",
			   (unsigned long long)v->r->bytes);
	if (!ret)
		ret = snap_net_check(&h, SNAP_NET_MAX_DATA);
	if (ret)
		return ret;
	v->r->records++;
	if (!v->sink)
		return snap_recv_open(v, &h);
	if ((h.type == SNAP_NET_SYNC || h.type == SNAP_NET_COMMIT) && h.len) {
		kvmmig_err("snapshot stream: a record of type %u with %u bytes, expected none",
			   h.type, h.len);
		return -EBADMSG;
	}
	switch (h.type) {
	case SNAP_NET_DATA:
		return snap_recv_data(v, &h);
	case SNAP_NET_SYNC:
		return snap_sink_sync(v->sink);
	case SNAP_NET_COMMIT:
		return snap_recv_commit(v);
	case SNAP_NET_ABORT:
		if (h.len <= SNAP_NET_MAX_MSG)
			return snap_recv_abort(v, &h);
		break;
	}
	kvmmig_err("snapshot stream: record type %u with %u bytes from the sender, expected DATA, SYNC, COMMIT or ABORT (with at most %u bytes)",
		   h.type, h.len, SNAP_NET_MAX_MSG);
	return -EBADMSG;
}

static int snap_recv_accept(struct snap_recv *v)
{
	const struct snap_recv_opts *o = v->o;
	int port = 0, lfd, fd, ret;

	/* Bad credentials fail before anyone waits on a port. */
	if (tls_opts_enabled(&o->tls)) {
		ret = tls_creds_load(&o->tls, true, &v->creds);
		if (ret)
			return ret;
	}
	lfd = net_listen(o->listen, &port);
	if (lfd < 0)
		return lfd;
	if (o->listening)
		o->listening(o->opaque, port);
	fd = net_accept(lfd, o->cancel, o->accept_timeout_ms, -1);
	close(lfd);
	mig_chan_init(&v->c, fd, 0);
	if (fd < 0)
		return fd;
	mig_chan_limit(&v->c, o->io_timeout_ms ? o->io_timeout_ms : NET_IO_TIMEOUT_MS, o->cancel);
	snprintf(v->c.name, sizeof(v->c.name), "the snapshot sender");
	v->c.wait.what = v->c.name;
	return v->creds ? mig_chan_start_tls(&v->c, v->creds, v->c.name, NULL, NULL) : 0;
}

int snapshot_receive(const struct snap_recv_opts *o, struct snap_recv_report *r)
{
	struct snap_recv v = { .o = o, .r = r, .c.fd = -1 };
	double t0 = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	if (posix_memalign((void **)&v.buf, MIG_PAGE_SIZE, SNAP_NET_MAX_DATA))
		return -ENOMEM;
	ret = snap_recv_accept(&v);
	while (!ret && !v.done) {
		ret = snap_recv_record(&v);
		if (!t0)
			t0 = now_s();
	}
	r->seconds = t0 ? now_s() - t0 : 0;
	if (ret) {
		snprintf(r->error, sizeof(r->error), "%s", kvmmig_last_error());
		/* The sender learns why, if it still listens. */
		if (v.c.fd >= 0 && ret != -ECONNRESET) {
			v.c.wait.timeout_ms = 1000;
			v.c.wait.cancel = NULL;
			kvmmig_log_quiet(true);
			snap_recv_reply(&v, SNAP_NET_ERROR, r->error);
			kvmmig_log_quiet(false);
		}
	}
	snap_sink_close(v.sink, NULL);
	mig_chan_close(&v.c);
	tls_creds_free(v.creds);
	free(v.buf);
	return ret;
}
