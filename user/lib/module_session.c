// SPDX-License-Identifier: GPL-2.0-only
/*
 * libkvmmig's ioctl client of kvmmig.ko (Documentation/kvmmig-api.rst):
 * open /dev/kvmmig and check its API version, attach a session to a VM fd,
 * refresh the session's view of the VM, harvest every ring in one call,
 * read per-vCPU statistics, set and read throttles, and take a running
 * VMM's VM fd with pidfd_getfd() so that a session can be attached to it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "log.h"
#include "module_client.h"

static int kmod_dev_open(void)
{
	int fd = open(KVMMIG_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, KVMMIG_GET_API_VERSION, 0) != KVMMIG_API_VERSION) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

bool kmod_present(const char **why)
{
	int fd = kmod_dev_open();

	if (fd >= 0) {
		close(fd);
		return true;
	}
	if (why)
		*why = fd == -ENOENT ? "kvmmig.ko is not loaded (no " KVMMIG_DEVICE ")" :
		       fd == -EACCES ? KVMMIG_DEVICE " needs root" :
		       fd == -EPROTO ? "kvmmig.ko speaks another API version" :
		       "cannot open " KVMMIG_DEVICE;
	return false;
}

int kmod_check_extension(unsigned int cap)
{
	int fd = kmod_dev_open(), ret;

	if (fd < 0)
		return fd;
	ret = ioctl(fd, KVMMIG_CHECK_EXTENSION, cap);
	close(fd);
	return ret < 0 ? -errno : ret;
}

bool kmod_session_has_dirty_limit(const struct kmod_session *ks)
{
	return kmod_check_extension(ks->info.ring_entries ? KVMMIG_CAP_DIRTY_LIMIT :
				    KVMMIG_CAP_BITMAP_DIRTY) > 0;
}

int kmod_refresh(struct kmod_session *ks)
{
	struct kvmmig_memslot *slots = NULL;
	struct kvmmig_info info;
	uint32_t cap = 0;

	/* A call with too small an array learns the number of memslots. */
	for (;;) {
		memset(&info, 0, sizeof(info));
		info.slots = (uintptr_t)slots;
		info.nr_slots = cap;
		if (!ioctl(ks->fd, KVMMIG_INFO, &info))
			break;
		free(slots);
		if (errno != ENOSPC)
			return kvmmig_ioctl_err("KVMMIG_INFO", errno);
		cap = info.nr_slots;
		slots = calloc(cap, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
	}
	free(ks->slots);
	ks->slots = slots;
	ks->info = info;
	ks->id = info.session_id;
	return 0;
}

int kmod_attach(int vm_fd, struct kmod_session **out)
{
	struct kvmmig_attach a = { .vm_fd = vm_fd };
	struct kmod_session *ks;
	int dev, ret;

	dev = kmod_dev_open();
	if (dev < 0) {
		kvmmig_err("cannot use %s: %s", KVMMIG_DEVICE, strerror(-dev));
		return dev;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		close(dev);
		return -ENOMEM;
	}
	ks->fd = ioctl(dev, KVMMIG_ATTACH, &a);
	ret = ks->fd < 0 ? kvmmig_ioctl_err("KVMMIG_ATTACH", errno) : 0;
	close(dev);
	if (!ret)
		ret = kmod_refresh(ks);
	if (ret) {
		kmod_close(ks);
		return ret;
	}
	*out = ks;
	return 0;
}

void kmod_close(struct kmod_session *ks)
{
	if (!ks)
		return;
	if (ks->fd >= 0)
		close(ks->fd);
	free(ks->slots);
	free(ks);
}

int kmod_harvest(struct kmod_session *ks, struct kvmmig_harvest *h)
{
	return ioctl(ks->fd, KVMMIG_HARVEST, h) ? kvmmig_ioctl_err("KVMMIG_HARVEST", errno) : 0;
}

int kmod_vcpu_stats(struct kmod_session *ks, struct kvmmig_vcpu_stats **st, uint32_t *nr)
{
	struct kvmmig_stats s = {};
	struct kvmmig_vcpu_stats *buf = NULL;
	uint32_t cap = ks->info.nr_vcpus;

	for (;;) {
		buf = calloc(cap ?: 1, sizeof(*buf));
		if (!buf)
			return -ENOMEM;
		memset(&s, 0, sizeof(s));
		s.vcpus = (uintptr_t)buf;
		s.nr_vcpus = cap;
		if (!ioctl(ks->fd, KVMMIG_VCPU_STATS, &s))
			break;
		free(buf);
		if (errno == ENODEV) {
			kvmmig_err("kvmmig.ko session %u: its VM is gone (the VMM closed it) or the session was detached",
				   ks->id);
			return -ENODEV;
		}
		if (errno != ENOSPC)
			return kvmmig_ioctl_err("KVMMIG_VCPU_STATS", errno);
		cap = s.nr_vcpus;	/* vCPUs came online meanwhile */
	}
	*st = buf;
	*nr = s.nr_vcpus;
	return 0;
}

int kmod_set_throttle(struct kmod_session *ks, const struct kvmmig_throttle *t)
{
	return ioctl(ks->fd, KVMMIG_SET_THROTTLE, t) ?
	       kvmmig_ioctl_err("KVMMIG_SET_THROTTLE", errno) : 0;
}

int kmod_get_throttle(struct kmod_session *ks, uint32_t vcpu, struct kvmmig_throttle *t)
{
	memset(t, 0, sizeof(*t));
	t->vcpu = vcpu;
	return ioctl(ks->fd, KVMMIG_GET_THROTTLE, t) ?
	       kvmmig_ioctl_err("KVMMIG_GET_THROTTLE", errno) : 0;
}

/* ---- a running VMM's VM fd ---- */

/*
 * A VMM may hold duplicates of its VM fd (libkvmmig's kvmmig_vm keeps its
 * own): two fds are one VM when they are the same open file.
 */
static bool kmod_same_file(pid_t pid, int fd1, int fd2)
{
	return syscall(SYS_kcmp, pid, pid, KCMP_FILE, fd1, fd2) == 0;
}

static int kmod_find_vm_fdnum(pid_t pid)
{
	char dir[64], path[320], link[64];
	struct dirent *de;
	int found = -ENOENT;
	ssize_t n;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		if (!strcmp(link, "anon_inode:kvm-vm")) {
			if (found >= 0 && kmod_same_file(pid, found, atoi(de->d_name)))
				continue;
			if (found >= 0) {
				found = -EEXIST;	/* several VMs: ambiguous */
				break;
			}
			found = atoi(de->d_name);
		}
	}
	closedir(d);
	return found;
}

int kmod_take_vm_fd(pid_t pid, int *vm_fd)
{
	int num = kmod_find_vm_fdnum(pid), pidfd, fd;

	if (num == -ENOENT) {
		kvmmig_err("process %d has no KVM VM open (no anon_inode:kvm-vm in /proc/%d/fd)",
			   (int)pid, (int)pid);
		return num;
	}
	if (num == -EEXIST) {
		kvmmig_err("process %d has several KVM VMs open; expected one", (int)pid);
		return num;
	}
	if (num < 0) {
		kvmmig_err("cannot read /proc/%d/fd: %s", (int)pid, strerror(-num));
		return num;
	}
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return kvmmig_ioctl_err("pidfd_open", errno);
	fd = syscall(SYS_pidfd_getfd, pidfd, num, 0);
	close(pidfd);
	if (fd < 0)
		return kvmmig_ioctl_err("pidfd_getfd", errno);
	*vm_fd = fd;
	return 0;
}
