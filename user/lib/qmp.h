/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A client for QEMU's machine protocol (QMP) on a unix socket: connect and
 * negotiate capabilities, run a command and get its answer, wait for an
 * event, and read single values out of QEMU's answers.  QEMU writes each
 * answer and event as one JSON object on one line, which is what this reads;
 * events that arrive while a command waits for its answer go to a callback.
 * Every wait has a deadline.  For the tests that run QEMU beside kvmmig and
 * for following another VMM's migration (issue 14's `kvmmig converge`).
 */
#ifndef KVMMIG_QMP_H
#define KVMMIG_QMP_H

#include <stddef.h>
#include <stdint.h>

/* The longest line read from QEMU (query-migrate answers are ~1.5 KiB). */
#define QMP_LINE_MAX	8192

struct qmp {
	int fd;
	char buf[QMP_LINE_MAX];	/* read but not yet returned as a line */
	size_t len;
	unsigned int major, minor, micro;	/* QEMU's version, from its greeting */
	/* Called with each event line that arrives while a command waits. */
	void (*on_event)(void *opaque, const char *line);
	void *opaque;
};

/*
 * Connect to @path ("@name": an abstract socket), read the greeting and
 * negotiate capabilities, all within @timeout_ms.  -ECONNREFUSED or
 * -ENOENT while QEMU does not listen yet (the caller retries, said quietly).
 */
int qmp_connect(struct qmp *q, const char *path, int timeout_ms);
void qmp_close(struct qmp *q);

/*
 * Run a command, a JSON object such as {"execute":"query-status"}; its
 * answer's line into @reply (@size bytes, NULL: not kept).  -EIO when QEMU
 * answers with an error (said, with QEMU's description).
 */
int qmp_command(struct qmp *q, char *reply, size_t size, int timeout_ms,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The next line QEMU writes, whatever it is: 0, -ETIMEDOUT, -EPIPE (closed). */
int qmp_read_line(struct qmp *q, char *line, size_t size, int timeout_ms);

/* Wait for event @name (events before it go to on_event); its line into @line. */
int qmp_wait_event(struct qmp *q, const char *name, char *line, size_t size, int timeout_ms);

/* The source's view of a migration, from query-migrate (0 when absent). */
struct qmp_migration {
	char status[24];		/* "setup", "active", "completed", "failed"... */
	uint64_t total_time_ms;
	uint64_t expected_downtime_ms;	/* while active */
	uint64_t downtime_ms;		/* once completed */
	uint64_t transferred, remaining, total;	/* RAM bytes */
	uint64_t dirty_sync_count;	/* passes over the dirty bitmap so far */
	uint64_t dirty_pages_rate;	/* pages per second, as QEMU measured it */
	double mbps;			/* the bandwidth QEMU measured */
};

/* query-migrate into @m. */
int qmp_query_migrate(struct qmp *q, struct qmp_migration *m, int timeout_ms);

/*
 * The value of the first member called @key anywhere in @line: a number
 * (0, or -ENOENT when there is none that is a number) or a string (copied
 * unescaped up to @size - 1 bytes; -ENOENT when there is none).
 */
int qmp_get_u64(const char *line, const char *key, uint64_t *v);
int qmp_get_double(const char *line, const char *key, double *v);
int qmp_get_str(const char *line, const char *key, char *out, size_t size);

#endif /* KVMMIG_QMP_H */
