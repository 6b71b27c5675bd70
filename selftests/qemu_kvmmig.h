/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kvmmig command run by a test on a QEMU it started (qemu_util.h), as an
 * operator would: `kvmmig attach --pid` held open for the test's length,
 * `kvmmig throttle` on its session, lines read from a command's output
 * while it still runs, with the moment they were seen.  Include after
 * kselftest_harness.h: the helpers assert.
 */
#ifndef KVMMIG_QEMU_KVMMIG_H
#define KVMMIG_QEMU_KVMMIG_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "clock.h"
#include "kmod_view.h"
#include "qmp.h"

#define QK_CMD_MS	60000		/* a kvmmig command that ends by itself */
#define QK_OUT_MAX	65536

/* The session `kvmmig attach` holds on QEMU's VM. */
struct qk_attach {
	struct cli_child cmd;
	uint32_t session;
};

static inline void qk_attach_init(struct qk_attach *a)
{
	memset(a, 0, sizeof(*a));
	a->cmd.pidfd = a->cmd.out = a->cmd.err = -1;
}

/* End `kvmmig attach` as Ctrl-C would (it lifts its throttles), or kill it. */
static inline void qk_attach_end(struct qk_attach *a)
{
	if (a->cmd.pid > 0) {
		kill(a->cmd.pid, SIGTERM);
		cli_wait(&a->cmd, 5000);
	}
	cli_end(&a->cmd);
}

/*
 * Wait until the running command @c has written a whole line containing
 * @needle; the line into @line, the moment it was seen into @t.
 */
static inline int cli_wait_line(struct cli_child *c, const char *needle, char *line, size_t size,
			 int ms, double *t)
{
	double deadline = now_s() + ms / 1000.0;
	char *buf = malloc(QK_OUT_MAX);
	const char *p, *b, *e;
	int r = -ETIMEDOUT;

	if (!buf)
		return -ENOMEM;
	do {
		bool ended = cli_wait(c, 0) == 0;

		cli_output(c->out, buf, QK_OUT_MAX);
		p = strstr(buf, needle);
		e = p ? strchr(p, '\n') : NULL;
		if (e) {
			for (b = p; b > buf && b[-1] != '\n'; b--)
				;
			snprintf(line, size, "%.*s", (int)(e - b), b);
			*t = now_s();
			r = 0;
			break;
		}
		if (ended) {
			r = -ECHILD;
			break;
		}
		usleep(5000);
	} while (now_s() < deadline);
	free(buf);
	return r;
}

/* What a failed command said, for the log. */
static inline const char *cli_said(struct cli_child *c, char *buf, size_t len)
{
	return c->err >= 0 ? cli_output(c->err, buf, len) : "";
}

/* `kvmmig ARGS...` to its end, successfully. */
static inline void kvmmig_ok(struct __test_metadata *_metadata, const char *const *args)
{
	char err[2048];

	ASSERT_EQ(0, cli_run(args, QK_CMD_MS, err, sizeof(err))) TH_LOG("kvmmig %s: %s", args[0], err);
}

/* `kvmmig attach --pid @qemu --json` held open; its session id into a->session. */
static inline void qk_attach(struct __test_metadata *_metadata, struct qk_attach *a, pid_t qemu)
{
	char pid[16], line[512], err[1024];
	const char *args[] = { "attach", "--pid", pid, "--json", NULL };
	uint64_t id = 0;
	double t;

	snprintf(pid, sizeof(pid), "%d", qemu);
	ASSERT_EQ(0, cli_start(&a->cmd, args));
	ASSERT_EQ(0, cli_wait_line(&a->cmd, "\"session\"", line, sizeof(line), QK_CMD_MS, &t))
		TH_LOG("kvmmig attach: %s", cli_said(&a->cmd, err, sizeof(err)));
	ASSERT_EQ(0, qmp_get_u64(line, "session", &id));
	ASSERT_NE(0ULL, id);
	a->session = id;
	TH_LOG("attached: %s", line);
}

/* `kvmmig throttle --session S ARGS...` (up to four arguments). */
static inline void qk_throttle(struct __test_metadata *_metadata, const struct qk_attach *at,
			       const char *a, const char *b, const char *c, const char *d)
{
	char session[16];
	const char *args[] = { "throttle", "--session", session, a, b, c, d, NULL };

	snprintf(session, sizeof(session), "%u", at->session);
	kvmmig_ok(_metadata, args);
}

#endif /* KVMMIG_QEMU_KVMMIG_H */
