/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Error and progress reporting for libkvmmig.  The library never exits; it
 * returns a negative errno and describes the failure with kvmmig_err(), which
 * keeps the last message per thread (kvmmig_last_error()) and passes it to a
 * hook, stderr by default.  kvmmig_ioctl_err() names the failing KVM ioctl.
 */
#ifndef KVMMIG_LOG_H
#define KVMMIG_LOG_H

#include <errno.h>
#include <stdbool.h>

typedef void (*kvmmig_log_fn)(int level, const char *msg);

enum { KVMMIG_LOG_ERR, KVMMIG_LOG_INFO, KVMMIG_LOG_DEBUG };

/* A hook (NULL: nothing is printed) and the most verbose level passed to it. */
void kvmmig_set_log(kvmmig_log_fn fn, int max_level);
/* Only the level, keeping the hook (stderr by default): what `-v` wants. */
void kvmmig_set_log_level(int max_level);
void kvmmig_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last kvmmig_err() message; never "", even if there was none. */
const char *kvmmig_last_error(void);
/* Keep recording this thread's last error but do not report it (probing). */
void kvmmig_log_quiet(bool quiet);

#define kvmmig_err(...)		kvmmig_log(KVMMIG_LOG_ERR, __VA_ARGS__)
#define kvmmig_info(...)	kvmmig_log(KVMMIG_LOG_INFO, __VA_ARGS__)
#define kvmmig_dbg(...)		kvmmig_log(KVMMIG_LOG_DEBUG, __VA_ARGS__)

/* Report a failed ioctl by name and return -errno (errno is preserved). */
int kvmmig_ioctl_err(const char *name, int err);

#endif /* KVMMIG_LOG_H */
