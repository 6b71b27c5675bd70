// SPDX-License-Identifier: GPL-2.0-only
/*
 * Background snapshots (user/lib/snapshot_*.c) of running built-in
 * guests, with one writer and four, with and without WP_UNPOPULATED.  Point-in-time exactness: at the pause the test copies all of
 * guest RAM aside, and while the guest goes on writing the saved file
 * must equal that copy byte for byte.  Restore: an incr guest saved and
 * restored passes QEMU migration-test's one-edge check and keeps running.
 * Failures: a cancel, a full filesystem and bad files (truncated,
 * corrupted, another version, incomplete, not a snapshot) each end with a
 * clear error, no file left behind, and the source guest running with
 * nothing write-protected (its writes go on).
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

/* A file damaged in @how is refused naming @what, and no VM is left made. */
static int load_damaged(struct __test_metadata *_metadata, const char *path,
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
	ret = snapshot_load(path, vm_create_for_stream, vm_release_for_stream, &vm, &kv);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	if (vm)
		return -1001;	/* refused, yet a VM is left */
	if (ret && !strstr(kvmmig_last_error(), what)) {
		TH_LOG("expected \"%s\" in: %s", what, kvmmig_last_error());
		return -1002;
	}
	return ret;
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

TEST_HARNESS_MAIN
