/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Running the kvmmig command from a test, as a user would: the program is
 * build/kvmmig, found next to the folder of the test program
 * (build/selftests/../kvmmig).  Its stdout and stderr go to memory files
 * read once it has ended, so a chatty child never blocks on a full pipe;
 * every wait for it has a deadline, and a child still running when the
 * test lets go of it is killed.
 */
#ifndef KVMMIG_CLI_UTIL_H
#define KVMMIG_CLI_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLI_MAX_ARGS	64

struct cli_child {
	pid_t pid;		/* 0 once reaped */
	int pidfd;
	int out, err;		/* memfds holding its stdout and stderr */
	int status;		/* waitpid() status once reaped */
};

/* build/kvmmig, next to the folder this test program is in. */
static inline int cli_path(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = '\0';
	snprintf(buf, len, "%s/../kvmmig", dirname(exe));
	return access(buf, X_OK) ? -errno : 0;
}

/* Start `kvmmig ARGS...`; @args ends with NULL, args[0] is the subcommand. */
static inline int cli_start(struct cli_child *c, const char *const *args)
{
	const char *argv[CLI_MAX_ARGS + 2];
	char path[PATH_MAX];
	int i, ret;

	memset(c, 0, sizeof(*c));
	c->pidfd = c->out = c->err = -1;
	ret = cli_path(path, sizeof(path));
	if (ret)
		return ret;
	argv[0] = path;
	for (i = 0; args[i] && i < CLI_MAX_ARGS; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	c->out = memfd_create("kvmmig-stdout", MFD_CLOEXEC);
	c->err = memfd_create("kvmmig-stderr", MFD_CLOEXEC);
	if (c->out < 0 || c->err < 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (!c->pid) {
		int null = open("/dev/null", O_RDONLY);

		if (null < 0 || dup2(null, 0) < 0 || dup2(c->out, 1) < 0 || dup2(c->err, 2) < 0)
			_exit(126);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	c->pidfd = pidfd_open(c->pid, 0);
	return c->pidfd < 0 ? -errno : 0;
}

/* Wait at most @ms for the child to end: 0 (reaped), or -ETIMEDOUT. */
static inline int cli_wait(struct cli_child *c, int ms)
{
	struct pollfd p = { .fd = c->pidfd, .events = POLLIN };

	if (!c->pid)
		return 0;
	if (poll(&p, 1, ms) <= 0)
		return -ETIMEDOUT;
	if (waitpid(c->pid, &c->status, 0) != c->pid)
		return -errno;
	c->pid = 0;
	return 0;
}

/* Exit status of a reaped child; -1 if it ended by a signal. */
static inline int cli_exit_status(const struct cli_child *c)
{
	return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
}

/* What the child wrote to @fd (c->out or c->err) so far, NUL-terminated. */
static inline const char *cli_output(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Kill the child if it still runs, reap it, close everything. */
static inline void cli_end(struct cli_child *c)
{
	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, &c->status, 0);
		c->pid = 0;
	}
	if (c->pidfd >= 0)
		close(c->pidfd);
	if (c->out >= 0)
		close(c->out);
	if (c->err >= 0)
		close(c->err);
	c->pidfd = c->out = c->err = -1;
}

/*
 * Run `kvmmig ARGS...` to its end within @ms; its stderr into @err.
 * Returns its exit status, -1 if a signal ended it, or a negative errno
 * below -1 (-ETIMEDOUT: it was still running and has been killed).
 */
static inline int cli_run(const char *const *args, int ms, char *err, size_t len)
{
	struct cli_child c;
	int ret;

	ret = cli_start(&c, args);
	if (!ret)
		ret = cli_wait(&c, ms);
	if (!ret)
		ret = cli_exit_status(&c);
	if (c.err >= 0)
		cli_output(c.err, err, len);
	else
		err[0] = '\0';
	cli_end(&c);
	return ret;
}

#endif /* KVMMIG_CLI_UTIL_H */
