/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Running one side of a benchmark (a migration source, a destination, a
 * raw TCP sender or receiver) in its own freshly exec'd process, as a user
 * would run it, so the numbers measure that side and not the memory, page
 * tables and threads of the benchmark program that forked it.  The program
 * re-executes itself (/proc/self/exe), or runs another benchmark program,
 * with a role; the side reports on stdout, one JSON object a line, waits on
 * stdin for the word to go when asked to, and its exit code says how it
 * ended.  Every wait has a deadline.
 */
#ifndef KVMMIG_PERF_SIDE_H
#define KVMMIG_PERF_SIDE_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "json.h"

struct perf_side {
	pid_t pid;
	int to_side;		/* its stdin */
	int from_side;		/* its stdout */
	char buf[4096];		/* what it wrote and was not read as a line yet */
	size_t len;
};

/*
 * Start program @exe with @argv (argv[0] included, NULL-terminated): this
 * program, or another benchmark's sides (qemu_perf runs migration_perf's).
 */
static inline int perf_side_spawn_exe(struct perf_side *s, const char *exe, char *const argv[])
{
	int in[2], out[2];

	memset(s, 0, sizeof(*s));
	if (pipe2(in, O_CLOEXEC))
		return -errno;
	if (pipe2(out, O_CLOEXEC)) {
		close(in[0]);
		close(in[1]);
		return -errno;
	}
	fflush(stdout);
	fflush(stderr);
	s->pid = fork();
	if (s->pid < 0) {
		s->pid = 0;
		return -errno;
	}
	if (s->pid == 0) {
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
			_exit(127);
		execv(exe, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->to_side = in[1];
	s->from_side = out[0];
	return 0;
}

/* Start /proc/self/exe with @argv (argv[0] included, NULL-terminated). */
static inline int perf_side_spawn(struct perf_side *s, char *const argv[])
{
	return perf_side_spawn_exe(s, "/proc/self/exe", argv);
}

/* The next line the side wrote, without its newline; 0, or -ETIMEDOUT/-EPIPE. */
static inline int perf_side_read(struct perf_side *s, char *line, size_t size, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;

	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		struct pollfd p = { .fd = s->from_side, .events = POLLIN };
		double left;
		ssize_t n;

		if (nl) {
			size_t l = nl - s->buf;

			snprintf(line, size, "%.*s", (int)l, s->buf);
			memmove(s->buf, nl + 1, s->len - l - 1);
			s->len -= l + 1;
			return 0;
		}
		left = deadline - now_s();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			return -errno;
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		if (s->len == sizeof(s->buf))
			return -EMSGSIZE;
		n = read(s->from_side, s->buf + s->len, sizeof(s->buf) - s->len);
		if (n <= 0)
			return -EPIPE;
		s->len += n;
	}
}

/* Tell a side waiting in perf_side_wait_go() to go on, with @word (one line). */
static inline int perf_side_go(struct perf_side *s, const char *word)
{
	size_t n = strlen(word);

	if (write(s->to_side, word, n) != (ssize_t)n || write(s->to_side, "\n", 1) != 1)
		return -EPIPE;
	return 0;
}

/* The side's exit code; past @timeout_ms it is killed and -ETIMEDOUT returned. */
static inline int perf_side_wait(struct perf_side *s, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	int st, ret = -ETIMEDOUT;

	if (!s->pid)
		return -ECHILD;
	while (now_s() < deadline) {
		pid_t r = waitpid(s->pid, &st, WNOHANG);

		if (r == s->pid) {
			ret = WIFEXITED(st) ? WEXITSTATUS(st) : -EINTR;
			break;
		}
		usleep(10000);
	}
	if (ret == -ETIMEDOUT) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &st, 0);
	}
	close(s->to_side);
	close(s->from_side);
	s->pid = 0;
	return ret;
}

/* In the side: wait for the benchmark's word to go (a line on stdin). */
static inline int perf_side_wait_go(char *word, size_t size, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1000.0;
	size_t n = 0;
	char c;

	while (n + 1 < size) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		double left = deadline - now_s();

		if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) < 0)
			return -ETIMEDOUT;
		if (!p.revents)
			continue;
		if (read(STDIN_FILENO, &c, 1) != 1)
			return -EPIPE;
		if (c == '\n')
			break;
		word[n++] = c;
	}
	word[n] = '\0';
	return 0;
}

/* In the side: the line {"@key":@v} for the benchmark, sent at once. */
static inline void perf_side_say(const char *key, double v, int decimals)
{
	struct json_writer w;

	json_line_begin(&w, stdout);
	json_key_double(&w, key, v, decimals);
	json_line_end(&w);
}

/* The number after "@key": in a one-line JSON object, or @dflt. */
static inline double perf_json_get(const char *line, const char *key, double dflt)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	return p ? strtod(p + strlen(pat), NULL) : dflt;
}

/*
 * The string after "@key": (escapes left as they are), or "".  Blanks may
 * follow the colon: QEMU's QMP writes `"key": "value"`.
 */
static inline void perf_json_get_str(const char *line, const char *key, char *out, size_t size)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	out[0] = '\0';
	if (!p)
		return;
	p += strlen(pat);
	p += strspn(p, " ");
	if (*p++ != '"')
		return;
	for (e = p; *e && !(*e == '"' && e[-1] != '\\'); e++)
		;
	snprintf(out, size, "%.*s", (int)(e - p), p);
}

#endif /* KVMMIG_PERF_SIDE_H */
