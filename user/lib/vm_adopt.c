// SPDX-License-Identifier: GPL-2.0-only
/*
 * Adopting a VM that another VMM created, so that the dirty sources and
 * the migration engine can drive it: check that the fds are what they are
 * said to be (a KVM VM fd, KVM vCPU fds with ids 0..n-1, a dirty ring of
 * the size given) and that the memslot layout is sane, then wrap them in a
 * struct vm whose pause, resume and stop are the VMM's callbacks.  The fds
 * are duplicated, so the VMM's own stay its own; guest memory is never
 * unmapped here.  The vCPU threads stay the VMM's: it forwards
 * dirty-ring-full exits with vm_adopted_ring_full().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "vm.h"
#include "vm_internal.h"

static int fd_check_open(int fd, const char *what)
{
	if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
		kvmmig_err("%s (fd %d) is not an open file descriptor", what, fd);
		return -EBADF;
	}
	return 0;
}

/* What /proc says @fd is ("anon_inode:kvm-vm"), or "" when it cannot say. */
static void fd_describe(int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	buf[n < 0 ? 0 : n] = '\0';
}

static int adopt_check_vm_fd(int fd)
{
	char desc[128];
	int ret;

	ret = fd_check_open(fd, "vm_fd");
	if (ret)
		return ret;
	fd_describe(fd, desc, sizeof(desc));
	/*
	 * The name first: a vCPU fd would hold the ioctls below until its
	 * thread leaves KVM_RUN.  /dev/kvm answers KVM_CHECK_EXTENSION too, but
	 * only it answers KVM_GET_API_VERSION.
	 */
	if ((desc[0] && strcmp(desc, "anon_inode:kvm-vm")) ||
	    ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0 ||
	    ioctl(fd, KVM_GET_API_VERSION, 0) >= 0) {
		kvmmig_err("vm_fd (fd %d) is %s: expected a KVM VM fd (anon_inode:kvm-vm, from KVM_CREATE_VM)",
			   fd, desc[0] ? desc : "not a KVM VM fd");
		return -ENOTTY;
	}
	return 0;
}

static int adopt_check_vcpu_fd(unsigned int i, int fd)
{
	char desc[128], what[32];
	unsigned int id;
	int ret, end = 0;

	snprintf(what, sizeof(what), "vcpu_fds[%u]", i);
	ret = fd_check_open(fd, what);
	if (ret)
		return ret;
	fd_describe(fd, desc, sizeof(desc));
	/* Without /proc, mapping kvm_run (adopt_vcpu()) is the test. */
	if (!desc[0])
		return 0;
	if (sscanf(desc, "anon_inode:kvm-vcpu:%u%n", &id, &end) != 1 || desc[end]) {
		kvmmig_err("%s (fd %d) is %s: expected a KVM vCPU fd (anon_inode:kvm-vcpu:N, from KVM_CREATE_VCPU)",
			   what, fd, desc);
		return -ENOTTY;
	}
	if (id != i) {
		kvmmig_err("%s (fd %d) is KVM vCPU %u: expected vCPU %u (vcpu_fds[i] must be vCPU id i, the id the destination gives it)",
			   what, fd, id, i);
		return -EINVAL;
	}
	return 0;
}

/* Both ends of @s are mapped in this process (the VMM's mapping of it). */
static bool slot_mapped(const struct vm_slot *s)
{
	unsigned char vec;

	return !mincore(s->hva, GUEST_PAGE_SIZE, &vec) &&
	       !mincore((char *)s->hva + s->size - GUEST_PAGE_SIZE, GUEST_PAGE_SIZE, &vec);
}

static int adopt_check_slot(const struct vm_slot *slots, unsigned int i)
{
	const struct vm_slot *s = &slots[i], *o;
	unsigned int j;

	if (!s->size || s->size % GUEST_PAGE_SIZE || s->gpa % GUEST_PAGE_SIZE || !s->hva ||
	    (uintptr_t)s->hva % GUEST_PAGE_SIZE || s->gpa + s->size < s->gpa) {
		kvmmig_err("slot %u (id %u) at gpa 0x%llx, 0x%llx bytes, hva %p: expected a non-zero size and gpa, size and hva all multiples of 4 KiB",
			   i, s->id, (unsigned long long)s->gpa, (unsigned long long)s->size, s->hva);
		return -EINVAL;
	}
	if (s->id > VM_MAX_SLOT_ID) {
		kvmmig_err("slot %u has id 0x%x: expected an id of address space 0, at most 0x%x",
			   i, s->id, VM_MAX_SLOT_ID);
		return -EINVAL;
	}
	if (s->flags & KVM_MEM_LOG_DIRTY_PAGES) {
		kvmmig_err("slot %u (id %u) has dirty logging on: the VMM must leave dirty tracking to libkvmmig (turn KVM_MEM_LOG_DIRTY_PAGES off first)",
			   i, s->id);
		return -EBUSY;
	}
	if (s->flags & ~KVM_MEM_READONLY) {
		kvmmig_err("slot %u (id %u) has flags 0x%x: expected 0 or KVM_MEM_READONLY",
			   i, s->id, s->flags);
		return -EINVAL;
	}
	for (j = 0, o = slots; j < i; j++, o++) {
		if (o->id == s->id) {
			kvmmig_err("slots %u and %u both have id %u: expected one slot per id",
				   j, i, s->id);
			return -EINVAL;
		}
		if (s->gpa < o->gpa + o->size && o->gpa < s->gpa + s->size) {
			kvmmig_err("slot %u [0x%llx, 0x%llx) overlaps slot %u [0x%llx, 0x%llx): expected disjoint guest-physical ranges",
				   i, (unsigned long long)s->gpa,
				   (unsigned long long)(s->gpa + s->size), j,
				   (unsigned long long)o->gpa, (unsigned long long)(o->gpa + o->size));
			return -EINVAL;
		}
	}
	if (!slot_mapped(s)) {
		kvmmig_err("slot %u (id %u): host range %p, 0x%llx bytes, is not mapped in this process: expected the VMM's mapping of that guest memory",
			   i, s->id, s->hva, (unsigned long long)s->size);
		return -EFAULT;
	}
	return 0;
}

static int adopt_check_count(const char *what, unsigned int n, const void *array,
			     unsigned int max)
{
	if (n && n <= max && array)
		return 0;
	kvmmig_err("%u %s%s: expected 1 to %u", n, what, array ? "" : " and no array", max);
	return n > max ? -E2BIG : -EINVAL;
}

/* Shape, then limits, then what the fds really are. */
static int adopt_check_args(const struct vm_adopt_args *a)
{
	const struct vm_adopt_ops *ops = a->ops;
	unsigned int i;
	int ret;

	if (!ops || !ops->pause || !ops->resume) {
		kvmmig_err("no %s: expected ops with pause and resume callbacks (stop is optional)",
			   !ops ? "ops" : !ops->pause ? "pause callback" : "resume callback");
		return -EINVAL;
	}
	ret = adopt_check_count("vCPU fds", a->nr_vcpus, a->vcpu_fds, VM_MAX_VCPUS);
	if (!ret)
		ret = adopt_check_count("memslots", a->nr_slots, a->slots, VM_MAX_SLOTS);
	if (!ret)
		ret = vm_check_ring_entries(a->ring_entries);
	for (i = 0; !ret && i < a->nr_slots; i++)
		ret = adopt_check_slot(a->slots, i);
	if (!ret)
		ret = adopt_check_vm_fd(a->vm_fd);
	for (i = 0; !ret && i < a->nr_vcpus; i++)
		ret = adopt_check_vcpu_fd(i, a->vcpu_fds[i]);
	return ret;
}

static int adopt_dup(int fd, int *out)
{
	*out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (*out < 0)
		return kvmmig_ioctl_err("fcntl(F_DUPFD_CLOEXEC)", errno);
	return 0;
}

static int adopt_vcpu(struct vm *vm, unsigned int i, int fd)
{
	struct vcpu *vcpu = &vm->vcpus[i];
	int ret;

	vcpu->vm = vm;
	vcpu->id = i;
	ret = adopt_dup(fd, &vcpu->fd);
	if (!ret)
		ret = vcpu_map(vcpu);
	if (ret)
		kvmmig_err("vcpu_fds[%u] (fd %d): %s: expected a KVM vCPU fd", i, fd,
			   kvmmig_last_error());
	return ret;
}

/*
 * Does KVM back page @pgoff of vCPU fd @fd?  The kernel copies from it into
 * a pipe, so a hole is -EFAULT rather than our SIGBUS.
 */
static int vcpu_page_backed(int fd, long pgoff)
{
	long page = getpagesize();
	int pfd[2], backed;
	void *p;

	p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, pgoff * page);
	if (p == MAP_FAILED)
		return kvmmig_ioctl_err("mmap of a dirty-ring page", errno);
	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK)) {
		backed = -errno;
		kvmmig_err("pipe2 failed: %s", strerror(errno));
	} else {
		backed = write(pfd[1], p, 1) == 1;
		close(pfd[0]);
		close(pfd[1]);
	}
	munmap(p, page);
	return backed;
}

/*
 * KVM cannot be asked the ring size it was given, and mapping more than
 * the ring succeeds, so look: the last page of a ring of ring_entries must
 * be there, the page after it must not.
 */
static int adopt_check_ring(struct vm *vm)
{
	uint32_t entries = vm->cfg.ring_entries;
	long pages = (long)entries * sizeof(struct kvm_dirty_gfn) / getpagesize();
	int fd = vm->vcpus[0].fd, last = 1, next;

	if (entries)
		last = vcpu_page_backed(fd, KVM_DIRTY_LOG_PAGE_OFFSET + pages - 1);
	if (last < 0)
		return last;
	next = vcpu_page_backed(fd, KVM_DIRTY_LOG_PAGE_OFFSET + pages);
	if (next < 0)
		return next;
	if (last && !next)
		return 0;
	if (!entries)
		kvmmig_err("the VM has a dirty ring: expected ring_entries to be its size (KVM_CAP_DIRTY_LOG_RING)");
	else
		kvmmig_err("the VM has no dirty ring of %u entries (%s): expected ring_entries to be the size the VMM enabled, or 0 for none",
			   entries, next ? "its ring is larger" : "its ring is smaller, or absent");
	return -EINVAL;
}

int vm_adopt(const struct vm_adopt_args *a, struct vm **out)
{
	struct vm_config cfg = {
		.nr_vcpus = a->nr_vcpus,
		.nr_slots = a->nr_slots,
		.ring_entries = a->ring_entries,
		.manual_protect = a->manual_protect,
	};
	struct vm *vm;
	unsigned int i;
	int ret;

	ret = adopt_check_args(a);
	if (!ret)
		ret = vm_alloc(&cfg, &vm);
	if (ret)
		return ret;
	vm->adopted = true;
	vm->named_fd = a->vm_fd;
	vm->adopt_ops = *a->ops;
	vm->adopt_opaque = a->opaque;
	for (i = 0; i < a->nr_slots; i++) {
		vm->slots[i] = a->slots[i];
		vm->cfg.ram_bytes += a->slots[i].size;
	}
	vm->nr_slots = a->nr_slots;
	ret = adopt_dup(a->vm_fd, &vm->fd);
	for (i = 0; !ret && i < a->nr_vcpus; i++)
		ret = adopt_vcpu(vm, i, a->vcpu_fds[i]);
	if (!ret)
		ret = adopt_check_ring(vm);
	if (ret) {
		vm_destroy(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

int vm_adopted_ring_full(struct vm *vm, unsigned int vcpu)
{
	if (!vm->adopted || !vm->cfg.ring_entries || vcpu >= vm->cfg.nr_vcpus) {
		kvmmig_err("ring-full exit of vCPU %u: expected an adopted VM with a dirty ring and a vCPU below %u",
			   vcpu, vm->cfg.nr_vcpus);
		return -EINVAL;
	}
	vm->vcpus[vcpu].ring_full_exits++;
	return vcpu_ring_full(&vm->vcpus[vcpu]);
}

int vm_adopted_op(struct vm *vm, int (*op)(void *opaque), const char *what)
{
	int ret = op(vm->adopt_opaque);

	if (!ret)
		return 0;
	if (ret > 0)
		ret = -EIO;
	kvmmig_err("the VMM's %s callback failed: %s", what, strerror(-ret));
	return ret;
}

int vm_adopted_refuse(const char *what)
{
	kvmmig_err("%s: the VM was adopted from another VMM, whose threads run its vCPUs",
		   what);
	return -EOPNOTSUPP;
}
