// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvmmig.ko, for real: every ioctl's error paths with their exact errno,
 * harvest correctness by KVM's dirty_log_test method and against the
 * userspace ring source, throttle effects measured as ratios in one run,
 * the dirty-limit policy on the module's own dirty limit (and on CPU
 * throttles where it cannot or is told not to use it), dirty counts and
 * dirty limits against the guest's own writes with a dirty ring and with
 * the bitmap, the VM destroyed while attached (and released at once, VM
 * after VM), the VMM killed while throttled, the kvmmig attach and throttle
 * commands' output, netlink commands and events, and load/unload cycles
 * with sessions open.  Runs
 * inside Debian kernels under QEMU (selftests/vm); on a host without
 * /dev/kvmmig every test SKIPs with the reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitmap.h"
#include "cli_util.h"
#include "dirty.h"
#include "mig_throttle.h"
#include "module_client.h"
#include "kselftest_harness.h"
#include "test_util.h"

#define TEST_RAM		(16ULL << 20)
#define TEST_RING		4096U
#define NR_VCPUS		2U
/*
 * Reap every 20 ms: each KVM_RESET_DIRTY_RINGS flushes remote TLBs and
 * kicks every vCPU, which under nested QEMU TCG costs so much that a
 * sub-millisecond reaper leaves the guest almost no time to run.
 */
#define TEST_REAP_US		20000

/* ---- helpers ---- */

static int attach_raw(int dev, uint32_t vm_fd)
{
	struct kvmmig_attach a = { .vm_fd = vm_fd };

	return ioctl(dev, KVMMIG_ATTACH, &a);
}

/* The ioctl failed with exactly this errno. */
#define ASSERT_ERRNO(expr, err) do {					\
	errno = 0;							\
	ASSERT_EQ(-1, (long)(expr));					\
	ASSERT_EQ((err), errno) TH_LOG("%s: errno %d (%s), expected %s", \
				       #expr, errno, strerror(errno), #err); \
} while (0)

static bool module_missing(struct __test_metadata *_metadata)
{
	const char *why = "";

	if (kmod_present(&why))
		return false;
	SKIP(return true, "%s", why);
}

static struct vm *make_vm(struct __test_metadata *_metadata, unsigned int nr_vcpus,
			  uint32_t ring, enum guest_workload w)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = TEST_RAM,
		.nr_slots = 2,
		.ring_entries = ring,
		.guest.workload = w,
		.guest.iteration = 1,
	};
	struct vm *vm = NULL;

	if (vm_create(&cfg, &vm))
		return NULL;
	return vm;
}

FIXTURE(kmt) {
	bool ready;
	struct vm *vm;
	int dev;
	int sess;
};

/* Ring full on a fixture VM: collect everything (no bitmaps) and reset. */
static int discard_ring(void *opaque, unsigned int vcpu)
{
	FIXTURE_DATA(kmt) *self = opaque;
	struct kvmmig_harvest h = {};

	if (ioctl(self->sess, KVMMIG_HARVEST, &h) ||
	    ioctl(self->vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		return -errno;
	return 0;
}

FIXTURE_SETUP(kmt)
{
	self->dev = self->sess = -1;
	if (module_missing(_metadata))
		return;
	if (kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 && kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	self->vm = make_vm(_metadata, NR_VCPUS, TEST_RING, WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	ASSERT_EQ(kvmmig_vm_set_dirty_logging(self->vm->kv, true), 0);
	self->dev = open(KVMMIG_DEVICE, O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->dev, 0);
	self->sess = attach_raw(self->dev, self->vm->fd);
	ASSERT_GE(self->sess, 0);
	vm_set_ring_full_handler(self->vm, discard_ring, self);
	self->ready = true;
}

FIXTURE_TEARDOWN(kmt)
{
	if (self->sess >= 0)
		close(self->sess);
	if (self->dev >= 0)
		close(self->dev);
	vm_destroy(self->vm);
}

/* The 6.1 harness runs the test body after a SKIP in setup. */
#define NEED_READY() do { if (!self->ready) return; } while (0)

/* Tests that build their own VMs; only the module is needed. */
FIXTURE(own) {
	bool ready;
};

FIXTURE_SETUP(own)
{
	self->ready = !module_missing(_metadata);
}

FIXTURE_TEARDOWN(own)
{
}

/* ---- /dev/kvmmig ---- */

TEST_F(kmt, api_version)
{
	NEED_READY();
	ASSERT_EQ(KVMMIG_API_VERSION, ioctl(self->dev, KVMMIG_GET_API_VERSION, 0));
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_GET_API_VERSION, 1), EINVAL);
}

TEST_F(kmt, check_extension)
{
	NEED_READY();
	ASSERT_EQ(1, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_HARVEST));
	ASSERT_EQ(1, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_RUN_TIME));
	ASSERT_EQ(1, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_DIRTY_COUNT));
	/* Both Debian kernels have kprobes: bitmap-mode counts are there. */
	ASSERT_EQ(1, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_BITMAP_DIRTY));
	ASSERT_EQ(1, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_PROMPT_RELEASE));
	ASSERT_EQ(KVMMIG_GENL_VERSION, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, KVMMIG_CAP_NETLINK));
	ASSERT_EQ(0, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, 0));
	ASSERT_EQ(0, ioctl(self->dev, KVMMIG_CHECK_EXTENSION, 12345));
}

TEST_F(kmt, unknown_ioctls)
{
	struct kvmmig_info info = {};

	NEED_READY();
	ASSERT_ERRNO(ioctl(self->dev, _IO(KVMMIG_IO, 0x7f), 0), ENOTTY);
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_INFO, &info), ENOTTY);
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_GET_API_VERSION, 0), ENOTTY);
	ASSERT_ERRNO(ioctl(self->sess, _IOW(KVMMIG_IO, 0x10, uint64_t), &info), ENOTTY);
	ASSERT_ERRNO(ioctl(self->sess, KVM_GET_API_VERSION, 0), ENOTTY);
}

TEST_F(kmt, attach_bad_fd)
{
	NEED_READY();
	ASSERT_ERRNO(attach_raw(self->dev, 9999), EBADF);
	ASSERT_ERRNO(attach_raw(self->dev, (uint32_t)-1), EBADF);
}

TEST_F(kmt, attach_non_kvm_fd)
{
	int null = open("/dev/null", O_RDWR);

	NEED_READY();
	ASSERT_ERRNO(attach_raw(self->dev, null), EINVAL);
	ASSERT_ERRNO(attach_raw(self->dev, self->vm->kvm_fd), EINVAL);
	ASSERT_ERRNO(attach_raw(self->dev, self->vm->vcpus[0].fd), EINVAL);
	ASSERT_ERRNO(attach_raw(self->dev, self->sess), EINVAL);
	close(null);
}

TEST_F(kmt, attach_closed_vm_fd)
{
	int fd;

	NEED_READY();
	fd = dup(self->vm->fd);
	close(fd);
	ASSERT_ERRNO(attach_raw(self->dev, fd), EBADF);
}

TEST_F(kmt, attach_nonzero_fields)
{
	struct kvmmig_attach a = { .vm_fd = self->vm ? self->vm->fd : 0 };

	NEED_READY();
	close(self->sess);
	self->sess = -1;
	a.flags = 1;
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_ATTACH, &a), EINVAL);
	a.flags = 0;
	a.pad = 1;
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_ATTACH, &a), EINVAL);
	a.pad = 0;
	a.reserved[1] = 1;
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_ATTACH, &a), EINVAL);
	ASSERT_ERRNO(ioctl(self->dev, KVMMIG_ATTACH, (void *)8), EFAULT);
}

TEST_F(kmt, second_attach_is_busy)
{
	int s;

	NEED_READY();
	ASSERT_ERRNO(attach_raw(self->dev, self->vm->fd), EBUSY);
	/* After DETACH, and after close, the VM can be attached again. */
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_DETACH, 0));
	s = attach_raw(self->dev, self->vm->fd);
	ASSERT_GE(s, 0);
	close(s);
	s = attach_raw(self->dev, self->vm->fd);
	ASSERT_GE(s, 0);
	close(s);
}

/* ---- INFO ---- */

TEST_F(kmt, info)
{
	struct kvmmig_memslot ms[8];
	struct kvmmig_info info = { .slots = (uintptr_t)ms, .nr_slots = 8 };
	unsigned int i;

	NEED_READY();
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_INFO, &info));
	ASSERT_EQ(NR_VCPUS, info.nr_vcpus);
	ASSERT_EQ(TEST_RING, info.ring_entries);
	ASSERT_GT(info.ring_soft_limit, 0U);
	ASSERT_LT(info.ring_soft_limit, TEST_RING);
	ASSERT_EQ(self->vm->nr_slots, info.nr_slots);
	ASSERT_GT(info.session_id, 0U);
	ASSERT_EQ((uint32_t)getpid(), info.vm_pid);
	for (i = 0; i < info.nr_slots; i++) {
		ASSERT_EQ(self->vm->slots[i].id, ms[i].slot);
		ASSERT_EQ(self->vm->slots[i].gpa / GUEST_PAGE_SIZE, ms[i].base_gfn);
		ASSERT_EQ(self->vm->slots[i].size / GUEST_PAGE_SIZE, ms[i].npages);
		ASSERT_NE(0U, ms[i].kvm_flags & KVM_MEM_LOG_DIRTY_PAGES);
		ASSERT_EQ(0U, ms[i].flags);
	}
}

TEST_F(kmt, info_errors)
{
	struct kvmmig_info info = {};

	NEED_READY();
	info.flags = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), EINVAL);
	info.flags = 0;
	info.reserved[3] = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), EINVAL);
	info.reserved[3] = 0;
	info.nr_slots = 1U << 31;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), E2BIG);
	/* Too short: ENOSPC and the needed count written back. */
	info.nr_slots = 1;
	info.slots = (uintptr_t)&info;	/* never written: too short */
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), ENOSPC);
	ASSERT_EQ(self->vm->nr_slots, info.nr_slots);
	info.slots = 16;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), EFAULT);
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, NULL), EFAULT);
}

/* ---- HARVEST ---- */

struct harvest_buf {
	struct kvmmig_slot_bitmap sb[VM_MAX_SLOTS];
	unsigned long *maps[VM_MAX_SLOTS];
	struct kvmmig_harvest_vcpu hv[VM_MAX_VCPUS];
	struct kvmmig_harvest h;
};

static void harvest_init(struct vm *vm, struct harvest_buf *b)
{
	unsigned int i;

	memset(b, 0, sizeof(*b));
	for (i = 0; i < vm->nr_slots; i++) {
		b->sb[i].slot = vm->slots[i].id;
		b->sb[i].npages = vm->slots[i].size / GUEST_PAGE_SIZE;
		b->maps[i] = bitmap_alloc(b->sb[i].npages);
		b->sb[i].bitmap = (uintptr_t)b->maps[i];
	}
	b->h.slots = (uintptr_t)b->sb;
	b->h.nr_slots = vm->nr_slots;
	b->h.vcpus = (uintptr_t)b->hv;
	b->h.nr_vcpus = vm->cfg.nr_vcpus;
}

static void harvest_free(struct harvest_buf *b)
{
	unsigned int i;

	for (i = 0; i < VM_MAX_SLOTS; i++)
		free(b->maps[i]);
}

TEST_F(kmt, harvest_errors)
{
	struct harvest_buf b;
	struct kvmmig_harvest h;

	NEED_READY();
	harvest_init(self->vm, &b);
	h = b.h;
	h.flags = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), EINVAL);
	h = b.h;
	h.reserved[0] = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), EINVAL);
	h = b.h;
	h.nr_slots = 1U << 30;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), E2BIG);
	h = b.h;
	h.nr_vcpus = 1U << 30;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), E2BIG);
	h = b.h;
	h.nr_vcpus = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), ENOSPC);
	ASSERT_EQ(NR_VCPUS, h.nr_vcpus);
	b.sb[0].pad = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[0].pad = 0;
	b.sb[0].flags = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[0].flags = 0;
	b.sb[0].reserved[1] = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[0].reserved[1] = 0;
	b.sb[0].npages = 0;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[0].npages = KVMMIG_MAX_SLOT_PAGES + 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[0].npages = self->vm->slots[0].size / GUEST_PAGE_SIZE;
	b.sb[1].slot = b.sb[0].slot;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EINVAL);
	b.sb[1].slot = self->vm->slots[1].id;
	b.sb[0].bitmap = 0xffff800000000000ULL;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &b.h), EFAULT);
	b.sb[0].bitmap = (uintptr_t)b.maps[0];
	h = b.h;
	h.vcpus = 8;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), EFAULT);
	h = b.h;
	h.slots = 8;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_HARVEST, &h), EFAULT);
	/* And the well-formed call works. */
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_HARVEST, &b.h));
	ASSERT_EQ(NR_VCPUS, b.h.nr_vcpus);
	harvest_free(&b);
}

/* A VM without a dirty ring: no harvest, no quota; a dirty limit it may have. */
TEST_F(own, harvest_needs_ring)
{
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_DIRTY_LIMIT, .dirty_limit = 100 };
	struct kvmmig_throttle g = { .vcpu = 0 };
	struct kvmmig_harvest h = {};
	struct vm *vm;
	int dev, s;

	NEED_READY();
	vm = make_vm(_metadata, 1, 0, WORKLOAD_IDLE);
	ASSERT_NE(vm, NULL);
	dev = open(KVMMIG_DEVICE, O_RDWR);
	s = attach_raw(dev, vm->fd);
	ASSERT_GE(s, 0);
	ASSERT_ERRNO(ioctl(s, KVMMIG_HARVEST, &h), EOPNOTSUPP);
	ASSERT_EQ(0, ioctl(s, KVMMIG_SET_THROTTLE, &t));
	ASSERT_EQ(0, ioctl(s, KVMMIG_GET_THROTTLE, &g));
	ASSERT_EQ(100ULL, g.dirty_limit);
	t.set = KVMMIG_THROTTLE_RING_QUOTA;
	t.dirty_limit = 0;
	t.ring_quota = 8;
	ASSERT_ERRNO(ioctl(s, KVMMIG_SET_THROTTLE, &t), EOPNOTSUPP);
	t.set = KVMMIG_THROTTLE_CPU;
	t.ring_quota = 0;
	t.cpu_throttle = 10;
	ASSERT_EQ(0, ioctl(s, KVMMIG_SET_THROTTLE, &t));
	close(s);
	close(dev);
	vm_destroy(vm);
}

/*
 * One pass of the incr workload writes every page of every vCPU's slice
 * exactly once: a harvest after it must report all of them, and the module
 * must agree with the userspace ring source on a twin VM.
 */
static void incr_one_pass(struct __test_metadata *_metadata, enum dirty_backend b,
			  struct dirty_set *set, struct vm **out)
{
	struct dirty_options opts = { .backend = b, .reap_interval_us = TEST_REAP_US };
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = TEST_RAM,
		.nr_slots = 2,
		.ring_entries = TEST_RING,
		.guest.workload = WORKLOAD_INCR,
		.guest.max_passes = 1,
	};
	struct dirty_source *ds;
	struct vm *vm;

	ASSERT_EQ((int)b, dirty_prepare_config(b, &cfg));
	ASSERT_EQ(0, vm_create(&cfg, &vm));
	ASSERT_EQ(0, dirty_source_open(vm->kv, &opts, &ds));
	ASSERT_EQ(0, dirty_set_alloc(vm->kv, set));
	ASSERT_EQ(0, vm_start(vm));
	ASSERT_EQ(0, vm_wait_done(vm, 120000));
	ASSERT_EQ(NULL, vm_failure(vm));
	ASSERT_GE(dirty_source_collect(ds, set), 0);
	ASSERT_EQ(0, set->all_dirty);
	TH_LOG("%s: %lu pages, %lu harvested, %lu reset, %lu ring-full exits, harvest %.0f ns/entry",
	       b == DIRTY_MODULE ? "module" : "ring", dirty_set_count(set),
	       ds->stats.harvested, ds->stats.reset, ds->stats.ring_full_exits,
	       ds->stats.harvested ? (double)ds->stats.harvest_ns / ds->stats.harvested : 0.0);
	ASSERT_EQ(ds->stats.reset, ds->stats.harvested);
	dirty_source_close(ds);
	*out = vm;
}

TEST_F_TIMEOUT(own, harvest_matches_ring_source, 300)
{
	struct dirty_set mod, ring;
	struct vm *vm_mod, *vm_ring;
	uint64_t i, off, pages;
	unsigned int slot;

	NEED_READY();
	incr_one_pass(_metadata, DIRTY_MODULE, &mod, &vm_mod);
	incr_one_pass(_metadata, DIRTY_RING, &ring, &vm_ring);
	pages = vm_mod->shared->mem_pages;
	ASSERT_EQ(pages, vm_ring->shared->mem_pages);
	for (i = 0; i < pages; i++) {
		workload_slot_page(vm_mod, i, &slot, &off);
		ASSERT_TRUE(bitmap_test_bit(mod.bitmaps[slot], off))
			TH_LOG("module: page %lu written but not reported", i);
		ASSERT_TRUE(bitmap_test_bit(ring.bitmaps[slot], off))
			TH_LOG("ring: page %lu written but not reported", i);
	}
	/* Beyond the workload (stacks, page tables) both must agree too. */
	for (slot = 0; slot < mod.nr_slots; slot++)
		for (off = 0; off < mod.nr_pages[slot]; off++)
			ASSERT_EQ(bitmap_test_bit(mod.bitmaps[slot], off),
				  bitmap_test_bit(ring.bitmaps[slot], off))
				TH_LOG("slot %u page %lu: module and ring disagree", slot, off);
	dirty_set_free(&mod);
	dirty_set_free(&ring);
	vm_destroy(vm_mod);
	vm_destroy(vm_ring);
}

/*
 * KVM's dirty_log_test method on the module source: the guest writes the
 * iteration number into random pages while the host collects; with the
 * vCPUs paused, a reported page holds this or the previous iteration, and
 * a page holding this iteration but not reported is reported next time.
 * As in KVM's test for the ring, a vCPU kicked out right after the fault
 * that pushed a page, before its store retired, leaves one reported page
 * with an older value: at most one per vCPU per iteration.
 */
TEST_F_TIMEOUT(own, harvest_dirty_log_method, 300)
{
	struct dirty_options opts = { .backend = DIRTY_MODULE, .reap_interval_us = TEST_REAP_US };
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = 64ULL << 20,
		.nr_slots = 3,
		.ring_entries = TEST_RING,
		.guest.workload = WORKLOAD_RANDOM,
		.guest.iteration = 1,
	};
	uint64_t iter, i, off, pages, reported = 0, late = 0, writes = 0, inflight;
	struct dirty_source *ds;
	unsigned long *track;
	struct dirty_set set;
	unsigned int slot, v;
	struct vm *vm;

	NEED_READY();
	ASSERT_EQ(DIRTY_MODULE, dirty_prepare_config(DIRTY_MODULE, &cfg));
	ASSERT_EQ(0, vm_create(&cfg, &vm));
	ASSERT_EQ(0, dirty_source_open(vm->kv, &opts, &ds));
	ASSERT_EQ(0, dirty_set_alloc(vm->kv, &set));
	pages = vm->shared->mem_pages;
	track = bitmap_alloc(pages);
	ASSERT_EQ(0, vm_start(vm));
	for (iter = 1; iter <= 8; iter++) {
		uint64_t target = writes + 500, deadline = now_ns() + 30000000000ULL;

		do {
			usleep(100000);
			for (writes = 0, v = 0; v < vm->cfg.nr_vcpus; v++)
				writes += vm->vcpus[v].area->loops;
		} while (writes < target && now_ns() < deadline);
		dirty_set_clear(&set);
		ASSERT_GE(dirty_source_collect(ds, &set), 0);
		ASSERT_EQ(0, vm_pause(vm));
		ASSERT_EQ(NULL, vm_failure(vm));
		ASSERT_EQ(0, set.all_dirty);
		for (inflight = 0, i = 0; i < pages; i++) {
			uint64_t val = *(volatile uint64_t *)workload_page(vm, i);
			bool dirty;

			workload_slot_page(vm, i, &slot, &off);
			dirty = bitmap_test_bit(set.bitmaps[slot], off);
			if (bitmap_test_bit(track, i)) {
				bitmap_clear_bit(track, i);
				late++;
				ASSERT_TRUE(dirty) TH_LOG("iter %lu: page %lu missed twice", iter, i);
			}
			if (dirty) {
				reported++;
				if (val != iter && val != iter - 1)
					inflight++;
				ASSERT_LE(inflight, NR_VCPUS)
					TH_LOG("iter %lu: reported page %lu holds %lu", iter, i, val);
			} else if (val == iter) {
				bitmap_set_bit(track, i);
			}
			ASSERT_LE(val, iter);
		}
		vm->shared->iteration = iter + 1;
		ASSERT_EQ(0, vm_resume(vm));
	}
	TH_LOG("%lu pages reported, %lu caught late, %lu guest writes", reported, late, writes);
	ASSERT_GT(reported, 0ULL);
	vm_stop(vm);
	dirty_source_close(ds);
	dirty_set_free(&set);
	free(track);
	vm_destroy(vm);
}

/* ---- VCPU_STATS ---- */

static int stats_of(int sess, struct kvmmig_vcpu_stats *st, uint32_t nr)
{
	struct kvmmig_stats s = { .vcpus = (uintptr_t)st, .nr_vcpus = nr };

	return ioctl(sess, KVMMIG_VCPU_STATS, &s);
}

TEST_F(kmt, stats_errors)
{
	struct kvmmig_vcpu_stats st[NR_VCPUS];
	struct kvmmig_stats s = { .vcpus = (uintptr_t)st, .nr_vcpus = NR_VCPUS };

	NEED_READY();
	s.flags = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), EINVAL);
	s.flags = 0;
	s.pad = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), EINVAL);
	s.pad = 0;
	s.reserved[2] = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), EINVAL);
	s.reserved[2] = 0;
	s.nr_vcpus = 1U << 30;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), E2BIG);
	s.nr_vcpus = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), ENOSPC);
	ASSERT_EQ(NR_VCPUS, s.nr_vcpus);
	s.vcpus = 8;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_VCPU_STATS, &s), EFAULT);
	s.vcpus = (uintptr_t)st;
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_VCPU_STATS, &s));
	ASSERT_EQ(1U, st[1].vcpu);
	ASSERT_GT(s.window_ns, 0ULL);
}

TEST_F_TIMEOUT(kmt, stats_count_the_guest, 120)
{
	struct kvmmig_vcpu_stats st[NR_VCPUS];
	unsigned int i;

	NEED_READY();
	ASSERT_EQ(0, vm_start(self->vm));
	usleep(1500000);
	ASSERT_EQ(0, vm_pause(self->vm));
	ASSERT_EQ(0, stats_of(self->sess, st, NR_VCPUS));
	for (i = 0; i < NR_VCPUS; i++) {
		TH_LOG("vCPU %u: %llu dirty, %llu run ms, %llu exits", i,
		       (unsigned long long)st[i].dirty_pages,
		       (unsigned long long)st[i].run_ns / 1000000,
		       (unsigned long long)st[i].exits);
		ASSERT_EQ(i, st[i].vcpu);
		ASSERT_GT(st[i].run_ns, 0ULL);
		ASSERT_GT(st[i].exits, 0ULL);
		ASSERT_GT(st[i].dirty_pages, 0ULL);
		ASSERT_EQ(0U, st[i].flags & KVMMIG_VCPU_F_IN_GUEST);
	}
}

/* ---- throttles ---- */

TEST_F(kmt, throttle_errors)
{
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_CPU, .cpu_throttle = 10 };
	struct kvmmig_throttle g;

	NEED_READY();
	t.vcpu = NR_VCPUS;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), ENOENT);
	t.vcpu = 0;
	t.flags = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.flags = 0;
	t.pad = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.pad = 0;
	t.reserved[0] = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.reserved[0] = 0;
	t.set = 0;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.set = 1U << 5;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.set = KVMMIG_THROTTLE_CPU;
	t.cpu_throttle = 100;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.cpu_throttle = 10;
	t.dirty_limit = 5;	/* not named by set */
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.set = KVMMIG_THROTTLE_DIRTY_LIMIT;
	t.cpu_throttle = 0;
	t.dirty_limit = KVMMIG_DIRTY_LIMIT_MAX + 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);
	t.set = KVMMIG_THROTTLE_RING_QUOTA;
	t.dirty_limit = 0;
	t.ring_quota = TEST_RING;	/* above the soft limit */
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), EINVAL);

	memset(&g, 0, sizeof(g));
	g.vcpu = KVMMIG_VCPU_ALL;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_GET_THROTTLE, &g), EINVAL);
	g.vcpu = 0;
	g.set = 1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_GET_THROTTLE, &g), EINVAL);
	g.set = 0;
	g.vcpu = NR_VCPUS;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_GET_THROTTLE, &g), ENOENT);
}

TEST_F(kmt, throttle_set_get)
{
	struct kvmmig_throttle t = {
		.vcpu = KVMMIG_VCPU_ALL,
		.set = KVMMIG_THROTTLE_ALL,
		.dirty_limit = 1000,
		.cpu_throttle = 20,
		.ring_quota = 64,
	};
	struct kvmmig_throttle g = { .vcpu = 1 };
	struct kvmmig_info info = {};

	NEED_READY();
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_SET_THROTTLE, &t));
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_GET_THROTTLE, &g));
	ASSERT_EQ(KVMMIG_THROTTLE_ALL, g.set);
	ASSERT_EQ(1000ULL, g.dirty_limit);
	ASSERT_EQ(20U, g.cpu_throttle);
	ASSERT_EQ(64U, g.ring_quota);
	/* Only what set names changes. */
	t = (struct kvmmig_throttle){ .vcpu = 1, .set = KVMMIG_THROTTLE_CPU };
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_SET_THROTTLE, &t));
	memset(&g, 0, sizeof(g));
	g.vcpu = 1;
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_GET_THROTTLE, &g));
	ASSERT_EQ(KVMMIG_THROTTLE_DIRTY_LIMIT | KVMMIG_THROTTLE_RING_QUOTA, g.set);
	/* The soft limit reported is KVM's own, even under a quota. */
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), ENOSPC);
	ASSERT_GT(info.ring_soft_limit, 64U);
}

struct rates {
	double loops[NR_VCPUS];		/* guest loops (writes) per second */
	double dirty[NR_VCPUS];		/* pages the module counted per second */
	double run_ms[NR_VCPUS];
	double slept_ms[NR_VCPUS];
	double per_run_ms[NR_VCPUS];	/* loops per ms of guest time */
};

static void measure(struct __test_metadata *_metadata, struct vm *vm, int sess,
		    double secs, struct rates *r)
{
	struct kvmmig_vcpu_stats a[NR_VCPUS], b[NR_VCPUS];
	uint64_t l0[NR_VCPUS], t0, dt;
	unsigned int i;

	ASSERT_EQ(0, stats_of(sess, a, NR_VCPUS));
	for (i = 0; i < NR_VCPUS; i++)
		l0[i] = vm->vcpus[i].area->loops;
	t0 = now_ns();
	usleep(secs * 1e6);
	dt = now_ns() - t0;
	ASSERT_EQ(0, stats_of(sess, b, NR_VCPUS));
	for (i = 0; i < NR_VCPUS; i++) {
		r->loops[i] = (vm->vcpus[i].area->loops - l0[i]) * 1e9 / dt;
		r->dirty[i] = (b[i].dirty_pages - a[i].dirty_pages) * 1e9 / dt;
		r->run_ms[i] = (b[i].run_ns - a[i].run_ns) / 1e6;
		r->slept_ms[i] = (b[i].throttle_ns - a[i].throttle_ns) / 1e6;
		r->per_run_ms[i] = r->run_ms[i] ?
			(vm->vcpus[i].area->loops - l0[i]) / r->run_ms[i] : 0;
	}
}

/* A running VM under the module dirty source (its reaper resets the rings). */
static struct vm *running_vm(struct __test_metadata *_metadata, enum guest_workload w,
			     bool reaper, struct dirty_source **ds)
{
	struct dirty_options opts = {
		.backend = DIRTY_MODULE,
		.reap_interval_us = TEST_REAP_US,
		.no_reaper = !reaper,
	};
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = 64ULL << 20,
		.nr_slots = 1,
		.ring_entries = TEST_RING,
		.guest.workload = w,
	};
	struct vm *vm;

	if (dirty_prepare_config(DIRTY_MODULE, &cfg) != DIRTY_MODULE || vm_create(&cfg, &vm))
		return NULL;
	if (dirty_source_open(vm->kv, &opts, ds) || vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

/*
 * A guest runs slowly at first (first touches fault in nested page tables,
 * QEMU translates code): wait until every vCPU finished a pass or a while.
 */
static void warm_up(struct vm *vm)
{
	uint64_t deadline = now_ns() + 20000000000ULL;
	unsigned int i, done;

	do {
		usleep(200000);
		for (done = 0, i = 0; i < NR_VCPUS; i++)
			done += vm->vcpus[i].area->passes > 0;
	} while (done < NR_VCPUS && now_ns() < deadline);
	usleep(500000);
}

/* Free-running rates: the mean of a window before and one after @r was measured. */
static void baseline(struct rates *b, const struct rates *before, const struct rates *after)
{
	unsigned int i;

	for (i = 0; i < NR_VCPUS; i++) {
		b->loops[i] = (before->loops[i] + after->loops[i]) / 2;
		b->dirty[i] = (before->dirty[i] + after->dirty[i]) / 2;
		b->per_run_ms[i] = (before->per_run_ms[i] + after->per_run_ms[i]) / 2;
	}
}

/*
 * Wall-clock rates on a loaded host under QEMU TCG swing by 2x from one
 * window to the next, whatever the module does.  So the throttled vCPU is
 * judged in wall-clock time against its limit (what a limit means), and the
 * other vCPU by what the module could take from it: it never sleeps (exact),
 * and its loops per ms of its own guest time hold.  Guest time itself
 * stretches when the host deschedules QEMU's thread, by up to 20% in runs
 * on a busy 2-core machine, hence 75% rather than the 90% a quiet host
 * gives.
 */
static void assert_untouched(struct __test_metadata *_metadata, const struct rates *free_run,
			     const struct rates *thr, unsigned int v)
{
	TH_LOG("vCPU %u: %.0f -> %.0f loops per guest ms (%.2f), wall-clock %.2f, slept %.0f ms",
	       v, free_run->per_run_ms[v], thr->per_run_ms[v],
	       thr->per_run_ms[v] / free_run->per_run_ms[v], thr->loops[v] / free_run->loops[v],
	       thr->slept_ms[v]);
	ASSERT_EQ(0, thr->slept_ms[v]);
	ASSERT_GE(thr->per_run_ms[v], 0.75 * free_run->per_run_ms[v]);
}

#define LIMITED_SECS		4.0

/*
 * Dirty limit on vCPU 0 only: it dirties within 20% of its limit (an
 * eighth of its free rate) while vCPU 1 runs untouched.
 */
TEST_F_TIMEOUT(own, throttle_dirty_limit_ratio, 300)
{
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_DIRTY_LIMIT };
	struct rates before, after, free_run, limited;
	struct kmod_session *ks;
	struct dirty_source *ds;
	struct vm *vm;

	NEED_READY();
	vm = running_vm(_metadata, WORKLOAD_INCR, true, &ds);
	ASSERT_NE(NULL, vm);
	ks = dirty_module_session(ds);
	warm_up(vm);
	measure(_metadata, vm, ks->fd, 2, &before);
	t.dirty_limit = before.dirty[0] / 8;
	ASSERT_GT(t.dirty_limit, 10ULL);
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	usleep(300000);
	measure(_metadata, vm, ks->fd, LIMITED_SECS, &limited);
	t.dirty_limit = 0;
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	t.dirty_limit = before.dirty[0] / 8;
	usleep(300000);
	measure(_metadata, vm, ks->fd, 2, &after);
	baseline(&free_run, &before, &after);
	TH_LOG("vCPU 0: %.0f pages/s free, %.0f limited to %llu (%.2f), slept %.0f of %.0f ms",
	       free_run.dirty[0], limited.dirty[0], (unsigned long long)t.dirty_limit,
	       limited.dirty[0] / t.dirty_limit, limited.slept_ms[0], LIMITED_SECS * 1000);
	ASSERT_LE(limited.dirty[0], 1.2 * t.dirty_limit);
	/*
	 * Held at its limit, the vCPU sleeps most of the time and dirties
	 * within 20% of the limit.  A vCPU that slept little was starved by
	 * the host below its limit: then only the upper bound means anything.
	 */
	if (limited.slept_ms[0] >= 0.5 * LIMITED_SECS * 1000) {
		ASSERT_GE(limited.dirty[0], 0.8 * t.dirty_limit);
	} else {
		TH_LOG("vCPU 0 slept little: the host starved it below its limit");
	}
	assert_untouched(_metadata, &free_run, &limited, 1);
	vm_stop(vm);
	dirty_source_close(ds);
	vm_destroy(vm);
}

/* What the module has in force on vCPU @v: KVMMIG_GET_THROTTLE. */
static struct kvmmig_throttle in_force(struct __test_metadata *_metadata,
				       struct kmod_session *ks, uint32_t v)
{
	struct kvmmig_throttle t;

	EXPECT_EQ(0, kmod_get_throttle(ks, v, &t));
	return t;
}

/* The dirty-limit policy's trigger: dirtied more than threshold x sent, twice. */
static int policy_trigger(struct mig_throttle *t)
{
	int ret = mig_throttle_on_sync(t, 2, 1);

	return ret ? ret : mig_throttle_on_sync(t, 2, 1);
}

/*
 * dirty-limit through the module: armed, every vCPU gets the module's own
 * dirty limit (vcpu-dirty-limit in pages/s, no CPU throttle) and the report
 * names it; told to use CPU throttles (the previous way), only the vCPU
 * measured over the limit gets one, through the module; lifted at the end.
 */
TEST_F_TIMEOUT(own, dirty_limit_policy_mechanism, 120)
{
	uint64_t pages[NR_VCPUS] = { 0, 0 };
	struct mig_report rep = { 0 };
	struct kvmmig_throttle k;
	struct kmod_session *ks;
	struct dirty_source *ds;
	struct mig_throttle t;
	struct mig_params p;
	struct vm *vm;
	unsigned int i;

	NEED_READY();
	vm = running_vm(_metadata, WORKLOAD_INCR, true, &ds);
	ASSERT_NE(NULL, vm);
	ks = dirty_module_session(ds);
	mig_params_init(&p);
	p.policy = MIG_POLICY_DIRTY_LIMIT;
	p.vcpu_dirty_limit = 3;
	mig_throttle_init(&t, vm->kv, &p);
	ASSERT_EQ(0, mig_throttle_use_module(&t, ks));
	ASSERT_TRUE(t.bucket);
	for (i = 0; i < NR_VCPUS; i++)
		ASSERT_EQ(0U, in_force(_metadata, ks, i).set);
	ASSERT_EQ(0, policy_trigger(&t));
	ASSERT_EQ(0, mig_throttle_report(&t, &rep));
	for (i = 0; i < NR_VCPUS; i++) {
		k = in_force(_metadata, ks, i);
		ASSERT_EQ(KVMMIG_THROTTLE_DIRTY_LIMIT, k.set);
		ASSERT_EQ(3000000ULL / GUEST_PAGE_SIZE, k.dirty_limit);
		ASSERT_EQ((enum mig_throttle_mech)MIG_THROTTLE_MODULE_DIRTY_LIMIT,
			  rep.vcpu_throttle[i].mech);
		ASSERT_EQ(k.dirty_limit * GUEST_PAGE_SIZE, rep.vcpu_throttle[i].dirty_limit);
	}
	/* The bucket needs no controller: rates change nothing. */
	ASSERT_EQ(0, mig_throttle_on_rates(&t, pages, 1.0, 0));
	pages[0] = 10000000 / GUEST_PAGE_SIZE;
	ASSERT_EQ(0, mig_throttle_on_rates(&t, pages, 2.0, 0));
	ASSERT_EQ(0U, mig_throttle_max(&t));
	ASSERT_EQ(0, mig_throttle_off(&t));
	for (i = 0; i < NR_VCPUS; i++)
		ASSERT_EQ(0U, in_force(_metadata, ks, i).set);

	p.dirty_limit_cpu_throttle = true;
	mig_throttle_init(&t, vm->kv, &p);
	ASSERT_EQ(0, mig_throttle_use_module(&t, ks));
	ASSERT_FALSE(t.bucket);
	ASSERT_EQ(0, policy_trigger(&t));
	ASSERT_EQ(0U, in_force(_metadata, ks, 0).set);
	/* vCPU 0 dirtied 10 MB in a second, 3 MB/s allowed: it runs 30%. */
	pages[0] = 0;
	ASSERT_EQ(0, mig_throttle_on_rates(&t, pages, 1.0, 0));
	pages[0] = 10000000 / GUEST_PAGE_SIZE;
	ASSERT_EQ(0, mig_throttle_on_rates(&t, pages, 2.0, 0));
	k = in_force(_metadata, ks, 0);
	ASSERT_EQ(KVMMIG_THROTTLE_CPU, k.set);
	ASSERT_EQ(70U, k.cpu_throttle);
	ASSERT_EQ(0U, in_force(_metadata, ks, 1).set);
	ASSERT_EQ(0, mig_throttle_report(&t, &rep));
	ASSERT_EQ((enum mig_throttle_mech)MIG_THROTTLE_MODULE_CPU, rep.vcpu_throttle[0].mech);
	ASSERT_EQ(70U, rep.vcpu_throttle[0].max_pct);
	ASSERT_EQ((enum mig_throttle_mech)MIG_THROTTLE_NONE, rep.vcpu_throttle[1].mech);
	ASSERT_EQ(0, mig_throttle_off(&t));
	ASSERT_EQ(0U, in_force(_metadata, ks, 0).set);
	vm_stop(vm);
	dirty_source_close(ds);
	vm_destroy(vm);
}

/*
 * Without a dirty ring the module counts pages from the bitmap: dirty-limit
 * sets its own dirty limit on every vCPU there too.
 */
TEST_F_TIMEOUT(own, dirty_limit_policy_without_ring, 60)
{
	struct kmod_session *ks = NULL;
	struct kvmmig_throttle k;
	struct mig_throttle t;
	struct mig_params p;
	struct vm *vm;
	unsigned int i;

	NEED_READY();
	vm = make_vm(_metadata, NR_VCPUS, 0, WORKLOAD_IDLE);
	ASSERT_NE(NULL, vm);
	ASSERT_EQ(0, kmod_attach(vm->fd, &ks));
	mig_params_init(&p);
	p.policy = MIG_POLICY_DIRTY_LIMIT;
	p.vcpu_dirty_limit = 3;
	mig_throttle_init(&t, vm->kv, &p);
	ASSERT_EQ(0, mig_throttle_use_module(&t, ks));
	ASSERT_TRUE(t.bucket);
	ASSERT_EQ(0, policy_trigger(&t));
	for (i = 0; i < NR_VCPUS; i++) {
		k = in_force(_metadata, ks, i);
		ASSERT_EQ(KVMMIG_THROTTLE_DIRTY_LIMIT, k.set);
		ASSERT_EQ(3000000ULL / GUEST_PAGE_SIZE, k.dirty_limit);
	}
	ASSERT_EQ(0, mig_throttle_off(&t));
	ASSERT_EQ(0U, in_force(_metadata, ks, 0).set);
	kmod_close(ks);
	vm_destroy(vm);
}

/*
 * CPU throttle 50% on vCPU 0 of a compute guest: the module sleeps as long
 * as the vCPU ran in guest mode, and the loop rate roughly halves.
 */
TEST_F_TIMEOUT(own, throttle_cpu_ratio, 300)
{
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_CPU, .cpu_throttle = 50 };
	struct rates before, after, free_run, thr;
	struct kmod_session *ks;
	struct dirty_source *ds;
	struct vm *vm;

	NEED_READY();
	vm = running_vm(_metadata, WORKLOAD_COMPUTE, true, &ds);
	ASSERT_NE(NULL, vm);
	ks = dirty_module_session(ds);
	usleep(2000000);
	measure(_metadata, vm, ks->fd, 2, &before);
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	usleep(300000);
	measure(_metadata, vm, ks->fd, 4, &thr);
	t.cpu_throttle = 0;
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	usleep(300000);
	measure(_metadata, vm, ks->fd, 2, &after);
	baseline(&free_run, &before, &after);
	TH_LOG("vCPU 0: %.0f -> %.0f loops/s (%.2f), ran %.0f ms, slept %.0f ms",
	       free_run.loops[0], thr.loops[0], thr.loops[0] / free_run.loops[0],
	       thr.run_ms[0], thr.slept_ms[0]);
	/* 50%: as much sleep as guest time, and about half the loops. */
	ASSERT_GE(thr.slept_ms[0], 0.8 * thr.run_ms[0]);
	ASSERT_LE(thr.slept_ms[0], 1.25 * thr.run_ms[0]);
	ASSERT_GE(thr.loops[0], 0.2 * free_run.loops[0]);
	ASSERT_LE(thr.loops[0], 0.8 * free_run.loops[0]);
	assert_untouched(_metadata, &free_run, &thr, 1);
	vm_stop(vm);
	dirty_source_close(ds);
	vm_destroy(vm);
}

/*
 * A ring quota of 64 makes a vCPU exit once its ring holds 64 entries; off
 * restores KVM's limit.  Every ring-full exit harvests and resets all the
 * rings, so a vCPU whose ring another vCPU's exit emptied exits later than
 * its own count says: only the totals are bounded.  Between two exits each
 * ring gains fewer than 64 entries, so NR_VCPUS * 64 pushes at most per exit,
 * and at least 64 (the exiting ring's own).
 */
TEST_F_TIMEOUT(own, throttle_ring_quota, 300)
{
	struct kvmmig_throttle t = { .vcpu = KVMMIG_VCPU_ALL, .set = KVMMIG_THROTTLE_RING_QUOTA,
				     .ring_quota = 64 };
	struct kvmmig_vcpu_stats a[NR_VCPUS], b[NR_VCPUS];
	uint64_t exits = 0, pages = 0, pages0, deadline;
	unsigned int i;
	struct kmod_session *ks;
	struct dirty_source *ds;
	struct vm *vm;

	NEED_READY();
	/* Harvest on ring-full exits only, so the ring fills up to the quota. */
	vm = running_vm(_metadata, WORKLOAD_INCR, false, &ds);
	ASSERT_NE(NULL, vm);
	ks = dirty_module_session(ds);
	warm_up(vm);
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	ASSERT_EQ(0, stats_of(ks->fd, a, NR_VCPUS));
	/* Until vCPU 0 dirtied 16 quotas' worth (a slow host takes a while). */
	deadline = now_ns() + 60000000000ULL;
	do {
		usleep(500000);
		ASSERT_EQ(0, stats_of(ks->fd, b, NR_VCPUS));
		pages0 = b[0].dirty_pages - a[0].dirty_pages;
	} while (pages0 < 64 * 16 && now_ns() < deadline);
	for (i = 0; i < NR_VCPUS; i++) {
		pages += b[i].dirty_pages - a[i].dirty_pages;
		exits += b[i].ring_full_exits - a[i].ring_full_exits;
	}
	TH_LOG("quota 64: %lu pages, %lu ring-full exits on %u vCPUs, guest failure: %s", pages,
	       exits, NR_VCPUS, vm_failure(vm) ?: "none");
	ASSERT_EQ(NULL, vm_failure(vm));
	ASSERT_GT(pages0, 64ULL * 4);
	/* The pushes after the last exit, fewer than 64 a ring, make no exit. */
	ASSERT_GE(exits + NR_VCPUS, pages / (64 * NR_VCPUS));
	ASSERT_LE(exits, pages / 64 + NR_VCPUS);
	t.ring_quota = 0;
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	vm_stop(vm);
	dirty_source_close(ds);
	vm_destroy(vm);
}

/* ---- dirty counts and dirty limits, with a dirty ring and with the bitmap ---- */

/*
 * A `rate` guest on each vCPU over a slice so large that no page is written
 * twice during a test: every guest write is one dirtied page, so the
 * module's count must match the guest's own count.  The dirty source
 * collects (and so write-protects again) every MODE_COLLECT_US, as a
 * migration would; each collection also re-protects the guest's counter
 * and stack pages, real dirty pages the guest does not count (a few per
 * collection, well under 1% of the writes).  The module has its own
 * session on the VM in both modes: it counts ring pushes, or bitmap marks.
 */
#define MODE_SLICE_PAGES	65536ULL
#define MODE_RATE		20000ULL	/* guest writes per second per vCPU */
#define MODE_COLLECT_US		200000
#define MODE_LIMIT_COLLECT_US	1000000
#define MODE_WINDOW_WRITES	10000ULL
#define MODE_WAIT_NS		120000000000ULL
#define MODE_TOLERANCE		0.10
#define MODE_LIMITED_NS		4000000000ULL

FIXTURE(mode) {
	bool ready;
	struct vm *vm;
	struct dirty_source *ds;
	struct dirty_set set;
	struct kmod_session *ks;
};

FIXTURE_VARIANT(mode) {
	enum dirty_backend backend;
	const char *name;
};

FIXTURE_VARIANT_ADD(mode, ring) { DIRTY_RING, "ring" };
FIXTURE_VARIANT_ADD(mode, bitmap) { DIRTY_BITMAP, "bitmap" };

FIXTURE_SETUP(mode)
{
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = NR_VCPUS * MODE_SLICE_PAGES * GUEST_PAGE_SIZE,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_RATE,
		.guest.pages_per_sec = MODE_RATE,
	};
	/* Collections only in mode_collect(), every MODE_COLLECT_US. */
	struct dirty_options opts = { .backend = variant->backend, .no_reaper = true };

	if (module_missing(_metadata))
		return;
	if (variant->backend == DIRTY_RING && kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 &&
	    kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	ASSERT_EQ((int)variant->backend, dirty_prepare_config(variant->backend, &cfg));
	ASSERT_EQ(0, vm_create(&cfg, &self->vm));
	ASSERT_EQ(0, dirty_source_open(self->vm->kv, &opts, &self->ds));
	ASSERT_EQ(0, dirty_set_alloc(self->vm->kv, &self->set));
	ASSERT_EQ(0, kmod_attach(self->vm->fd, &self->ks));
	ASSERT_EQ(variant->backend == DIRTY_RING, self->ks->info.ring_entries > 0);
	ASSERT_EQ(0, vm_start(self->vm));
	self->ready = true;
}

FIXTURE_TEARDOWN(mode)
{
	if (self->vm)
		vm_stop(self->vm);
	dirty_source_close(self->ds);
	dirty_set_free(&self->set);
	kmod_close(self->ks);
	vm_destroy(self->vm);
}

/* The module's counters and the guest's, read at (nearly) one instant. */
struct mode_snap {
	uint64_t ns;
	uint64_t loops[NR_VCPUS];
	struct kvmmig_vcpu_stats st[NR_VCPUS];
};

static void mode_snap(struct __test_metadata *_metadata, FIXTURE_DATA(mode) *self,
		      struct mode_snap *m)
{
	unsigned int i;

	ASSERT_EQ(0, stats_of(self->ks->fd, m->st, NR_VCPUS));
	for (i = 0; i < NR_VCPUS; i++)
		m->loops[i] = self->vm->vcpus[i].area->loops;
	m->ns = now_ns();
}

/*
 * Collect every @every_us until @until_ns, or (@until_ns 0) until every
 * vCPU wrote @writes pages since @from; fails after MODE_WAIT_NS.
 */
static void mode_collect(struct __test_metadata *_metadata, FIXTURE_DATA(mode) *self,
			 unsigned int every_us, uint64_t until_ns,
			 const struct mode_snap *from, uint64_t writes)
{
	uint64_t deadline = now_ns() + MODE_WAIT_NS, least;
	unsigned int i;

	for (;;) {
		usleep(every_us);
		dirty_set_clear(&self->set);
		ASSERT_GE(dirty_source_collect(self->ds, &self->set), 0);
		ASSERT_EQ(NULL, vm_failure(self->vm));
		if (until_ns) {
			if (now_ns() >= until_ns)
				return;
			continue;
		}
		for (least = ~0ULL, i = 0; i < NR_VCPUS; i++)
			if (self->vm->vcpus[i].area->loops - from->loops[i] < least)
				least = self->vm->vcpus[i].area->loops - from->loops[i];
		if (least >= writes)
			return;
		ASSERT_LT(now_ns(), deadline) TH_LOG("the guest did not make %lu writes per vCPU",
						     writes);
	}
}

/* Guest running, pages faulted in at the guest's pace: 1000 writes per vCPU. */
static void mode_warm_up(struct __test_metadata *_metadata, FIXTURE_DATA(mode) *self)
{
	struct mode_snap zero = {};

	mode_collect(_metadata, self, MODE_COLLECT_US, 0, &zero, 1000);
}

/* Per vCPU, pages the module counted against the guest's writes: +-10%. */
TEST_F_TIMEOUT(mode, counts_match_guest_writes, 300)
{
	struct mode_snap a, b;
	uint64_t guest, seen;
	unsigned int i;

	NEED_READY();
	mode_warm_up(_metadata, self);
	mode_snap(_metadata, self, &a);
	mode_collect(_metadata, self, MODE_COLLECT_US, 0, &a, MODE_WINDOW_WRITES);
	mode_snap(_metadata, self, &b);
	for (i = 0; i < NR_VCPUS; i++) {
		guest = b.loops[i] - a.loops[i];
		seen = b.st[i].dirty_pages - a.st[i].dirty_pages;
		TH_LOG("%s vCPU %u: guest %lu writes, module %lu pages (%+.2f%%) in %.2f s",
		       variant->name, i, guest, seen, 100.0 * ((double)seen - guest) / guest,
		       (b.ns - a.ns) / 1e9);
		ASSERT_EQ(0ULL, self->vm->vcpus[i].area->passes)
			TH_LOG("vCPU %u went round its slice: raise MODE_SLICE_PAGES", i);
		ASSERT_GE(seen, (1 - MODE_TOLERANCE) * guest);
		ASSERT_LE(seen, (1 + MODE_TOLERANCE) * guest);
	}
}

/*
 * A dirty limit of an eighth of vCPU 0's free rate holds the rate the
 * module measures at the limit +-10%, and the guest's own count of its
 * writes agrees with the module's (+-10%; the module also counts the
 * guest's counter and stack pages, which the guest does not, and they
 * count against the limit too; collecting once a second keeps them to a
 * few per second); vCPU 1 is never slowed.  A vCPU the host starves stays
 * below any limit: the lower bound applies when the throttle held it and
 * the host did not take CPU time away.  Held at an eighth of its free
 * rate, a vCPU the host lets run sleeps 7/8 of the time: one that slept
 * less than 3/4 lost CPU time.  And vCPU 1, which dirties as fast as it
 * can on the same emulated machine, gains the time vCPU 0 sleeps: when it
 * ran slower than in the free window, the host starved the whole machine
 * (both seen on a 2-core machine at a load average of 10-14).  A throttle
 * that overslept would still fail the lower bound.
 */
TEST_F_TIMEOUT(mode, dirty_limit_holds_rate, 300)
{
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_DIRTY_LIMIT };
	double secs, guest_rate, module_rate, slept_ms, free1, limited1;
	struct mode_snap a, b;

	NEED_READY();
	mode_warm_up(_metadata, self);
	mode_snap(_metadata, self, &a);
	mode_collect(_metadata, self, MODE_LIMIT_COLLECT_US, now_ns() + 2000000000ULL, NULL, 0);
	mode_snap(_metadata, self, &b);
	t.dirty_limit = (b.loops[0] - a.loops[0]) * 1e9 / (b.ns - a.ns) / 8;
	free1 = (b.loops[1] - a.loops[1]) * 1e9 / (b.ns - a.ns);
	ASSERT_GT(t.dirty_limit, 10ULL);
	ASSERT_EQ(0, kmod_set_throttle(self->ks, &t));
	mode_collect(_metadata, self, MODE_COLLECT_US, now_ns() + 300000000ULL, NULL, 0);

	mode_snap(_metadata, self, &a);
	mode_collect(_metadata, self, MODE_LIMIT_COLLECT_US, now_ns() + MODE_LIMITED_NS, NULL, 0);
	mode_snap(_metadata, self, &b);
	secs = (b.ns - a.ns) / 1e9;
	limited1 = (b.loops[1] - a.loops[1]) / secs;
	guest_rate = (b.loops[0] - a.loops[0]) / secs;
	module_rate = (b.st[0].dirty_pages - a.st[0].dirty_pages) / secs;
	slept_ms = (b.st[0].throttle_ns - a.st[0].throttle_ns) / 1e6;
	TH_LOG("%s vCPU 0 limited to %llu pages/s: guest %.0f writes/s (%.3f), module %.0f pages/s (%.3f), slept %.0f of %.0f ms",
	       variant->name, (unsigned long long)t.dirty_limit, guest_rate,
	       guest_rate / t.dirty_limit, module_rate, module_rate / t.dirty_limit, slept_ms,
	       secs * 1000);
	TH_LOG("%s vCPU 1: %.0f writes/s free, %.0f while vCPU 0 was limited", variant->name,
	       free1, limited1);
	ASSERT_EQ(t.dirty_limit, b.st[0].dirty_limit);
	ASSERT_LE(module_rate, (1 + MODE_TOLERANCE) * t.dirty_limit);
	ASSERT_LE(guest_rate, (1 + MODE_TOLERANCE) * t.dirty_limit);
	ASSERT_GE(guest_rate, (1 - MODE_TOLERANCE) * module_rate);
	if (slept_ms >= 0.75 * secs * 1000 && limited1 >= free1) {
		ASSERT_GE(module_rate, (1 - MODE_TOLERANCE) * t.dirty_limit);
	} else {
		TH_LOG("the host starved the machine: no lower bound");
	}
	/* The other vCPU dirtied all along and never slept. */
	ASSERT_GT(b.loops[1], a.loops[1]);
	ASSERT_EQ(a.st[1].throttle_ns, b.st[1].throttle_ns);
	t.dirty_limit = 0;
	ASSERT_EQ(0, kmod_set_throttle(self->ks, &t));
}

/* ---- lifetimes ---- */

TEST_F(kmt, detach_twice)
{
	struct kvmmig_info info = {};
	struct kvmmig_throttle t = { .vcpu = 0, .set = KVMMIG_THROTTLE_CPU, .cpu_throttle = 1 };

	NEED_READY();
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_DETACH, 1), EINVAL);
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_DETACH, 0));
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_DETACH, 0), ENODEV);
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), ENODEV);
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_SET_THROTTLE, &t), ENODEV);
	close(self->sess);
	self->sess = -1;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_DETACH, 0), EBADF);
}

/* The VMM closes every fd of its VM: the session lets the VM go. */
TEST_F_TIMEOUT(kmt, vm_destroyed_while_attached, 120)
{
	struct kvmmig_vcpu_stats st[NR_VCPUS];
	struct kvmmig_info info = {};

	NEED_READY();
	ASSERT_EQ(0, vm_start(self->vm));
	usleep(300000);
	vm_destroy(self->vm);
	self->vm = NULL;
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), ENODEV);
	ASSERT_ERRNO(stats_of(self->sess, st, NR_VCPUS), ENODEV);
	/* Detaching a session whose VM went is allowed, once. */
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_DETACH, 0));
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_DETACH, 0), ENODEV);
}

/* A VMM killed while its vCPU sleeps in a 99% throttle dies at once. */
TEST_F_TIMEOUT(own, vmm_killed_while_throttled, 120)
{
	int pipefd[2], status;
	uint64_t t0;
	char c;
	pid_t pid;

	NEED_READY();
	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		struct kvmmig_throttle t = { .vcpu = KVMMIG_VCPU_ALL, .set = KVMMIG_THROTTLE_CPU,
					     .cpu_throttle = 99 };
		struct dirty_source *ds;
		struct vm *vm = running_vm(_metadata, WORKLOAD_COMPUTE, true, &ds);

		if (!vm || kmod_set_throttle(dirty_module_session(ds), &t))
			_exit(3);
		usleep(200000);
		if (write(pipefd[1], "r", 1) != 1)
			_exit(4);
		pause();
		_exit(0);
	}
	close(pipefd[1]);
	ASSERT_EQ(1, read(pipefd[0], &c, 1));
	usleep(500000);
	t0 = now_ns();
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	TH_LOG("killed a 99%%-throttled VMM in %.1f ms", (now_ns() - t0) / 1e6);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_LT(now_ns() - t0, 2000000000ULL);
	close(pipefd[0]);
}

/* The session's state as netlink reports it: no ioctl on the session fd. */
static int state_of_session(const struct kmod_nl_session *s, void *arg)
{
	struct kmod_nl_session *want = arg;

	if (s->id == want->id)
		want->state = s->state;
	return 0;
}

static uint32_t nl_state(struct __test_metadata *_metadata, uint32_t id)
{
	struct kmod_nl_session want = { .id = id, .state = UINT32_MAX };

	EXPECT_EQ(0, kmod_nl_sessions(state_of_session, &want));
	return want.state;
}

/* Kernel log records since @kmsg (/dev/kmsg, non-blocking) that contain @what. */
static unsigned int kmsg_count(int kmsg, const char *what)
{
	unsigned int found = 0;
	char rec[8192];
	ssize_t n;

	for (;;) {
		n = read(kmsg, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records overwritten meanwhile */
		if (n <= 0)
			return found;
		rec[n] = '\0';
		found += strstr(rec, what) != NULL;
	}
}

#define RECREATE_VMS		20

/*
 * A VMM that closes its VM and creates the next one at once, again and
 * again, with a session attached to each: the session must let the VM go
 * before close() returns, so that KVM destroys it and the next VM (same
 * pid, same fd number) gets its debugfs folder instead of "KVM: debugfs:
 * duplicate directory".  The state is read through netlink, never through
 * the session fd, whose ioctls would notice a gone VM by themselves.  In
 * every other round a vCPU fd outlives the VM fd: the VM stays while it is
 * open, and its close is what releases the VM.  Rings and bitmaps alternate.
 */
TEST_F_TIMEOUT(own, vm_released_at_once_vm_after_vm, 300)
{
	struct kvmmig_attach a = {};
	bool debugfs = !access("/sys/kernel/debug/kvm", F_OK);
	int dev, kmsg, s, vcpu_fd, i;
	char dir[64];
	struct vm *vm;

	NEED_READY();
	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ASSERT_GE(kmsg, 0);
	ASSERT_GE(lseek(kmsg, 0, SEEK_END), 0);
	dev = open(KVMMIG_DEVICE, O_RDWR | O_CLOEXEC);
	ASSERT_GE(dev, 0);
	for (i = 0; i < RECREATE_VMS; i++) {
		vm = make_vm(_metadata, 1, i & 2 ? TEST_RING : 0, WORKLOAD_IDLE);
		ASSERT_NE(NULL, vm);
		snprintf(dir, sizeof(dir), "/sys/kernel/debug/kvm/%d-%d", getpid(), vm->fd);
		if (debugfs)
			ASSERT_EQ(0, access(dir, F_OK)) TH_LOG("round %d: no %s", i, dir);
		memset(&a, 0, sizeof(a));
		a.vm_fd = vm->fd;
		s = ioctl(dev, KVMMIG_ATTACH, &a);
		ASSERT_GE(s, 0);
		vcpu_fd = i & 1 ? dup(vm->vcpus[0].fd) : -1;
		vm_destroy(vm);
		if (i & 1) {
			ASSERT_GE(vcpu_fd, 0);
			ASSERT_EQ((uint32_t)KVMMIG_STATE_ATTACHED, nl_state(_metadata, a.session_id))
				TH_LOG("round %d: released while a vCPU fd holds the VM", i);
			close(vcpu_fd);
		}
		ASSERT_EQ((uint32_t)KVMMIG_STATE_VM_GONE, nl_state(_metadata, a.session_id))
			TH_LOG("round %d: the session still holds the VM its VMM closed", i);
		if (debugfs)
			ASSERT_NE(0, access(dir, F_OK)) TH_LOG("round %d: %s outlived its VM", i, dir);
		close(s);
	}
	ASSERT_EQ(0U, kmsg_count(kmsg, "duplicate directory"));
	close(dev);
	close(kmsg);
}

/*
 * `kvmmig attach` on a VMM that closes its VM: it ends with its usual "the
 * VM is gone" and status 0, and no error before it.
 */
TEST_F_TIMEOUT(own, attach_command_vm_gone, 120)
{
	const char *args[] = { "attach", "--pid", NULL, "--delay", "1", NULL };
	char pid[16], out[4096], err[4096], c;
	int go[2], done[2], status;
	struct cli_child cli;
	uint64_t deadline;
	pid_t vmm;

	NEED_READY();
	ASSERT_EQ(0, pipe(go));
	ASSERT_EQ(0, pipe(done));
	vmm = fork();
	ASSERT_GE(vmm, 0);
	if (!vmm) {
		struct vm *vm = make_vm(_metadata, 1, 0, WORKLOAD_IDLE);

		if (!vm || write(done[1], "v", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		vm_destroy(vm);
		if (write(done[1], "c", 1) != 1)
			_exit(4);
		pause();
		_exit(0);
	}
	ASSERT_EQ(1, read(done[0], &c, 1));
	snprintf(pid, sizeof(pid), "%d", (int)vmm);
	args[2] = pid;
	ASSERT_EQ(0, cli_start(&cli, args));
	deadline = now_ns() + 30000000000ULL;
	while (!strstr(cli_output(cli.out, out, sizeof(out)), "session ") && now_ns() < deadline)
		usleep(50000);
	ASSERT_NE(NULL, strstr(out, "session "))
		TH_LOG("attach printed no session: %s", cli_output(cli.err, err, sizeof(err)));
	ASSERT_EQ(1, write(go[1], "g", 1));
	ASSERT_EQ(1, read(done[0], &c, 1));
	ASSERT_EQ(0, cli_wait(&cli, 10000));
	cli_output(cli.err, err, sizeof(err));
	TH_LOG("attach: stdout %zu bytes, stderr: %s", strlen(cli_output(cli.out, out, sizeof(out))),
	       err);
	ASSERT_EQ(0, cli_exit_status(&cli));
	ASSERT_NE(NULL, strstr(err, "the VM is gone"));
	ASSERT_EQ(NULL, strstr(err, "failed"));
	ASSERT_EQ(NULL, strstr(err, "No such device"));
	cli_end(&cli);
	kill(vmm, SIGKILL);
	ASSERT_EQ(vmm, waitpid(vmm, &status, 0));
}

/* Lines of @text that contain @what. */
static unsigned int lines_with(const char *text, const char *what)
{
	unsigned int n = 0;

	for (; (text = strstr(text, what)); text += strlen(what))
		n++;
	return n;
}

/*
 * `kvmmig throttle` prints what each vCPU has in force afterwards, read
 * back from the module: a dirty limit set after a CPU throttle leaves the
 * CPU throttle there, and the output says so.
 */
TEST_F_TIMEOUT(kmt, throttle_command_prints_state, 120)
{
	const char *cpu[] = { "throttle", "--session", NULL, "--cpu-throttle", "30", NULL };
	const char *lim[] = { "throttle", "--session", NULL, "--dirty-limit", "20MB/s",
			      "--json", NULL };
	const char *one[] = { "throttle", "--session", NULL, "--vcpu", "1", "--cpu-throttle",
			      "0", NULL };
	struct kvmmig_info info = {};
	struct kvmmig_throttle g = { .vcpu = 0 };
	char id[16], out[4096], err[4096];
	struct cli_child c;

	NEED_READY();
	ASSERT_ERRNO(ioctl(self->sess, KVMMIG_INFO, &info), ENOSPC);
	snprintf(id, sizeof(id), "%u", info.session_id);
	cpu[2] = lim[2] = one[2] = id;
	ASSERT_EQ(0, cli_run(cpu, 30000, err, sizeof(err))) TH_LOG("stderr: %s", err);

	ASSERT_EQ(0, cli_start(&c, lim));
	ASSERT_EQ(0, cli_wait(&c, 30000));
	ASSERT_EQ(0, cli_exit_status(&c)) TH_LOG("stderr: %s", cli_output(c.err, err, sizeof(err)));
	cli_output(c.out, out, sizeof(out));
	TH_LOG("--dirty-limit 20MB/s --json: %s", out);
	/* 20 MiB/s is 5120 pages/s; the 30% set before stays, on both vCPUs. */
	ASSERT_EQ(NR_VCPUS, lines_with(out, "\"dirty_limit\":5120,\"cpu_throttle\":30,"));
	cli_end(&c);

	ASSERT_EQ(0, cli_start(&c, one));
	ASSERT_EQ(0, cli_wait(&c, 30000));
	ASSERT_EQ(0, cli_exit_status(&c));
	cli_output(c.out, out, sizeof(out));
	TH_LOG("--vcpu 1 --cpu-throttle 0: %s", out);
	ASSERT_EQ(1U, lines_with(out, "vCPU 1: dirty limit 5120 pages/s, CPU throttle 0%"));
	ASSERT_EQ(0U, lines_with(out, "vCPU 0"));
	cli_end(&c);
	ASSERT_EQ(0, ioctl(self->sess, KVMMIG_GET_THROTTLE, &g));
	ASSERT_EQ(30U, g.cpu_throttle);
	ASSERT_EQ(5120ULL, g.dirty_limit);
}

/* ---- netlink ---- */

static int count_session(const struct kmod_nl_session *s, void *arg)
{
	const struct kmod_nl_session *want = arg;

	if (s->id == want->id)
		((struct kmod_nl_session *)arg)->state = s->state + 100;
	return 0;
}

static int count_stats(uint32_t session, const struct kvmmig_vcpu_stats *st, void *arg)
{
	uint32_t *want = arg;

	if (session == want[0])
		want[1]++;
	return 0;
}

/* Next event of @cmd, skipping others; fails the test after 10 s. */
static void expect_event(struct __test_metadata *_metadata, struct kmod_events *ev,
			 uint8_t cmd, uint32_t session, struct kmod_event *out)
{
	uint64_t deadline = now_ns() + 10000000000ULL;

	while (now_ns() < deadline) {
		if (kmod_events_read(ev, out, 1000))
			continue;
		if (out->cmd == cmd && out->session == session)
			return;
	}
	ASSERT_TRUE(0) TH_LOG("no %s event for session %u", kmod_event_name(cmd), session);
}

TEST_F_TIMEOUT(own, netlink_commands_and_events, 300)
{
	struct kvmmig_throttle t = { .vcpu = 1, .set = KVMMIG_THROTTLE_CPU, .cpu_throttle = 30 };
	struct kmod_nl_session want = {};
	struct kvmmig_info info = {};
	struct kmod_events *ev;
	struct kmod_session *ks;
	struct dirty_source *ds;
	struct kmod_event e;
	uint32_t cnt[2];
	struct vm *vm;
	int dev, s2, held;

	NEED_READY();
	ASSERT_EQ(0, kmod_events_open(&ev));
	vm = running_vm(_metadata, WORKLOAD_INCR, true, &ds);
	ASSERT_NE(NULL, vm);
	ks = dirty_module_session(ds);
	expect_event(_metadata, ev, KVMMIG_NL_EVENT_ATTACHED, ks->id, &e);
	TH_LOG("session %u: attached event", ks->id);

	want.id = ks->id;
	ASSERT_EQ(0, kmod_nl_sessions(count_session, &want));
	ASSERT_EQ(100U + KVMMIG_STATE_ATTACHED, want.state);
	cnt[0] = ks->id;
	cnt[1] = 0;
	ASSERT_EQ(0, kmod_nl_stats(ks->id, count_stats, cnt));
	ASSERT_EQ(NR_VCPUS, cnt[1]);

	/* Set by netlink, seen by the ioctl, announced by an event. */
	ASSERT_EQ(0, kmod_nl_set_throttle(ks->id, &t));
	expect_event(_metadata, ev, KVMMIG_NL_EVENT_THROTTLE, ks->id, &e);
	ASSERT_EQ(1U, e.vcpu);
	ASSERT_EQ(30U, e.cpu_throttle);
	ASSERT_EQ(0, kmod_get_throttle(ks, 1, &t));
	ASSERT_EQ(30U, t.cpu_throttle);
	ASSERT_EQ(-ENOENT, kmod_nl_set_throttle(ks->id + 1000, &t));
	t.set = 1U << 7;
	ASSERT_EQ(-EINVAL, kmod_nl_set_throttle(ks->id, &t));

	/* A busy vCPU held at a low dirty limit is reported over its limit. */
	t = (struct kvmmig_throttle){ .vcpu = 0, .set = KVMMIG_THROTTLE_DIRTY_LIMIT,
				      .dirty_limit = 50 };
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	expect_event(_metadata, ev, KVMMIG_NL_EVENT_OVER_LIMIT, ks->id, &e);
	TH_LOG("over-limit event: vCPU %u at %llu pages/s", e.vcpu, (unsigned long long)e.dirty_rate);
	ASSERT_EQ(0U, e.vcpu);
	ASSERT_EQ(50ULL, e.dirty_limit);

	/* A second session on another fd of the same VM is refused. */
	dev = open(KVMMIG_DEVICE, O_RDWR);
	s2 = attach_raw(dev, vm->fd);
	ASSERT_EQ(-1, s2);
	close(dev);

	/* The VMM lets the VM go: VM_GONE, then DETACHED when closed. */
	t.dirty_limit = 0;
	ASSERT_EQ(0, kmod_set_throttle(ks, &t));
	TH_LOG("stopping the guest");
	vm_stop(vm);
	held = dup(ks->fd);	/* the session outlives the dirty source */
	ASSERT_GE(held, 0);
	dirty_source_close(ds);
	vm_destroy(vm);
	TH_LOG("VM destroyed");
	ASSERT_ERRNO(ioctl(held, KVMMIG_INFO, &info), ENODEV);
	expect_event(_metadata, ev, KVMMIG_NL_EVENT_VM_GONE, want.id, &e);
	close(held);
	expect_event(_metadata, ev, KVMMIG_NL_EVENT_DETACHED, want.id, &e);
	kmod_events_close(ev);
}

/* ---- module load/unload ---- */

/*
 * rmmod is refused while a session is open and works once it is closed,
 * 100 times.  One VM lives through all cycles: creating and destroying VMs
 * between module loads flips KVM's preempt-notifier static key so often
 * that QEMU TCG has been seen to trip over its own text patching.  Needs
 * the module file: KVMMIG_MODULE=/path/kvmmig.ko.
 */
TEST_F_TIMEOUT(own, load_unload_cycles_with_sessions, 600)
{
	const char *ko = getenv("KVMMIG_MODULE");
	struct vm *vm;
	int i, refused = 0;

	NEED_READY();
	if (!ko || access(ko, R_OK))
		SKIP(return, "set KVMMIG_MODULE to the kvmmig.ko file to reload it");
	vm = make_vm(_metadata, 1, TEST_RING, WORKLOAD_IDLE);
	ASSERT_NE(NULL, vm);
	for (i = 0; i < 100; i++) {
		int dev = open(KVMMIG_DEVICE, O_RDWR), s, fd;

		ASSERT_GE(dev, 0);
		s = attach_raw(dev, vm->fd);
		ASSERT_GE(s, 0);
		close(dev);
		errno = 0;
		ASSERT_NE(0, syscall(SYS_delete_module, "kvmmig", O_NONBLOCK));
		refused += errno == EWOULDBLOCK || errno == EBUSY;
		close(s);
		ASSERT_EQ(0, syscall(SYS_delete_module, "kvmmig", O_NONBLOCK))
			TH_LOG("cycle %d: rmmod: %s", i, strerror(errno));
		fd = open(ko, O_RDONLY | O_CLOEXEC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(0, syscall(SYS_finit_module, fd, "", 0))
			TH_LOG("cycle %d: insmod: %s", i, strerror(errno));
		close(fd);
	}
	ASSERT_EQ(100, refused);
	vm_destroy(vm);
}

TEST_HARNESS_MAIN
