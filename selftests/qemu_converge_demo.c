// SPDX-License-Identifier: GPL-2.0-only
/*
 * `make vmdemo`'s second part: `kvmmig converge` making a QEMU guest's
 * migration converge, shown live inside the Debian kernel.  It starts
 * Debian's QEMU on the dirtying guest of qemu_dirty_bios.S (vCPU 0 writes
 * 512 KiB at 100 pages/s, vCPU 1 only computes) and a destination QEMU,
 * migrates at 256 KiB/s (qemu_util.h), shows that pass after pass the
 * migration does not converge, then runs the real command, `kvmmig
 * converge --pid QEMU --qmp SOCKET --converge-within S`, with its output
 * (live line and final report, which says how much the vCPU it never
 * limited slept: nothing) on this terminal, and ends with QEMU's downtime
 * and the destination guest's own memory check.  Exit status 0 when the
 * migration completed and the destination found its memory intact.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "log.h"
#include "qemu_util.h"

#define RAM_MIB		32
#define PAGES		128
#define RATE		100.0
#define MAX_BW		(256 << 10)
#define WITHIN		"30"
#define PASSES		5
#define END_S		120		/* converge and the migration end by then */

static struct qemu_guest src, dst;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("qemu-converge: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "qemu-converge: %s: %s\n", what, why);
	qg_stop(&src);
	qg_stop(&dst);
	return 1;
}

/* The migration between the two, at MAX_BW: 0, or the QMP error. */
static int migrate(void)
{
	char uri[64];

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", 20000 + getpid() % 20000);
	if (qmp_command(&dst.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"%s\"}}", uri) ||
	    qmp_command(&src.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate-set-parameters\",\"arguments\":"
			"{\"max-bandwidth\":%d,\"downtime-limit\":300}}", MAX_BW) ||
	    qmp_command(&src.qmp, NULL, 0, QG_QMP_MS,
			"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"%s\"}}", uri))
		return -EIO;
	return 0;
}

/* One line per pass over the dirty pages, PASSES of them; still active? */
static int show_passes(struct qmp_migration *m)
{
	uint64_t seen = 0;
	double deadline = now_s() + 90;

	while (now_s() < deadline) {
		if (qmp_query_migrate(&src.qmp, m, QG_QMP_MS))
			return -EIO;
		if (strcmp(m->status, "active") && strcmp(m->status, "setup"))
			return 0;
		if (m->dirty_sync_count != seen) {
			seen = m->dirty_sync_count;
			say("pass %llu: %llu KiB left to send, at %.0f KiB/s; the guest dirties %.0f KiB/s",
			    (unsigned long long)seen, (unsigned long long)m->remaining >> 10,
			    m->mbps * 1e6 / 8 / 1024, m->dirty_pages_rate * 4.0);
			if (seen >= PASSES)
				return 0;
		}
		usleep(200000);
	}
	return -ETIMEDOUT;
}

/* `kvmmig converge` with this terminal as its output, to its end. */
static int run_converge(void)
{
	char path[PATH_MAX], pid[16];
	const char *argv[] = {
		path, "converge", "--pid", pid, "--qmp", src.sock2, "--converge-within", WITHIN,
		"--idle-rate", "16K", "--min-limit", "4K", NULL,
	};
	int status;
	pid_t c;

	if (cli_path(path, sizeof(path)))
		return -ENOENT;
	snprintf(pid, sizeof(pid), "%d", src.pid);
	say("$ kvmmig converge --pid %s --qmp %s --converge-within %s --idle-rate 16K --min-limit 4K",
	    pid, src.sock2, WITHIN);
	fflush(stdout);
	c = fork();
	if (c < 0)
		return -errno;
	if (!c) {
		execv(path, (char *const *)argv);
		_exit(127);
	}
	if (waitpid(c, &status, 0) != c)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -EINTR;
}

int main(void)
{
	struct qg_opts o = {
		.nr_vcpus = 2, .ram_mib = RAM_MIB, .pages = PAGES, .rate = RATE,
		.compute_mask = 2, .second_qmp = true, .ring_entries = 0,
	};
	double t2;
	struct qmp_migration m;
	char why[1024];
	int ret, k;

	say("a QEMU guest: vCPU 0 writes 512 KiB at %.0f pages/s (%.0f KiB/s), vCPU 1 computes; QEMU with its dirty bitmap",
	    RATE, RATE * 4);
	if (qg_start(&src, &o, why, sizeof(why)))
		return fail("source QEMU", why);
	o.incoming = true;
	o.second_qmp = false;
	if (qg_start(&dst, &o, why, sizeof(why)))
		return fail("destination QEMU", why);
	say("QEMU %d migrates it to QEMU %d (-incoming) over loopback at max-bandwidth %d KiB/s",
	    src.pid, dst.pid, MAX_BW >> 10);
	if (migrate())
		return fail("QMP", kvmmig_last_error());
	if (show_passes(&m))
		return fail("query-migrate", kvmmig_last_error());
	if (strcmp(m.status, "active"))
		return fail("the migration", m.status);
	say("still active after %llu passes: it does not converge by itself",
	    (unsigned long long)m.dirty_sync_count);
	ret = run_converge();
	t2 = now_s();
	if (qmp_query_migrate(&src.qmp, &m, QG_QMP_MS))
		return fail("query-migrate", kvmmig_last_error());
	say("kvmmig converge exited with %d; QEMU's migration: %s, %llu ms downtime", ret, m.status,
	    (unsigned long long)m.downtime_ms);
	if (strcmp(m.status, "completed"))
		return fail("the migration", m.status);
	/* The destination runs and checks every page of vCPU 0's twice. */
	for (k = 0; k < 100 && qmp_query_migrate(&dst.qmp, &m, QG_QMP_MS) == 0 &&
		    strcmp(m.status, "completed"); k++)
		usleep(200000);
	qg_set_rate(&dst, 0);
	if (qmp_command(&dst.qmp, NULL, 0, QG_QMP_MS, "{\"execute\":\"cont\"}"))
		return fail("cont", kvmmig_last_error());
	k = qg_status(&dst, 0)->pass;
	while (qg_status(&dst, 0)->pass < (uint32_t)k + 2 && now_s() < t2 + END_S)
		usleep(100000);
	say("the destination guest checked its memory: %s",
	    qg_check_errors(&dst, why, sizeof(why)) ?: "every page as written");
	ret = qg_check_errors(&dst, why, sizeof(why)) ? 1 : 0;
	qg_stop(&src);
	qg_stop(&dst);
	return ret;
}
