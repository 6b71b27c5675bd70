// SPDX-License-Identifier: GPL-2.0-only
/*
 * struct kvmmig_vm: wrapping a VMM's VM for libkvmmig.  kvmmig_vm_new()
 * checks that the fds are what they are said to be (a KVM VM fd, KVM vCPU
 * fds with ids 0..n-1, a dirty ring of the size given) and that the memslot
 * layout is sane, duplicates the fds (the VMM's own stay its own) and maps
 * the rings; guest memory is never unmapped here.  The vCPU threads stay
 * the VMM's: it forwards dirty-ring-full exits with kvmmig_vm_ring_full(),
 * and everything that needs the vCPUs goes through its ops.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gfn_ring.h"
#include "kvmmig_vm.h"
#include "log.h"

int kvmmig_check_ring_entries(uint32_t entries)
{
	if (entries && (entries & (entries - 1) || entries < 256)) {
		kvmmig_err("dirty ring of %u entries: expected a power of two, at least 256",
			   entries);
		return -EINVAL;
	}
	return 0;
}

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

static int check_vm_fd(int fd)
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

static int check_vcpu_fd(unsigned int i, int fd)
{
	char desc[128], what[32];
	unsigned int id;
	int ret, end = 0;

	snprintf(what, sizeof(what), "vcpu_fds[%u]", i);
	ret = fd_check_open(fd, what);
	if (ret)
		return ret;
	fd_describe(fd, desc, sizeof(desc));
	/* Without /proc, mapping kvm_run (vcpu_map_check()) is the test. */
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
static bool slot_mapped(const struct kvmmig_slot *s)
{
	unsigned char vec;

	return !mincore(s->hva, MIG_PAGE_SIZE, &vec) &&
	       !mincore((char *)s->hva + s->size - MIG_PAGE_SIZE, MIG_PAGE_SIZE, &vec);
}

static int check_slot(const struct kvmmig_slot *slots, unsigned int i)
{
	const struct kvmmig_slot *s = &slots[i], *o;
	unsigned int j;

	if (!s->size || s->size % MIG_PAGE_SIZE || s->gpa % MIG_PAGE_SIZE || !s->hva ||
	    (uintptr_t)s->hva % MIG_PAGE_SIZE || s->gpa + s->size < s->gpa) {
		kvmmig_err("slot %u (id %u) at gpa 0x%llx, 0x%llx bytes, hva %p: expected a non-zero size and gpa, size and hva all multiples of 4 KiB",
			   i, s->id, (unsigned long long)s->gpa, (unsigned long long)s->size, s->hva);
		return -EINVAL;
	}
	if (s->id > KVMMIG_MAX_SLOT_ID) {
		kvmmig_err("slot %u has id 0x%x: expected an id of address space 0, at most 0x%x",
			   i, s->id, KVMMIG_MAX_SLOT_ID);
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

static int check_count(const char *what, unsigned int n, const void *array,
			     unsigned int max)
{
	if (n && n <= max && array)
		return 0;
	kvmmig_err("%u %s%s: expected 1 to %u", n, what, array ? "" : " and no array", max);
	return n > max ? -E2BIG : -EINVAL;
}

/* Shape, then limits, then what the fds really are. */
static int check_args(const struct kvmmig_vm_args *a)
{
	const struct kvmmig_vm_ops *ops = a->ops;
	unsigned int i;
	int ret;

	if (!ops || !ops->pause || !ops->resume || !ops->save_state || !ops->load_state) {
		kvmmig_err("no %s: expected ops with pause, resume, save_state and load_state (stop and set_throttle are optional)",
			   !ops ? "ops" : !ops->pause ? "pause callback" :
			   !ops->resume ? "resume callback" : !ops->save_state ?
			   "save_state callback" : "load_state callback");
		return -EINVAL;
	}
	if (!ops->state_size || ops->state_size > MIG_MAX_VCPU_STATE) {
		kvmmig_err("vCPU state of %u bytes: expected 1 to %u", ops->state_size,
			   MIG_MAX_VCPU_STATE);
		return -EINVAL;
	}
	ret = check_count("vCPU fds", a->nr_vcpus, a->vcpu_fds, MIG_MAX_VCPUS);
	if (!ret)
		ret = check_count("memslots", a->nr_slots, a->slots, MIG_MAX_SLOTS);
	if (!ret)
		ret = kvmmig_check_ring_entries(a->ring_entries);
	for (i = 0; !ret && i < a->nr_slots; i++)
		ret = check_slot(a->slots, i);
	if (!ret)
		ret = check_vm_fd(a->vm_fd);
	for (i = 0; !ret && i < a->nr_vcpus; i++)
		ret = check_vcpu_fd(i, a->vcpu_fds[i]);
	return ret;
}

static int dup_fd(int fd, int *out)
{
	*out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (*out < 0)
		return kvmmig_ioctl_err("fcntl(F_DUPFD_CLOEXEC)", errno);
	return 0;
}

static size_t ring_bytes(const struct kvmmig_vm *vm)
{
	return (size_t)vm->ring_entries * sizeof(struct kvm_dirty_gfn);
}

/* Only a vCPU fd maps its kvm_run at offset 0: the test where /proc cannot tell. */
static int vcpu_map_check(int fd)
{
	long page = getpagesize();
	void *p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return kvmmig_ioctl_err("mmap of kvm_run", errno);
	munmap(p, page);
	return 0;
}

static int wrap_vcpu(struct kvmmig_vm *vm, unsigned int i, int fd)
{
	struct kvmmig_vcpu *vcpu = &vm->vcpus[i];
	int ret;

	ret = dup_fd(fd, &vcpu->fd);
	if (!ret)
		ret = vcpu_map_check(vcpu->fd);
	if (!ret && vm->ring_entries) {
		vcpu->ring = mmap(NULL, ring_bytes(vm), PROT_READ | PROT_WRITE, MAP_SHARED,
				  vcpu->fd, KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
		if (vcpu->ring == MAP_FAILED) {
			vcpu->ring = NULL;
			ret = kvmmig_ioctl_err("mmap of the dirty ring", errno);
		}
	}
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
static int check_ring(struct kvmmig_vm *vm)
{
	uint32_t entries = vm->ring_entries;
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

int kvmmig_vm_new(const struct kvmmig_vm_args *a, struct kvmmig_vm **out)
{
	struct kvmmig_vm *vm;
	unsigned int i;
	int ret;

	ret = check_args(a);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->fd = -1;
	for (i = 0; i < MIG_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->hook_lock, NULL);
	vm->named_fd = a->vm_fd;
	vm->ops = *a->ops;
	vm->opaque = a->opaque;
	vm->ring_entries = a->ring_entries;
	vm->manual_protect = a->manual_protect;
	vm->nr_slots = a->nr_slots;
	memcpy(vm->slots, a->slots, a->nr_slots * sizeof(*vm->slots));
	vm->nr_vcpus = a->nr_vcpus;
	ret = dup_fd(a->vm_fd, &vm->fd);
	for (i = 0; !ret && i < a->nr_vcpus; i++)
		ret = wrap_vcpu(vm, i, a->vcpu_fds[i]);
	if (!ret)
		ret = check_ring(vm);
	if (ret) {
		kvmmig_vm_free(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

void kvmmig_vm_free(struct kvmmig_vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	for (i = 0; i < MIG_MAX_VCPUS; i++) {
		struct kvmmig_vcpu *v = &vm->vcpus[i];

		if (v->ring)
			munmap(v->ring, ring_bytes(vm));
		if (v->fd >= 0)
			close(v->fd);
	}
	if (vm->fd >= 0)
		close(vm->fd);
	pthread_mutex_destroy(&vm->hook_lock);
	free(vm);
}

/* ---- dirty rings and logging ---- */

static int vm_reset_rings(void *opaque)
{
	struct kvmmig_vm *vm = opaque;
	int ret = ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0);

	if (ret < 0)
		return kvmmig_ioctl_err("KVM_RESET_DIRTY_RINGS", errno);
	return ret;
}

/*
 * vCPU @vcpu's ring is stuck (vcpu_ring_recycle()): find KVM's reset index,
 * skip the phantoms there and have KVM recycle them with what follows, so
 * the vCPU runs on.  Its position is then known exactly, for the next dirty
 * source.
 */
static int vcpu_ring_unstick(struct kvmmig_vm *vm, unsigned int vcpu)
{
	struct kvmmig_vcpu *v = &vm->vcpus[vcpu];
	struct gfn_ring_probe probe = {
		.ring = v->ring,
		.size = vm->ring_entries,
		.reset = vm_reset_rings,
		.opaque = vm,
	};
	uint32_t pos = v->ring_reset;
	int ret;

	ret = gfn_ring_find_reset(&probe, &pos);
	if (ret < 0)
		return ret;
	if (!ret) {
		kvmmig_err("dirty ring of vCPU %u is stuck and KVM reset none of its entries: expected one to be at KVM's reset index",
			   vcpu);
		return -EIO;
	}
	if (gfn_ring_skip_phantoms(v->ring, vm->ring_entries, pos)) {
		ret = vm_reset_rings(vm);
		if (ret < 0)
			return ret;
		pos += ret;
	}
	v->ring_fetch = pos;
	v->ring_reset = pos;
	kvmmig_info("dirty ring of vCPU %u was stuck behind entries it no longer holds: skipped them",
		    vcpu);
	return 0;
}

/*
 * Nobody tracks dirty pages (tracking stopped, or never started), yet
 * vCPU @vcpu's ring is full of entries pushed before: flag them collected
 * and let KVM recycle them.  No entry KVM could reset is
 * left flagged on any ring after that (hook_lock serialises this), so
 * KVM's count is this ring's and only this vCPU's recycling moves its
 * reset index.  None reset means that index is at a clean entry KVM counts
 * but the ring no longer holds (a PVM wrap while tracked, gfn_ring.c): the
 * vCPU would exit for ever.  Probing for it needs the index where it was
 * at the exit; that holds once the vCPU's previous exit too was recycled
 * here with no handler installed since (the first may predate the
 * tracker's last reset): only recycling has run since before this exit.
 */
static int vcpu_ring_recycle(struct kvmmig_vm *vm, unsigned int vcpu)
{
	struct kvmmig_vcpu *v = &vm->vcpus[vcpu];
	bool stuck;
	uint32_t i;
	int ret;

	for (i = 0; i < vm->ring_entries; i++)
		if (gfn_is_dirty(gfn_flags_acquire(&v->ring[i])))
			gfn_mark_collected(&v->ring[i]);
	ret = vm_reset_rings(vm);
	if (ret < 0)
		return ret;
	/*
	 * KVM reset @ret entries of this ring from its reset index on: the
	 * next dirty source starts after them, where KVM pushes next.  Left
	 * behind, it would find only reset entries there, miss every page
	 * dirtied until the ring filled, and take the ring for overflowed.
	 */
	v->ring_reset += ret;
	if ((int32_t)(v->ring_reset - v->ring_fetch) > 0)
		v->ring_fetch = v->ring_reset;
	stuck = !ret && v->ring_stalled && v->ring_stalled_gen == vm->ring_gen;
	v->ring_stalled = !ret && !stuck;
	v->ring_stalled_gen = vm->ring_gen;
	return stuck ? vcpu_ring_unstick(vm, vcpu) : 0;
}

int kvmmig_vm_ring_full(struct kvmmig_vm *vm, unsigned int vcpu)
{
	int ret;

	if (!vm->ring_entries || vcpu >= vm->nr_vcpus) {
		kvmmig_err("ring-full exit of vCPU %u: expected a VM with a dirty ring and a vCPU below %u",
			   vcpu, vm->nr_vcpus);
		return -EINVAL;
	}
	__atomic_add_fetch(&vm->vcpus[vcpu].ring_full_exits, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&vm->hook_lock);
	if (vm->ring_full)
		ret = vm->ring_full(vm->ring_opaque, vcpu);
	else
		ret = vcpu_ring_recycle(vm, vcpu);
	pthread_mutex_unlock(&vm->hook_lock);
	return ret;
}

void kvmmig_vm_set_ring_full_handler(struct kvmmig_vm *vm, kvmmig_ring_full_fn fn,
				     void *opaque)
{
	pthread_mutex_lock(&vm->hook_lock);
	vm->ring_full = fn;
	vm->ring_opaque = opaque;
	vm->ring_gen++;
	pthread_mutex_unlock(&vm->hook_lock);
}

int kvmmig_set_memslot(int vm_fd, const struct kvmmig_slot *s)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.flags = s->flags,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uint64_t)(uintptr_t)s->hva,
	};

	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return kvmmig_ioctl_err("KVM_SET_USER_MEMORY_REGION", errno);
	return 0;
}

int kvmmig_vm_set_dirty_logging(struct kvmmig_vm *vm, bool on)
{
	unsigned int i;
	int ret;

	for (i = 0; i < vm->nr_slots; i++) {
		struct kvmmig_slot *s = &vm->slots[i];
		uint32_t old = s->flags;

		if (on)
			s->flags |= KVM_MEM_LOG_DIRTY_PAGES;
		else
			s->flags &= ~KVM_MEM_LOG_DIRTY_PAGES;
		if (s->flags == old)
			continue;
		ret = kvmmig_set_memslot(vm->fd, s);
		if (ret) {
			s->flags = old;
			return ret;
		}
	}
	return 0;
}

/* ---- layout ---- */

unsigned int kvmmig_vm_fresh_from(const struct kvmmig_vm *vm)
{
	unsigned int i = vm->nr_slots;

	while (i && vm->slots[i - 1].zeroed)
		i--;
	return i;
}

int kvmmig_vm_check_config(const struct kvmmig_vm *vm, const struct mig_config *c)
{
	unsigned int i;

	if (vm->nr_vcpus != c->nr_vcpus || vm->nr_slots != c->nr_slots ||
	    vm->ops.state_size != c->vcpu_state_size) {
		kvmmig_err("configuration mismatch: the stream has %u vCPUs, %u slots and %u-byte vCPU state, the VMM's guest %u, %u and %u",
			   c->nr_vcpus, c->nr_slots, c->vcpu_state_size, vm->nr_vcpus,
			   vm->nr_slots, vm->ops.state_size);
		return -EINVAL;
	}
	for (i = 0; i < c->nr_slots; i++) {
		const struct kvmmig_slot *s = &vm->slots[i];

		if (s->gpa != c->slots[i].gpa || s->size != c->slots[i].size) {
			kvmmig_err("configuration mismatch: slot %u is at 0x%llx size 0x%llx in the stream, 0x%llx size 0x%llx here",
				   i, (unsigned long long)c->slots[i].gpa,
				   (unsigned long long)c->slots[i].size,
				   (unsigned long long)s->gpa, (unsigned long long)s->size);
			return -EINVAL;
		}
	}
	return 0;
}

struct mig_config *mig_config_of(const struct kvmmig_vm *vm, size_t *len)
{
	struct mig_config *cfg;
	unsigned int i;

	*len = mig_config_size(vm->nr_slots);
	cfg = calloc(1, *len);
	if (!cfg)
		return NULL;
	cfg->nr_slots = vm->nr_slots;
	cfg->nr_vcpus = vm->nr_vcpus;
	cfg->page_size = MIG_PAGE_SIZE;
	cfg->vcpu_state_size = vm->ops.state_size;
	for (i = 0; i < vm->nr_slots; i++) {
		cfg->slots[i].gpa = vm->slots[i].gpa;
		cfg->slots[i].size = vm->slots[i].size;
		cfg->slots[i].id = vm->slots[i].id;
		cfg->ram_bytes += vm->slots[i].size;
	}
	return cfg;
}

/* ---- the VMM's ops ---- */

static int vmm_result(int ret, const char *what)
{
	if (!ret)
		return 0;
	if (ret > 0)
		ret = -EIO;
	kvmmig_err("the VMM's %s callback failed: %s", what, strerror(-ret));
	return ret;
}

int kvmmig_vm_pause(struct kvmmig_vm *vm)
{
	return vmm_result(vm->ops.pause(vm->opaque), "pause");
}

int kvmmig_vm_resume(struct kvmmig_vm *vm)
{
	return vmm_result(vm->ops.resume(vm->opaque), "resume");
}

int kvmmig_vm_stop(struct kvmmig_vm *vm)
{
	return vm->ops.stop ? vmm_result(vm->ops.stop(vm->opaque), "stop") : 0;
}

int kvmmig_vm_save_state(struct kvmmig_vm *vm, unsigned int vcpu, void *state)
{
	return vmm_result(vm->ops.save_state(vm->opaque, vcpu, state), "save_state");
}

int kvmmig_vm_load_state(struct kvmmig_vm *vm, unsigned int vcpu, const void *state)
{
	return vmm_result(vm->ops.load_state(vm->opaque, vcpu, state), "load_state");
}

bool kvmmig_vm_can_throttle(const struct kvmmig_vm *vm)
{
	return vm->ops.set_throttle;
}

int kvmmig_vm_set_throttle(struct kvmmig_vm *vm, int vcpu, unsigned int pct)
{
	unsigned int i;
	int ret;

	if (pct > 99 || vcpu >= (int)vm->nr_vcpus || vcpu < -1) {
		kvmmig_err("throttle of %u%% on vCPU %d: expected 0-99%% on vCPU -1 (all) to %u",
			   pct, vcpu, vm->nr_vcpus - 1);
		return -EINVAL;
	}
	if (!vm->ops.set_throttle) {
		/* Nothing was ever throttled through the VMM: nothing to lift. */
		if (!pct)
			return 0;
		kvmmig_err("CPU throttle of %u%%: this VMM cannot throttle its vCPUs (no set_throttle op)",
			   pct);
		return -EOPNOTSUPP;
	}
	ret = vmm_result(vm->ops.set_throttle(vm->opaque, vcpu, pct), "set_throttle");
	if (ret)
		return ret;
	for (i = 0; i < vm->nr_vcpus; i++)
		if (vcpu < 0 || (unsigned int)vcpu == i)
			vm->throttle_pct[i] = pct;
	return 0;
}

unsigned int kvmmig_vm_max_throttle(const struct kvmmig_vm *vm)
{
	unsigned int i, max = 0;

	for (i = 0; i < vm->nr_vcpus; i++)
		if (vm->throttle_pct[i] > max)
			max = vm->throttle_pct[i];
	return max;
}
