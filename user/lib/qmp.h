/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small QMP client (QEMU Machine Protocol) for following another VMM's
 * migration: connect to QEMU's QMP unix socket (a path, or @name for an
 * abstract one), take the greeting, enter command mode, run commands and
 * read their answers, skipping asynchronous events.  Messages are parsed
 * with json-c.  Every read has a deadline, and a cancel flag (cancel.h)
 * ends a wait within QMP_POLL_MS.  Functions return 0 or a negative errno
 * and say what went wrong with kvmmig_err().
 */
#ifndef KVMMIG_QMP_H
#define KVMMIG_QMP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define QMP_POLL_MS	100	/* a cancel is seen this often during a wait */

struct qmp;
struct json_object;

/* Connect, read the greeting and send qmp_capabilities, within @timeout_ms. */
int qmp_open(const char *socket, int timeout_ms, volatile sig_atomic_t *cancel,
	     struct qmp **out);
void qmp_close(struct qmp *q);
/* QEMU's version from the greeting, e.g. "7.2.0". */
const char *qmp_version(const struct qmp *q);
/*
 * Run @cmd with @args_json (a JSON object as text, or NULL); *ret gets the
 * "return" value (json_object_put() it; NULL: not wanted).  A QMP error is
 * -EIO with QEMU's description said.
 */
int qmp_execute(struct qmp *q, const char *cmd, const char *args_json, int timeout_ms,
		struct json_object **ret);

/* What query-migrate says, as far as converge needs it. */
struct qmp_migration {
	char status[32];		/* "none", "setup", "active", "completed", ... */
	char error[256];		/* error-desc, when failed */
	bool has_ram;
	uint64_t total;			/* ram.total, bytes */
	uint64_t remaining;		/* ram.remaining, bytes */
	uint64_t transferred;		/* ram.transferred, bytes */
	double mbps;			/* ram.mbps, megabits per second */
	uint64_t dirty_sync_count;	/* ram.dirty-sync-count */
	uint64_t dirty_pages_rate;	/* ram.dirty-pages-rate, pages/s */
	uint64_t downtime_ms;		/* downtime, once completed */
	uint64_t total_time_ms;		/* total-time */
};

int qmp_query_migrate(struct qmp *q, int timeout_ms, struct qmp_migration *m);
/* The migration is over: completed, failed or cancelled. */
bool qmp_migration_ended(const struct qmp_migration *m);
/* An integer parameter of query-migrate-parameters (e.g. "downtime-limit"). */
int qmp_migrate_parameter(struct qmp *q, const char *name, int timeout_ms, int64_t *v);

#endif /* KVMMIG_QMP_H */
