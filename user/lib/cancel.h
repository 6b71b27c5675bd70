/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A cancel flag: non-zero asks whoever waits to give up within its tick.
 * The one a caller hands to a migration (mig_source_opts.cancel,
 * mig_dest_opts.cancel), the listener and the channels is usually set by a
 * signal handler, so it is a volatile sig_atomic_t, the type C lets a handler
 * store to; the library's threads (senders, return path, listener) read it,
 * and the handler may run on any thread, so every access is an __atomic one:
 * lock-free on sig_atomic_t, hence also safe inside a handler.  The kvmmig
 * command's own stop flags work the same way.  A flag is a request only:
 * nothing is published with it and the waits look at it again within a tick,
 * so relaxed order is enough and there is no barrier.
 */
#ifndef KVMMIG_CANCEL_H
#define KVMMIG_CANCEL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

_Static_assert(__atomic_always_lock_free(sizeof(sig_atomic_t), 0),
	       "a signal handler may only use lock-free atomics");

/* From a signal handler or a thread: ask for the cancel, @v non-zero. */
static inline void kvmmig_cancel_set(volatile sig_atomic_t *cancel, int v)
{
	__atomic_store_n(cancel, v, __ATOMIC_RELAXED);
}

/* The flag's value (NULL: no flag, 0). */
static inline int kvmmig_cancelled(const volatile sig_atomic_t *cancel)
{
	return cancel ? __atomic_load_n(cancel, __ATOMIC_RELAXED) : 0;
}

/* Sleep @ms in 100 ms ticks, or less once *@cancel is set; false if it was. */
static inline bool kvmmig_sleep_ms(uint64_t ms, const volatile sig_atomic_t *cancel)
{
	while (ms && !kvmmig_cancelled(cancel)) {
		uint64_t tick = ms < 100 ? ms : 100;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(tick * 1000000) };

		nanosleep(&ts, NULL);
		ms -= tick;
	}
	return !kvmmig_cancelled(cancel);
}

#endif /* KVMMIG_CANCEL_H */
