// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tests of the built-in VMM: memslot layouts and memory backings (the
 * incrementer must leave every page at exactly its pass count), a 16 GiB
 * sparse guest, every workload reporting over ucall, a guest assert
 * arriving at the host with file, line and message, pause/resume and vCPU
 * state save/load, the rate workload slowing down in proportion to the
 * VMM's CPU throttle and never writing outside its working set, and each bad
 * parameter failing with its own error.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "bitmap.h"
#include "dirty.h"
#include "log.h"
#include "test_util.h"

#define TEST_WAIT_MS	120000

static void quiet_log(int level, const char *msg)
{
}

FIXTURE(layout) {
	struct vm *vm;
};

FIXTURE_VARIANT(layout) {
	unsigned int nr_vcpus;
	unsigned int nr_slots;
	uint64_t ram;
	enum vm_backing backing;
};

FIXTURE_VARIANT_ADD(layout, one_slot) { 1, 1, 16ULL << 20, VM_BACKING_ANON };
FIXTURE_VARIANT_ADD(layout, three_slots_uneven) { 2, 3, (16ULL << 20) + 3 * 4096, VM_BACKING_ANON };
FIXTURE_VARIANT_ADD(layout, many_slots) { 4, 31, 31ULL << 20, VM_BACKING_ANON };
FIXTURE_VARIANT_ADD(layout, memfd) { 2, 2, 16ULL << 20, VM_BACKING_MEMFD };
FIXTURE_VARIANT_ADD(layout, hugetlb) { 2, 2, 16ULL << 20, VM_BACKING_HUGETLB };
FIXTURE_VARIANT_ADD(layout, tiny_1mib) { 1, 1, 1ULL << 20, VM_BACKING_ANON };

/* Make sure enough 2 MiB pages are reserved (as root we may add some). */
static bool hugepages_reserve(uint64_t bytes)
{
	unsigned long want = bytes >> 21, have = 0, free_pages = 0;
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Total: %lu", &have);
		sscanf(line, "HugePages_Free: %lu", &free_pages);
	}
	fclose(f);
	if (free_pages >= want)
		return true;
	f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (!f)
		return false;
	fprintf(f, "%lu\n", have + want - free_pages);
	return fclose(f) == 0;
}

FIXTURE_SETUP(layout)
{
	struct vm_config cfg = {
		.nr_vcpus = variant->nr_vcpus,
		.ram_bytes = variant->ram,
		.nr_slots = variant->nr_slots,
		.backing = variant->backing,
		.guest.workload = WORKLOAD_INCR,
		.guest.max_passes = 3,
	};

	if (variant->backing == VM_BACKING_HUGETLB && !hugepages_reserve(variant->ram + (8 << 20)))
		SKIP(return, "no 2 MiB hugetlb pages and cannot reserve any");
	ASSERT_EQ(vm_create(&cfg, &self->vm), 0);
}

FIXTURE_TEARDOWN(layout)
{
	vm_destroy(self->vm);
}

TEST_F(layout, incr_passes)
{
	struct vm *vm = self->vm;
	uint64_t i;
	unsigned int s;

	ASSERT_EQ(vm->nr_slots, variant->nr_slots + 1);
	ASSERT_EQ(vm->slots[1].gpa, GUEST_RAM_GPA);
	for (s = 2; s < vm->nr_slots; s++)
		ASSERT_EQ(vm->slots[s].gpa, vm->slots[s - 1].gpa + vm->slots[s - 1].size);
	ASSERT_EQ(vm_start(vm), 0);
	ASSERT_EQ(vm_wait_done(vm, TEST_WAIT_MS), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	/* Three whole passes and then UCALL_DONE: every page is exactly 3. */
	for (i = 0; i < vm->shared->mem_pages; i++) {
		uint8_t v = *(uint8_t *)workload_page(vm, i);

		ASSERT_EQ(v, 3) TH_LOG("page %lu holds %u", i, v);
	}
	for (s = 0; s < vm->cfg.nr_vcpus; s++)
		ASSERT_EQ(vm->vcpus[s].area->passes, (uint64_t)3);
}

/* 16 GiB of guest RAM, of which the guest touches the last 256 pages. */
TEST(sparse_16g)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = 16ULL << 30,
		.nr_slots = 4,
		.guest.workload = WORKLOAD_INCR,
		.guest.max_passes = 2,
		.guest.mem_gpa = GUEST_RAM_GPA + (16ULL << 30) - 256 * GUEST_PAGE_SIZE,
		.guest.mem_pages = 256,
	};
	long rss_pages;
	struct vm *vm;
	uint64_t i;
	FILE *f;

	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(vm_start(vm), 0);
	ASSERT_EQ(vm_wait_done(vm, TEST_WAIT_MS), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	for (i = 0; i < 256; i++)
		ASSERT_EQ(*(uint8_t *)workload_page(vm, i), 2);
	/* Untouched RAM costs nothing: resident memory stays far below 16 GiB. */
	f = fopen("/proc/self/statm", "r");
	ASSERT_NE(f, NULL);
	ASSERT_EQ(fscanf(f, "%*d %ld", &rss_pages), 1);
	fclose(f);
	ASSERT_LT(rss_pages * 4096L, 1L << 30);
	vm_destroy(vm);
}

struct sync_count {
	uint64_t syncs[VM_MAX_VCPUS];
};

static int count_sync(void *opaque, unsigned int vcpu, const struct ucall *uc)
{
	struct sync_count *c = opaque;

	c->syncs[vcpu]++;
	return 0;
}

FIXTURE(workload) {
	struct vm *vm;
	struct sync_count syncs;
};

FIXTURE_VARIANT(workload) {
	enum guest_workload workload;
	bool passes;	/* ends by itself after max_passes, with SYNCs */
};

FIXTURE_VARIANT_ADD(workload, incr) { WORKLOAD_INCR, true };
FIXTURE_VARIANT_ADD(workload, seq) { WORKLOAD_SEQ, true };
FIXTURE_VARIANT_ADD(workload, rand) { WORKLOAD_RAND, true };
FIXTURE_VARIANT_ADD(workload, random) { WORKLOAD_RANDOM, false };
FIXTURE_VARIANT_ADD(workload, rate) { WORKLOAD_RATE, false };
FIXTURE_VARIANT_ADD(workload, compute) { WORKLOAD_COMPUTE, false };
FIXTURE_VARIANT_ADD(workload, idle) { WORKLOAD_IDLE, false };

FIXTURE_SETUP(workload)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = 8ULL << 20,
		.nr_slots = 2,
		.guest.workload = variant->workload,
		.guest.max_passes = variant->passes ? 4 : 0,
		.guest.sync_every = 1,
		.guest.wss_pages = 512,
		.guest.pages_per_sec = 5000,
		.guest.iteration = 7,
	};

	ASSERT_EQ(vm_create(&cfg, &self->vm), 0);
	self->vm->on_sync = count_sync;
	self->vm->cb_opaque = &self->syncs;
}

FIXTURE_TEARDOWN(workload)
{
	vm_destroy(self->vm);
}

static uint64_t range_nonzero_pages(struct vm *vm)
{
	uint64_t i, n = 0;

	for (i = 0; i < vm->shared->mem_pages; i++)
		n += *(uint64_t *)workload_page(vm, i) != 0;
	return n;
}

TEST_F(workload, runs_and_reports)
{
	struct vm *vm = self->vm;
	uint64_t start = now_ns(), loops;
	unsigned int i;

	ASSERT_EQ(vm_start(vm), 0);
	if (variant->passes) {
		ASSERT_EQ(vm_wait_done(vm, TEST_WAIT_MS), 0);
	} else {
		usleep(300000);
		ASSERT_EQ(vm_stop(vm), 0);
	}
	ASSERT_EQ(vm_failure(vm), NULL);
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		ASSERT_EQ(vm->vcpus[i].state, VCPU_DONE);
		ASSERT_EQ(vm->vcpus[i].area->started, (uint64_t)1);
		loops = vm->vcpus[i].area->loops;
		if (variant->workload != WORKLOAD_IDLE)
			ASSERT_GT(loops, (uint64_t)0);
		if (variant->passes) {
			ASSERT_EQ(vm->vcpus[i].area->passes, (uint64_t)4);
			ASSERT_EQ(self->syncs.syncs[i], (uint64_t)4);
		}
		if (variant->workload == WORKLOAD_RATE)
			/* TSC pacing never runs ahead of the rate. */
			ASSERT_LE(loops, 5000 * (now_ns() - start) / 1000000000ULL + 64);
	}
	switch (variant->workload) {
	case WORKLOAD_COMPUTE:
	case WORKLOAD_IDLE:
		ASSERT_EQ(range_nonzero_pages(vm), (uint64_t)0);
		break;
	case WORKLOAD_RANDOM:
		/* It writes the host's iteration number, nothing else. */
		for (i = 0; i < vm->shared->mem_pages; i++) {
			uint64_t v = *(uint64_t *)workload_page(vm, i);

			ASSERT_TRUE(v == 0 || v == 7);
		}
		/* fallthrough */
	default:
		ASSERT_GT(range_nonzero_pages(vm), (uint64_t)0);
	}
}

#define RATE_PPS		2000	/* far below what one emulated vCPU can write */
#define RATE_WINDOW_US		1000000

struct rate_window {
	uint64_t pages;		/* written by vCPU 0 in the window */
	double run;		/* the part of the window its thread had a CPU */
};

/* CPU time of vCPU @v's thread (guest, emulator and KVM all count). */
static uint64_t vcpu_cpu_ns(const struct vcpu *v)
{
	struct timespec ts;
	clockid_t cid;

	if (pthread_getcpuclockid(v->thread, &cid) || clock_gettime(cid, &ts))
		return 0;
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* What the rate guest on vCPU 0 does in one window at @pct% throttle. */
static struct rate_window rate_at_throttle(struct vm *vm, unsigned int pct)
{
	struct vcpu *v = &vm->vcpus[0];
	struct rate_window w = { 0 };
	uint64_t a, cpu, t0;

	if (vm_set_throttle(vm, 0, pct))
		return w;
	usleep(50000);	/* the new slice pattern takes hold */
	a = v->area->loops;
	cpu = vcpu_cpu_ns(v);
	t0 = now_ns();
	usleep(RATE_WINDOW_US);
	w.pages = v->area->loops - a;
	w.run = (double)(vcpu_cpu_ns(v) - cpu) / (now_ns() - t0);
	return w;
}

/*
 * A throttled vCPU loses the time it sleeps: at p% it dirties about
 * (1 - p/100) of its unthrottled rate.  A guest that caught up after each
 * sleep (a burst) would stay near 1.0 and fail the upper bounds.  How much
 * it ran is its thread's CPU time: on a loaded host the thread also waits
 * for a CPU, which is no throttle's doing, so the guest is held to its
 * rate per CPU-second unthrottled, in whatever CPU time it got (each
 * slice's restart costs it a little; a burst would give 2x at 50% and 4x
 * at 75%).
 */
TEST(rate_follows_throttle)
{
	struct vm_config cfg = {
		.nr_vcpus = 1,
		.ram_bytes = 4ULL << 20,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_RATE,
		.guest.pages_per_sec = RATE_PPS,
	};
	struct rate_window full, half, quarter;
	struct vm *vm;

	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(vm_start(vm), 0);
	full = rate_at_throttle(vm, 0);
	half = rate_at_throttle(vm, 50);
	quarter = rate_at_throttle(vm, 75);
	ASSERT_EQ(vm_stop(vm), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	TH_LOG("pages/s at 0%%: %lu (ran %.2f), 50%%: %lu (%.2f, ran %.2f), 75%%: %lu (%.2f, ran %.2f)",
	       full.pages, full.run, half.pages, (double)half.pages / full.pages, half.run,
	       quarter.pages, (double)quarter.pages / full.pages, quarter.run);
	ASSERT_GT(full.pages, (uint64_t)0);
	ASSERT_LE(half.pages * 100, full.pages * 65);
	ASSERT_LE(quarter.pages * 100, full.pages * 38);
	/* The throttle really took its share of the time... */
	ASSERT_LE(half.run, 0.65);
	ASSERT_LE(quarter.run, 0.38);
	/* ...and the guest wrote at its rate in the rest, no burst, no loss. */
	ASSERT_GT(full.run, 0.0);
	ASSERT_GE(half.pages, full.pages / full.run * half.run * 0.6);
	ASSERT_LE(half.pages, full.pages / full.run * half.run * 1.4);
	ASSERT_GE(quarter.pages, full.pages / full.run * quarter.run * 0.6);
	ASSERT_LE(quarter.pages, full.pages / full.run * quarter.run * 1.4);
	vm_destroy(vm);
}

/*
 * Run @vm for a while and check from the dirty log that each vCPU wrote
 * every page of the first @wss of its slice and nothing beyond.
 */
static void check_stays_in_wss(struct __test_metadata *_metadata, struct vm *vm,
			       struct dirty_source *ds, struct dirty_set *set, uint64_t wss)
{
	uint64_t per, i, dirty = 0, loops[VM_MAX_VCPUS];
	unsigned int v;

	ASSERT_GE(dirty_source_collect(ds, set), 0);
	dirty_set_clear(set);
	for (v = 0; v < vm->cfg.nr_vcpus; v++)
		loops[v] = vm->vcpus[v].area->loops;
	ASSERT_EQ(vm_resume(vm), 0);
	usleep(300000);
	ASSERT_EQ(vm_pause(vm), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	ASSERT_GE(dirty_source_collect(ds, set), 0);
	/* Slot 1 is the workload range: bit i is workload page i. */
	ASSERT_EQ(vm->slots[1].gpa, vm->shared->mem_gpa);
	per = vm->shared->mem_pages / vm->cfg.nr_vcpus;
	for (v = 0; v < vm->cfg.nr_vcpus; v++)
		/* Wrapped around the set at least once: pages past it were due. */
		ASSERT_GT(vm->vcpus[v].area->loops - loops[v], 4 * wss);
	for (i = 0; i < vm->shared->mem_pages; i++) {
		bool in_wss = i % per < wss;
		bool is_dirty = bitmap_test_bit(set->bitmaps[1], i);

		ASSERT_TRUE(!is_dirty || in_wss) TH_LOG("page %lu dirtied outside the wss", i);
		dirty += is_dirty;
	}
	ASSERT_EQ(dirty, vm->cfg.nr_vcpus * wss);
}

static void run_in_wss(struct __test_metadata *_metadata, enum guest_workload workload,
		       uint64_t wss, uint64_t wss_later)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = 4ULL << 20,
		.nr_slots = 1,
		.guest.workload = workload,
		.guest.pages_per_sec = 5000,
		.guest.wss_pages = wss,
	};
	struct dirty_options opts = { .backend = DIRTY_BITMAP };
	struct dirty_source *ds;
	struct dirty_set set;
	struct vm *vm;

	ASSERT_EQ(dirty_prepare_config(DIRTY_BITMAP, &cfg), DIRTY_BITMAP);
	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(dirty_set_alloc(vm->kv, &set), 0);
	ASSERT_EQ(dirty_source_open(vm->kv, &opts, &ds), 0);
	ASSERT_EQ(vm_start(vm), 0);
	ASSERT_EQ(vm_pause(vm), 0);
	check_stays_in_wss(_metadata, vm, ds, &set, wss);
	if (wss_later) {
		/* Changed while the vCPUs are paused; the guest reads it again. */
		vm->shared->wss_pages = wss_later;
		check_stays_in_wss(_metadata, vm, ds, &set, wss_later);
	}
	ASSERT_EQ(vm_stop(vm), 0);
	dirty_source_close(ds);
	dirty_set_free(&set);
	vm_destroy(vm);
}

/* The rate guest cycles over its working set and writes nothing beyond it. */
TEST(rate_stays_in_wss)
{
	run_in_wss(_metadata, WORKLOAD_RATE, 16, 0);
}

/* So does the random guest, and it follows a working set changed at run time. */
TEST(random_stays_in_wss)
{
	run_in_wss(_metadata, WORKLOAD_RANDOM, 16, 48);
}

TEST(guest_assert_reaches_host)
{
	struct vm_config cfg = {
		.nr_vcpus = 1,
		.ram_bytes = 1ULL << 20,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_ASSERT,
	};
	const char *msg;
	struct vm *vm;

	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(vm_start(vm), 0);
	ASSERT_EQ(vm_wait_done(vm, TEST_WAIT_MS), 0);
	ASSERT_EQ(vm->vcpus[0].state, VCPU_FAILED);
	msg = vm_failure(vm);
	ASSERT_NE(msg, NULL);
	TH_LOG("host got: %s", msg);
	ASSERT_NE(strstr(msg, "guest assert failed at workloads.c:"), NULL);
	ASSERT_NE(strstr(msg, "GUEST_SHARED->nr_vcpus == 0 (0x1, 0x0)"), NULL);
	vm_destroy(vm);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
}

/* Pause stops the guest dead; state saved and loaded again resumes it. */
TEST(pause_resume_state)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = 4ULL << 20,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_COMPUTE,
	};
	struct vcpu_state_blob st;
	uint64_t a, b;
	struct vm *vm;

	ASSERT_EQ(vm_create(&cfg, &vm), 0);
	ASSERT_EQ(vm_start(vm), 0);
	usleep(100000);
	ASSERT_EQ(vm_pause(vm), 0);
	a = vm->vcpus[1].area->loops;
	usleep(100000);
	b = vm->vcpus[1].area->loops;
	ASSERT_EQ(a, b);
	ASSERT_EQ(vcpu_save_state(&vm->vcpus[1], &st), 0);
	ASSERT_EQ(st.sregs.cr3, GUEST_PT_GPA);
	ASSERT_GT(st.nr_msrs, 0U);
	ASSERT_EQ(vcpu_load_state(&vm->vcpus[1], &st), 0);
	ASSERT_EQ(vm_resume(vm), 0);
	usleep(100000);
	ASSERT_GT(vm->vcpus[1].area->loops, b);
	ASSERT_EQ(vm_stop(vm), 0);
	ASSERT_EQ(vm_failure(vm), NULL);
	vm_destroy(vm);
}

TEST(bad_config)
{
	struct vm_config good = {
		.nr_vcpus = 1, .ram_bytes = 1ULL << 20, .nr_slots = 1,
	};
	struct vm_config cfg;
	struct vm *vm = NULL;

	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	cfg = good;
	cfg.nr_vcpus = 0;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "0 vCPUs requested: expected 1 to 64"), NULL);
	cfg.nr_vcpus = VM_MAX_VCPUS + 1;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	cfg = good;
	cfg.ram_bytes = 1ULL << 50;
	ASSERT_EQ(vm_create(&cfg, &vm), -E2BIG);
	ASSERT_NE(strstr(kvmmig_last_error(), "more than this host has"), NULL);
	cfg.ram_bytes = 4096;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	cfg.ram_bytes = (1ULL << 20) + 1;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	cfg = good;
	cfg.nr_slots = 0;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	cfg.nr_slots = VM_MAX_SLOTS;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	cfg = good;
	cfg.guest.workload = NR_WORKLOADS;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	ASSERT_EQ(workload_parse("no-such-workload"), -EINVAL);
	ASSERT_EQ(workload_parse("incr"), WORKLOAD_INCR);
	cfg = good;
	cfg.ring_entries = 1000;
	ASSERT_EQ(vm_create(&cfg, &vm), -EINVAL);
	ASSERT_EQ(vm, NULL);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
}

/* Run the kvmmig command (next to this test's folder) and return its status. */
static int run_kvmmig(const char *args, char *out, size_t len)
{
	char exe[PATH_MAX], cmd[PATH_MAX + 256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	FILE *p;
	size_t got;
	int st;

	if (n < 0)
		return -1;
	exe[n] = '\0';
	snprintf(cmd, sizeof(cmd), "%s/../kvmmig %s 2>&1", dirname(exe), args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	got = fread(out, 1, len - 1, p);
	out[got] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_bad_parameters)
{
	static const struct {
		const char *args;
		const char *expect;
	} cases[] = {
		{ "run --vcpus 0", "--vcpus '0': expected a whole number from 1 to 64" },
		{ "run --ram 1P", "more than this host has" },
		{ "run --ram lots", "--ram 'lots': expected a size" },
		{ "run --workload nope", "--workload 'nope': unknown workload" },
		{ "run --dirty nope", "--dirty 'nope': unknown dirty backend" },
		{ "frobnicate", "unknown command 'frobnicate'" },
	};
	char out[4096];
	unsigned int i;

	if (run_kvmmig("-h", out, sizeof(out)) != 0)
		SKIP(return, "the kvmmig command is not next to this test: %.200s", out);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = run_kvmmig(cases[i].args, out, sizeof(out));

		EXPECT_NE(st, 0) TH_LOG("kvmmig %s exited 0", cases[i].args);
		EXPECT_NE(strstr(out, cases[i].expect), NULL)
			TH_LOG("kvmmig %s said: %s", cases[i].args, out);
	}
}

TEST_HARNESS_MAIN
