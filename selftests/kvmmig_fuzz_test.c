// SPDX-License-Identifier: GPL-2.0-only
/*
 * A random-ioctl fuzzer for kvmmig.ko: at least 100k calls (KVMMIG_FUZZ_ITERS)
 * on /dev/kvmmig, on session fds that come and go (ATTACH, DETACH, close)
 * and on fds that are not ours, with command numbers in the module's ioctl
 * space, structures that are random or nearly valid, and user pointers into
 * a scratch arena, across its guard page, to unmapped and kernel addresses.
 * A 2-vCPU guest keeps dirtying pages meanwhile, so harvests and throttles
 * act on live rings.  Every errno must be one the API documents; afterwards
 * the module and the guest must still work.  The kernel log is checked by
 * selftests/vm.  SKIPs without /dev/kvmmig.  KVMMIG_FUZZ_SEED replays a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "module_client.h"
#include "kselftest_harness.h"
#include "test_util.h"

#define ARENA_SIZE	(1UL << 20)
#define MAX_SESSIONS	4
#define NR_VCPUS	2U

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the printed seed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct fuzz {
	struct vm *vm;
	int dev;
	int null_fd;
	int closed_fd;
	int sess[MAX_SESSIONS];
	uint8_t *arena;			/* ARENA_SIZE, then a PROT_NONE page */
	uint8_t *unmapped;		/* PROT_NONE, kept so nothing else lands there */
	uint64_t calls;
	uint64_t errnos[256];
	uint64_t ok;
	pthread_t reaper;
	volatile bool stop;
	pthread_mutex_t ring_lock;
};

/* ---- keep the guest going: a userspace collector on the mmapped rings ---- */

/*
 * The fuzzer's HARVESTs collect from the same rings in any order, so this
 * collector does not keep a position: it flags every dirty entry of the
 * whole ring collected, then lets KVM reset.
 */
static int collect_rings(struct fuzz *f)
{
	uint32_t size = f->vm->cfg.ring_entries, i, n;
	int ret = 0;

	pthread_mutex_lock(&f->ring_lock);
	for (i = 0; i < NR_VCPUS; i++) {
		struct kvm_dirty_gfn *ring = f->vm->kv->vcpus[i].ring;

		for (n = 0; n < size; n++)
			if (__atomic_load_n(&ring[n].flags, __ATOMIC_ACQUIRE) == KVM_DIRTY_GFN_F_DIRTY)
				__atomic_store_n(&ring[n].flags, KVM_DIRTY_GFN_F_RESET,
						 __ATOMIC_RELEASE);
	}
	if (ioctl(f->vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		ret = -errno;
	pthread_mutex_unlock(&f->ring_lock);
	return ret;
}

static int fuzz_ring_full(void *opaque, unsigned int vcpu)
{
	return collect_rings(opaque);
}

static void *fuzz_reaper(void *arg)
{
	struct fuzz *f = arg;

	while (!f->stop) {
		usleep(20000);
		collect_rings(f);
	}
	return NULL;
}

/* ---- random arguments ---- */

static uint64_t arena_ptr(struct fuzz *f, size_t len)
{
	if (len >= ARENA_SIZE)
		len = ARENA_SIZE - 1;
	return (uintptr_t)(f->arena + rnd_below(ARENA_SIZE - len));
}

/* A user address: mostly good, sometimes not. */
static uint64_t rnd_ptr(struct fuzz *f, size_t len)
{
	switch (rnd_below(12)) {
	case 0:
		return 0;
	case 1:
		return (uintptr_t)f->unmapped + rnd_below(4096);
	case 2:
		return 0xffffffff81000000ULL + rnd_below(1 << 20);
	case 3:
		/* runs into the guard page (never below the arena) */
		return (uintptr_t)f->arena + ARENA_SIZE - rnd_below((len < 4096 ? len : 4096) + 1);
	case 4:
		return rnd() | 1ULL << 63;	/* never one of our own mappings */
	default:
		return arena_ptr(f, len);
	}
}

static uint32_t rnd_count(void)
{
	switch (rnd_below(8)) {
	case 0:
		return 0;
	case 1:
		return rnd();
	case 2:
		return 1U << rnd_below(32);
	default:
		return rnd_below(6);
	}
}

static uint32_t rnd_small_flags(void)
{
	return rnd_below(8) ? 0 : 1U << rnd_below(32);
}

/*
 * Random words, each with bit 63 set: any that lands in a pointer field is
 * a kernel or non-canonical address, never memory of this process.
 */
static void rnd_fill(uint64_t *w, size_t words)
{
	size_t i;

	for (i = 0; i < words; i++)
		w[i] = rnd() | 1ULL << 63;
}

/* Arrays of slot bitmaps that are mostly right for the VM. */
static uint64_t rnd_slot_array(struct fuzz *f, uint32_t n)
{
	struct kvmmig_slot_bitmap *sb;
	uint32_t i, k = n > 64 ? 64 : n;
	uint64_t at = arena_ptr(f, k * sizeof(*sb));

	sb = (struct kvmmig_slot_bitmap *)(uintptr_t)at;
	for (i = 0; i < k; i++) {
		unsigned int s = rnd_below(f->vm->nr_slots + 1);

		memset(&sb[i], 0, sizeof(sb[i]));
		sb[i].slot = s < f->vm->nr_slots ? f->vm->slots[s].id : rnd();
		sb[i].npages = rnd_below(4) ? f->vm->slots[s % f->vm->nr_slots].size / 4096 :
					      rnd();
		sb[i].bitmap = rnd_ptr(f, (sb[i].npages + 7) / 8);
		sb[i].flags = rnd_small_flags();
		sb[i].reserved[rnd_below(2)] = rnd_below(16) ? 0 : rnd();
	}
	return at;
}

static void build_arg(struct fuzz *f, unsigned int cmd, void *buf)
{
	union {
		struct kvmmig_attach a;
		struct kvmmig_info i;
		struct kvmmig_harvest h;
		struct kvmmig_stats s;
		struct kvmmig_throttle t;
	} *u = buf;

	if (rnd_below(4) == 0) {
		rnd_fill(buf, 256 / sizeof(uint64_t));
		return;
	}
	memset(buf, 0, 256);
	switch (cmd) {
	case KVMMIG_ATTACH:
		u->a.vm_fd = rnd_below(3) ? (uint32_t)f->vm->fd : rnd_below(3) ? (uint32_t)rnd_below(64) : (uint32_t)rnd();
		u->a.flags = rnd_small_flags();
		break;
	case KVMMIG_INFO:
		u->i.nr_slots = rnd_count();
		u->i.slots = rnd_ptr(f, u->i.nr_slots * sizeof(struct kvmmig_memslot));
		u->i.flags = rnd_small_flags();
		break;
	case KVMMIG_HARVEST:
		u->h.nr_slots = rnd_count();
		u->h.slots = rnd_below(4) ? rnd_slot_array(f, u->h.nr_slots) :
				 rnd_ptr(f, u->h.nr_slots * sizeof(struct kvmmig_slot_bitmap));
		u->h.nr_vcpus = rnd_count();
		u->h.vcpus = rnd_ptr(f, u->h.nr_vcpus * sizeof(struct kvmmig_harvest_vcpu));
		u->h.flags = rnd_small_flags();
		break;
	case KVMMIG_VCPU_STATS:
		u->s.nr_vcpus = rnd_count();
		u->s.vcpus = rnd_ptr(f, u->s.nr_vcpus * sizeof(struct kvmmig_vcpu_stats));
		u->s.flags = rnd_small_flags();
		break;
	case KVMMIG_SET_THROTTLE:
	case KVMMIG_GET_THROTTLE:
		u->t.vcpu = rnd_below(4) ? rnd_below(NR_VCPUS + 1) : KVMMIG_VCPU_ALL;
		u->t.set = rnd_below(8) ? rnd_below(8) : rnd();
		/* Mild limits, so the guest is never slowed for long. */
		u->t.dirty_limit = rnd_below(8) ? 5000 + rnd_below(100000) : rnd();
		u->t.cpu_throttle = rnd_below(8) ? rnd_below(30) : rnd();
		u->t.ring_quota = rnd_below(4) ? 0 : rnd_below(8) ? 16 + rnd_below(512) : rnd();
		u->t.flags = rnd_small_flags();
		break;
	}
}

static const unsigned int known_cmds[] = {
	KVMMIG_GET_API_VERSION, KVMMIG_CHECK_EXTENSION, KVMMIG_ATTACH,
	KVMMIG_INFO, KVMMIG_HARVEST, KVMMIG_VCPU_STATS, KVMMIG_SET_THROTTLE,
	KVMMIG_GET_THROTTLE, KVMMIG_DETACH,
};

static unsigned int rnd_cmd(void)
{
	switch (rnd_below(8)) {
	case 0:
		/* anything in our ioctl space */
		return _IOC(rnd_below(4), KVMMIG_IO, rnd_below(0x40), rnd_below(256));
	case 1:
		return rnd_below(4);	/* FIBMAP, FIGETBSZ... handled by the VFS */
	default:
		return known_cmds[rnd_below(sizeof(known_cmds) / sizeof(known_cmds[0]))];
	}
}

static int rnd_fd(struct fuzz *f)
{
	switch (rnd_below(10)) {
	case 0:
		return f->dev;
	case 1:
		return f->null_fd;
	case 2:
		return f->closed_fd;
	default:
		return f->sess[rnd_below(MAX_SESSIONS)];
	}
}

static void add_session(struct fuzz *f, int fd)
{
	unsigned int i = rnd_below(MAX_SESSIONS);

	if (f->sess[i] >= 0)
		close(f->sess[i]);
	f->sess[i] = fd;
}

static void one_call(struct fuzz *f)
{
	uint8_t buf[256] __attribute__((aligned(8)));
	unsigned int cmd = rnd_cmd();
	int fd = rnd_fd(f), ret;
	unsigned long arg;

	if (fd < 0)
		fd = f->dev;
	build_arg(f, cmd, buf);
	switch (rnd_below(10)) {
	case 0:
		arg = rnd_ptr(f, 256);
		break;
	case 1:
		arg = rnd_below(16);
		break;
	default:
		arg = (uintptr_t)buf;
	}
	if (cmd == KVMMIG_CHECK_EXTENSION || cmd == KVMMIG_GET_API_VERSION ||
	    cmd == KVMMIG_DETACH)
		arg = rnd_below(4) ? 0 : rnd_below(20);
	errno = 0;
	ret = ioctl(fd, cmd, arg);
	f->calls++;
	if (ret < 0)
		f->errnos[errno & 0xff]++;
	else
		f->ok++;
	if (cmd == KVMMIG_ATTACH && ret >= 0)
		add_session(f, ret);
	/* Now and then a session goes away or a new one comes. */
	if (!rnd_below(500)) {
		unsigned int i = rnd_below(MAX_SESSIONS);

		if (f->sess[i] >= 0)
			close(f->sess[i]);
		f->sess[i] = -1;
	}
	if (!rnd_below(500)) {
		struct kvmmig_attach a = { .vm_fd = f->vm->fd };

		ret = ioctl(f->dev, KVMMIG_ATTACH, &a);
		if (ret >= 0)
			add_session(f, ret);
	}
}

FIXTURE(fuzz) {
	struct fuzz f;
	bool ready;
};

FIXTURE_SETUP(fuzz)
{
	struct fuzz *f = &self->f;
	struct vm_config cfg = {
		.nr_vcpus = NR_VCPUS,
		.ram_bytes = 16ULL << 20,
		.nr_slots = 2,
		.ring_entries = 4096,
		.guest.workload = WORKLOAD_INCR,
	};
	const char *why = "";
	unsigned int i;

	for (i = 0; i < MAX_SESSIONS; i++)
		f->sess[i] = -1;
	f->dev = f->null_fd = f->closed_fd = -1;
	if (!kmod_present(&why))
		SKIP(return, "%s", why);
	if (kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0)
		SKIP(return, "KVM_CAP_DIRTY_LOG_RING missing");
	ASSERT_EQ(0, vm_create(&cfg, &f->vm));
	ASSERT_EQ(0, kvmmig_vm_set_dirty_logging(f->vm->kv, true));
	pthread_mutex_init(&f->ring_lock, NULL);
	vm_set_ring_full_handler(f->vm, fuzz_ring_full, f);
	f->arena = mmap(NULL, ARENA_SIZE + 4096, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, f->arena);
	ASSERT_EQ(0, mprotect(f->arena + ARENA_SIZE, 4096, PROT_NONE));
	f->unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, f->unmapped);
	f->dev = open(KVMMIG_DEVICE, O_RDWR | O_CLOEXEC);
	ASSERT_GE(f->dev, 0);
	f->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	f->closed_fd = dup(f->null_fd);
	close(f->closed_fd);
	ASSERT_EQ(0, vm_start(f->vm));
	ASSERT_EQ(0, pthread_create(&f->reaper, NULL, fuzz_reaper, f));
	self->ready = true;
}

FIXTURE_TEARDOWN(fuzz)
{
	struct fuzz *f = &self->f;
	unsigned int i;

	if (!self->ready)
		return;
	f->stop = true;
	pthread_join(f->reaper, NULL);
	for (i = 0; i < MAX_SESSIONS; i++)
		if (f->sess[i] >= 0)
			close(f->sess[i]);
	vm_destroy(f->vm);
	close(f->dev);
	close(f->null_fd);
	munmap(f->arena, ARENA_SIZE + 4096);
	munmap(f->unmapped, 4096);
}

/* What the API documents, plus the VFS's own answers on other fds. */
static bool errno_allowed(int e)
{
	switch (e) {
	case ENOTTY: case EINVAL: case EFAULT: case E2BIG: case ENOSPC:
	case ENODEV: case ENOENT: case EBADF: case EBUSY: case EOPNOTSUPP:
	case EINTR: case ENOMEM: case EMFILE:
		return true;
	default:
		return false;
	}
}

TEST_F_TIMEOUT(fuzz, random_ioctls, 1800)
{
	struct fuzz *f = &self->f;
	const char *s_iters = getenv("KVMMIG_FUZZ_ITERS"), *s_seed = getenv("KVMMIG_FUZZ_SEED");
	uint64_t iters = s_iters ? strtoull(s_iters, NULL, 0) : 100000, i, t0;
	struct kvmmig_throttle off = { .vcpu = KVMMIG_VCPU_ALL, .set = KVMMIG_THROTTLE_ALL };
	struct kvmmig_vcpu_stats *st;
	struct kmod_session *ks;
	uint32_t nr;
	int e;

	if (!self->ready)
		return;
	rng_state = s_seed ? strtoull(s_seed, NULL, 0) : (uint64_t)now_ns() | 1;
	TH_LOG("seed %#llx (KVMMIG_FUZZ_SEED), %llu calls", (unsigned long long)rng_state,
	       (unsigned long long)iters);
	t0 = now_ns();
	for (i = 0; i < iters; i++) {
		one_call(f);
		/* Keep any throttle the fuzzer set from starving the guest. */
		if (!(i % 1000)) {
			unsigned int k;

			for (k = 0; k < MAX_SESSIONS; k++)
				if (f->sess[k] >= 0)
					ioctl(f->sess[k], KVMMIG_SET_THROTTLE, &off);
		}
	}
	TH_LOG("%llu calls in %.1f s: %llu succeeded", (unsigned long long)f->calls,
	       (now_ns() - t0) / 1e9, (unsigned long long)f->ok);
	for (e = 1; e < 256; e++) {
		if (!f->errnos[e])
			continue;
		TH_LOG("  %-12s %llu", strerrorname_np(e) ?: "?", (unsigned long long)f->errnos[e]);
		EXPECT_TRUE(errno_allowed(e)) TH_LOG("undocumented errno %d (%s)", e, strerror(e));
	}
	ASSERT_GE(f->calls, iters);

	/* Afterwards: the module answers and the guest still runs. */
	for (i = 0; i < MAX_SESSIONS; i++)
		if (f->sess[i] >= 0) {
			close(f->sess[i]);
			f->sess[i] = -1;
		}
	ASSERT_EQ(KVMMIG_API_VERSION, ioctl(f->dev, KVMMIG_GET_API_VERSION, 0));
	ASSERT_EQ(0, kmod_attach(f->vm->fd, &ks));
	ASSERT_EQ(NR_VCPUS, ks->info.nr_vcpus);
	ASSERT_EQ(0, kmod_vcpu_stats(ks, &st, &nr));
	ASSERT_EQ(NR_VCPUS, nr);
	free(st);
	kmod_close(ks);
	ASSERT_EQ(NULL, vm_failure(f->vm));
}

TEST_HARNESS_MAIN
