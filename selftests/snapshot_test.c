// SPDX-License-Identifier: GPL-2.0-only
/*
 * Background snapshots (user/lib/snapshot_*.c) of running built-in
 * guests, with one writer and four, with and without WP_UNPOPULATED.  Point-in-time exactness: at the pause the test copies all of
 * guest RAM aside, and while the guest goes on writing the saved file
 * must equal that copy byte for byte.  Restore: an incr guest saved and
 * restored passes QEMU migration-test's one-edge check and keeps running,
 * restored lazily too (on demand alone first, then wholly), and restored
 * eagerly by four readers equals the file; a lazy restore that meets a
 * corrupted block fails naming it, in the background or on demand.
 * Failures: a cancel, a full filesystem and bad files (truncated,
 * corrupted, another version, incomplete, not a snapshot) each end with a
 * clear error, no file left behind, and the source guest running with
 * nothing write-protected (its writes go on).
 *
 * Live increments, with each tracker (the dirty source, PAGEMAP_SCAN with
 * WP_ASYNC): an increment read through its chain equals all of guest RAM
 * copied at its pause while a random guest writes throughout; an incr
 * guest saved as a base and two increments restores to the last instant
 * exactly, passes the one-edge check and runs on, and lazily restored
 * passes it too; a chain whose base has
 * another id, is missing, loops back, or whose presence map is corrupted
 * is refused naming the file and what is wrong; a cancelled increment
 * ends tracking and the series goes on with a full snapshot.
 */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csum.h"
#include "kselftest_harness.h"
#include "mig_test_util.h"
#include "snapshot.h"
#include "snapshot_util.h"

FIXTURE(snap) {
	char dir[64];
	char path[128];
	char partial[160];
	struct vm *vm;
	struct vm *restored;
};

FIXTURE_VARIANT(snap) {
	bool prefault;
	unsigned int writers;
};

FIXTURE_VARIANT_ADD(snap, wp_unpopulated) { .prefault = false, .writers = 1 };
FIXTURE_VARIANT_ADD(snap, prefault) { .prefault = true, .writers = 1 };
FIXTURE_VARIANT_ADD(snap, four_writers) { .prefault = false, .writers = 4 };


FIXTURE_SETUP(snap)
{
	snprintf(self->dir, sizeof(self->dir), "/tmp/kvmmig-snap-XXXXXX");
	ASSERT_NE(mkdtemp(self->dir), NULL);
	snprintf(self->path, sizeof(self->path), "%s/guest.snap", self->dir);
	snprintf(self->partial, sizeof(self->partial), "%s.partial", self->path);
}

FIXTURE_TEARDOWN(snap)
{
	vm_destroy(self->vm);
	vm_destroy(self->restored);
	unlink(self->path);
	unlink(self->partial);
	umount2(self->dir, MNT_DETACH);
	rmdir(self->dir);
}

/* The file's pages equal the copy taken at the pause, every byte. */
TEST_F_TIMEOUT(snap, point_in_time_exact, 120)
{
	struct at_pause p = { 0 };
	struct snap_opts o = {
		.path = self->path, .paused = copy_at_pause, .opaque = &p,
		.prefault = variant->prefault, .writers = variant->writers,
	};
	uint8_t *page = malloc(MIG_PAGE_SIZE);
	struct snap_header h;
	struct mig_config *cfg;
	struct snap_report r;
	uint64_t i, total = 0, bad = 0;
	unsigned int s;
	size_t len;
	int fd;

	self->vm = running_guest(WORKLOAD_RANDOM);
	ASSERT_NE(self->vm, NULL);
	p.vm = self->vm;
	/* Enough 7s that most pages hold data; from the pause on, 8s. */
	for (i = 0; i < GUEST_PROGRESS_S * 20 && guest_loops(self->vm) < 20000; i++)
		usleep(50000);
	ASSERT_TRUE(guest_moves(self->vm));
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	ASSERT_EQ(r.wp_unpopulated, !variant->prefault && r.wp_unpopulated);
	TH_LOG("paused %.1f ms, %.2f s, %llu pages by the walk, %llu by faults, %llu zero, fault p50 %llu us p99 %llu us%s",
	       r.pause_ms, r.total_s, (unsigned long long)r.pages_walk,
	       (unsigned long long)r.pages_fault, (unsigned long long)r.zero_pages,
	       (unsigned long long)snap_fault_percentile_us(&r, 50),
	       (unsigned long long)snap_fault_percentile_us(&r, 99),
	       r.wp_unpopulated ? ", WP_UNPOPULATED" : ", pre-faulted");
	ASSERT_FALSE(file_exists(self->partial));
	cfg = mig_config_of(self->vm->kv, &len);
	ASSERT_NE(cfg, NULL);
	snap_layout(cfg, &h);
	fd = open(self->path, O_RDONLY);
	ASSERT_GE(fd, 0);
	for (s = 0; s < cfg->nr_slots; s++) {
		ASSERT_NE(p.copy[s], NULL);
		for (i = 0; i < cfg->slots[s].size / MIG_PAGE_SIZE; i++, total++) {
			ASSERT_EQ(pread(fd, page, MIG_PAGE_SIZE, snap_page_off(&h, cfg, s, i)),
				  (ssize_t)MIG_PAGE_SIZE);
			bad += memcmp(page, p.copy[s] + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE) != 0;
		}
	}
	close(fd);
	ASSERT_EQ(bad, 0ULL) TH_LOG("%llu of %llu pages differ from RAM at the pause",
				     (unsigned long long)bad, (unsigned long long)total);
	ASSERT_EQ(r.pages_walk + r.pages_fault, total);
	/* The guest wrote on during and after; nothing is protected any more. */
	ASSERT_TRUE(guest_moves(self->vm));
	free(cfg);
	free(page);
	at_pause_free(&p);
}

/* Saved, restored into a new VM: the incr check passes and the guest runs on. */
TEST_F_TIMEOUT(snap, restore_incr, 120)
{
	struct snap_opts o = {
		.path = self->path, .prefault = variant->prefault, .writers = variant->writers,
	};
	struct snap_report r;
	struct kvmmig_vm *kv;
	uint64_t edges = 0;

	self->vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	ASSERT_TRUE(guest_moves(self->vm));
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	/* The source can go: the file is the guest now. */
	vm_destroy(self->vm);
	self->vm = NULL;
	ASSERT_EQ(snapshot_load(self->path, vm_create_for_stream, vm_release_for_stream,
				&self->restored, &kv), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(kv, self->restored->kv);
	ASSERT_EQ(kvmmig_vm_resume(kv), 0);
	ASSERT_TRUE(guest_moves(self->restored));
	ASSERT_EQ(vm_pause(self->restored), 0);
	ASSERT_EQ(workload_check_incr(self->restored, &edges), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_resume(self->restored), 0);
	ASSERT_TRUE(guest_moves(self->restored));
}

/* A cancel at the pause: an error, no file, the guest running unprotected. */
TEST_F_TIMEOUT(snap, cancel_leaves_nothing, 120)
{
	struct at_pause p = { .cancel_at_pause = true };
	struct snap_opts o = {
		.path = self->path, .paused = copy_at_pause, .opaque = &p, .cancel = &p.cancel,
	};
	struct snap_report r;
	char why[256];

	self->vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	ASSERT_TRUE(guest_moves(self->vm));
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), -ECANCELED);
	ASSERT_NE(strstr(r.error, "cancelled"), NULL) TH_LOG("%s", r.error);
	ASSERT_FALSE(file_exists(self->path));
	ASSERT_FALSE(file_exists(self->partial));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	at_pause_free(&p);
}

/* A filesystem too small: ENOSPC named, nothing left, the guest unharmed. */
TEST_F_TIMEOUT(snap, full_filesystem, 120)
{
	struct snap_opts o = { .path = self->path };
	struct snap_report r;
	char why[256];

	if (mount("tmpfs", self->dir, "tmpfs", 0, "size=256k"))
		SKIP(return, "cannot mount a small tmpfs: %s", strerror(errno));
	self->vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	ASSERT_TRUE(guest_moves(self->vm));
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), -ENOSPC);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(r.error, "No space left"), NULL) TH_LOG("%s", r.error);
	ASSERT_FALSE(file_exists(self->path));
	ASSERT_FALSE(file_exists(self->partial));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
}

/*
 * @path damaged in @how: loading @load (which is @path or an increment on
 * it) is refused naming @what, and no VM is left made.
 */
static int load_chain_damaged(struct __test_metadata *_metadata, const char *path,
			      const char *load,
			      void (*how)(int fd, struct snap_header *h, struct mig_config *cfg),
			      const char *what)
{
	uint8_t hdr[SNAP_HEADER_SIZE];
	struct vm *vm = NULL;
	struct kvmmig_vm *kv;
	int fd, ret;

	fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -1000;
	how(fd, (struct snap_header *)hdr, (struct mig_config *)(hdr + sizeof(struct snap_header)));
	if (pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -1000;
	close(fd);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ret = snapshot_load(load, vm_create_for_stream, vm_release_for_stream, &vm, &kv);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	if (vm)
		return -1001;	/* refused, yet a VM is left */
	if (ret && !strstr(kvmmig_last_error(), what)) {
		TH_LOG("expected \"%s\" in: %s", what, kvmmig_last_error());
		return -1002;
	}
	return ret;
}

static int load_damaged(struct __test_metadata *_metadata, const char *path,
			void (*how)(int fd, struct snap_header *h, struct mig_config *cfg),
			const char *what)
{
	return load_chain_damaged(_metadata, path, path, how, what);
}

static void truncate_half(int fd, struct snap_header *h, struct mig_config *cfg)
{
	if (ftruncate(fd, h->file_size / 2))
		h->magic = 0;
}

static void flip_data_byte(int fd, struct snap_header *h, struct mig_config *cfg)
{
	uint64_t off = snap_page_off(h, cfg, 1, 7) + 100;
	uint8_t b = 0;

	if (pread(fd, &b, 1, off) != 1)
		return;
	b ^= 0x40;
	if (pwrite(fd, &b, 1, off) != 1)
		h->magic = 0;
}

static void next_version(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->version = SNAP_VERSION + 1;
	snap_header_seal(h, cfg);
}

/* A version 1 file (before ids and presence maps) is refused, not misread. */
static void version_1(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->version = 1;
	snap_header_seal(h, cfg);
}

static void not_complete(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->flags &= ~SNAP_COMPLETE;
	snap_header_seal(h, cfg);
}

static void flip_header_byte(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->data_off ^= 1;
}

static void bad_offsets(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->data_off -= 4096;
	snap_header_seal(h, cfg);
}

static void garbage(int fd, struct snap_header *h, struct mig_config *cfg)
{
	memset(h, 0x5a, sizeof(*h));
}

TEST_F_TIMEOUT(snap, bad_files_refused, 180)
{
	static const struct {
		void (*how)(int fd, struct snap_header *h, struct mig_config *cfg);
		int err;
		const char *what;
	} cases[] = {
		{ truncate_half, -EBADMSG, "truncated" },
		{ flip_data_byte, -EBADMSG, "do not match their checksum" },
		{ next_version, -EPROTONOSUPPORT, "format version" },
		{ version_1, -EPROTONOSUPPORT, "format version 1: this build reads version 2" },
		{ not_complete, -EBADMSG, "incomplete" },
		{ flip_header_byte, -EBADMSG, "checksum mismatch" },
		{ bad_offsets, -EBADMSG, "offsets" },
		{ garbage, -EBADMSG, "not a kvmmig snapshot" },
	};
	struct snap_opts o = { .path = self->path };
	char copy[200];
	struct snap_report r;
	unsigned int i;

	self->vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	ASSERT_TRUE(guest_moves(self->vm));
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	snprintf(copy, sizeof(copy), "%s.copy", self->path);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", self->path, copy);
		ASSERT_EQ(system(cmd), 0);
		ASSERT_EQ(load_damaged(_metadata, copy, cases[i].how, cases[i].what), cases[i].err)
			TH_LOG("case %u", i);
	}
	unlink(copy);
}

/* ---- live increments ---- */

/*
 * At each pause of a series: a random guest writes @iteration from then on
 * (the VMM's own write, reported to the dirty tracker), and, if asked, all
 * of RAM is copied aside.
 */
struct series_pause {
	struct vm *vm;
	struct snap_series *series;
	uint64_t iteration;
	bool copy_ram;
	uint8_t *copy[MIG_MAX_SLOTS];
};

static void series_at_pause(void *opaque, struct kvmmig_vm *kv)
{
	struct series_pause *p = opaque;
	unsigned int i;

	if (p->iteration) {
		p->vm->shared->iteration = p->iteration;
		snap_series_mark_dirty(p->series, GUEST_SHARED_GPA, sizeof(*p->vm->shared));
	}
	for (i = 0; p->copy_ram && i < kv->nr_slots; i++) {
		free(p->copy[i]);
		p->copy[i] = malloc(kv->slots[i].size);
		if (p->copy[i])
			memcpy(p->copy[i], kv->slots[i].hva, kv->slots[i].size);
	}
}

static void series_pause_free(struct series_pause *p)
{
	unsigned int i;

	for (i = 0; i < MIG_MAX_SLOTS; i++)
		free(p->copy[i]);
}

/* Pages of @c that differ from @copy, read block by block through the chain. */
static uint64_t chain_differs(struct snap_chain *c, uint8_t *const *copy, uint64_t *total)
{
	const struct mig_config *cfg = snap_chain_config(c);
	uint8_t *buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	uint64_t b, i, bad = 0;
	unsigned int s;
	int n;

	for (s = 0; buf && s < cfg->nr_slots; s++)
		for (b = 0; b * SNAP_BLOCK_PAGES < cfg->slots[s].size / MIG_PAGE_SIZE; b++) {
			n = snap_chain_read_block(c, s, b, buf, NULL);
			if (n <= 0 || !copy[s])
				return UINT64_MAX;
			for (i = 0; i < (uint64_t)n; i++, (*total)++)
				bad += memcmp(buf + i * MIG_PAGE_SIZE,
					      copy[s] + (b * SNAP_BLOCK_PAGES + i) * MIG_PAGE_SIZE,
					      MIG_PAGE_SIZE) != 0;
		}
	free(buf);
	return buf ? bad : UINT64_MAX;
}

/* Pages of the guest's memory that differ from @copy. */
static uint64_t memory_differs(struct kvmmig_vm *kv, uint8_t *const *copy)
{
	uint64_t i, bad = 0;
	unsigned int s;

	for (s = 0; s < kv->nr_slots; s++)
		for (i = 0; copy[s] && i < kvmmig_slot_pages(&kv->slots[s]); i++)
			bad += memcmp((uint8_t *)kv->slots[s].hva + i * MIG_PAGE_SIZE,
				      copy[s] + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE) != 0;
	return bad;
}

FIXTURE(chain) {
	char dir[64];
	char path[128];
	char incr1[160];
	char incr2[160];
	struct vm *vm;
	struct vm *restored;
	struct snap_series *series;
};

FIXTURE_VARIANT(chain) {
	enum snap_tracker tracker;
};

FIXTURE_VARIANT_ADD(chain, dirty) { .tracker = SNAP_TRACK_DIRTY };
FIXTURE_VARIANT_ADD(chain, pagemap) { .tracker = SNAP_TRACK_PAGEMAP };

FIXTURE_SETUP(chain)
{
	snprintf(self->dir, sizeof(self->dir), "/tmp/kvmmig-chain-XXXXXX");
	ASSERT_NE(mkdtemp(self->dir), NULL);
	snprintf(self->path, sizeof(self->path), "%s/guest.snap", self->dir);
	snprintf(self->incr1, sizeof(self->incr1), "%s.1", self->path);
	snprintf(self->incr2, sizeof(self->incr2), "%s.2", self->path);
}

FIXTURE_TEARDOWN(chain)
{
	char cmd[160];

	snap_series_free(self->series);
	vm_destroy(self->vm);
	vm_destroy(self->restored);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
	if (system(cmd))
		TH_LOG("cannot remove %s", self->dir);
}

/*
 * A running guest of @workload made for @tracker's series (the dirty
 * tracker needs the VM's dirty source), the series in self->series.
 */
static int chain_guest(struct __test_metadata *_metadata, FIXTURE_DATA(chain) *self,
		       const FIXTURE_VARIANT(chain) *variant, enum guest_workload workload,
		       uint64_t wss_pages)
{
	struct vm_config cfg = {
		.nr_vcpus = 2, .ram_bytes = GUEST_RAM, .nr_slots = 2,
		.guest.workload = workload, .guest.iteration = 7, .guest.wss_pages = wss_pages,
	};
	struct dirty_options dopts = { .backend = DIRTY_AUTO };
	int backend = dirty_prepare_config(DIRTY_AUTO, &cfg);

	if (backend < 0 || vm_create(&cfg, &self->vm))
		return -1;
	if (vm_start(self->vm))
		return -1;
	dopts.backend = backend;
	if (snap_series_new(self->vm->kv, variant->tracker, &dopts, &self->series))
		return -1;
	if (snap_series_tracker(self->series) != variant->tracker)
		return 1;
	return 0;
}

#define CHAIN_GUEST(workload, wss_pages)					\
	do {									\
		int __r = chain_guest(_metadata, self, variant, workload, wss_pages); \
		ASSERT_GE(__r, 0) TH_LOG("%s", kvmmig_last_error());		\
		if (__r)							\
			SKIP(return, "%s", snap_series_fallback(self->series));	\
		ASSERT_TRUE(guest_moves(self->vm));				\
	} while (0)

/*
 * An increment through its chain (base and two increments) equals RAM at
 * its pause, every byte, a random guest writing @wss_pages per vCPU (0:
 * its whole slice) throughout.
 */
static void incr_exact(struct __test_metadata *_metadata, FIXTURE_DATA(chain) *self,
		       const FIXTURE_VARIANT(chain) *variant, uint64_t wss_pages)
{
	struct series_pause p = { 0 };
	struct snap_opts o = {
		.path = self->path, .paused = series_at_pause, .opaque = &p,
	};
	struct snap_chain *c;
	struct snap_report r;
	uint64_t bad, total = 0, i;

	CHAIN_GUEST(WORKLOAD_RANDOM, wss_pages);
	p.vm = self->vm;
	p.series = o.series = self->series;
	for (i = 0; i < GUEST_PROGRESS_S * 20 && guest_loops(self->vm) < 20000; i++)
		usleep(50000);
	/* 8s from the base on, 9s from the first increment on, 10s from the second. */
	p.iteration = 8;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	ASSERT_FALSE(r.incremental);
	ASSERT_TRUE(guest_moves(self->vm));
	p.iteration = 9;
	o.path = self->incr1;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	/*
	 * At once: many pages the guest wrote during the first increment's
	 * walk are not written again before the second's pause, so only the
	 * tracking during a walk (faults, with the pagemap tracker) has them.
	 */
	p.iteration = 10;
	p.copy_ram = true;
	o.path = self->incr2;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	TH_LOG("increment (%s): %llu of %llu pages, %llu by faults, paused %.1f ms + %.1f ms",
	       r.tracker, (unsigned long long)r.pages_saved, (unsigned long long)r.pages_total,
	       (unsigned long long)r.pages_fault, r.pause_ms, r.handover_ms);
	ASSERT_TRUE(r.incremental);
	ASSERT_STREQ(r.tracker, snap_tracker_name(variant->tracker));
	/* The GDT, code and page tables are not written: not in the increment. */
	ASSERT_LT(r.pages_saved, r.pages_total);
	ASSERT_EQ(snap_chain_open(self->incr2, &c), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(snap_chain_depth(c), 3U);
	ASSERT_STREQ(snap_chain_path(c, 1), self->incr1);
	ASSERT_STREQ(snap_chain_path(c, 2), self->path);
	bad = chain_differs(c, p.copy, &total);
	snap_chain_close(c);
	ASSERT_EQ(bad, 0ULL) TH_LOG("%llu of %llu pages differ from RAM at the increment's pause",
				     (unsigned long long)bad, (unsigned long long)total);
	ASSERT_EQ(total, r.pages_total);
	/* The guest writes on, nothing protected, while the series still tracks. */
	ASSERT_TRUE(guest_moves(self->vm));
	snap_series_free(self->series);
	self->series = NULL;
	ASSERT_TRUE(guest_moves(self->vm));
	series_pause_free(&p);
}

/* Pages all over RAM: more runs than SNAP_MAX_RUNS, whole slots registered. */
TEST_F_TIMEOUT(chain, incr_point_in_time_exact, 180)
{
	incr_exact(_metadata, self, variant, 0);
}

/* A small working set: only the increment's runs are registered (lent). */
TEST_F_TIMEOUT(chain, incr_point_in_time_exact_few_runs, 180)
{
	incr_exact(_metadata, self, variant, 32);
}

/* Base and two increments of an incr guest: restored exactly, it checks and runs on. */
TEST_F_TIMEOUT(chain, restore_last_instant, 180)
{
	struct series_pause p = { 0 };
	struct snap_opts o = { .path = self->path, .paused = series_at_pause, .opaque = &p };
	const char *files[] = { self->path, self->incr1, self->incr2 };
	struct snap_report r;
	struct kvmmig_vm *kv;
	uint64_t edges = 0, bad;
	unsigned int i;
	char why[256];

	CHAIN_GUEST(WORKLOAD_INCR, 0);
	o.series = self->series;
	p.vm = self->vm;
	p.series = self->series;
	for (i = 0; i < 3; i++) {
		ASSERT_TRUE(guest_moves(self->vm));
		p.copy_ram = i == 2;
		o.path = files[i];
		ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
		ASSERT_EQ(r.incremental, i > 0);
	}
	snap_series_free(self->series);
	self->series = NULL;
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	vm_destroy(self->vm);
	self->vm = NULL;
	ASSERT_EQ(snapshot_load(self->incr2, vm_create_for_stream, vm_release_for_stream,
				&self->restored, &kv), 0) TH_LOG("%s", kvmmig_last_error());
	bad = memory_differs(kv, p.copy);
	ASSERT_EQ(bad, 0ULL) TH_LOG("%llu pages differ from RAM at the last pause",
				     (unsigned long long)bad);
	ASSERT_EQ(kvmmig_vm_resume(kv), 0);
	ASSERT_TRUE(guest_moves(self->restored));
	ASSERT_EQ(vm_pause(self->restored), 0);
	ASSERT_EQ(workload_check_incr(self->restored, &edges), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_resume(self->restored), 0);
	ASSERT_TRUE(guest_moves(self->restored));
	series_pause_free(&p);
}

/*
 * Base and two increments of an incr guest restored lazily: every block
 * comes from the newest file that has it, on demand or in the background;
 * the guest checks and runs on.
 */
TEST_F_TIMEOUT(chain, lazy_restore_last_instant, 180)
{
	struct snap_opts o = { .path = self->path };
	const char *files[] = { self->path, self->incr1, self->incr2 };
	struct snap_restore_opts ro = { .readers = 2 };
	struct snap_lazy_report lr;
	struct snap_report r;
	struct snap_lazy *z;
	struct kvmmig_vm *kv;
	uint64_t edges = 0;
	unsigned int i;

	CHAIN_GUEST(WORKLOAD_INCR, 0);
	o.series = self->series;
	for (i = 0; i < 3; i++) {
		ASSERT_TRUE(guest_moves(self->vm));
		o.path = files[i];
		ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
		ASSERT_EQ(r.incremental, i > 0);
	}
	snap_series_free(self->series);
	self->series = NULL;
	vm_destroy(self->vm);
	self->vm = NULL;
	ASSERT_EQ(snapshot_lazy_start(self->incr2, vm_create_for_stream, vm_release_for_stream,
				      &self->restored, &ro, &z, &kv), 0)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(snapshot_lazy_finish(z, 60000, &lr), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_GT(lr.fill.pages_demand + lr.fill.pages_background, 0ULL);
	ASSERT_TRUE(guest_moves(self->restored));
	ASSERT_EQ(vm_pause(self->restored), 0);
	ASSERT_EQ(workload_check_incr(self->restored, &edges), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_resume(self->restored), 0);
	ASSERT_TRUE(guest_moves(self->restored));
}

static void cancel_at_pause(void *opaque, struct kvmmig_vm *kv)
{
	kvmmig_cancel_set(opaque, 1);
}

/*
 * An increment cancelled at its pause leaves no file, ends tracking (the
 * guest runs unprotected, dirty logging off) and the next snapshot of the
 * series is full, the one after an increment on it again.
 */
TEST_F_TIMEOUT(chain, cancel_restarts_series, 180)
{
	volatile sig_atomic_t cancel = 0;
	struct snap_opts o = { .path = self->path };
	struct snap_report r;
	struct kvmmig_vm *kv;
	char why[256];

	CHAIN_GUEST(WORKLOAD_INCR, 0);
	o.series = self->series;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	o.path = self->incr1;
	o.paused = cancel_at_pause;
	o.opaque = (void *)&cancel;
	o.cancel = &cancel;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), -ECANCELED);
	ASSERT_NE(strstr(r.error, "cancelled"), NULL) TH_LOG("%s", r.error);
	ASSERT_FALSE(file_exists(self->incr1));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	kvmmig_cancel_set(&cancel, 0);
	o.paused = NULL;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	ASSERT_FALSE(r.incremental);
	ASSERT_EQ(r.pages_saved, r.pages_total);
	o.path = self->incr2;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	ASSERT_TRUE(r.incremental);
	ASSERT_STREQ(r.base_path, self->incr1);
	snap_series_free(self->series);
	self->series = NULL;
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	ASSERT_EQ(snapshot_load(self->incr2, vm_create_for_stream, vm_release_for_stream,
				&self->restored, &kv), 0) TH_LOG("%s", kvmmig_last_error());
}

static uint64_t incr_id;	/* the increment's id, for other_id() and loop_back() */

static void other_id(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->id ^= 1;
	snap_header_seal(h, cfg);
}

static void loop_back(int fd, struct snap_header *h, struct mig_config *cfg)
{
	h->flags |= SNAP_INCREMENTAL;
	h->base_id = incr_id;
	snprintf(h->base_name, sizeof(h->base_name), "guest.snap.1");
	snap_header_seal(h, cfg);
}

static void climb_out(int fd, struct snap_header *h, struct mig_config *cfg)
{
	snprintf(h->base_name, sizeof(h->base_name), "../guest.snap");
	snap_header_seal(h, cfg);
}

static void flip_map_bit(int fd, struct snap_header *h, struct mig_config *cfg)
{
	uint8_t b = 0;

	if (pread(fd, &b, 1, h->map_off + 3) != 1)
		h->magic = 0;
	b ^= 0x10;
	if (pwrite(fd, &b, 1, h->map_off + 3) != 1)
		h->magic = 0;
}

static void no_change(int fd, struct snap_header *h, struct mig_config *cfg)
{
}

/* A broken chain is refused naming the file and what is wrong with it. */
TEST_F_TIMEOUT(chain, bad_chains_refused, 180)
{
	struct snap_opts o = { .path = self->path };
	struct snap_report r;
	struct kvmmig_vm *kv;
	char cmd[512], why[256];
	struct {
		const char *damaged;
		void (*how)(int fd, struct snap_header *h, struct mig_config *cfg);
		const char *sh;		/* run first in the directory */
		int err;
		const char *what;
	} cases[] = {
		{ self->path, other_id, "", -EBADMSG, "is not the base of" },
		{ self->path, loop_back, "", -ELOOP, "chain loops" },
		{ self->incr1, climb_out, "", -EBADMSG, "expected a file name in the same directory" },
		{ self->incr1, flip_map_bit, "", -EBADMSG, "presence map is corrupted" },
		{ self->incr1, no_change, "rm guest.snap", -ENOENT, "the base of" },
	};
	unsigned int i;

	CHAIN_GUEST(WORKLOAD_INCR, 0);
	o.series = self->series;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	o.path = self->incr1;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	incr_id = r.id;
	snap_series_free(self->series);
	self->series = NULL;
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	snprintf(cmd, sizeof(cmd), "cd %s && cp --sparse=always guest.snap base.orig && cp --sparse=always guest.snap.1 incr.orig",
		 self->dir);
	ASSERT_EQ(system(cmd), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cmd, sizeof(cmd), "cd %s && %s", self->dir, cases[i].sh[0] ? cases[i].sh : "true");
		ASSERT_EQ(system(cmd), 0);
		ASSERT_EQ(load_chain_damaged(_metadata, cases[i].damaged, self->incr1, cases[i].how,
					     cases[i].what), cases[i].err)
			TH_LOG("case %u: %s", i, kvmmig_last_error());
		/* The message names the file. */
		ASSERT_NE(strstr(kvmmig_last_error(), self->dir), NULL) TH_LOG("%s", kvmmig_last_error());
		snprintf(cmd, sizeof(cmd), "cd %s && cp --sparse=always base.orig guest.snap && cp --sparse=always incr.orig guest.snap.1",
			 self->dir);
		ASSERT_EQ(system(cmd), 0);
	}
	/* Intact again, the chain loads. */
	ASSERT_EQ(snapshot_load(self->incr1, vm_create_for_stream, vm_release_for_stream,
				&self->restored, &kv), 0) TH_LOG("%s", kvmmig_last_error());
}

/*
 * Restores from one incr guest's snapshot: lazy (the guest runs at once,
 * its pages come on demand, readers load the rest) and eager with four
 * reader threads.
 */
FIXTURE(restore) {
	char dir[64];
	char path[128];
	struct vm *restored;
};

FIXTURE_SETUP(restore)
{
	struct snap_opts o = { .path = self->path };
	struct snap_report r;
	struct vm *vm;

	snprintf(self->dir, sizeof(self->dir), "/tmp/kvmmig-snap-XXXXXX");
	ASSERT_NE(mkdtemp(self->dir), NULL);
	snprintf(self->path, sizeof(self->path), "%s/guest.snap", self->dir);
	vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(vm, NULL);
	ASSERT_TRUE(guest_moves(vm));
	ASSERT_EQ(snapshot_save(vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	vm_destroy(vm);
}

FIXTURE_TEARDOWN(restore)
{
	vm_destroy(self->restored);
	unlink(self->path);
	rmdir(self->dir);
}

/* The incr check passes, and the guest runs on. */
static void check_incr(struct __test_metadata *_metadata, struct vm *vm)
{
	uint64_t edges = 0;

	ASSERT_TRUE(guest_moves(vm));
	ASSERT_EQ(vm_pause(vm), 0);
	ASSERT_EQ(workload_check_incr(vm, &edges), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(vm_resume(vm), 0);
	ASSERT_TRUE(guest_moves(vm));
}

/*
 * The guest runs on pages it faults in alone first (no background reading
 * until finish), then everything is loaded and the memory is unregistered.
 */
static void lazy_incr(struct __test_metadata *_metadata, FIXTURE_DATA(restore) *self,
		      unsigned int readers, bool no_hint)
{
	struct snap_restore_opts o = { .readers = readers, .no_hint = no_hint,
				       .demand_only = true };
	struct snap_lazy_report r;
	struct page_fill_stats st;
	struct snap_lazy *z;
	struct kvmmig_vm *kv;
	uint64_t total = 0;
	unsigned int i;

	ASSERT_EQ(snapshot_lazy_start(self->path, vm_create_for_stream, vm_release_for_stream,
				      &self->restored, &o, &z, &kv), 0)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(kv, self->restored->kv);
	ASSERT_EQ(uffd_missing_flag(kv->slots[1].hva), 1);
	/*
	 * Running on demand alone: it faulted, and each page asked for came
	 * with its block, placed by the fault thread (nothing else places),
	 * which may be serving one request right now.
	 */
	ASSERT_TRUE(guest_moves(self->restored));
	snapshot_lazy_stats(z, &st);
	for (i = 0; i < kv->nr_slots; i++)
		total += kvmmig_slot_pages(&kv->slots[i]);
	ASSERT_GT(st.pages_demand, 0ULL);
	ASSERT_LE(st.pages_demand, st.requests);
	ASSERT_LE(st.requests, st.pages_demand + 1);
	ASSERT_EQ(st.dropped, 0ULL);
	ASSERT_EQ(snapshot_lazy_finish(z, 60000, &r), 0) TH_LOG("%s", kvmmig_last_error());
	TH_LOG("running after %.1f ms, loaded after %.2f s; %llu faults, %llu demand, %llu background pages, p50 %llu us, p99 %llu us, blocked %.1f ms",
	       r.running_ms, r.loaded_s, (unsigned long long)r.fill.faults,
	       (unsigned long long)r.fill.pages_demand,
	       (unsigned long long)r.fill.pages_background,
	       (unsigned long long)lat_hist_percentile_us(r.fill.fault_us_hist, 50),
	       (unsigned long long)lat_hist_percentile_us(r.fill.fault_us_hist, 99),
	       r.fill.blocktime_ns / 1e6);
	ASSERT_EQ(r.fill.pages_demand + r.fill.pages_background, total);
	ASSERT_GE(r.fill.faults, st.faults);
	/* Nothing registered any more. */
	for (i = 0; i < kv->nr_slots; i++)
		ASSERT_EQ(uffd_missing_flag(kv->slots[i].hva), 0);
	ASSERT_GT(lat_hist_count(r.fill.fault_us_hist), 0ULL);
	check_incr(_metadata, self->restored);
}

TEST_F_TIMEOUT(restore, lazy_incr, 120)
{
	lazy_incr(_metadata, self, 1, false);
}

TEST_F_TIMEOUT(restore, lazy_incr_four_readers_no_hint, 120)
{
	lazy_incr(_metadata, self, 4, true);
}

/* Flip one byte in page @page of @slot. */
static int corrupt_page(const char *path, unsigned int slot, uint64_t page)
{
	uint8_t hdr[SNAP_HEADER_SIZE], b;
	struct snap_header *h = (struct snap_header *)hdr;
	struct mig_config *cfg = (struct mig_config *)(hdr + sizeof(*h));
	int fd = open(path, O_RDWR), ret = -1;
	uint64_t off;

	if (fd < 0)
		return -1;
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		goto out;
	off = snap_page_off(h, cfg, slot, page) + 100;
	if (pread(fd, &b, 1, off) != 1)
		goto out;
	b ^= 0x40;
	if (pwrite(fd, &b, 1, off) == 1)
		ret = 0;
out:
	close(fd);
	return ret;
}

/*
 * A lazy restore that meets a corrupted block, found by a background
 * reader (slot 1's page 7) or by the guest's first faults (all of slot 0,
 * where its code and page tables are): it fails naming the pages, the
 * guest is stopped and released, and nothing is left.
 */
static void lazy_bad_block(struct __test_metadata *_metadata, FIXTURE_DATA(restore) *self,
			   bool on_demand)
{
	struct snap_restore_opts o = { .readers = 2, .demand_only = on_demand };
	struct page_fill_stats st = { 0 };
	struct snap_lazy_report r;
	struct snap_lazy *z;
	struct kvmmig_vm *kv;
	unsigned int i;
	uint64_t p;

	if (on_demand) {
		for (p = 0; p < 64; p++)
			ASSERT_EQ(corrupt_page(self->path, 0, p * 64), 0);
	} else {
		ASSERT_EQ(corrupt_page(self->path, 1, 7), 0);
	}
	ASSERT_EQ(snapshot_lazy_start(self->path, vm_create_for_stream, vm_release_for_stream,
				      &self->restored, &o, &z, &kv), 0)
		TH_LOG("%s", kvmmig_last_error());
	/*
	 * The guest asks for its first pages at once (and gets nothing: do
	 * not touch its memory here, this thread would wait for ever too).
	 */
	for (i = 0; on_demand && i < GUEST_PROGRESS_S * 20; i++) {
		snapshot_lazy_stats(z, &st);
		if (st.requests)
			break;
		usleep(50000);
	}
	if (on_demand)
		ASSERT_GT(st.requests, 0ULL);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(snapshot_lazy_finish(z, 60000, &r), -EBADMSG);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "do not match their checksum"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_NE(strstr(kvmmig_last_error(), on_demand ? "slot 0, pages" : "slot 1, pages 0-63"),
		  NULL) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(self->restored, NULL);	/* released */
}

TEST_F_TIMEOUT(restore, lazy_bad_block_in_background, 120)
{
	lazy_bad_block(_metadata, self, false);
}

TEST_F_TIMEOUT(restore, lazy_bad_block_on_demand, 120)
{
	lazy_bad_block(_metadata, self, true);
}

/* Four readers load exactly the file: every page as saved (holes as zeros). */
TEST_F_TIMEOUT(restore, eager_four_readers_equal_file, 120)
{
	struct snap_restore_opts o = { .readers = 4 };
	uint8_t hdr[SNAP_HEADER_SIZE], *page = malloc(MIG_PAGE_SIZE);
	struct snap_header *h = (struct snap_header *)hdr;
	struct mig_config *cfg = (struct mig_config *)(hdr + sizeof(*h));
	struct kvmmig_vm *kv;
	uint64_t i, bad = 0, data = 0;
	unsigned int s;
	int fd;

	ASSERT_NE(page, NULL);
	ASSERT_EQ(snapshot_load_with(self->path, vm_create_for_stream, vm_release_for_stream,
				     &self->restored, &o, &kv), 0) TH_LOG("%s", kvmmig_last_error());
	fd = open(self->path, O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	/* Not resumed: memory is exactly what the restore wrote. */
	for (s = 0; s < kv->nr_slots; s++) {
		for (i = 0; i < kvmmig_slot_pages(&kv->slots[s]); i++) {
			ASSERT_EQ(pread(fd, page, MIG_PAGE_SIZE, snap_page_off(h, cfg, s, i)),
				  (ssize_t)MIG_PAGE_SIZE);
			bad += memcmp(page, (uint8_t *)kv->slots[s].hva + i * MIG_PAGE_SIZE,
				      MIG_PAGE_SIZE) != 0;
			data += page[0] || memcmp(page, page + 1, MIG_PAGE_SIZE - 1);
		}
	}
	close(fd);
	ASSERT_EQ(bad, 0ULL);
	ASSERT_GT(data, 0ULL);		/* the file is not all holes */
	ASSERT_EQ(kvmmig_vm_resume(kv), 0);
	check_incr(_metadata, self->restored);
	free(page);
}

/* More readers than allowed: refused by name, no VM made. */
TEST_F(restore, readers_out_of_range)
{
	struct snap_restore_opts o = { .readers = SNAP_MAX_READERS + 1 };
	struct snap_lazy *z;
	struct kvmmig_vm *kv;

	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ASSERT_EQ(snapshot_load_with(self->path, vm_create_for_stream, vm_release_for_stream,
				     &self->restored, &o, &kv), -EINVAL);
	ASSERT_EQ(snapshot_lazy_start(self->path, vm_create_for_stream, vm_release_for_stream,
				      &self->restored, &o, &z, &kv), -EINVAL);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_NE(strstr(kvmmig_last_error(), "expected 1 to 64"), NULL);
	ASSERT_EQ(self->restored, NULL);
}

TEST_HARNESS_MAIN
