// SPDX-License-Identifier: GPL-2.0-only
/*
 * The snapshot's sinks (see snapshot_sink.h): a local file written as
 * FILE.partial with pwrite() and renamed when committed, with O_DIRECT
 * where the filesystem takes it (guest pages are page-aligned in memory
 * and in the file; the few unaligned writes, header and tables, go
 * through an aligned bounce buffer padded with zeros to a 4 KiB boundary,
 * which the layout keeps for them); and a TCP connection to
 * snapshot_receive(), one record per write.  Writers share the connection
 * under a mutex: a record is never interleaved with another.  The fault
 * thread's page may wait behind the walkers' records, but its vCPU does
 * not: snapshot_save.c lifts the protection from a copy first.
 * The TCP connection is TLS when the options ask for it, as a migration's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csum.h"
#include "log.h"
#include "net.h"
#include "snapshot_sink.h"

#define SNAP_DIO_ALIGN		4096ULL
#define SNAP_NET_REASON_MS	1000	/* how long a broken sender looks for the reason */

struct snap_sink_ops {
	int (*write)(struct snap_sink *k, const void *buf, size_t len, uint64_t off);
	int (*sync)(struct snap_sink *k);
	int (*commit)(struct snap_sink *k);
	void (*close)(struct snap_sink *k, const char *why);
};

struct snap_sink {
	const struct snap_sink_ops *ops;
	bool committed;
	bool direct;
};

/* ---- the record header shared with the receiver ---- */

static uint32_t snap_net_crc(const struct snap_net_rec *h)
{
	struct snap_net_rec copy = *h;

	copy.hcrc = 0;
	return crc32c(0, &copy, sizeof(copy));
}

void snap_net_seal(struct snap_net_rec *h, uint32_t type, uint64_t off, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = SNAP_NET_MAGIC;
	h->type = type;
	h->off = off;
	h->len = len;
	h->hcrc = snap_net_crc(h);
}

int snap_net_check(const struct snap_net_rec *h, uint32_t max_len)
{
	if (h->magic != SNAP_NET_MAGIC) {
		kvmmig_err("not a kvmmig snapshot stream: record magic %#x, expected %#x",
			   h->magic, SNAP_NET_MAGIC);
		return -EBADMSG;
	}
	if (h->hcrc != snap_net_crc(h)) {
		kvmmig_err("snapshot stream: a record header fails its checksum");
		return -EBADMSG;
	}
	if (!h->type || h->type >= SNAP_NET_MAX) {
		kvmmig_err("snapshot stream: record type %u, expected 1 to %u", h->type,
			   SNAP_NET_MAX - 1);
		return -EBADMSG;
	}
	if (h->len > max_len) {
		kvmmig_err("snapshot stream: a record of type %u with %u bytes, at most %u expected",
			   h->type, h->len, max_len);
		return -EMSGSIZE;
	}
	return 0;
}

/* ---- a local file ---- */

struct snap_file_sink {
	struct snap_sink k;
	int fd;
	char path[PATH_MAX];
	char tmp[PATH_MAX];
};

static struct snap_file_sink *to_file(struct snap_sink *k)
{
	return (struct snap_file_sink *)k;
}

static int snap_file_pwrite(struct snap_file_sink *f, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(f->fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			kvmmig_err("cannot write the snapshot %s at offset %llu: %s", f->tmp,
				   (unsigned long long)off, strerror(err));
			return -err;
		}
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

static bool snap_dio_aligned(uint64_t x)
{
	return !(x & (SNAP_DIO_ALIGN - 1));
}

/* O_DIRECT and not aligned: through a zero-padded aligned copy. */
static int snap_file_bounce(struct snap_file_sink *f, const void *buf, size_t len, uint64_t off)
{
	size_t padded = (len + SNAP_DIO_ALIGN - 1) & ~(SNAP_DIO_ALIGN - 1);
	void *b;
	int ret;

	if (!snap_dio_aligned(off)) {
		kvmmig_err("snapshot %s: a write at offset %llu, which O_DIRECT cannot take (4 KiB aligned expected)",
			   f->tmp, (unsigned long long)off);
		return -EINVAL;
	}
	if (posix_memalign(&b, SNAP_DIO_ALIGN, padded))
		return -ENOMEM;
	memcpy(b, buf, len);
	memset((char *)b + len, 0, padded - len);
	ret = snap_file_pwrite(f, b, padded, off);
	free(b);
	return ret;
}

static int snap_file_write(struct snap_sink *k, const void *buf, size_t len, uint64_t off)
{
	struct snap_file_sink *f = to_file(k);

	if (k->direct && !(snap_dio_aligned((uintptr_t)buf) && snap_dio_aligned(len) &&
			   snap_dio_aligned(off)))
		return snap_file_bounce(f, buf, len, off);
	return snap_file_pwrite(f, buf, len, off);
}

static int snap_file_sync(struct snap_sink *k)
{
	if (fsync(to_file(k)->fd))
		return kvmmig_ioctl_err("fsync of the snapshot", errno);
	return 0;
}

static int snap_file_commit(struct snap_sink *k)
{
	struct snap_file_sink *f = to_file(k);
	int fd = f->fd;

	f->fd = -1;
	if (close(fd))
		return kvmmig_ioctl_err("close of the snapshot", errno);
	if (rename(f->tmp, f->path)) {
		int err = errno;

		kvmmig_err("cannot rename %s to %s: %s", f->tmp, f->path, strerror(err));
		return -err;
	}
	k->committed = true;
	return 0;
}

static void snap_file_close(struct snap_sink *k, const char *why)
{
	struct snap_file_sink *f = to_file(k);

	if (f->fd >= 0)
		close(f->fd);
	/* A failed snapshot leaves no file behind, complete-looking or not. */
	if (!k->committed)
		unlink(f->tmp);
	free(f);
}

static const struct snap_sink_ops snap_file_ops = {
	.write = snap_file_write,
	.sync = snap_file_sync,
	.commit = snap_file_commit,
	.close = snap_file_close,
};

/* FILE.partial, O_DIRECT if asked and the filesystem takes it (else said, and buffered). */
static int snap_file_create(struct snap_file_sink *f, bool direct)
{
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;

	if (direct) {
		f->fd = open(f->tmp, flags | O_DIRECT, 0600);
		if (f->fd >= 0) {
			f->k.direct = true;
			return 0;
		}
		if (errno != EINVAL)
			goto err;
		kvmmig_info("%s: the filesystem refuses O_DIRECT; writing through the page cache",
			    f->tmp);
	}
	f->fd = open(f->tmp, flags, 0600);
	if (f->fd >= 0)
		return 0;
err:
	kvmmig_err("cannot create %s: %s", f->tmp, strerror(errno));
	return -errno;
}

static int snap_file_open(const struct snap_sink_opts *o, uint64_t size, struct snap_sink **out)
{
	struct snap_file_sink *f = calloc(1, sizeof(*f));
	int ret;

	if (!f)
		return -ENOMEM;
	f->k.ops = &snap_file_ops;
	f->fd = -1;
	if (strlen(o->path) + sizeof(".partial") > sizeof(f->tmp)) {
		kvmmig_err("snapshot path too long: %s", o->path);
		free(f);
		return -ENAMETOOLONG;
	}
	snprintf(f->path, sizeof(f->path), "%s", o->path);
	snprintf(f->tmp, sizeof(f->tmp), "%s.partial", o->path);
	ret = snap_file_create(f, o->direct);
	/* Every page has its place; what is never written stays a hole. */
	if (!ret && ftruncate(f->fd, size)) {
		ret = -errno;
		kvmmig_err("cannot size %s to %llu bytes: %s", f->tmp, (unsigned long long)size,
			   strerror(errno));
	}
	if (ret) {
		snap_file_close(&f->k, NULL);
		return ret;
	}
	*out = &f->k;
	return 0;
}

/* ---- a receiver over TCP ---- */

struct snap_tcp_sink {
	struct snap_sink k;
	struct mig_chan c;
	struct tls_creds *creds;	/* NULL: plaintext */
	pthread_mutex_t lock;		/* one record at a time on the connection */
	bool broken;			/* a send failed: the stream is out of step */
	char addr[128];
};

static struct snap_tcp_sink *to_tcp(struct snap_sink *k)
{
	return (struct snap_tcp_sink *)k;
}

static int snap_tcp_send(struct snap_tcp_sink *t, uint32_t type, uint64_t off, const void *buf,
			 size_t len)
{
	struct snap_net_rec h;
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)buf, .iov_len = len },
	};

	snap_net_seal(&h, type, off, len);
	return mig_chan_writev(&t->c, iov, len ? 2 : 1);
}

/*
 * The receiver's answer: @want, or its ERROR (-EREMOTEIO, its text said),
 * within @w.
 */
static int snap_tcp_reply(struct snap_tcp_sink *t, uint32_t want, const struct net_wait *w)
{
	char text[SNAP_NET_MAX_MSG + 1] = "";
	struct snap_net_rec h;
	int ret;

	ret = mig_chan_read(&t->c, &h, sizeof(h), w);
	if (!ret)
		ret = snap_net_check(&h, SNAP_NET_MAX_MSG);
	if (!ret && h.type == SNAP_NET_ERROR) {
		ret = mig_chan_read(&t->c, text, h.len, w);
		if (!ret) {
			kvmmig_err("the snapshot receiver %s failed: %s", t->addr, text);
			ret = -EREMOTEIO;
		}
	} else if (!ret && (h.type != want || h.len)) {
		kvmmig_err("the snapshot receiver %s answered with record type %u, expected %u",
			   t->addr, h.type, want);
		ret = -EPROTO;
	}
	return ret;
}

/*
 * A send failed: the receiver may have said why before it closed (an
 * ERROR record waiting to be read, sent in one piece); without one, the
 * send's own error is the reason.  Never blocks past the poll.
 */
static void snap_tcp_reason(struct snap_tcp_sink *t)
{
	struct pollfd pfd = { .fd = t->c.fd, .events = POLLIN };
	char text[SNAP_NET_MAX_MSG + 1] = "";
	struct snap_net_rec h;

	/* Under TLS the receiver's record is not plain bytes: its error stands. */
	if (t->c.tls || poll(&pfd, 1, SNAP_NET_REASON_MS) != 1 ||
	    recv(t->c.fd, &h, sizeof(h), MSG_DONTWAIT) != sizeof(h) ||
	    h.magic != SNAP_NET_MAGIC || h.hcrc != snap_net_crc(&h) ||
	    h.type != SNAP_NET_ERROR || h.len > SNAP_NET_MAX_MSG ||
	    recv(t->c.fd, text, h.len, MSG_DONTWAIT) != (ssize_t)h.len)
		snprintf(text, sizeof(text), "%s", kvmmig_last_error());
	kvmmig_err("the snapshot receiver %s failed: %s", t->addr, text);
}

static int snap_tcp_locked(struct snap_tcp_sink *t, uint32_t type, uint64_t off, const void *buf,
			   size_t len, uint32_t reply)
{
	int ret = -EPIPE;

	pthread_mutex_lock(&t->lock);
	if (t->broken)
		kvmmig_err("the connection to the snapshot receiver %s is broken", t->addr);
	else
		ret = snap_tcp_send(t, type, off, buf, len);
	if (!ret && reply)
		ret = snap_tcp_reply(t, reply, &t->c.wait);
	if (ret && !t->broken) {
		t->broken = true;
		if (ret != -ECANCELED && ret != -EREMOTEIO)
			snap_tcp_reason(t);
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

static int snap_tcp_write(struct snap_sink *k, const void *buf, size_t len, uint64_t off)
{
	size_t n;
	int ret = 0;

	for (; len && !ret; buf = (const char *)buf + n, len -= n, off += n) {
		n = len < SNAP_NET_MAX_DATA ? len : SNAP_NET_MAX_DATA;
		ret = snap_tcp_locked(to_tcp(k), SNAP_NET_DATA, off, buf, n, 0);
	}
	return ret;
}

/* In order with the data: the receiver syncs before it writes what follows. */
static int snap_tcp_sync(struct snap_sink *k)
{
	return snap_tcp_locked(to_tcp(k), SNAP_NET_SYNC, 0, NULL, 0, 0);
}

static int snap_tcp_commit(struct snap_sink *k)
{
	int ret = snap_tcp_locked(to_tcp(k), SNAP_NET_COMMIT, 0, NULL, 0, SNAP_NET_DONE);

	k->committed = !ret;
	return ret;
}

static void snap_tcp_close(struct snap_sink *k, const char *why)
{
	struct snap_tcp_sink *t = to_tcp(k);
	char text[SNAP_NET_MAX_MSG + 1];

	/* Best effort, never blocking: a receiver that is gone removes its file anyway. */
	if (!k->committed && !t->broken && t->c.fd >= 0 && !t->c.tls) {
		struct snap_net_rec h;
		struct iovec iov[2] = {
			{ .iov_base = &h, .iov_len = sizeof(h) },
			{ .iov_base = text },
		};
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

		snprintf(text, sizeof(text), "%s", why ? why : "the sender gave up");
		iov[1].iov_len = strlen(text);
		snap_net_seal(&h, SNAP_NET_ABORT, 0, iov[1].iov_len);
		if (sendmsg(t->c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			kvmmig_info("the snapshot receiver %s was not told of the abort: %s",
				    t->addr, strerror(errno));
	}
	mig_chan_close(&t->c);
	tls_creds_free(t->creds);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static const struct snap_sink_ops snap_tcp_ops = {
	.write = snap_tcp_write,
	.sync = snap_tcp_sync,
	.commit = snap_tcp_commit,
	.close = snap_tcp_close,
};

/* TLS if asked: the server's name defaults to the HOST of tcp:HOST:PORT, as a migration's. */
static int snap_tcp_tls(struct snap_tcp_sink *t, const struct snap_sink_opts *o)
{
	char host[256], port[16];
	int ret;

	if (!tls_opts_enabled(&o->tls))
		return 0;
	if (o->tls.hostname)
		snprintf(host, sizeof(host), "%s", o->tls.hostname);
	else if ((ret = net_parse_addr(o->path, host, sizeof(host), port, sizeof(port))))
		return ret;
	ret = tls_creds_load(&o->tls, false, &t->creds);
	if (!ret)
		ret = mig_chan_start_tls(&t->c, t->creds, t->addr, host, NULL);
	return ret;
}

static int snap_tcp_open(const struct snap_sink_opts *o, uint64_t size, struct snap_sink **out)
{
	struct net_wait w = { .timeout_ms = NET_CONNECT_TIMEOUT_MS, .cancel = o->cancel };
	struct snap_tcp_sink *t = calloc(1, sizeof(*t));
	int fd, ret;

	if (!t)
		return -ENOMEM;
	t->k.ops = &snap_tcp_ops;
	pthread_mutex_init(&t->lock, NULL);
	snprintf(t->addr, sizeof(t->addr), "%s", o->path);
	fd = net_connect(o->path, &w);
	mig_chan_init(&t->c, fd, 0);
	if (fd < 0) {
		t->broken = true;
		snap_tcp_close(&t->k, NULL);
		return fd;
	}
	mig_chan_limit(&t->c, o->io_timeout_ms ? o->io_timeout_ms : NET_IO_TIMEOUT_MS, o->cancel);
	snprintf(t->c.name, sizeof(t->c.name), "the snapshot receiver");
	ret = snap_tcp_tls(t, o);
	if (!ret)
		ret = snap_tcp_locked(t, SNAP_NET_OPEN, size, NULL, 0, SNAP_NET_READY);
	if (ret) {
		/* The receiver saw no OPEN, or refused it: nothing to abort. */
		t->broken = true;
		snap_tcp_close(&t->k, NULL);
		return ret;
	}
	*out = &t->k;
	return 0;
}

/* ---- the interface ---- */

int snap_sink_open(const struct snap_sink_opts *o, uint64_t file_size, struct snap_sink **out)
{
	if (!strncmp(o->path, "tcp:", 4))
		return snap_tcp_open(o, file_size, out);
	return snap_file_open(o, file_size, out);
}

int snap_sink_write(struct snap_sink *k, const void *buf, size_t len, uint64_t off)
{
	return k->ops->write(k, buf, len, off);
}

int snap_sink_sync(struct snap_sink *k)
{
	return k->ops->sync(k);
}

int snap_sink_commit(struct snap_sink *k)
{
	return k->ops->commit(k);
}

void snap_sink_close(struct snap_sink *k, const char *why)
{
	if (k)
		k->ops->close(k, why);
}

bool snap_sink_direct(const struct snap_sink *k)
{
	return k && k->direct;
}
