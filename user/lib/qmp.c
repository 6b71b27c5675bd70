// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP client of qmp.h.  QMP sends one JSON object per line: the
 * greeting, answers ("return" or "error") and events ("event"), which an
 * answer may follow.  Lines are taken from a buffer filled with poll() and
 * read() against the caller's deadline, in steps of QMP_POLL_MS so that a
 * cancel is seen, and parsed with json-c.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cancel.h"
#include "clock.h"
#include "log.h"
#include "qmp.h"

#define QMP_BUF		(256 * 1024)	/* the longest line QMP may send us */

struct qmp {
	int fd;
	volatile sig_atomic_t *cancel;
	char version[32];
	size_t len;
	char buf[QMP_BUF];
};

static int qmp_connect(const char *path, int *fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	socklen_t len;

	if (!n || n >= sizeof(sa.sun_path)) {
		kvmmig_err("QMP socket '%s': expected a unix socket path (or @name for an abstract one) of 1 to %zu bytes",
			   path, sizeof(sa.sun_path) - 1);
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = 0;
	len = offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@');
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return kvmmig_ioctl_err("socket", errno);
	if (connect(*fd, (struct sockaddr *)&sa, len)) {
		int err = errno;

		close(*fd);
		*fd = -1;
		kvmmig_err("cannot connect to QMP socket %s: %s (is QEMU running with -qmp unix:%s,server=on,wait=off?)",
			   path, strerror(err), path);
		return -err;
	}
	return 0;
}

/* Fill the buffer once: 0, -ETIMEDOUT, -ECANCELED, or the socket's error. */
static int qmp_fill(struct qmp *q, double deadline)
{
	struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
	ssize_t n;

	for (;;) {
		double left = (deadline - now_s()) * 1000;
		int ret;

		if (kvmmig_cancelled(q->cancel)) {
			kvmmig_err("QMP: cancelled");
			return -ECANCELED;
		}
		if (left <= 0) {
			kvmmig_err("QMP: no answer from QEMU in time");
			return -ETIMEDOUT;
		}
		ret = poll(&pfd, 1, left < QMP_POLL_MS ? (int)left + 1 : QMP_POLL_MS);
		if (ret < 0 && errno != EINTR)
			return kvmmig_ioctl_err("poll on the QMP socket", errno);
		if (ret > 0)
			break;
	}
	if (q->len == sizeof(q->buf)) {
		kvmmig_err("QMP: a message longer than %d bytes", QMP_BUF);
		return -EMSGSIZE;
	}
	n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
	if (n < 0)
		return kvmmig_ioctl_err("read from the QMP socket", errno);
	if (!n) {
		kvmmig_err("QMP: QEMU closed the connection");
		return -ECONNRESET;
	}
	q->len += n;
	return 0;
}

/* The next message, parsed; by @deadline (now_s() clock). */
static int qmp_read(struct qmp *q, double deadline, struct json_object **msg)
{
	enum json_tokener_error jerr;
	char *nl;
	size_t used;
	int ret;

	while (!(nl = memchr(q->buf, '\n', q->len))) {
		ret = qmp_fill(q, deadline);
		if (ret)
			return ret;
	}
	*nl = 0;
	used = nl - q->buf + 1;
	*msg = json_tokener_parse_verbose(q->buf, &jerr);
	memmove(q->buf, q->buf + used, q->len - used);
	q->len -= used;
	if (!*msg || !json_object_is_type(*msg, json_type_object)) {
		kvmmig_err("QMP: a line that is not a JSON object (%s)",
			   *msg ? "another JSON type" : json_tokener_error_desc(jerr));
		json_object_put(*msg);
		return -EPROTO;
	}
	return 0;
}

static int qmp_send(struct qmp *q, const char *text)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t n = send(q->fd, text + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kvmmig_ioctl_err("write to the QMP socket", errno);
		off += n;
	}
	return 0;
}

static const char *qmp_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* The greeting names QEMU's version: {"QMP": {"version": {"qemu": {...}}}}. */
static int qmp_greeting(struct qmp *q, double deadline)
{
	struct json_object *msg, *qmp, *ver, *qemu, *v;
	int ret = qmp_read(q, deadline, &msg);
	int64_t major = 0, minor = 0, micro = 0;

	if (ret)
		return ret;
	if (!json_object_object_get_ex(msg, "QMP", &qmp)) {
		json_object_put(msg);
		kvmmig_err("QMP: the peer's first message is not a QMP greeting");
		return -EPROTO;
	}
	if (json_object_object_get_ex(qmp, "version", &ver) &&
	    json_object_object_get_ex(ver, "qemu", &qemu)) {
		if (json_object_object_get_ex(qemu, "major", &v))
			major = json_object_get_int64(v);
		if (json_object_object_get_ex(qemu, "minor", &v))
			minor = json_object_get_int64(v);
		if (json_object_object_get_ex(qemu, "micro", &v))
			micro = json_object_get_int64(v);
	}
	snprintf(q->version, sizeof(q->version), "%lld.%lld.%lld", (long long)major,
		 (long long)minor, (long long)micro);
	json_object_put(msg);
	return 0;
}

int qmp_open(const char *socket, int timeout_ms, volatile sig_atomic_t *cancel,
	     struct qmp **out)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	struct qmp *q;
	int ret;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->cancel = cancel;
	ret = qmp_connect(socket, &q->fd);
	if (!ret)
		ret = qmp_greeting(q, deadline);
	if (!ret)
		ret = qmp_execute(q, "qmp_capabilities", NULL, (deadline - now_s()) * 1000, NULL);
	if (ret) {
		qmp_close(q);
		return ret;
	}
	*out = q;
	return 0;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q);
}

const char *qmp_version(const struct qmp *q)
{
	return q->version;
}

static int qmp_error(const char *cmd, struct json_object *err)
{
	const char *desc = qmp_str(err, "desc"), *class = qmp_str(err, "class");

	kvmmig_err("QMP %s: %s (%s)", cmd, desc ? desc : "an error without a description",
		   class ? class : "no class");
	return -EIO;
}

int qmp_execute(struct qmp *q, const char *cmd, const char *args_json, int timeout_ms,
		struct json_object **ret)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	struct json_object *msg, *v;
	char text[1024];
	int err;

	if ((size_t)snprintf(text, sizeof(text), "{\"execute\":\"%s\"%s%s}\n", cmd,
			     args_json ? ",\"arguments\":" : "", args_json ? args_json : "") >=
	    sizeof(text)) {
		kvmmig_err("QMP %s: arguments longer than %zu bytes", cmd, sizeof(text));
		return -E2BIG;
	}
	err = qmp_send(q, text);
	/* Events may come first: skip them. */
	while (!err && !(err = qmp_read(q, deadline, &msg))) {
		if (json_object_object_get_ex(msg, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
			json_object_put(msg);
			return 0;
		}
		if (json_object_object_get_ex(msg, "error", &v))
			err = qmp_error(cmd, v);
		json_object_put(msg);
	}
	return err;
}

static uint64_t qmp_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_uint64(v);
}

int qmp_query_migrate(struct qmp *q, int timeout_ms, struct qmp_migration *m)
{
	struct json_object *r, *ram, *v;
	const char *s;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = qmp_execute(q, "query-migrate", NULL, timeout_ms, &r);
	if (ret)
		return ret;
	/* Before any migration QEMU answers {} : status none. */
	s = qmp_str(r, "status");
	snprintf(m->status, sizeof(m->status), "%s", s ? s : "none");
	s = qmp_str(r, "error-desc");
	snprintf(m->error, sizeof(m->error), "%s", s ? s : "");
	m->downtime_ms = qmp_u64(r, "downtime");
	m->total_time_ms = qmp_u64(r, "total-time");
	if (json_object_object_get_ex(r, "ram", &ram)) {
		m->has_ram = true;
		m->total = qmp_u64(ram, "total");
		m->remaining = qmp_u64(ram, "remaining");
		m->transferred = qmp_u64(ram, "transferred");
		m->dirty_sync_count = qmp_u64(ram, "dirty-sync-count");
		m->dirty_pages_rate = qmp_u64(ram, "dirty-pages-rate");
		if (json_object_object_get_ex(ram, "mbps", &v))
			m->mbps = json_object_get_double(v);
	}
	json_object_put(r);
	return 0;
}

bool qmp_migration_ended(const struct qmp_migration *m)
{
	return !strcmp(m->status, "completed") || !strcmp(m->status, "failed") ||
	       !strcmp(m->status, "cancelled");
}

int qmp_migrate_parameter(struct qmp *q, const char *name, int timeout_ms, int64_t *val)
{
	struct json_object *r, *v;
	int ret;

	ret = qmp_execute(q, "query-migrate-parameters", NULL, timeout_ms, &r);
	if (ret)
		return ret;
	ret = -ENOENT;
	if (json_object_object_get_ex(r, name, &v) && json_object_is_type(v, json_type_int)) {
		*val = json_object_get_int64(v);
		ret = 0;
	} else {
		kvmmig_err("QMP query-migrate-parameters: no integer '%s'", name);
	}
	json_object_put(r);
	return ret;
}
