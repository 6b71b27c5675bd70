// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP client of qmp.h.  QMP sends one JSON object per line: the
 * greeting ("QMP"), answers ("return" or "error") and events ("event"),
 * which may come before an answer.  Lines are taken from a buffer filled
 * with poll() and read() against the caller's deadline, in steps of
 * QMP_POLL_MS so that a cancel is seen, and parsed with json-c; callers
 * get the lines themselves as well, for their own logs and callbacks.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
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

/* ---- JSON ---- */

/* @line as a JSON object, or NULL. */
static struct json_object *qmp_parse(const char *line)
{
	struct json_object *o = json_tokener_parse(line);

	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static bool qmp_type_ok(struct json_object *v, json_type want)
{
	json_type t = json_object_get_type(v);

	if (want == json_type_double)
		return t == json_type_double || t == json_type_int;
	return t == want;
}

/* The first member @key of type @want in @o, depth first, in order. */
static struct json_object *qmp_find(struct json_object *o, const char *key, json_type want)
{
	struct json_object *found = NULL;
	size_t i;

	if (json_object_is_type(o, json_type_array)) {
		for (i = 0; !found && i < json_object_array_length(o); i++)
			found = qmp_find(json_object_array_get_idx(o, i), key, want);
		return found;
	}
	if (!json_object_is_type(o, json_type_object))
		return NULL;
	json_object_object_foreach(o, k, v) {
		if (!strcmp(k, key) && qmp_type_ok(v, want))
			return v;
		found = qmp_find(v, key, want);
		if (found)
			return found;
	}
	return NULL;
}

/* Run @fn on the member @key of type @want found in @line. */
static int qmp_get(const char *line, const char *key, json_type want,
		   void (*fn)(struct json_object *v, void *out), void *out)
{
	struct json_object *o = json_tokener_parse(line), *v;
	int ret = -ENOENT;

	if (!o)
		return -EPROTO;
	v = qmp_find(o, key, want);
	if (v) {
		fn(v, out);
		ret = 0;
	}
	json_object_put(o);
	return ret;
}

static void qmp_take_u64(struct json_object *v, void *out)
{
	*(uint64_t *)out = json_object_get_uint64(v);
}

static void qmp_take_double(struct json_object *v, void *out)
{
	*(double *)out = json_object_get_double(v);
}

struct qmp_str_out {
	char *buf;
	size_t size;
};

static void qmp_take_str(struct json_object *v, void *out)
{
	struct qmp_str_out *s = out;

	snprintf(s->buf, s->size, "%s", json_object_get_string(v));
}

int qmp_get_u64(const char *line, const char *key, uint64_t *v)
{
	return qmp_get(line, key, json_type_int, qmp_take_u64, v);
}

int qmp_get_double(const char *line, const char *key, double *v)
{
	return qmp_get(line, key, json_type_double, qmp_take_double, v);
}

int qmp_get_str(const char *line, const char *key, char *out, size_t size)
{
	struct qmp_str_out s = { out, size };

	if (!size)
		return -ENOENT;
	return qmp_get(line, key, json_type_string, qmp_take_str, &s);
}

/* A top-level member of @o, or NULL. */
static struct json_object *qmp_member(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t qmp_member_u64(struct json_object *o, const char *key)
{
	struct json_object *v = qmp_member(o, key);

	return v && qmp_type_ok(v, json_type_double) ? json_object_get_uint64(v) : 0;
}

/* ---- lines ---- */

static int qmp_wait_readable(struct qmp *q, double deadline)
{
	struct pollfd p = { .fd = q->fd, .events = POLLIN };

	for (;;) {
		double left = (deadline - now_s()) * 1000;
		int r;

		if (kvmmig_cancelled(q->cancel))
			return -ECANCELED;
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left < QMP_POLL_MS ? (int)left + 1 : QMP_POLL_MS);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0)
			return 0;
	}
}

int qmp_read_line(struct qmp *q, char *line, size_t size, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	char *nl;
	ssize_t n;
	int r;

	while (!(nl = memchr(q->buf, '\n', q->len))) {
		if (q->len == sizeof(q->buf)) {
			kvmmig_err("qmp: QEMU wrote a line longer than %zu bytes", sizeof(q->buf));
			return -EMSGSIZE;
		}
		r = qmp_wait_readable(q, deadline);
		if (r)
			return r;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		q->len += n;
	}
	snprintf(line, size, "%.*s", (int)(nl - q->buf), q->buf);
	q->len -= nl + 1 - q->buf;
	memmove(q->buf, nl + 1, q->len);
	return 0;
}

static void qmp_say_read_error(int r, const char *what)
{
	if (r == -ETIMEDOUT)
		kvmmig_err("qmp: QEMU did not answer %s in time", what);
	else if (r == -EPIPE)
		kvmmig_err("qmp: QEMU closed its socket before answering %s", what);
	else if (r == -ECANCELED)
		kvmmig_err("qmp: cancelled while waiting for %s", what);
}

/* The next line that is not an event, parsed into *@msg; events go to the callback. */
static int qmp_read_answer(struct qmp *q, char *line, size_t size, double deadline,
			   const char *what, struct json_object **msg)
{
	int r;

	for (;;) {
		r = qmp_read_line(q, line, size, (deadline - now_s()) * 1000);
		if (r) {
			qmp_say_read_error(r, what);
			return r;
		}
		*msg = qmp_parse(line);
		if (!*msg) {
			kvmmig_err("qmp: QEMU wrote a line that is not a JSON object: %.200s", line);
			return -EPROTO;
		}
		if (!qmp_member(*msg, "event"))
			return 0;
		json_object_put(*msg);
		if (q->on_event)
			q->on_event(q->opaque, line);
	}
}

static int qmp_send(struct qmp *q, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(q->fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			kvmmig_err("qmp: writing to QEMU: %s", w < 0 ? strerror(errno) : "closed");
			return w < 0 ? -errno : -EPIPE;
		}
		s += w;
		n -= w;
	}
	return 0;
}

/* ---- commands and events ---- */

static int qmp_refused(const char *cmd, struct json_object *err)
{
	struct json_object *desc = qmp_member(err, "desc"), *class = qmp_member(err, "class");

	kvmmig_err("qmp: QEMU refused %s: %s (%s)", cmd,
		   desc ? json_object_get_string(desc) : "no description",
		   class ? json_object_get_string(class) : "no class");
	return -EIO;
}

int qmp_command(struct qmp *q, char *reply, size_t size, int timeout_ms, const char *fmt, ...)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	struct json_object *msg = NULL, *err;
	char cmd[2048], *line;
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(cmd) - 1) {
		kvmmig_err("qmp: command longer than %zu bytes", sizeof(cmd) - 2);
		return -E2BIG;
	}
	cmd[n++] = '\n';
	r = qmp_send(q, cmd, n);
	if (r)
		return r;
	cmd[n - 1] = '\0';
	line = malloc(QMP_LINE_MAX);
	if (!line)
		return -ENOMEM;
	r = qmp_read_answer(q, line, QMP_LINE_MAX, deadline, cmd, &msg);
	if (!r && (err = qmp_member(msg, "error"))) {
		r = qmp_refused(cmd, err);
	} else if (!r && !qmp_member(msg, "return")) {
		kvmmig_err("qmp: an answer to %s with neither return nor error: %.200s", cmd, line);
		r = -EPROTO;
	}
	if (!r && reply)
		snprintf(reply, size, "%s", line);
	json_object_put(msg);
	free(line);
	return r;
}

int qmp_wait_event(struct qmp *q, const char *name, char *line, size_t size, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	char ev[64];
	int r;

	for (;;) {
		r = qmp_read_line(q, line, size, (deadline - now_s()) * 1000);
		if (r) {
			kvmmig_err("qmp: no %s event from QEMU: %s", name,
				   r == -ETIMEDOUT ? "not in time" : r == -ECANCELED ? "cancelled" :
				   "it closed its socket");
			return r;
		}
		if (qmp_get_str(line, "event", ev, sizeof(ev)))
			continue;
		if (!strcmp(ev, name))
			return 0;
		if (q->on_event)
			q->on_event(q->opaque, line);
	}
}

/* ---- connection ---- */

static int qmp_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	socklen_t len;
	int fd;

	if (!n || n >= sizeof(sa.sun_path)) {
		kvmmig_err("qmp: socket path '%s': expected 1 to %zu characters", path,
			   sizeof(sa.sun_path) - 1);
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, n);
	len = offsetof(struct sockaddr_un, sun_path) + n;
	/* "@name": an abstract socket, no NUL after the name (QEMU's "tight"). */
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		len++;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kvmmig_ioctl_err("socket", errno);
	if (connect(fd, (struct sockaddr *)&sa, len)) {
		int err = errno;

		close(fd);
		if (err != ECONNREFUSED && err != ENOENT)
			kvmmig_err("qmp: connecting to %s: %s", path, strerror(err));
		return -err;
	}
	return fd;
}

/* The greeting: {"QMP": {"version": {"qemu": {"major": 7, ...}}, ...}}. */
static int qmp_greeting(struct qmp *q, const char *path, double deadline)
{
	struct json_object *msg, *qemu;
	char line[1024];
	int r;

	r = qmp_read_answer(q, line, sizeof(line), deadline, "with its greeting", &msg);
	if (r)
		return r;
	if (!qmp_member(msg, "QMP")) {
		kvmmig_err("qmp: %s: expected QEMU's greeting, got: %.200s", path, line);
		json_object_put(msg);
		return -EPROTO;
	}
	qemu = qmp_find(msg, "qemu", json_type_object);
	if (qemu) {
		q->major = qmp_member_u64(qemu, "major");
		q->minor = qmp_member_u64(qemu, "minor");
		q->micro = qmp_member_u64(qemu, "micro");
	}
	json_object_put(msg);
	return 0;
}

int qmp_connect(struct qmp *q, const char *path, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	int r;

	memset(q, 0, sizeof(*q));
	q->fd = qmp_socket(path);
	if (q->fd < 0)
		return q->fd;
	r = qmp_greeting(q, path, deadline);
	if (!r)
		r = qmp_command(q, NULL, 0, (deadline - now_s()) * 1000,
				"{\"execute\":\"qmp_capabilities\"}");
	if (r)
		qmp_close(q);
	return r;
}

void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->len = 0;
}

/* ---- migration ---- */

/* The "return" member of a command's answer, parsed; NULL after saying why. */
static struct json_object *qmp_return(struct qmp *q, const char *cmd, int timeout_ms, int *r)
{
	struct json_object *msg, *ret = NULL;
	char *line = malloc(QMP_LINE_MAX);

	*r = line ? qmp_command(q, line, QMP_LINE_MAX, timeout_ms, "{\"execute\":\"%s\"}", cmd) :
		    -ENOMEM;
	if (!*r && (msg = qmp_parse(line))) {
		ret = json_object_get(qmp_member(msg, "return"));
		json_object_put(msg);
	}
	free(line);
	if (!*r && !json_object_is_type(ret, json_type_object)) {
		kvmmig_err("qmp: %s: expected an object as its return", cmd);
		json_object_put(ret);
		ret = NULL;
		*r = -EPROTO;
	}
	return ret;
}

static void qmp_copy_str(struct json_object *o, const char *key, char *out, size_t size,
			 const char *none)
{
	struct json_object *v = qmp_member(o, key);

	snprintf(out, size, "%s", v && json_object_is_type(v, json_type_string) ?
		 json_object_get_string(v) : none);
}

int qmp_query_migrate(struct qmp *q, struct qmp_migration *m, int timeout_ms)
{
	struct json_object *ret, *ram;
	int r;

	memset(m, 0, sizeof(*m));
	ret = qmp_return(q, "query-migrate", timeout_ms, &r);
	if (!ret)
		return r;
	/* Before any migration QEMU answers {}. */
	qmp_copy_str(ret, "status", m->status, sizeof(m->status), "none");
	qmp_copy_str(ret, "error-desc", m->error, sizeof(m->error), "");
	m->total_time_ms = qmp_member_u64(ret, "total-time");
	m->expected_downtime_ms = qmp_member_u64(ret, "expected-downtime");
	m->downtime_ms = qmp_member_u64(ret, "downtime");
	ram = qmp_member(ret, "ram");
	if (json_object_is_type(ram, json_type_object)) {
		m->has_ram = true;
		m->transferred = qmp_member_u64(ram, "transferred");
		m->remaining = qmp_member_u64(ram, "remaining");
		m->total = qmp_member_u64(ram, "total");
		m->dirty_sync_count = qmp_member_u64(ram, "dirty-sync-count");
		m->dirty_pages_rate = qmp_member_u64(ram, "dirty-pages-rate");
		if (qmp_member(ram, "mbps"))
			m->mbps = json_object_get_double(qmp_member(ram, "mbps"));
	}
	json_object_put(ret);
	return 0;
}

bool qmp_migration_ended(const struct qmp_migration *m)
{
	return !strcmp(m->status, "completed") || !strcmp(m->status, "failed") ||
	       !strcmp(m->status, "cancelled");
}

int qmp_migrate_parameter(struct qmp *q, const char *name, int64_t *v, int timeout_ms)
{
	struct json_object *ret, *p;
	int r;

	ret = qmp_return(q, "query-migrate-parameters", timeout_ms, &r);
	if (!ret)
		return r;
	p = qmp_member(ret, name);
	if (p && json_object_is_type(p, json_type_int)) {
		*v = json_object_get_int64(p);
	} else {
		kvmmig_err("qmp: query-migrate-parameters has no integer '%s'", name);
		r = -ENOENT;
	}
	json_object_put(ret);
	return r;
}
