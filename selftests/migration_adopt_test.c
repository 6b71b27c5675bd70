// SPDX-License-Identifier: GPL-2.0-only
/*
 * Migrating a VM that another VMM runs, through kvmmig_vm_new(): the same
 * constructor and code path as the built-in VMM's own VMs.  A built-in
 * guest plays the foreign VMM's: its struct kvmmig_vm gets only its VM fd,
 * memslot layout and vCPU fds, and pause, resume, stop, vCPU state and
 * ring-full exits go through the callbacks a VMM provides (no throttle:
 * this VMM cannot slow its vCPUs).  It migrates with each dirty source over
 * loopback TCP, runs on at the destination and passes QEMU migration-test's
 * one-edge incr check there, and the source guest ends stopped through the
 * VMM.  Then: what the wrapped VM does and refuses, that the VMM's fds and
 * memory outlive it, ring-full exits forwarded by the VMM (every vCPU runs
 * on once nobody tracks, even one whose ring is stuck behind entries KVM
 * counts but the ring no longer holds), and every bad argument of
 * kvmmig_vm_new() with its own errno.
 */
#include <sys/mman.h>

#include "bitmap.h"
#include "kselftest_harness.h"
#include "mig_test_util.h"

#define GUEST_RAM	(32ULL << 20)
#define PROGRESS_MS	20000		/* generous: the host may be loaded */

/* The foreign VMM: a built-in VM reached only through the adoption ops. */
struct foreign_vmm {
	struct vm *vm;
	struct kvmmig_vm *adopted;
	unsigned int pauses, resumes, stops, saves;
};

static int foreign_pause(void *opaque)
{
	struct foreign_vmm *f = opaque;

	f->pauses++;
	return vm_pause(f->vm);
}

static int foreign_resume(void *opaque)
{
	struct foreign_vmm *f = opaque;

	f->resumes++;
	return vm_resume(f->vm);
}

static int foreign_stop(void *opaque)
{
	struct foreign_vmm *f = opaque;

	f->stops++;
	return vm_stop(f->vm);
}

static int foreign_save_state(void *opaque, unsigned int vcpu, void *state)
{
	struct foreign_vmm *f = opaque;

	f->saves++;
	return vcpu_save_state(&f->vm->vcpus[vcpu], state);
}

static int foreign_load_state(void *opaque, unsigned int vcpu, const void *state)
{
	struct foreign_vmm *f = opaque;

	return vcpu_load_state(&f->vm->vcpus[vcpu], state);
}

/* The VMM's vCPU threads hand their ring-full exits to the wrapped VM. */
static int foreign_ring_full(void *opaque, unsigned int vcpu)
{
	struct foreign_vmm *f = opaque;

	return kvmmig_vm_ring_full(f->adopted, vcpu);
}

static const struct kvmmig_vm_ops foreign_ops = {
	.pause = foreign_pause,
	.resume = foreign_resume,
	.stop = foreign_stop,
	.state_size = sizeof(struct vcpu_state_blob),
	.save_state = foreign_save_state,
	.load_state = foreign_load_state,
};

static const struct kvmmig_vm_ops foreign_ops_nostop = {
	.pause = foreign_pause,
	.resume = foreign_resume,
	.state_size = sizeof(struct vcpu_state_blob),
	.save_state = foreign_save_state,
	.load_state = foreign_load_state,
};

/* What the VMM knows of its VM, in kvmmig_vm_new()'s terms (slots copied to @slots). */
static void foreign_args(struct foreign_vmm *f, int *vcpu_fds, struct kvmmig_slot *slots,
			 struct kvmmig_vm_args *a)
{
	struct vm *vm = f->vm;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		vcpu_fds[i] = vm->vcpus[i].fd;
	memcpy(slots, vm->slots, vm->nr_slots * sizeof(*slots));
	*a = (struct kvmmig_vm_args){
		.vm_fd = vm->fd,
		.nr_vcpus = vm->cfg.nr_vcpus,
		.vcpu_fds = vcpu_fds,
		.nr_slots = vm->nr_slots,
		.slots = slots,
		.ring_entries = vm->cfg.ring_entries,
		.manual_protect = vm->cfg.manual_protect,
		.ops = &foreign_ops,
		.opaque = f,
	};
}

static int foreign_adopt(struct foreign_vmm *f, const struct kvmmig_vm_ops *ops)
{
	struct kvmmig_slot slots[VM_MAX_SLOTS];
	int fds[VM_MAX_VCPUS], ret;
	struct kvmmig_vm_args a;

	foreign_args(f, fds, slots, &a);
	a.ops = ops;
	ret = kvmmig_vm_new(&a, &f->adopted);
	if (!ret && f->vm->cfg.ring_entries)
		vm_set_ring_full_handler(f->vm, foreign_ring_full, f);
	return ret;
}

static void foreign_release(struct foreign_vmm *f)
{
	if (f->vm)
		vm_set_ring_full_handler(f->vm, NULL, NULL);
	kvmmig_vm_free(f->adopted);
	f->adopted = NULL;
}

/*
 * The VMM numbers its memslots its own way: re-register slot @i as @id
 * (deleting a slot under a running vCPU would fail it, so paused).
 */
static int foreign_renumber(struct vm *vm, unsigned int i, uint32_t id)
{
	struct kvmmig_slot *s = &vm->slots[i];
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.guest_phys_addr = s->gpa,
		.userspace_addr = (uintptr_t)s->hva,
	};
	int ret = 0;

	vm_pause(vm);
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r))
		ret = -errno;
	r.slot = id;
	r.flags = s->flags;
	r.memory_size = s->size;
	if (!ret && ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r))
		ret = -errno;
	if (!ret)
		s->id = id;
	vm_resume(vm);
	return ret;
}

/* Does the built-in guest move on (within a generous deadline)? */
static bool guest_progresses(struct vm *vm)
{
	uint64_t before = guest_loops(vm), t_end = now_ns() + PROGRESS_MS * 1000000ULL;

	while (guest_loops(vm) == before && now_ns() < t_end)
		usleep(10000);
	return guest_loops(vm) != before;
}

/* Does every vCPU of the built-in guest move on?  The first that does not, or -1. */
static int vcpu_stalled(struct vm *vm)
{
	uint64_t before[VM_MAX_VCPUS], t_end = now_ns() + PROGRESS_MS * 1000000ULL;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		before[i] = vm->vcpus[i].area->loops;
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		while (vm->vcpus[i].area->loops == before[i] && now_ns() < t_end)
			usleep(10000);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].area->loops == before[i])
			return i;
	return -1;
}

static void quiet_log(int level, const char *msg)
{
}

/* NULL if @b works on this host, else why not. */
static const char *backend_missing(enum dirty_backend b)
{
	if (b == DIRTY_RING && kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 &&
	    kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		return "KVM_CAP_DIRTY_LOG_RING missing";
	if (b == DIRTY_BITMAP_MANUAL && kvm_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
		return "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 missing";
	return NULL;
}

/* ---- migration of an adopted guest ---- */

FIXTURE(mig) {
	struct foreign_vmm f;
	struct dest_child dest;
};

FIXTURE_VARIANT(mig) {
	enum dirty_backend backend;
};

FIXTURE_VARIANT_ADD(mig, ring) { DIRTY_RING };
FIXTURE_VARIANT_ADD(mig, bitmap) { DIRTY_BITMAP };
FIXTURE_VARIANT_ADD(mig, bitmap_manual) { DIRTY_BITMAP_MANUAL };

FIXTURE_SETUP(mig)
{
}

FIXTURE_TEARDOWN(mig)
{
	if (self->dest.pid > 0)
		kill(self->dest.pid, SIGKILL), dest_child_wait(&self->dest);
	foreign_release(&self->f);
	vm_destroy(self->f.vm);
}

TEST_F_TIMEOUT(mig, adopted_guest_survives, 300)
{
	struct mig_source_opts o = { 0 };
	struct mig_params *p = &o.params;
	enum dirty_backend b = variant->backend;
	struct foreign_vmm *f = &self->f;
	struct mig_report rep;
	unsigned int i;
	int ret, st;

	if (backend_missing(b))
		SKIP(return, "%s", backend_missing(b));
	f->vm = source_guest(2, GUEST_RAM, &b);
	ASSERT_NE(f->vm, NULL);
	/* Dirty pages of the last RAM slot are missed if its id is taken for an index. */
	ASSERT_EQ(foreign_renumber(f->vm, f->vm->nr_slots - 1, 0x1234), 0);
	ASSERT_EQ(foreign_adopt(f, &foreign_ops), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(dest_child_start(&self->dest, "127.0.0.1", NULL), 0);

	o.to = self->dest.addr;
	mig_params_init(p);
	p->dirty_backend = variant->backend;
	p->max_passes = 400;
	p->downtime_limit_ms = 500;
	ret = mig_source_run(f->adopted, &o, &rep);
	TH_LOG("%s: %s in %.2f s, %llu passes, downtime %.0f ms, %llu ring-full exits forwarded%s%s",
	       rep.dirty_backend ?: "?", mig_state_name(rep.state), rep.total_s,
	       (unsigned long long)rep.passes, rep.downtime_ms,
	       (unsigned long long)(f->adopted->vcpus[0].ring_full_exits +
				    f->adopted->vcpus[1].ring_full_exits),
	       rep.error[0] ? ": " : "", rep.error);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(rep.state, (enum mig_state)MIG_COMPLETED);
	ASSERT_STREQ(rep.dirty_backend, dirty_backend_name(variant->backend));
	mig_report_free(&rep);
	/* The destination saw the guest run on, its memory intact. */
	st = dest_child_wait(&self->dest);
	self->dest.pid = 0;
	ASSERT_EQ(st, DEST_OK) TH_LOG("destination exit code %d", st);

	/* Paused once for the switchover, never resumed, then stopped by its VMM. */
	ASSERT_EQ(f->pauses, 1U);
	ASSERT_EQ(f->resumes, 0U);
	ASSERT_EQ(f->stops, 1U);
	/* Each vCPU's state came from the VMM, once. */
	ASSERT_EQ(f->saves, f->vm->cfg.nr_vcpus);
	for (i = 0; i < f->vm->cfg.nr_vcpus; i++) {
		ASSERT_FALSE(f->vm->vcpus[i].thread_started);
		ASSERT_EQ(f->vm->vcpus[i].state, VCPU_DONE) TH_LOG("%s", f->vm->vcpus[i].error);
	}
	for (i = 0; i < f->adopted->nr_slots; i++)
		ASSERT_EQ(f->adopted->slots[i].flags & KVM_MEM_LOG_DIRTY_PAGES, 0U);
	/* The source stopped where it was paused: its memory is one consistent state. */
	ASSERT_EQ(workload_check_incr(f->vm, NULL), 0) TH_LOG("%s", kvmmig_last_error());
}

/* ---- what an adopted VM does without a migration ---- */

TEST_F_TIMEOUT(mig, adopted_vm_ops, 120)
{
	struct vcpu_state_blob theirs, ours;
	enum dirty_backend b = variant->backend;
	struct foreign_vmm *f = &self->f;
	struct kvm_dirty_log log = { 0 };
	unsigned long *bits;
	struct kvmmig_vm *vm;
	unsigned int i;

	if (backend_missing(b))
		SKIP(return, "%s", backend_missing(b));
	f->vm = source_guest(2, GUEST_RAM, &b);
	ASSERT_NE(f->vm, NULL);
	ASSERT_EQ(foreign_adopt(f, &foreign_ops_nostop), 0) TH_LOG("%s", kvmmig_last_error());
	vm = f->adopted;
	ASSERT_EQ(vm->opaque, f);	/* driven through this VMM's ops */
	ASSERT_NE(vm, f->vm->kv);	/* not the built-in VMM's own wrapping */
	ASSERT_NE(vm->fd, f->vm->fd);	/* a duplicate: the VMM's fd stays its own */
	ASSERT_EQ(vm->named_fd, f->vm->fd);	/* ... but the VM keeps its name */

	/* Pause, resume and vCPU state are the VMM's. */
	ASSERT_EQ(kvmmig_vm_pause(vm), 0);
	ASSERT_EQ(f->pauses, 1U);
	for (i = 0; i < vm->nr_vcpus; i++) {
		ASSERT_EQ(kvmmig_vm_save_state(vm, i, &theirs), 0);
		ASSERT_EQ(vcpu_save_state(&f->vm->vcpus[i], &ours), 0);
		ASSERT_EQ(memcmp(&theirs.regs, &ours.regs, sizeof(ours.regs)), 0);
		ASSERT_EQ(memcmp(&theirs.sregs, &ours.sregs, sizeof(ours.sregs)), 0);
	}
	ASSERT_EQ(kvmmig_vm_resume(vm), 0);
	ASSERT_EQ(f->resumes, 1U);
	ASSERT_TRUE(guest_progresses(f->vm));

	/* This VMM has no throttle: one is refused, lifting none is a no-op. */
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_FALSE(kvmmig_vm_can_throttle(vm));
	ASSERT_EQ(kvmmig_vm_set_throttle(vm, -1, 50), -EOPNOTSUPP);
	ASSERT_EQ(kvmmig_vm_set_throttle(vm, -1, 0), 0);
	ASSERT_EQ(kvmmig_vm_max_throttle(vm), 0U);
	ASSERT_EQ(vm_failure(f->vm), NULL);
	/* A ring-full exit needs a ring, and a vCPU the VM has. */
	if (!vm->ring_entries)
		ASSERT_EQ(kvmmig_vm_ring_full(vm, 0), -EINVAL);
	ASSERT_EQ(kvmmig_vm_ring_full(vm, vm->nr_vcpus), -EINVAL);

	/* Dirty logging is switched on the VMM's own memslots. */
	if (!vm->ring_entries) {
		bits = bitmap_alloc(vm->slots[1].size / GUEST_PAGE_SIZE);
		ASSERT_NE(bits, NULL);
		log.slot = vm->slots[1].id;
		log.dirty_bitmap = bits;
		ASSERT_EQ(kvmmig_vm_set_dirty_logging(vm, true), 0);
		ASSERT_EQ(ioctl(f->vm->fd, KVM_GET_DIRTY_LOG, &log), 0);
		ASSERT_EQ(kvmmig_vm_set_dirty_logging(vm, false), 0);
		ASSERT_EQ(ioctl(f->vm->fd, KVM_GET_DIRTY_LOG, &log), -1);
		ASSERT_EQ(errno, ENOENT);
		free(bits);
	}

	/* Without a stop callback the guest is the VMM's to end. */
	ASSERT_EQ(kvmmig_vm_stop(vm), 0);
	ASSERT_EQ(f->stops, 0U);
	ASSERT_TRUE(guest_progresses(f->vm));

	/* Gone, the wrapped VM leaves the VMM's fds open and its memory mapped. */
	foreign_release(f);
	ASSERT_GE(fcntl(f->vm->fd, F_GETFD), 0);
	for (i = 0; i < f->vm->cfg.nr_vcpus; i++)
		ASSERT_GE(fcntl(f->vm->vcpus[i].fd, F_GETFD), 0);
	ASSERT_TRUE(guest_progresses(f->vm));
	ASSERT_EQ(vm_pause(f->vm), 0);
	ASSERT_EQ(workload_check_incr(f->vm, NULL), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_failure(f->vm), NULL);
}

/*
 * With a small ring and no reaper the rings fill: the VMM's vCPU threads
 * take the exits and forward them, and the dirty source harvests there.
 */
FIXTURE(ring) {
	struct foreign_vmm f;
};

FIXTURE_SETUP(ring)
{
}

FIXTURE_TEARDOWN(ring)
{
	foreign_release(&self->f);
	vm_destroy(self->f.vm);
}

/* Two vCPUs writing, with a small ring, run by the foreign VMM. */
static int ring_guest(struct foreign_vmm *f)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = GUEST_RAM,
		.nr_slots = 2,
		.ring_entries = 512,
		.guest.workload = WORKLOAD_INCR,
	};
	int ret;

	ret = vm_create(&cfg, &f->vm);
	if (!ret)
		ret = vm_start(f->vm);
	if (!ret)
		ret = foreign_adopt(f, &foreign_ops);
	return ret;
}

TEST_F_TIMEOUT(ring, full_exits_forwarded, 120)
{
	struct dirty_options opts = { .backend = DIRTY_RING, .no_reaper = true };
	struct foreign_vmm *f = &self->f;
	uint64_t t_end, exits = 0;
	struct dirty_source *ds;
	struct dirty_set set;
	unsigned int i;

	if (backend_missing(DIRTY_RING))
		SKIP(return, "%s", backend_missing(DIRTY_RING));
	ASSERT_EQ(ring_guest(f), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(dirty_source_open(f->adopted, &opts, &ds), 0);
	t_end = now_ns() + PROGRESS_MS * 1000000ULL;
	while (!__atomic_load_n(&ds->stats.ring_full_exits, __ATOMIC_RELAXED) && now_ns() < t_end)
		usleep(10000);
	ASSERT_EQ(dirty_set_alloc(f->adopted, &set), 0);
	ASSERT_GT(dirty_source_collect(ds, &set), 0);
	dirty_set_free(&set);
	dirty_source_close(ds);
	/* Off for good, even after a re-protection at an overflow (logging off and on). */
	for (i = 0; i < f->adopted->nr_slots; i++)
		ASSERT_EQ(f->adopted->slots[i].flags & KVM_MEM_LOG_DIRTY_PAGES, 0U);
	for (i = 0; i < f->adopted->nr_vcpus; i++)
		exits += f->adopted->vcpus[i].ring_full_exits;
	ASSERT_GT(exits, 0ULL);
	ASSERT_EQ(vm_failure(f->vm), NULL);
	/* Nobody tracks now: full rings are recycled and every vCPU runs on. */
	ASSERT_EQ(vcpu_stalled(f->vm), -1);
	ASSERT_EQ(vm_failure(f->vm), NULL);
}

#define PHANTOMS	32

/* The VMM's forwarding, after leaving phantoms in vCPU 0's ring at its first exit. */
struct phantom_vmm {
	struct foreign_vmm *f;
	bool made;			/* atomic */
};

static int phantom_ring_full(void *opaque, unsigned int vcpu)
{
	struct phantom_vmm *pv = opaque;
	struct kvm_dirty_gfn *ring = pv->f->adopted->vcpus[vcpu].ring;
	unsigned int i;

	/*
	 * Nothing reset vCPU 0's ring yet, so KVM's reset index is 0: clean
	 * entries there are entries KVM counts and the ring no longer holds,
	 * what a PVM wrap leaves behind.
	 */
	if (!vcpu && !__atomic_load_n(&pv->made, __ATOMIC_ACQUIRE)) {
		for (i = 0; i < PHANTOMS; i++)
			__atomic_store_n(&ring[i].flags, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&pv->made, true, __ATOMIC_RELEASE);
	}
	return kvmmig_vm_ring_full(pv->f->adopted, vcpu);
}

/*
 * A ring whose reset index sits at phantoms while nobody tracks: every
 * reset recycles nothing of it.  The VM must find the index and skip them,
 * not leave the vCPU exiting for ever; once it runs with logging off, it
 * never exits for a full ring again.
 */
TEST_F_TIMEOUT(ring, untracked_phantoms_skipped, 120)
{
	struct foreign_vmm *f = &self->f;
	struct phantom_vmm pv = { .f = f };
	uint64_t t_end, exits;

	if (backend_missing(DIRTY_RING))
		SKIP(return, "%s", backend_missing(DIRTY_RING));
	ASSERT_EQ(ring_guest(f), 0) TH_LOG("%s", kvmmig_last_error());
	vm_set_ring_full_handler(f->vm, phantom_ring_full, &pv);
	ASSERT_EQ(kvmmig_vm_set_dirty_logging(f->adopted, true), 0);
	t_end = now_ns() + PROGRESS_MS * 1000000ULL;
	while (!__atomic_load_n(&pv.made, __ATOMIC_ACQUIRE) && now_ns() < t_end)
		usleep(10000);
	ASSERT_TRUE(__atomic_load_n(&pv.made, __ATOMIC_ACQUIRE));
	ASSERT_EQ(kvmmig_vm_set_dirty_logging(f->adopted, false), 0);
	ASSERT_EQ(vcpu_stalled(f->vm), -1);
	ASSERT_EQ(vm_failure(f->vm), NULL);
	/* Running means its ring is no longer full, and nothing fills it now. */
	exits = __atomic_load_n(&f->adopted->vcpus[0].ring_full_exits, __ATOMIC_RELAXED);
	ASSERT_EQ(vcpu_stalled(f->vm), -1);
	ASSERT_EQ(__atomic_load_n(&f->adopted->vcpus[0].ring_full_exits, __ATOMIC_RELAXED), exits);
	ASSERT_EQ(vm_failure(f->vm), NULL);
}

/* ---- every bad argument, with its errno ---- */

#define RING_ENTRIES	512

FIXTURE(bad) {
	struct foreign_vmm f;
	struct kvmmig_vm_args a;
	int fds[VM_MAX_VCPUS];
	struct kvmmig_slot slots[VM_MAX_SLOTS + 1];
	struct kvmmig_vm_ops ops;
	int null_fd;
};

FIXTURE_SETUP(bad)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = 16ULL << 20,
		.nr_slots = 2,
		.guest.workload = WORKLOAD_INCR,
	};

	/* With a ring when KVM has one, for the ring-size checks. */
	if (!backend_missing(DIRTY_RING))
		cfg.ring_entries = RING_ENTRIES;
	ASSERT_EQ(vm_create(&cfg, &self->f.vm), 0);
	foreign_args(&self->f, self->fds, self->slots, &self->a);
	self->ops = foreign_ops;
	self->a.ops = &self->ops;
	self->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->null_fd, 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
}

FIXTURE_TEARDOWN(bad)
{
	foreign_release(&self->f);
	vm_destroy(self->f.vm);
	close(self->null_fd);
}

/* kvmmig_vm_new(@a)'s result; 1 when it failed with a message that does not name @what. */
static int adopt_result(const struct kvmmig_vm_args *a, const char *what)
{
	struct kvmmig_vm *vm;
	int ret = kvmmig_vm_new(a, &vm);

	if (!ret) {
		kvmmig_vm_free(vm);
		return 0;
	}
	return strstr(kvmmig_last_error(), what) ? ret : 1;
}

#define ASSERT_ADOPT(err, what)							\
	ASSERT_EQ(adopt_result(&self->a, what), err) TH_LOG("%s", kvmmig_last_error())

TEST_F(bad, good_args_adopt)
{
	ASSERT_ADOPT(0, "");
}

TEST_F(bad, vm_fd_not_kvm)
{
	self->a.vm_fd = self->null_fd;
	ASSERT_ADOPT(-ENOTTY, "vm_fd");
}

TEST_F(bad, vm_fd_is_dev_kvm)
{
	self->a.vm_fd = self->f.vm->kvm_fd;
	ASSERT_ADOPT(-ENOTTY, "vm_fd");
}

TEST_F(bad, vm_fd_is_vcpu)
{
	self->a.vm_fd = self->fds[0];
	ASSERT_ADOPT(-ENOTTY, "vm_fd");
}

TEST_F(bad, vm_fd_closed)
{
	self->a.vm_fd = -1;
	ASSERT_ADOPT(-EBADF, "vm_fd");
}

TEST_F(bad, vcpu_fd_is_vm)
{
	self->fds[1] = self->f.vm->fd;
	ASSERT_ADOPT(-ENOTTY, "vcpu_fds[1]");
}

TEST_F(bad, vcpu_fd_not_kvm)
{
	self->fds[0] = self->null_fd;
	ASSERT_ADOPT(-ENOTTY, "vcpu_fds[0]");
}

TEST_F(bad, vcpu_fds_swapped)
{
	self->fds[0] = self->f.vm->vcpus[1].fd;
	self->fds[1] = self->f.vm->vcpus[0].fd;
	ASSERT_ADOPT(-EINVAL, "vcpu_fds[0]");
}

TEST_F(bad, no_vcpus)
{
	self->a.nr_vcpus = 0;
	ASSERT_ADOPT(-EINVAL, "vCPU fds");
}

TEST_F(bad, too_many_vcpus)
{
	self->a.nr_vcpus = VM_MAX_VCPUS + 1;
	ASSERT_ADOPT(-E2BIG, "vCPU fds");
}

TEST_F(bad, no_slots)
{
	self->a.nr_slots = 0;
	ASSERT_ADOPT(-EINVAL, "memslots");
}

TEST_F(bad, too_many_slots)
{
	self->a.nr_slots = VM_MAX_SLOTS + 1;
	ASSERT_ADOPT(-E2BIG, "memslots");
}

TEST_F(bad, slots_overlap)
{
	self->slots[2].gpa = self->slots[1].gpa + GUEST_PAGE_SIZE;
	ASSERT_ADOPT(-EINVAL, "overlaps slot 1");
}

TEST_F(bad, slot_unaligned)
{
	self->slots[1].gpa += 512;
	ASSERT_ADOPT(-EINVAL, "multiples of 4 KiB");
}

TEST_F(bad, slot_zero_size)
{
	self->slots[2].size = 0;
	ASSERT_ADOPT(-EINVAL, "non-zero size");
}

TEST_F(bad, slot_ids_repeat)
{
	self->slots[2].id = self->slots[1].id;
	ASSERT_ADOPT(-EINVAL, "both have id");
}

TEST_F(bad, slot_id_other_address_space)
{
	self->slots[2].id |= 1 << 16;
	ASSERT_ADOPT(-EINVAL, "address space 0");
}

TEST_F(bad, slot_logged_by_vmm)
{
	self->slots[1].flags |= KVM_MEM_LOG_DIRTY_PAGES;
	ASSERT_ADOPT(-EBUSY, "dirty logging on");
}

TEST_F(bad, slot_unknown_flags)
{
	self->slots[1].flags |= 1U << 30;
	ASSERT_ADOPT(-EINVAL, "flags");
}

TEST_F(bad, slot_not_mapped)
{
	void *p = mmap(NULL, self->slots[1].size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(p, MAP_FAILED);
	munmap(p, self->slots[1].size);
	self->slots[1].hva = p;
	ASSERT_ADOPT(-EFAULT, "not mapped");
}

TEST_F(bad, no_ops)
{
	self->a.ops = NULL;
	ASSERT_ADOPT(-EINVAL, "ops");
}

TEST_F(bad, no_pause)
{
	self->ops.pause = NULL;
	ASSERT_ADOPT(-EINVAL, "pause");
}

TEST_F(bad, no_resume)
{
	self->ops.resume = NULL;
	ASSERT_ADOPT(-EINVAL, "resume");
}

TEST_F(bad, no_stop_is_fine)
{
	self->ops.stop = NULL;
	ASSERT_ADOPT(0, "");
}

TEST_F(bad, no_save_state)
{
	self->ops.save_state = NULL;
	ASSERT_ADOPT(-EINVAL, "save_state");
}

TEST_F(bad, no_load_state)
{
	self->ops.load_state = NULL;
	ASSERT_ADOPT(-EINVAL, "load_state");
}

TEST_F(bad, state_size_zero)
{
	self->ops.state_size = 0;
	ASSERT_ADOPT(-EINVAL, "vCPU state of 0 bytes");
}

TEST_F(bad, state_size_too_big)
{
	self->ops.state_size = MIG_MAX_VCPU_STATE + 1;
	ASSERT_ADOPT(-EINVAL, "expected 1 to");
}

TEST_F(bad, ring_entries_not_power_of_two)
{
	self->a.ring_entries = 300;
	ASSERT_ADOPT(-EINVAL, "power of two");
}

TEST_F(bad, ring_not_declared)
{
	if (!self->a.ring_entries)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	self->a.ring_entries = 0;
	ASSERT_ADOPT(-EINVAL, "has a dirty ring");
}

TEST_F(bad, ring_larger_than_declared)
{
	if (!self->a.ring_entries)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	self->a.ring_entries = RING_ENTRIES / 2;
	ASSERT_ADOPT(-EINVAL, "larger");
}

TEST_F(bad, ring_smaller_than_declared)
{
	self->a.ring_entries = RING_ENTRIES * 2;
	ASSERT_ADOPT(-EINVAL, "smaller, or absent");
}

TEST_HARNESS_MAIN
