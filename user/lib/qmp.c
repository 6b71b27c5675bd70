// SPDX-License-Identifier: GPL-2.0-only
/*
 * QMP client: QEMU's machine protocol over a unix socket, one JSON object
 * per line.  See qmp.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "qmp.h"

/* Milliseconds left until @deadline (now_ms() based), at least 0. */
static int ms_left(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	return left > 0 ? (int)left : 0;
}

int qmp_read_line(struct qmp *q, char *line, size_t size, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (nl) {
			size_t l = nl - q->buf;

			snprintf(line, size, "%.*s", (int)l, q->buf);
			memmove(q->buf, nl + 1, q->len - l - 1);
			q->len -= l + 1;
			return 0;
		}
		if (q->len == sizeof(q->buf)) {
			kvmmig_err("qmp: QEMU wrote a line longer than %zu bytes", sizeof(q->buf));
			return -EMSGSIZE;
		}
		r = poll(&p, 1, ms_left(deadline));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0 && !ms_left(deadline))
			return -ETIMEDOUT;
		if (r <= 0)
			continue;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		q->len += n;
	}
}

static bool is_event(const char *line)
{
	return strstr(line, "\"event\"") && !strstr(line, "\"return\"");
}

/* The next line that is not an event; events go to the callback. */
static int read_answer(struct qmp *q, char *line, size_t size, int64_t deadline,
		       const char *what)
{
	int r;

	for (;;) {
		r = qmp_read_line(q, line, size, ms_left(deadline));
		if (r == -ETIMEDOUT)
			kvmmig_err("qmp: QEMU did not answer %s in time", what);
		else if (r == -EPIPE)
			kvmmig_err("qmp: QEMU closed its socket before answering %s", what);
		if (r)
			return r;
		if (!is_event(line))
			return 0;
		if (q->on_event)
			q->on_event(q->opaque, line);
	}
}

static int send_all(struct qmp *q, const char *s, size_t n)
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

int qmp_command(struct qmp *q, char *reply, size_t size, int timeout_ms, const char *fmt, ...)
{
	int64_t deadline = now_ms() + timeout_ms;
	char cmd[2048], desc[256];
	char *line;
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
	r = send_all(q, cmd, n);
	if (r)
		return r;
	cmd[n - 1] = '\0';
	line = malloc(QMP_LINE_MAX);
	if (!line)
		return -ENOMEM;
	r = read_answer(q, line, QMP_LINE_MAX, deadline, cmd);
	if (!r && !strstr(line, "\"return\"")) {
		if (qmp_get_str(line, "desc", desc, sizeof(desc)))
			snprintf(desc, sizeof(desc), "%.200s", line);
		kvmmig_err("qmp: QEMU refused %s: %s", cmd, desc);
		r = -EIO;
	}
	if (!r && reply)
		snprintf(reply, size, "%s", line);
	free(line);
	return r;
}

int qmp_wait_event(struct qmp *q, const char *name, char *line, size_t size, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char ev[64];
	int r;

	for (;;) {
		r = qmp_read_line(q, line, size, ms_left(deadline));
		if (r) {
			kvmmig_err("qmp: no %s event from QEMU %s", name,
				   r == -ETIMEDOUT ? "in time" : "before it closed its socket");
			return r;
		}
		if (!is_event(line))
			continue;
		if (!qmp_get_str(line, "event", ev, sizeof(ev)) && !strcmp(ev, name))
			return 0;
		if (q->on_event)
			q->on_event(q->opaque, line);
	}
}

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
	if (fd < 0) {
		kvmmig_err("qmp: socket: %s", strerror(errno));
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&sa, len)) {
		int err = errno;

		close(fd);
		if (err != ECONNREFUSED && err != ENOENT)
			kvmmig_err("qmp: connecting to %s: %s", path, strerror(err));
		return -err;
	}
	return fd;
}

int qmp_connect(struct qmp *q, const char *path, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char line[1024];
	uint64_t v;
	int r;

	memset(q, 0, sizeof(*q));
	q->fd = qmp_socket(path);
	if (q->fd < 0)
		return q->fd;
	r = read_answer(q, line, sizeof(line), deadline, "with its greeting");
	if (!r && !strstr(line, "\"QMP\"")) {
		kvmmig_err("qmp: %s: expected QEMU's greeting, got: %.200s", path, line);
		r = -EPROTO;
	}
	if (!r) {
		q->major = qmp_get_u64(line, "major", &v) ? 0 : v;
		q->minor = qmp_get_u64(line, "minor", &v) ? 0 : v;
		q->micro = qmp_get_u64(line, "micro", &v) ? 0 : v;
		r = qmp_command(q, NULL, 0, ms_left(deadline), "{\"execute\":\"qmp_capabilities\"}");
	}
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

/* Where @key's value starts in @line (blanks skipped), or NULL. */
static const char *value_of(const char *line, const char *key)
{
	size_t n = strlen(key);
	const char *p = line;

	while ((p = strchr(p, '"'))) {
		const char *v = p + 1 + n;

		if (!strncmp(p + 1, key, n) && *v == '"') {
			v += 1 + strspn(v + 1, " ");
			if (*v == ':')
				return v + 1 + strspn(v + 1, " ");
		}
		p++;
	}
	return NULL;
}

int qmp_get_u64(const char *line, const char *key, uint64_t *v)
{
	const char *p = value_of(line, key);
	char *end;

	if (!p || *p < '0' || *p > '9')
		return -ENOENT;
	*v = strtoull(p, &end, 10);
	return 0;
}

int qmp_get_double(const char *line, const char *key, double *v)
{
	const char *p = value_of(line, key);
	char *end;

	if (!p)
		return -ENOENT;
	*v = strtod(p, &end);
	return end == p ? -ENOENT : 0;
}

int qmp_get_str(const char *line, const char *key, char *out, size_t size)
{
	const char *p = value_of(line, key);
	size_t n = 0;

	if (!p || *p != '"' || !size)
		return -ENOENT;
	for (p++; *p && *p != '"' && n + 1 < size; p++) {
		if (*p == '\\' && p[1])
			p++;
		out[n++] = *p;
	}
	out[n] = '\0';
	return 0;
}

int qmp_query_migrate(struct qmp *q, struct qmp_migration *m, int timeout_ms)
{
	char *line = malloc(QMP_LINE_MAX);
	int r;

	if (!line)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	r = qmp_command(q, line, QMP_LINE_MAX, timeout_ms, "{\"execute\":\"query-migrate\"}");
	if (!r) {
		/* Before any migration the answer is an empty object. */
		if (qmp_get_str(line, "status", m->status, sizeof(m->status)))
			snprintf(m->status, sizeof(m->status), "none");
		qmp_get_u64(line, "total-time", &m->total_time_ms);
		qmp_get_u64(line, "expected-downtime", &m->expected_downtime_ms);
		qmp_get_u64(line, "downtime", &m->downtime_ms);
		qmp_get_u64(line, "transferred", &m->transferred);
		qmp_get_u64(line, "remaining", &m->remaining);
		qmp_get_u64(line, "total", &m->total);
		qmp_get_u64(line, "dirty-sync-count", &m->dirty_sync_count);
		qmp_get_u64(line, "dirty-pages-rate", &m->dirty_pages_rate);
		qmp_get_double(line, "mbps", &m->mbps);
	}
	free(line);
	return r;
}
