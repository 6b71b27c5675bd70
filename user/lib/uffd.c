// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfaultfd wrapper (see uffd.h): the API handshake with only the
 * features asked for, registration per range, batched fault reading, and
 * placement that treats "already placed" as an answer rather than an
 * error.  UFFDIO_COPY may place part of a range and stop with -EAGAIN (the
 * mm changed under it); the rest is retried from where it stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cancel.h"
#include "log.h"
#include "uffd.h"

#define UFFD_TICK_MS	100	/* how often a wait looks at its cancel flag */

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED	(1 << 13)	/* Linux 6.4; Debian 12's headers are 6.1 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC		(1 << 15)	/* Linux 6.7 */
#endif

static uint64_t uffd_page(void)
{
	return (uint64_t)getpagesize();
}

static int uffd_features_of(unsigned int modes, __u64 *features)
{
	*features = UFFD_FEATURE_THREAD_ID;
	if (modes & UFFD_WP)
		*features |= UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (modes & UFFD_WP_ASYNC)
		*features |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
	if (!modes || modes & ~(UFFD_MISSING | UFFD_WP | UFFD_WP_ASYNC) ||
	    (modes & UFFD_WP_ASYNC && modes != (UFFD_WP | UFFD_WP_ASYNC))) {
		kvmmig_err("userfaultfd modes 0x%x: expected UFFD_MISSING, UFFD_WP, both, or UFFD_WP with UFFD_WP_ASYNC",
			   modes);
		return -EINVAL;
	}
	return 0;
}

static int uffd_fd(void)
{
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int err = errno;

		kvmmig_err("userfaultfd() failed: %s%s", strerror(err),
			   err == EPERM ? " (vm.unprivileged_userfaultfd is 0: run as root)" : "");
		return -err;
	}
	return fd;
}

/* A new userfaultfd with @features agreed, or -errno (EINVAL: not all offered). */
static int uffd_api(struct uffd *u, __u64 features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	u->fd = uffd_fd();
	if (u->fd < 0)
		return u->fd;
	if (ioctl(u->fd, UFFDIO_API, &api) < 0) {
		int err = errno;

		uffd_close(u);
		return -err;
	}
	u->features = api.features;
	u->ioctls = 0;
	return 0;
}

int uffd_open(struct uffd *u, unsigned int modes)
{
	__u64 features;
	int ret;

	u->fd = -1;
	ret = uffd_features_of(modes, &features);
	if (ret)
		return ret;
	/* Write-protect without pre-faulting where the kernel can (6.4 and later). */
	if (modes & UFFD_WP && !(modes & UFFD_WP_ASYNC) &&
	    !uffd_api(u, features | UFFD_FEATURE_WP_UNPOPULATED))
		return 0;
	ret = uffd_api(u, features);
	if (ret == -EINVAL) {
		kvmmig_err("UFFDIO_API with features 0x%llx failed: this kernel has no %s",
			   (unsigned long long)features,
			   modes & UFFD_WP_ASYNC ? "UFFD_FEATURE_WP_ASYNC (Linux 6.7)" :
			   modes & UFFD_WP ? "userfaultfd write-protect" : "userfaultfd for anonymous memory");
		return -EOPNOTSUPP;
	}
	if (ret && u->fd != -1)
		uffd_close(u);
	if (ret && ret != -EPERM && ret != -ENOSYS)
		kvmmig_err("UFFDIO_API failed: %s", strerror(-ret));
	return ret;
}

void uffd_close(struct uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

bool uffd_wp_unpopulated(const struct uffd *u)
{
	return u->features & UFFD_FEATURE_WP_UNPOPULATED;
}

static int uffd_check_range(const void *addr, size_t len, const char *what)
{
	if (!len || (uintptr_t)addr % uffd_page() || len % uffd_page()) {
		kvmmig_err("%s of %p, %zu bytes: expected a non-empty, page-aligned range",
			   what, addr, len);
		return -EINVAL;
	}
	return 0;
}

int uffd_register(struct uffd *u, void *addr, size_t len, unsigned int modes)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
	};
	int ret = uffd_check_range(addr, len, "userfaultfd registration");

	if (ret)
		return ret;
	if (modes & UFFD_MISSING)
		r.mode |= UFFDIO_REGISTER_MODE_MISSING;
	if (modes & UFFD_WP)
		r.mode |= UFFDIO_REGISTER_MODE_WP;
	if (ioctl(u->fd, UFFDIO_REGISTER, &r) < 0)
		return kvmmig_ioctl_err("UFFDIO_REGISTER", errno);
	u->ioctls = r.ioctls;
	if (modes & UFFD_MISSING && !(r.ioctls & (1ULL << _UFFDIO_COPY))) {
		kvmmig_err("UFFDIO_REGISTER of %p: this memory cannot take UFFDIO_COPY", addr);
		uffd_unregister(u, addr, len);
		return -EOPNOTSUPP;
	}
	return 0;
}

int uffd_unregister(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	if (ioctl(u->fd, UFFDIO_UNREGISTER, &r) < 0)
		return kvmmig_ioctl_err("UFFDIO_UNREGISTER", errno);
	return 0;
}

int uffd_wait(struct uffd *u, int timeout_ms, const volatile sig_atomic_t *cancel)
{
	struct pollfd p = { .fd = u->fd, .events = POLLIN };
	int left = timeout_ms, n;

	for (;;) {
		int tick = left < 0 || left > UFFD_TICK_MS ? UFFD_TICK_MS : left;

		n = poll(&p, 1, tick);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return kvmmig_ioctl_err("poll on the userfaultfd", errno);
		if (kvmmig_cancelled(cancel))
			return -ECANCELED;
		if (left >= 0 && (left -= tick) <= 0)
			return 0;
	}
}

int uffd_read_faults(struct uffd *u, struct uffd_fault *out, int max)
{
	struct uffd_msg msg[UFFD_MAX_BATCH];
	ssize_t n;
	int i, nr = 0;

	if (max > UFFD_MAX_BATCH)
		max = UFFD_MAX_BATCH;
	n = read(u->fd, msg, max * sizeof(msg[0]));
	if (n < 0)
		return errno == EAGAIN ? 0 : kvmmig_ioctl_err("read of the userfaultfd", errno);
	for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
		const struct uffd_msg *m = &msg[i];

		/* Only page faults are asked for; anything else is not ours to handle. */
		if (m->event != UFFD_EVENT_PAGEFAULT)
			continue;
		out[nr].addr = m->arg.pagefault.address & ~(uffd_page() - 1);
		out[nr].write = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
		out[nr].wp = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
		out[nr].tid = m->arg.pagefault.feat.ptid;
		nr++;
	}
	return nr;
}

/* One UFFDIO_COPY or UFFDIO_ZEROPAGE: bytes placed, or -errno from the kernel. */
static long uffd_place_once(struct uffd *u, uint64_t dst, const void *src, uint64_t len)
{
	if (src) {
		struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len };

		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0)
			return len;
		return c.copy > 0 ? c.copy : c.copy < 0 ? c.copy : -errno;
	} else {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

		if (ioctl(u->fd, UFFDIO_ZEROPAGE, &z) == 0)
			return len;
		return z.zeropage > 0 ? z.zeropage : z.zeropage < 0 ? z.zeropage : -errno;
	}
}

long uffd_place(struct uffd *u, void *dst, const void *src, size_t len)
{
	uint64_t done = 0;
	long n;
	int ret = uffd_check_range(dst, len, src ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE");

	if (ret)
		return ret;
	while (done < len) {
		n = uffd_place_once(u, (uintptr_t)dst + done, src ? (const char *)src + done : NULL,
				    len - done);
		if (n == -EEXIST) {
			/*
			 * Someone placed that page first.  Its waiters were woken
			 * then; wake again anyway, so a fault queued in between
			 * can never sleep on a page that is there.
			 */
			uffd_wake(u, (char *)dst + done, uffd_page());
			if (!done)
				return 0;
			done += uffd_page();	/* the rest of the run goes on */
			continue;
		}
		if (n == -EAGAIN)
			continue;	/* the mm changed under the copy: retry the rest */
		if (n < 0)
			return kvmmig_ioctl_err(src ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", -n);
		done += n;
	}
	return done;
}

int uffd_protect(struct uffd *u, void *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	int ret = uffd_check_range(addr, len, "UFFDIO_WRITEPROTECT");

	if (ret)
		return ret;
	if (ioctl(u->fd, UFFDIO_WRITEPROTECT, &wp) < 0)
		return kvmmig_ioctl_err("UFFDIO_WRITEPROTECT", errno);
	return 0;
}

int uffd_wake(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	if (ioctl(u->fd, UFFDIO_WAKE, &r) < 0)
		return kvmmig_ioctl_err("UFFDIO_WAKE", errno);
	return 0;
}
