// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU as the same-run baseline for idle migration: Debian's QEMU and
 * kvmmig take turns, round after round, migrating the same idle guest (4 GiB,
 * every other 2 MiB of its RAM data, the rest zero) over loopback with 1
 * and 4 multifd channels, and the medians, ranges and the kvmmig/QEMU
 * ratios of total time and downtime are printed and written as JSON.
 * Both end when the destination guest runs: QEMU's times come from its QMP
 * events (source MIGRATION "setup" and STOP to destination RESUME; QEMU's
 * own query-migrate figures, which end when the source has sent, are kept
 * beside them), kvmmig's from its report (start, and pause, to STARTED).
 * kvmmig runs twice per round: its destination's guest in anonymous
 * memory, and in transparent huge pages as QEMU's is (kvmmig-thp).
 *
 * QEMU runs with -accel kvm a guest whose firmware only halts
 * (qemu_halt_bios.S, built with the tree): this host's KVM cannot run a
 * stock kernel under QEMU, but it runs that.  The source's RAM is a
 * memory-backend-file on a memfd this program fills before each
 * migration, the destination's anonymous memory (memory-backend-ram) as
 * QEMU gives any guest; both are started here and driven over QMP on
 * abstract unix sockets, their logs in memfds, so nothing is left on disk.
 * kvmmig's source and destination are migration_perf's own sides
 * (perf_side.h), as in its idle benchmark, its source's guest with every
 * page allocated as QEMU's memfd is.  Every QEMU and side is killed when
 * the program ends, fails or is interrupted, and every wait has a deadline.
 *
 *   qemu_perf [--rounds N] [--ram-gib N] [--no-warmup] [--qemu PATH] [--json FILE]
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dirty.h"
#include "guest_abi.h"
#include "perf_side.h"
#include "perf_util.h"
#include "vm.h"

#define HALF_ZERO_CHUNK	(2ULL << 20)	/* as migration_perf's idle guest */
#define MAX_ROUNDS	15
#define NR_CHANNELS	2
#define QEMU_START_MS	30000		/* a started QEMU answers on QMP */
#define QMP_REPLY_MS	30000		/* a QMP command is answered */
#define MIG_RUN_MS	600000		/* a migration completes */
#define RESUME_MS	60000		/* the destination runs once the source completed */
#define QEMU_EXIT_MS	10000		/* a QEMU told to quit exits (then SIGKILL) */
#define SIDE_READY_MS	300000		/* kvmmig's source creates and fills its guest */
#define SIDE_PORT_MS	30000		/* kvmmig's destination names its port */
#define SIDE_EXIT_MS	120000		/* a side that reported exits */
#define POLL_MS		50		/* query-migrate while QEMU migrates */
#define LINE_MAX_LEN	4096		/* a line from QEMU or a side (perf_side.buf); QMP writes ~1.2 KiB */

static const unsigned int channels[NR_CHANNELS] = { 1, 4 };

/* kvmmig-thp: the destination's guest in transparent huge pages (--backing thp). */
enum system { SYS_QEMU, SYS_KVMMIG, SYS_KVMMIG_THP, NR_SYSTEMS };

static const char *const sys_names[NR_SYSTEMS] = { "QEMU", "kvmmig", "kvmmig-thp" };

/* One migration's outcome. */
struct run {
	double total_s;		/* start until the destination guest runs */
	double downtime_ms;	/* source paused until the destination guest runs */
	double own_total_ms;	/* QEMU's query-migrate total-time, downtime: */
	double own_downtime_ms;	/* they end when the source is done */
	uint64_t data_pages, zero_pages;
	char error[512];
};

struct bench {
	unsigned int rounds;
	bool warmup;			/* one untimed migration of each system first */
	uint64_t ram;
	const char *qemu;		/* the binary */
	char bios[PATH_MAX];		/* qemu_halt_bios.bin, next to this program */
	char sides[PATH_MAX];		/* migration_perf, likewise */
	int mem_fd;			/* the QEMU source's RAM, filled for each migration */
	char version[96];		/* QEMU's, from its QMP greeting */
	double load_start, load_end;	/* 1-minute load average */
	struct run runs[NR_SYSTEMS][NR_CHANNELS][MAX_ROUNDS];
	struct perf_json json;
};

/* A QEMU process and its QMP connection (a perf_side reading the socket). */
struct qemu {
	const char *role;		/* "source", "destination", "probe" */
	struct perf_side qmp;		/* pid: QEMU's; to_side/from_side: the socket */
	char sock[64];			/* QMP's abstract unix socket: no file */
	int log_fd;			/* QEMU's stdout and stderr: a memfd */
	double setup_ts, stop_ts, resume_ts;	/* event timestamps, 0 until seen */
};

/*
 * The processes running now, for a signal handler to kill.  Nothing else
 * needs undoing: QMP sockets are abstract, logs and guest RAM memfds.
 */
#define MAX_CHILDREN	4
static volatile pid_t children[MAX_CHILDREN];

static void child_track(pid_t pid)
{
	unsigned int i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (!children[i]) {
			children[i] = pid;
			return;
		}
	}
	/* Cannot happen (two QEMUs or two sides at a time); never lose one. */
	kill(pid, SIGKILL);
}

static void child_untrack(pid_t pid)
{
	unsigned int i;

	for (i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* Async-signal-safe: kill whatever still runs. */
static void kill_children(void)
{
	unsigned int i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static void on_signal(int sig)
{
	static const char msg[] = "qemu_perf: interrupted: every QEMU and side killed\n";

	kill_children();
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(128 + sig);
	_exit(128 + sig);
}

static void __attribute__((format(printf, 2, 3))) run_fail(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->error[0])
		return;		/* the first reason is the one that counts */
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

/*
 * The byte migration_perf's idle guest fills the 2 MiB chunk at @off with,
 * every other chunk; the rest is zero.  The byte wraps: a few data chunks
 * are zero too.
 */
static uint8_t half_zero_byte(uint64_t off)
{
	return 0x5a + (off >> 21);
}

/* Pages of a @ram guest that hold data (not zero). */
static uint64_t data_pages(uint64_t ram)
{
	uint64_t off, n = 0;

	for (off = 0; off < ram; off += 2 * HALF_ZERO_CHUNK)
		if (half_zero_byte(off))
			n += HALF_ZERO_CHUNK / 4096;
	return n;
}

/* ---- QEMU over QMP ---- */

/* The last lines QEMU wrote to its log, folded onto one line, into @out. */
static void qemu_log_tail(const struct qemu *q, char *out, size_t size)
{
	char buf[400];
	off_t end = lseek(q->log_fd, 0, SEEK_END);
	ssize_t n;

	out[0] = '\0';
	if (end <= 0)
		return;
	n = pread(q->log_fd, buf, sizeof(buf) - 1,
		  end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	snprintf(out, size, "%s", buf);
}

/* Note the event on @line: its name and timestamp (wall clock, seconds). */
static void qmp_note_event(struct qemu *q, const char *line)
{
	double ts = perf_json_get(line, "seconds", 0) + perf_json_get(line, "microseconds", 0) / 1e6;
	char name[32], status[32];

	perf_json_get_str(line, "event", name, sizeof(name));
	perf_json_get_str(line, "status", status, sizeof(status));
	if (!strcmp(name, "MIGRATION") && !strcmp(status, "setup") && !q->setup_ts)
		q->setup_ts = ts;
	else if (!strcmp(name, "STOP") && !q->stop_ts)
		q->stop_ts = ts;
	else if (!strcmp(name, "RESUME"))
		q->resume_ts = ts;
}

/* The next line from QEMU that is not an event, within @timeout_ms; notes events. */
static int qmp_read_answer(struct qemu *q, char *line, size_t size, int timeout_ms, struct run *r)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	int ret;

	for (;;) {
		int left = (deadline - now_s()) * 1000;

		ret = perf_side_read(&q->qmp, line, size, left > 0 ? left : 0);
		if (ret) {
			char tail[400];

			qemu_log_tail(q, tail, sizeof(tail));
			run_fail(r, "QEMU (%s) %s on QMP; its log: %s", q->role,
				 ret == -ETIMEDOUT ? "did not answer in time" :
				 ret == -EMSGSIZE ? "wrote a line over 4 KiB" : "closed its socket",
				 tail[0] ? tail : "(empty)");
			return ret;
		}
		if (!strstr(line, "\"event\""))
			return 0;
		qmp_note_event(q, line);
	}
}

/* Run one QMP command (a JSON object); its "return" line into @reply (LINE_MAX_LEN). */
static int __attribute__((format(printf, 4, 5))) qmp_cmd(struct qemu *q, struct run *r,
							 char *reply, const char *fmt, ...)
{
	char cmd[512], line[LINE_MAX_LEN], desc[256];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (perf_side_go(&q->qmp, cmd)) {
		run_fail(r, "QEMU (%s) closed its QMP socket before '%s'", q->role, cmd);
		return -EPIPE;
	}
	ret = qmp_read_answer(q, line, sizeof(line), QMP_REPLY_MS, r);
	if (ret)
		return ret;
	if (!strstr(line, "\"return\"")) {
		perf_json_get_str(line, "desc", desc, sizeof(desc));
		run_fail(r, "QEMU (%s) refused %s: %s", q->role, cmd, desc[0] ? desc : line);
		return -EIO;
	}
	if (reply)
		snprintf(reply, LINE_MAX_LEN, "%s", line);
	return 0;
}

/* Read events until the one @ts records has come, within @timeout_ms. */
static int qmp_wait_event(struct qemu *q, double *ts, const char *name, int timeout_ms,
			  struct run *r)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	char line[LINE_MAX_LEN];

	while (!*ts) {
		int left = (deadline - now_s()) * 1000;

		if (left <= 0 || perf_side_read(&q->qmp, line, sizeof(line), left)) {
			run_fail(r, "QEMU (%s) sent no %s event within %d s", q->role, name,
				 timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		if (strstr(line, "\"event\""))
			qmp_note_event(q, line);
	}
	return 0;
}

/* The child's half of qemu_start(): QEMU with its log as stdout and stderr. */
static void qemu_exec(const struct bench *b, const struct qemu *q, char *const argv[])
{
	int null = open("/dev/null", O_RDONLY);

	/* Never outlive the benchmark, however it ends. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
	    dup2(q->log_fd, STDOUT_FILENO) < 0 || dup2(q->log_fd, STDERR_FILENO) < 0)
		_exit(127);
	/* The source maps the filled memfd as /dev/fd/N: let it inherit it. */
	if (!strcmp(q->role, "source") && fcntl(b->mem_fd, F_SETFD, 0) < 0)
		_exit(127);
	execvp(b->qemu, argv);
	dprintf(STDERR_FILENO, "cannot run %s: %s (Debian's qemu-system-x86; `make deps` installs it)\n",
		b->qemu, strerror(errno));
	_exit(127);
}

/* Connect to QEMU's QMP socket once it listens, or fail when QEMU exits. */
static int qmp_connect(struct qemu *q, struct run *r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double deadline = now_s() + QEMU_START_MS / 1000.0;
	/* An abstract name: a NUL, then the name, no NUL after it (QEMU's "tight"). */
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(q->sock);
	char tail[400];
	int fd, st;

	memcpy(sa.sun_path + 1, q->sock, strlen(q->sock));
	while (now_s() < deadline) {
		if (waitpid(q->qmp.pid, &st, WNOHANG) == q->qmp.pid) {
			child_untrack(q->qmp.pid);
			q->qmp.pid = 0;
			qemu_log_tail(q, tail, sizeof(tail));
			run_fail(r, "QEMU (%s) exited at start (%s %d): %s", q->role,
				 WIFEXITED(st) ? "status" : "signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
				 tail[0] ? tail : "(nothing in its log)");
			return -ECHILD;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			run_fail(r, "socket: %s", strerror(errno));
			return -errno;
		}
		if (!connect(fd, (struct sockaddr *)&sa, len)) {
			q->qmp.from_side = fd;
			q->qmp.to_side = fcntl(fd, F_DUPFD_CLOEXEC, 0);
			return q->qmp.to_side < 0 ? -errno : 0;
		}
		close(fd);
		usleep(20000);
	}
	run_fail(r, "QEMU (%s) did not open its QMP socket @%s within %d s", q->role, q->sock,
		 QEMU_START_MS / 1000);
	return -ETIMEDOUT;
}

/*
 * Start QEMU as @q->role with @ram bytes of RAM (the filled memfd for the
 * source, anonymous memory otherwise; a destination waits for
 * migrate-incoming) and open its QMP session.
 */
static int qemu_start(struct bench *b, struct qemu *q, uint64_t ram, struct run *r)
{
	char mem[160], qmp[160], size[32], line[LINE_MAX_LEN];
	bool dest = !strcmp(q->role, "destination");
	char *argv[] = {
		(char *)b->qemu, "-nodefaults", "-no-user-config",
		"-machine", "pc,memory-backend=m", "-accel", "kvm", "-smp", "1",
		"-m", size, "-bios", b->bios, "-display", "none", "-object", mem,
		"-qmp", qmp, dest ? "-incoming" : NULL, "defer", NULL,
	};
	int ret;

	memset(&q->qmp, 0, sizeof(q->qmp));
	q->qmp.to_side = q->qmp.from_side = -1;
	q->setup_ts = q->stop_ts = q->resume_ts = 0;
	snprintf(q->sock, sizeof(q->sock), "kvmmig-qemu_perf-%d-%s", getpid(), q->role);
	q->log_fd = memfd_create("qemu_perf-log", MFD_CLOEXEC);
	if (q->log_fd < 0) {
		run_fail(r, "memfd_create for QEMU's log: %s", strerror(errno));
		return -errno;
	}
	snprintf(size, sizeof(size), "%lluM", (unsigned long long)(ram >> 20));
	if (!strcmp(q->role, "source"))
		snprintf(mem, sizeof(mem),
			 "memory-backend-file,id=m,size=%s,mem-path=/dev/fd/%d,share=on",
			 size, b->mem_fd);
	else
		snprintf(mem, sizeof(mem), "memory-backend-ram,id=m,size=%s", size);
	snprintf(qmp, sizeof(qmp), "unix:%s,abstract=on,server=on,wait=off", q->sock);
	fflush(stdout);
	fflush(stderr);
	q->qmp.pid = fork();
	if (q->qmp.pid < 0) {
		q->qmp.pid = 0;
		run_fail(r, "fork: %s", strerror(errno));
		return -errno;
	}
	if (!q->qmp.pid)
		qemu_exec(b, q, argv);
	child_track(q->qmp.pid);
	ret = qmp_connect(q, r);
	if (!ret)
		ret = qmp_read_answer(q, line, sizeof(line), QMP_REPLY_MS, r);
	if (!ret && !b->version[0])
		snprintf(b->version, sizeof(b->version), "%d.%d.%d",
			 (int)perf_json_get(line, "major", 0), (int)perf_json_get(line, "minor", 0),
			 (int)perf_json_get(line, "micro", 0));
	if (!ret)
		ret = qmp_cmd(q, r, NULL, "{\"execute\":\"qmp_capabilities\"}");
	return ret;
}

/* Ask QEMU to quit; kill it if it has not exited in time. */
static void qemu_stop(struct qemu *q)
{
	pid_t pid = q->qmp.pid;
	struct run ignored = { 0 };

	if (pid) {
		/* Without a QMP session to ask, or refused: no reason to wait. */
		if (q->qmp.to_side < 0 || qmp_cmd(q, &ignored, NULL, "{\"execute\":\"quit\"}"))
			kill(pid, SIGKILL);
		perf_side_wait(&q->qmp, QEMU_EXIT_MS);
		child_untrack(pid);
	}
	if (q->log_fd >= 0)
		close(q->log_fd);
	q->log_fd = -1;
}

/* Multifd with @nr channels, MIGRATION events, no bandwidth cap (QEMU's is 32 MiB/s). */
static int qemu_setup(struct qemu *q, unsigned int nr, struct run *r)
{
	int ret = qmp_cmd(q, r, NULL,
			  "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":["
			  "{\"capability\":\"multifd\",\"state\":true},"
			  "{\"capability\":\"events\",\"state\":true}]}}");

	if (!ret)
		ret = qmp_cmd(q, r, NULL,
			      "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
			      "{\"multifd-channels\":%u,\"max-bandwidth\":%llu}}",
			      nr, 1ULL << 40);
	return ret;
}

/* Poll the source until its migration has completed (0) or failed; its last answer in @reply. */
static int qemu_wait_completed(struct qemu *src, struct run *r, char *reply)
{
	double deadline = now_s() + MIG_RUN_MS / 1000.0;
	char status[32];

	while (now_s() < deadline) {
		if (qmp_cmd(src, r, reply, "{\"execute\":\"query-migrate\"}"))
			return -EIO;
		perf_json_get_str(reply, "status", status, sizeof(status));
		/*
		 * QEMU 7.2 says "completed" a moment before it has worked out
		 * its times (total-time and downtime 0 until then): ask again.
		 */
		if (!strcmp(status, "completed") && perf_json_get(reply, "total-time", 0) > 0)
			return 0;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
			char err[256];

			perf_json_get_str(reply, "error-desc", err, sizeof(err));
			run_fail(r, "QEMU's migration %s: %s", status, err[0] ? err : "(no reason given)");
			return -EIO;
		}
		usleep(POLL_MS * 1000);
	}
	run_fail(r, "QEMU's migration did not complete within %d s", MIG_RUN_MS / 1000);
	return -ETIMEDOUT;
}

/* The destination's listening port (migrate-incoming on port 0), or negative. */
static int qemu_incoming(struct qemu *dst, struct run *r)
{
	char reply[LINE_MAX_LEN], port[16];

	if (qmp_cmd(dst, r, NULL,
		    "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:0\"}}") ||
	    qmp_cmd(dst, r, reply, "{\"execute\":\"query-migrate\"}"))
		return -EIO;
	perf_json_get_str(reply, "port", port, sizeof(port));
	if (atoi(port) <= 0) {
		run_fail(r, "QEMU (destination) named no listening port: %s", reply);
		return -EPROTO;
	}
	return atoi(port);
}

/* The figures of a completed migration, from QMP events and query-migrate. */
static void qemu_result(const struct qemu *src, const struct qemu *dst, const char *reply,
			uint64_t ram, struct run *r)
{
	if (!src->setup_ts || !src->stop_ts) {
		run_fail(r, "QEMU (source) sent no MIGRATION setup or STOP event");
		return;
	}
	r->total_s = dst->resume_ts - src->setup_ts;
	r->downtime_ms = (dst->resume_ts - src->stop_ts) * 1000;
	r->own_total_ms = perf_json_get(reply, "total-time", -1);
	r->own_downtime_ms = perf_json_get(reply, "downtime", -1);
	r->data_pages = perf_json_get(reply, "normal", 0);
	r->zero_pages = perf_json_get(reply, "duplicate", 0);
	/* The guest's data must have gone over the wire, or the layout was wrong. */
	if (r->data_pages < data_pages(ram))
		run_fail(r, "QEMU sent %llu pages with data, expected at least %llu (the guest's)",
			 (unsigned long long)r->data_pages, (unsigned long long)data_pages(ram));
}

/* The QEMU source's RAM: a memfd with migration_perf's half-zero pattern. */
static int fill_source_memory(struct bench *b)
{
	uint8_t *p;
	uint64_t off;

	b->mem_fd = memfd_create("qemu_perf-guest", MFD_CLOEXEC);
	if (b->mem_fd < 0 || ftruncate(b->mem_fd, b->ram))
		return -errno;
	/*
	 * Every page allocated, zero ones included, as in a guest that has
	 * run: QEMU's source must not allocate a page it reads in the timed
	 * part (a hole of a shared file is filled on a read fault).
	 */
	if (fallocate(b->mem_fd, 0, 0, b->ram))
		return -errno;
	p = mmap(NULL, b->ram, PROT_READ | PROT_WRITE, MAP_SHARED, b->mem_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	for (off = 0; off < b->ram; off += 2 * HALF_ZERO_CHUNK)
		memset(p + off, half_zero_byte(off), HALF_ZERO_CHUNK);
	munmap(p, b->ram);
	return 0;
}

/* One QEMU migration of the idle guest over loopback with @nr channels. */
static void qemu_migrate_once(struct bench *b, unsigned int nr, struct run *r)
{
	struct qemu src = { .role = "source", .log_fd = -1 };
	struct qemu dst = { .role = "destination", .log_fd = -1 };
	char reply[LINE_MAX_LEN];
	int port;

	/*
	 * Filled afresh for each migration, as kvmmig's source side fills its
	 * guest in each: both destinations then take their memory right
	 * after a source's fill took the host's warmest pages (run_rounds()).
	 */
	if (fill_source_memory(b)) {
		run_fail(r, "cannot fill %llu GiB of memory for QEMU's source: %s",
			 (unsigned long long)(b->ram >> 30), strerror(errno));
		goto out;
	}
	if (qemu_start(b, &dst, b->ram, r) || qemu_start(b, &src, b->ram, r) ||
	    qemu_setup(&dst, nr, r) || qemu_setup(&src, nr, r))
		goto out;
	port = qemu_incoming(&dst, r);
	if (port < 0 || qmp_cmd(&src, r, reply, "{\"execute\":\"query-status\"}"))
		goto out;
	if (!strstr(reply, "\"running\": true")) {
		run_fail(r, "QEMU's source guest is not running: %s", reply);
		goto out;
	}
	if (qmp_cmd(&src, r, NULL,
		    "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:%d\"}}", port) ||
	    qemu_wait_completed(&src, r, reply) ||
	    qmp_wait_event(&dst, &dst.resume_ts, "RESUME", RESUME_MS, r))
		goto out;
	qemu_result(&src, &dst, reply, b->ram, r);
out:
	qemu_stop(&src);
	qemu_stop(&dst);
	if (b->mem_fd >= 0)
		close(b->mem_fd);
	b->mem_fd = -1;
}

/* ---- kvmmig: migration_perf's own sides ---- */

static int kvmmig_spawn(struct bench *b, struct perf_side *s, char *const argv[])
{
	int ret = perf_side_spawn_exe(s, b->sides, argv);

	if (ret)
		errno = -ret;
	else
		child_track(s->pid);
	return ret;
}

static int kvmmig_wait(struct perf_side *s, bool kill_first)
{
	pid_t pid = s->pid;
	int ret;

	if (!pid)
		return -ECHILD;
	if (kill_first)
		kill(pid, SIGKILL);
	ret = perf_side_wait(s, SIDE_EXIT_MS);
	child_untrack(pid);
	return ret;
}

/* The report line kvmmig's source printed, into @r. */
static void kvmmig_result(const char *line, struct run *r)
{
	char status[32], err[256];

	perf_json_get_str(line, "status", status, sizeof(status));
	if (strcmp(status, "completed")) {
		perf_json_get_str(line, "error", err, sizeof(err));
		run_fail(r, "kvmmig's migration ended %s: %s", status, err);
		return;
	}
	r->total_s = perf_json_get(line, "total_s", 0);
	r->downtime_ms = perf_json_get(line, "downtime_ms", 0);
	r->own_total_ms = r->own_downtime_ms = -1;
	r->data_pages = perf_json_get(line, "pages_sent", 0);
	r->zero_pages = perf_json_get(line, "zero_pages", 0);
}

/* One kvmmig migration of the idle guest, as migration_perf's idle case runs it. */
static void kvmmig_migrate_once(struct bench *b, unsigned int nr, bool thp, struct run *r)
{
	char ram[40], workload[24], backend[24], chans[24], line[LINE_MAX_LEN], addr[64];
	char dest_backing[32];
	char *src_argv[] = { "migration_perf", "--side", "source", ram, "vcpus=1", workload,
			     backend, "half_zero=1", "alloc_all=1", chans, NULL };
	char *dst_argv[] = { "migration_perf", "--side", "dest", dest_backing, NULL };
	struct perf_side src = { 0 }, dst = { 0 };
	bool reported = false;
	int st;

	snprintf(ram, sizeof(ram), "ram=%llu", (unsigned long long)b->ram);
	snprintf(workload, sizeof(workload), "workload=%u", WORKLOAD_IDLE);
	snprintf(backend, sizeof(backend), "backend=%u", DIRTY_AUTO);
	snprintf(chans, sizeof(chans), "channels=%u", nr);
	snprintf(dest_backing, sizeof(dest_backing), "dest_backing=%u",
		 thp ? VM_BACKING_THP : VM_BACKING_ANON);
	if (kvmmig_spawn(b, &src, src_argv)) {
		run_fail(r, "cannot start %s: %s", b->sides, strerror(errno));
		return;
	}
	if (perf_side_read(&src, line, sizeof(line), SIDE_READY_MS) ||
	    perf_json_get(line, "ready", 0) != 1) {
		run_fail(r, "kvmmig's source side did not get ready");
		goto out;
	}
	if (kvmmig_spawn(b, &dst, dst_argv) ||
	    perf_side_read(&dst, line, sizeof(line), SIDE_PORT_MS) ||
	    perf_json_get(line, "port", -1) <= 0) {
		run_fail(r, "kvmmig's destination side did not listen");
		goto out;
	}
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", (int)perf_json_get(line, "port", -1));
	if (perf_side_go(&src, addr)) {
		run_fail(r, "kvmmig's source side exited before it was told where to go");
		goto out;
	}
	while (!reported && !perf_side_read(&src, line, sizeof(line), MIG_RUN_MS))
		reported = strstr(line, "\"event\":\"report\"");
	if (reported)
		kvmmig_result(line, r);
	else
		run_fail(r, "kvmmig's source side did not report within %d s", MIG_RUN_MS / 1000);
out:
	st = kvmmig_wait(&dst, !reported);
	if (st > 0)
		run_fail(r, "kvmmig's destination side exited with %d", st);
	st = kvmmig_wait(&src, !reported);
	if (st > 0)
		run_fail(r, "kvmmig's source side exited with %d", st);
}

/* ---- the benchmark ---- */

/* A small QEMU started and stopped: says early and plainly if -accel kvm cannot work. */
static int qemu_probe(struct bench *b)
{
	struct qemu q = { .role = "probe", .log_fd = -1 };
	struct run r = { 0 };
	int ret = qemu_start(b, &q, 16ULL << 20, &r);

	qemu_stop(&q);
	if (ret)
		fprintf(stderr, "qemu_perf: QEMU could not run a guest with -accel kvm, so there is no baseline: %s\n",
			r.error);
	return ret;
}

/* Files next to this program: the firmware and migration_perf. */
static int find_files(struct bench *b)
{
	char exe[PATH_MAX - 32], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -errno;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	snprintf(b->bios, sizeof(b->bios), "%s/qemu_halt_bios.bin", exe);
	snprintf(b->sides, sizeof(b->sides), "%s/migration_perf", exe);
	if (access(b->bios, R_OK) || access(b->sides, X_OK)) {
		fprintf(stderr, "qemu_perf: expected %s and %s next to this program: run `make`\n",
			b->bios, b->sides);
		return -ENOENT;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		fprintf(stderr, "qemu_perf: /dev/kvm: %s: QEMU and kvmmig both need KVM\n",
			strerror(errno));
		return -ENODEV;
	}
	return 0;
}

/* One row of the per-round table; @round 0 is the warm-up, not kept. */
static void print_run(struct bench *b, enum system s, unsigned int ci, unsigned int round,
		      const char *label, const struct run *r)
{
	char own[32];

	if (s == SYS_QEMU)
		snprintf(own, sizeof(own), "%12.0f %10.0f", r->own_total_ms, r->own_downtime_ms);
	else
		snprintf(own, sizeof(own), "%12s %10s", "-", "-");
	printf("%5s %8u  %-10s %9.3f %12.1f %s %12llu\n", label, channels[ci], sys_names[s],
	       r->total_s, r->downtime_ms, own, (unsigned long long)r->zero_pages);
	if (!round)
		return;
	perf_json_begin(&b->json);
	perf_json_str(&b->json, "bench", "round");
	perf_json_str(&b->json, "system", sys_names[s]);
	perf_json_num(&b->json, "round", round);
	perf_json_num(&b->json, "channels", channels[ci]);
	perf_json_num(&b->json, "total_s", r->total_s);
	perf_json_num(&b->json, "downtime_ms", r->downtime_ms);
	if (s == SYS_QEMU) {
		perf_json_num(&b->json, "qemu_total_time_ms", r->own_total_ms);
		perf_json_num(&b->json, "qemu_downtime_ms", r->own_downtime_ms);
	}
	perf_json_num(&b->json, "data_pages", r->data_pages);
	perf_json_num(&b->json, "zero_pages", r->zero_pages);
	perf_json_end(&b->json);
}

/* Migrate with system @s and @ci's channel count in @round (0: warm-up); 0 or -EIO. */
static int run_once(struct bench *b, enum system s, unsigned int ci, unsigned int round)
{
	struct run warm, *r = round ? &b->runs[s][ci][round - 1] : &warm;
	char label[16];

	snprintf(label, sizeof(label), round ? "%u" : "warm", round);
	memset(r, 0, sizeof(*r));
	if (s == SYS_QEMU)
		qemu_migrate_once(b, channels[ci], r);
	else
		kvmmig_migrate_once(b, channels[ci], s == SYS_KVMMIG_THP, r);
	if (r->error[0]) {
		fprintf(stderr, "qemu_perf: round %s, %u channel%s, %s: %s\n", label,
			channels[ci], channels[ci] > 1 ? "s" : "", sys_names[s], r->error);
		return -EIO;
	}
	print_run(b, s, ci, round, label, r);
	return 0;
}

/*
 * The systems take turns within a round, and the one going first changes
 * from round to round: a noisy moment hurts both alike.  Before the rounds,
 * unless --no-warmup, each system migrates once untimed with 4 channels.
 * These machines hand free memory back to the hypervisor, and the first
 * to touch it again pays up to 14 us a page (benchmarks.rst): each
 * system's source fills its memory right before its destination
 * allocates, so both destinations meet the host in the same state.
 */
static int run_rounds(struct bench *b)
{
	unsigned int round, ci, k;

	printf("round channels  system       total s  downtime ms own total ms  own dt ms   zero pages\n");
	for (k = 0; b->warmup && k < NR_SYSTEMS; k++)
		if (run_once(b, k, NR_CHANNELS - 1, 0))
			return -EIO;
	for (round = 1; round <= b->rounds; round++)
		for (ci = 0; ci < NR_CHANNELS; ci++)
			for (k = 0; k < NR_SYSTEMS; k++)
				if (run_once(b, (k + round + 1) % NR_SYSTEMS, ci, round))
					return -EIO;
	return 0;
}

/* The 1-minute load average: these timings mean little without it. */
static double loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

struct spread {
	double median, min, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median and range of a field over the rounds (@total: total_s, else downtime_ms). */
static struct spread spread_of(const struct bench *b, enum system s, unsigned int ci, bool total)
{
	double v[MAX_ROUNDS];
	unsigned int i, n = b->rounds;

	for (i = 0; i < n; i++)
		v[i] = total ? b->runs[s][ci][i].total_s : b->runs[s][ci][i].downtime_ms;
	qsort(v, n, sizeof(v[0]), cmp_double);
	return (struct spread){
		.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2,
		.min = v[0],
		.max = v[n - 1],
	};
}

static void print_summary(struct bench *b)
{
	unsigned int ci, s;

	printf("\nload average %.1f at the start, %.1f at the end (%ld CPUs)\n", b->load_start,
	       b->load_end, sysconf(_SC_NPROCESSORS_ONLN));
	printf("channels  system    total s median (range)       downtime ms median (range)\n");
	for (ci = 0; ci < NR_CHANNELS; ci++) {
		struct spread t[NR_SYSTEMS], d[NR_SYSTEMS];

		for (s = 0; s < NR_SYSTEMS; s++) {
			t[s] = spread_of(b, s, ci, true);
			d[s] = spread_of(b, s, ci, false);
			printf("%8u  %-10s %9.3f (%.3f-%.3f)     %10.1f (%.1f-%.1f)\n", channels[ci],
			       sys_names[s], t[s].median, t[s].min, t[s].max, d[s].median, d[s].min,
			       d[s].max);
		}
		for (s = SYS_KVMMIG; s < NR_SYSTEMS; s++)
			printf("%8u  %s/QEMU %*.2fx                    %8.2fx\n", channels[ci],
			       sys_names[s], (int)(16 - strlen(sys_names[s])),
			       t[s].median / t[SYS_QEMU].median, d[s].median / d[SYS_QEMU].median);
		perf_json_begin(&b->json);
		perf_json_str(&b->json, "bench", "idle_half_zero_vs_qemu");
		perf_json_str(&b->json, "qemu_version", b->version);
		perf_json_num(&b->json, "ram_gib", b->ram >> 30);
		perf_json_num(&b->json, "channels", channels[ci]);
		perf_json_num(&b->json, "rounds", b->rounds);
		perf_json_num(&b->json, "load_start", b->load_start);
		perf_json_num(&b->json, "load_end", b->load_end);
		perf_json_num(&b->json, "qemu_total_s_median", t[SYS_QEMU].median);
		perf_json_num(&b->json, "qemu_total_s_min", t[SYS_QEMU].min);
		perf_json_num(&b->json, "qemu_total_s_max", t[SYS_QEMU].max);
		perf_json_num(&b->json, "kvmmig_total_s_median", t[SYS_KVMMIG].median);
		perf_json_num(&b->json, "kvmmig_total_s_min", t[SYS_KVMMIG].min);
		perf_json_num(&b->json, "kvmmig_total_s_max", t[SYS_KVMMIG].max);
		perf_json_num(&b->json, "qemu_downtime_ms_median", d[SYS_QEMU].median);
		perf_json_num(&b->json, "qemu_downtime_ms_min", d[SYS_QEMU].min);
		perf_json_num(&b->json, "qemu_downtime_ms_max", d[SYS_QEMU].max);
		perf_json_num(&b->json, "kvmmig_downtime_ms_median", d[SYS_KVMMIG].median);
		perf_json_num(&b->json, "kvmmig_downtime_ms_min", d[SYS_KVMMIG].min);
		perf_json_num(&b->json, "kvmmig_downtime_ms_max", d[SYS_KVMMIG].max);
		perf_json_num(&b->json, "ratio_total", t[SYS_KVMMIG].median / t[SYS_QEMU].median);
		perf_json_num(&b->json, "ratio_downtime", d[SYS_KVMMIG].median / d[SYS_QEMU].median);
		perf_json_num(&b->json, "kvmmig_thp_total_s_median", t[SYS_KVMMIG_THP].median);
		perf_json_num(&b->json, "kvmmig_thp_total_s_min", t[SYS_KVMMIG_THP].min);
		perf_json_num(&b->json, "kvmmig_thp_total_s_max", t[SYS_KVMMIG_THP].max);
		perf_json_num(&b->json, "kvmmig_thp_downtime_ms_median", d[SYS_KVMMIG_THP].median);
		perf_json_num(&b->json, "ratio_total_thp",
			      t[SYS_KVMMIG_THP].median / t[SYS_QEMU].median);
		perf_json_num(&b->json, "ratio_downtime_thp",
			      d[SYS_KVMMIG_THP].median / d[SYS_QEMU].median);
		perf_json_end(&b->json);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qemu_perf [--rounds N] [--ram-gib N] [--no-warmup] [--qemu PATH] [--json FILE]\n\n"
		"QEMU (-accel kvm, a guest that only halts) and kvmmig take turns migrating the\n"
		"same idle guest, half its pages zero, over loopback with 1 and 4 multifd\n"
		"channels; per-round times, medians, ranges and the kvmmig/QEMU ratios of total\n"
		"time and downtime, both up to the moment the destination guest runs.\n\n"
		"  --rounds N    rounds, each system once per channel count (1-%u; default 5)\n"
		"  --ram-gib N   guest RAM in GiB (1-16; default 4)\n"
		"  --no-warmup   no untimed migration of each system before the rounds\n"
		"  --qemu PATH   the QEMU binary (default: qemu-system-x86_64 on PATH)\n"
		"  --json FILE   the same numbers as JSON\n\n"
		"examples:\n"
		"  build/selftests/qemu_perf --rounds 3\n"
		"  build/selftests/qemu_perf --ram-gib 1 --rounds 1\n"
		"  build/selftests/qemu_perf --json build/bench/qemu_perf.json\n",
		MAX_ROUNDS);
}

/* A whole number in [@min, @max] from --@name's argument, or 0 after saying why not. */
static unsigned long parse_count(const char *name, const char *arg, unsigned long min,
				 unsigned long max)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (*arg && !*end && v >= min && v <= max)
		return v;
	fprintf(stderr, "qemu_perf: --%s '%s': expected a whole number from %lu to %lu\n", name,
		arg, min, max);
	return 0;
}

static int parse_args(struct bench *b, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *arg = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--no-warmup")) {
			b->warmup = false;
			continue;
		}
		if (!arg) {
			fprintf(stderr, "qemu_perf: '%s': unknown, or missing its argument\n", argv[i]);
			usage(stderr);
			return -EINVAL;
		}
		if (!strcmp(argv[i], "--rounds")) {
			b->rounds = parse_count("rounds", arg, 1, MAX_ROUNDS);
			if (!b->rounds)
				return -EINVAL;
		} else if (!strcmp(argv[i], "--ram-gib")) {
			b->ram = (uint64_t)parse_count("ram-gib", arg, 1, 16) << 30;
			if (!b->ram)
				return -EINVAL;
		} else if (!strcmp(argv[i], "--qemu")) {
			b->qemu = arg;
		} else if (strcmp(argv[i], "--json")) {
			fprintf(stderr, "qemu_perf: '%s': unknown option\n", argv[i]);
			usage(stderr);
			return -EINVAL;
		}
		i++;
	}
	return 0;
}

static void handle_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int sigs[] = { SIGINT, SIGTERM, SIGHUP }, i;

	sigemptyset(&sa.sa_mask);
	for (i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, NULL);
	/* A QEMU or side that dies must not take the benchmark with it. */
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	static struct bench b = { .rounds = 5, .warmup = true, .ram = 4ULL << 30,
				  .qemu = "qemu-system-x86_64", .mem_fd = -1 };
	int ret;

	/* Rows as they come, in order with the errors on stderr. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(&b, argc, argv) || perf_json_open(&b.json, argc, argv, "qemu"))
		return 2;
	if (find_files(&b))
		return 1;
	handle_signals();
	ret = qemu_probe(&b);
	if (!ret) {
		printf("QEMU %s (-accel kvm) against kvmmig: idle %llu GiB guest, half its pages zero, loopback, %u rounds\n",
		       b.version, (unsigned long long)(b.ram >> 30), b.rounds);
		printf("(total: start until the destination guest runs; downtime: source paused until then;\n"
		       " own: QEMU's query-migrate total-time and downtime, which end when its source is done)\n");
		b.load_start = loadavg();
		ret = run_rounds(&b);
		b.load_end = loadavg();
	}
	if (!ret)
		print_summary(&b);
	kill_children();
	perf_json_close(&b.json);
	return ret ? 1 : 0;
}
