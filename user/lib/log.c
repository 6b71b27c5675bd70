// SPDX-License-Identifier: GPL-2.0-only
/*
 * libkvmmig's reporting: a per-thread copy of the last error and a hook that
 * prints to stderr unless the application installs its own.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static __thread char last_error[512];
static __thread bool log_quiet;

static void log_stderr(int level, const char *msg)
{
	fprintf(stderr, "kvmmig: %s\n", msg);
}

static kvmmig_log_fn log_fn = log_stderr;
static int log_max_level = KVMMIG_LOG_ERR;

void kvmmig_set_log(kvmmig_log_fn fn, int max_level)
{
	log_fn = fn;
	log_max_level = max_level;
}

void kvmmig_set_log_level(int max_level)
{
	log_max_level = max_level;
}

void kvmmig_log(int level, const char *fmt, ...)
{
	char buf[sizeof(last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (level == KVMMIG_LOG_ERR)
		memcpy(last_error, buf, sizeof(buf));
	if (log_fn && level <= log_max_level && !log_quiet)
		log_fn(level, buf);
}

void kvmmig_log_quiet(bool quiet)
{
	log_quiet = quiet;
}

/*
 * Callers copy this into reports and answers on every failure path: an
 * error path that forgot kvmmig_err() must still not make them say "".
 */
const char *kvmmig_last_error(void)
{
	return last_error[0] ? last_error :
	       "no reason was recorded (a libkvmmig error path that says nothing: please report it)";
}

int kvmmig_ioctl_err(const char *name, int err)
{
	kvmmig_err("%s failed: %s (errno %d)", name, strerror(err), err);
	errno = err;
	return -err;
}
