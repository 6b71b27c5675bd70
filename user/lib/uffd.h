/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * userfaultfd for guest memory: what a postcopy destination (MISSING
 * faults, pages placed atomically with UFFDIO_COPY or UFFDIO_ZEROPAGE) and
 * a background snapshot (write-protect faults, UFFDIO_WRITEPROTECT) need,
 * and nothing else.  The fd is non-blocking: fault reading drains what is
 * queued in one read() of up to UFFD_MAX_BATCH events and waits with a
 * deadline and a cancel flag, like every other wait in libkvmmig.  A page
 * already placed is not an error (a background copy and a requested one
 * may race): uffd_place() says so with 0 pages placed.  Functions return
 * 0 (or a count) or a negative errno and name what failed with
 * kvmmig_err().
 */
#ifndef KVMMIG_UFFD_H
#define KVMMIG_UFFD_H

#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UFFD_MAX_BATCH		64	/* fault events taken per read() */

struct uffd {
	int fd;
	uint64_t features;		/* UFFD_FEATURE_* the kernel granted */
	uint64_t ioctls;		/* UFFDIO_* valid on the last registration */
};

enum uffd_mode {
	UFFD_MISSING = 1 << 0,		/* fault on pages never populated */
	UFFD_WP = 1 << 1,		/* fault on writes to protected pages */
	/*
	 * uffd_open() only, with UFFD_WP: no faults at all, the kernel lifts
	 * protection itself at a write (UFFD_FEATURE_WP_ASYNC, Linux 6.7), for
	 * PAGEMAP_SCAN to report the pages written.  A feature of the whole
	 * context: it cannot serve a snapshot's copy-before-write too.
	 */
	UFFD_WP_ASYNC = 1 << 2,
};

/* A fault as the handler needs it. */
struct uffd_fault {
	uint64_t addr;			/* page-aligned */
	bool write;
	bool wp;			/* a write-protect fault, not a missing page */
	uint32_t tid;			/* the faulting thread, with UFFD_FEATURE_THREAD_ID */
};

/*
 * Open a userfaultfd (non-blocking, close-on-exec) and agree on @modes'
 * features, with UFFD_FEATURE_WP_UNPOPULATED for UFFD_WP where the kernel
 * has it (uffd_wp_unpopulated() says; without it only pages present when
 * protected fault); -EOPNOTSUPP names what the kernel lacks.
 */
int uffd_open(struct uffd *u, unsigned int modes);
void uffd_close(struct uffd *u);
/* Do writes to never-populated pages fault once protected? */
bool uffd_wp_unpopulated(const struct uffd *u);

/* Register [@addr, @addr + @len) (page-aligned) for @modes; unregister it. */
int uffd_register(struct uffd *u, void *addr, size_t len, unsigned int modes);
int uffd_unregister(struct uffd *u, void *addr, size_t len);

/*
 * Wait until a fault is queued: 1, 0 after @timeout_ms (-1: no deadline),
 * -ECANCELED once *@cancel is set (cancel.h; checked every 100 ms).
 */
int uffd_wait(struct uffd *u, int timeout_ms, const volatile sig_atomic_t *cancel);
/* The queued faults, up to @max, without blocking: their count (0: none). */
int uffd_read_faults(struct uffd *u, struct uffd_fault *out, int max);

/*
 * Place @len bytes at @dst atomically (UFFDIO_COPY from @src, or
 * UFFDIO_ZEROPAGE when @src is NULL) and wake the threads waiting on it.
 * Returns the bytes placed: all of @len, or 0 when the first page was
 * already there (-EEXIST from the kernel: someone placed it first).
 */
long uffd_place(struct uffd *u, void *dst, const void *src, size_t len);
/* Write-protect or un-protect a range; un-protecting wakes the writers. */
int uffd_protect(struct uffd *u, void *addr, size_t len, bool protect);
/* Wake the threads waiting on a range resolved some other way. */
int uffd_wake(struct uffd *u, void *addr, size_t len);

#endif /* KVMMIG_UFFD_H */
