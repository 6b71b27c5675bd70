// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the snapshot file reader (user/lib/snapshot_file.c
 * and snapshot_load.c), the code an untrusted snapshot file reaches.  The
 * first input byte picks the entry point: a header block checked as is by
 * snap_header_check(), the same with the harness making magic, version,
 * flags and the header checksum valid so the checks behind them are
 * reached, a whole file restored as is, or a valid file the harness builds
 * from the input (a small guest, its pages, vCPU states and every
 * checksum) and then damages in ways the input picks.  Restore runs
 * against a fake VM: each slot is malloc'd at its exact size (so
 * AddressSanitizer sees any write outside it) and the vCPU states land in
 * a buffer; there is no KVM here.  The harness checks what the reader
 * promises: an accepted header describes a file no bigger than the one
 * checked, an undamaged file always loads, and a loaded file put exactly
 * its pages and vCPU states into the guest.  Built with
 * -DSNAPSHOT_FUZZ_SEEDS, this file is instead a program that writes a seed
 * corpus of valid inputs for every mode (selftests/fuzz.mk).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "csum.h"
#define FUZZ_NAME "snapshot_fuzz"
#include "fuzz_util.h"
#include "log.h"
#include "snapshot.h"

enum fuzz_mode {
	FUZZ_HEADER,		/* a header block as is */
	FUZZ_HEADER_SEALED,	/* ... with magic, version, flags and hcrc made valid */
	FUZZ_FILE,		/* a whole file restored as is */
	FUZZ_FILE_BUILT,	/* a valid file built from the input, then damaged */
	NR_FUZZ_MODES,
};

/* Guests the harness builds: small enough to build for every input. */
#define BUILT_MAX_SLOTS		3
#define BUILT_MAX_PAGES		70	/* per slot: more than one block of 64 */
#define BUILT_MAX_VCPUS		2
#define BUILT_MAX_STATE		64
#define MAX_DAMAGE		3
/* A fake VM refuses guests bigger than this (the file bounds them anyway). */
#define FAKE_MAX_RAM		(64ULL << 20)

/* ---- header checks ---- */

/* What an accepted header promises about the file of @file_size bytes. */
static void header_promises(const void *buf, size_t len, uint64_t file_size,
			    const struct mig_config *cfg)
{
	const struct snap_header *h = buf;

	FUZZ_BUG_ON((const uint8_t *)cfg < (const uint8_t *)buf ||
		    (const uint8_t *)cfg + h->config_len > (const uint8_t *)buf + len);
	FUZZ_BUG_ON(h->file_size > file_size);
	FUZZ_BUG_ON(h->data_off > h->file_size || cfg->ram_bytes > h->file_size - h->data_off);
	FUZZ_BUG_ON(h->crc_off + snap_nr_blocks(cfg) * sizeof(uint32_t) > h->map_off);
	FUZZ_BUG_ON(h->map_off + snap_map_size(cfg) > h->data_off);
	FUZZ_BUG_ON(h->vcpu_off + (uint64_t)cfg->nr_vcpus * cfg->vcpu_state_size > h->crc_off);
}

static void fuzz_header(struct fuzz_in *in, bool sealed)
{
	/* Any size: a sparse file of 2^60 bytes costs an attacker nothing. */
	uint64_t file_size = in_u16(in) | (uint64_t)in_u16(in) << 16 |
			     (uint64_t)in_u16(in) << 32 | (uint64_t)in_u16(in) << 48;
	uint8_t *buf = malloc(SNAP_HEADER_SIZE);
	struct snap_header *h = (struct snap_header *)buf;
	const struct mig_config *cfg;
	size_t len = in->n < SNAP_HEADER_SIZE ? in->n : SNAP_HEADER_SIZE;

	FUZZ_BUG_ON(!buf);
	in_fill(in, buf, SNAP_HEADER_SIZE);
	if (sealed && len >= sizeof(*h)) {
		h->magic = SNAP_MAGIC;
		h->version = SNAP_VERSION;
		h->flags |= SNAP_COMPLETE;
		if (h->config_len <= SNAP_HEADER_SIZE - sizeof(*h))
			snap_header_seal(h, (const struct mig_config *)(h + 1));
		len = SNAP_HEADER_SIZE;
	}
	/* Exactly @len valid bytes: ASan sees a read past them. */
	buf = realloc(buf, len ? len : 1);
	FUZZ_BUG_ON(!buf);
	if (!snap_header_check("the fuzzed header", buf, len, file_size, &cfg))
		header_promises(buf, len, file_size, cfg);
	free(buf);
}

/* ---- a fake VM to restore into ---- */

struct fake_vmm {
	uint64_t file_size;		/* of the file being restored */
	struct kvmmig_vm *vm;
	uint8_t states[MIG_MAX_VCPUS][BUILT_MAX_STATE];
	unsigned int loaded;		/* vCPU states loaded */
};

static int fake_pause(void *opaque)
{
	return 0;
}

static int fake_save_state(void *opaque, unsigned int vcpu, void *state)
{
	return -EOPNOTSUPP;
}

static int fake_load_state(void *opaque, unsigned int vcpu, const void *state)
{
	struct fake_vmm *f = opaque;

	FUZZ_BUG_ON(vcpu >= f->vm->nr_vcpus);
	if (vcpu < MIG_MAX_VCPUS)
		memcpy(f->states[vcpu], state, f->vm->ops.state_size < BUILT_MAX_STATE ?
						      f->vm->ops.state_size : BUILT_MAX_STATE);
	f->loaded++;
	return 0;
}

static void fake_release(void *opaque, struct kvmmig_vm *vm, bool running)
{
	struct fake_vmm *f = opaque;
	unsigned int i;

	FUZZ_BUG_ON(vm != f->vm || running);
	for (i = 0; i < vm->nr_slots; i++)
		free(vm->slots[i].hva);
	free(vm);
	f->vm = NULL;
}

static int fake_create(void *opaque, const struct mig_config *cfg, struct kvmmig_vm **out)
{
	struct fake_vmm *f = opaque;
	struct kvmmig_vm *vm;
	unsigned int i;

	/* The header check promised that the file holds all of this RAM. */
	FUZZ_BUG_ON(cfg->ram_bytes > f->file_size);
	if (cfg->ram_bytes > FAKE_MAX_RAM)
		return -ENOMEM;
	vm = calloc(1, sizeof(*vm));
	FUZZ_BUG_ON(!vm);
	vm->nr_vcpus = cfg->nr_vcpus;
	vm->ops = (struct kvmmig_vm_ops){
		.pause = fake_pause, .resume = fake_pause, .state_size = cfg->vcpu_state_size,
		.save_state = fake_save_state, .load_state = fake_load_state,
	};
	vm->opaque = f;
	f->vm = vm;
	for (i = 0; i < cfg->nr_slots; i++) {
		vm->slots[i] = (struct kvmmig_slot){
			.id = i, .gpa = cfg->slots[i].gpa, .size = cfg->slots[i].size,
			.hva = calloc(1, cfg->slots[i].size), .zeroed = true,
		};
		FUZZ_BUG_ON(!vm->slots[i].hva);
		vm->nr_slots++;
	}
	*out = vm;
	return 0;
}

/* @file as a file (in memory) restored into a fake VM: 0 and the VM, or -errno. */
static int restore(const uint8_t *file, size_t len, struct fake_vmm *f)
{
	struct kvmmig_vm *vm;
	char path[64];
	int fd, ret;

	fd = memfd_create("snapshot_fuzz", MFD_CLOEXEC);
	FUZZ_BUG_ON(fd < 0);
	FUZZ_BUG_ON(len && write(fd, file, len) != (ssize_t)len);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	memset(f, 0, sizeof(*f));
	f->file_size = len;
	ret = snapshot_load(path, fake_create, fake_release, f, &vm);
	close(fd);
	FUZZ_BUG_ON(ret && f->vm);	/* refused, yet a VM is left */
	FUZZ_BUG_ON(!ret && vm != f->vm);
	return ret;
}

/* A restored VM holds exactly the file's pages and vCPU states. */
static void restore_promises(const uint8_t *file, size_t len, struct fake_vmm *f)
{
	const struct snap_header *h = (const void *)file;
	const struct mig_config *cfg = (const void *)(h + 1);
	struct kvmmig_vm *vm = f->vm;
	unsigned int s, i;

	FUZZ_BUG_ON(len < SNAP_HEADER_SIZE || vm->nr_slots != cfg->nr_slots);
	FUZZ_BUG_ON(f->loaded != cfg->nr_vcpus);
	for (s = 0; s < vm->nr_slots; s++) {
		uint64_t off = snap_page_off(h, cfg, s, 0);

		FUZZ_BUG_ON(off + vm->slots[s].size > len);
		FUZZ_BUG_ON(memcmp(vm->slots[s].hva, file + off, vm->slots[s].size));
	}
	for (i = 0; i < cfg->nr_vcpus && cfg->vcpu_state_size <= BUILT_MAX_STATE; i++)
		FUZZ_BUG_ON(memcmp(f->states[i], file + h->vcpu_off +
				   (size_t)i * cfg->vcpu_state_size, cfg->vcpu_state_size));
	fake_release(f, vm, false);
}

static void fuzz_file(const uint8_t *data, size_t len)
{
	/* The reader's own copy is aligned; the promises read this one. */
	uint8_t *file = malloc(len ? len : 1);
	struct fake_vmm f;

	FUZZ_BUG_ON(!file);
	memcpy(file, data, len);
	if (!restore(file, len, &f))
		restore_promises(file, len, &f);
	free(file);
}

/* ---- a valid file from the input ---- */

static struct mig_config *built_config(struct fuzz_in *in)
{
	uint32_t nr_slots = 1 + in_byte(in) % BUILT_MAX_SLOTS;
	struct mig_config *cfg = calloc(1, mig_config_size(nr_slots));
	uint64_t gpa = 0;
	uint32_t i;

	FUZZ_BUG_ON(!cfg);
	cfg->nr_slots = nr_slots;
	cfg->nr_vcpus = 1 + in_byte(in) % BUILT_MAX_VCPUS;
	cfg->page_size = MIG_PAGE_SIZE;
	cfg->vcpu_state_size = 1 + in_byte(in) % BUILT_MAX_STATE;
	for (i = 0; i < nr_slots; i++) {
		gpa += (in_byte(in) % 4) * (uint64_t)MIG_PAGE_SIZE;
		cfg->slots[i].gpa = gpa;
		cfg->slots[i].size = (1 + in_byte(in) % BUILT_MAX_PAGES) * (uint64_t)MIG_PAGE_SIZE;
		gpa += cfg->slots[i].size;
		cfg->ram_bytes += cfg->slots[i].size;
	}
	return cfg;
}

/* A full snapshot's presence map: every page of every block, and its checksum. */
static void built_map(uint8_t *file, struct snap_header *h, const struct mig_config *cfg)
{
	uint64_t *map = (uint64_t *)(file + h->map_off), b = 0, first, n;
	unsigned int s;

	for (s = 0; s < cfg->nr_slots; s++) {
		uint64_t npages = cfg->slots[s].size / MIG_PAGE_SIZE;

		for (first = 0; first < npages; first += SNAP_BLOCK_PAGES, b++) {
			n = snap_block_len(npages, first / SNAP_BLOCK_PAGES);
			map[b] = n == SNAP_BLOCK_PAGES ? ~0ULL : (1ULL << n) - 1;
		}
	}
	h->map_crc = crc32c(0, map, b * sizeof(*map));
	h->id = 1;
}

/* Every checksum of @file (laid out as @h says) computed, the header sealed complete. */
static void built_seal(uint8_t *file, struct snap_header *h, const struct mig_config *cfg)
{
	uint32_t crcs[SNAP_BLOCK_PAGES], *table = (uint32_t *)(file + h->crc_off);
	uint64_t b = 0, first, i;
	unsigned int s;

	for (s = 0; s < cfg->nr_slots; s++) {
		uint64_t npages = cfg->slots[s].size / MIG_PAGE_SIZE;

		for (first = 0; first < npages; first += SNAP_BLOCK_PAGES, b++) {
			uint64_t n = npages - first < SNAP_BLOCK_PAGES ? npages - first :
									 SNAP_BLOCK_PAGES;

			for (i = 0; i < n; i++)
				crcs[i] = crc32c(0, file + snap_page_off(h, cfg, s, first + i),
						 MIG_PAGE_SIZE);
			table[b] = crc32c(0, crcs, n * sizeof(crcs[0]));
		}
	}
	h->table_crc = crc32c(0, table, b * sizeof(*table));
	built_map(file, h, cfg);
	h->vcpu_crc = crc32c(0, file + h->vcpu_off,
			     (size_t)cfg->nr_vcpus * cfg->vcpu_state_size);
	h->flags |= SNAP_COMPLETE;
	snap_header_seal(h, cfg);
	memcpy(file, h, sizeof(*h));
	memcpy(file + sizeof(*h), cfg, h->config_len);
}

/* A complete, valid snapshot file of a guest the input describes; its length in *len. */
static uint8_t *built_file(struct fuzz_in *in, size_t *len)
{
	struct mig_config *cfg = built_config(in);
	struct snap_header h;
	uint8_t *file, *p;
	uint64_t i, pages = cfg->ram_bytes / MIG_PAGE_SIZE;

	snap_layout(cfg, &h);
	h.taken_ns = in_u16(in);
	file = calloc(1, h.file_size);
	FUZZ_BUG_ON(!file);
	in_fill(in, file + h.vcpu_off, (size_t)cfg->nr_vcpus * cfg->vcpu_state_size);
	/* Zero pages (holes) or a page of one byte with its index in it. */
	for (i = 0; i < pages; i++) {
		uint8_t b = in_byte(in);

		p = file + h.data_off + i * MIG_PAGE_SIZE;
		if (b & 1)
			continue;
		memset(p, b, MIG_PAGE_SIZE);
		memcpy(p + (b % 64) * 8, &i, sizeof(i));
	}
	built_seal(file, &h, cfg);
	*len = h.file_size;
	free(cfg);
	return file;
}

/*
 * One damage the input picks: a flipped byte anywhere, a shorter file, a
 * header field or a configuration byte changed (with the header sealed
 * again, so the checks behind its checksum see it).  *len may shrink.
 */
static void damage(struct fuzz_in *in, uint8_t *file, size_t *len)
{
	struct snap_header *h = (struct snap_header *)file;
	uint64_t at = (in_u16(in) | (uint64_t)in_byte(in) << 16) % *len;
	uint64_t v = in_u16(in) | (uint64_t)in_u16(in) << 16 | (uint64_t)in_u16(in) << 48;

	switch (in_byte(in) % 4) {
	case 0:
		file[at] ^= 1 << (v % 8);
		break;
	case 1:
		*len = at;
		break;
	case 2:
		/* One of the header's 8-byte words, or half of one. */
		memcpy((uint8_t *)h + (at % (sizeof(*h) / 4)) * 4, &v, v & 1 ? 8 : 4);
		if (h->config_len <= SNAP_HEADER_SIZE - sizeof(*h))
			snap_header_seal(h, (const struct mig_config *)(h + 1));
		break;
	case 3:
		if (h->config_len > SNAP_HEADER_SIZE - sizeof(*h) || !h->config_len)
			break;
		file[sizeof(*h) + at % h->config_len] = v;
		snap_header_seal(h, (const struct mig_config *)(h + 1));
		break;
	}
}

static void fuzz_file_built(struct fuzz_in *in)
{
	unsigned int n, nr_damage = in_byte(in) % (MAX_DAMAGE + 1);
	struct fake_vmm f;
	uint8_t *file;
	size_t len;
	int ret;

	file = built_file(in, &len);
	for (n = 0; n < nr_damage && len >= SNAP_HEADER_SIZE; n++)
		damage(in, file, &len);
	ret = restore(file, len, &f);
	/* An undamaged file is always taken, and loads exactly. */
	FUZZ_BUG_ON(!nr_damage && ret);
	if (!ret)
		restore_promises(file, len, &f);
	free(file);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* The reader explains every refusal; millions of them are noise here. */
	kvmmig_log_quiet(true);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	if (!size)
		return 0;
	switch (in_byte(&in) % NR_FUZZ_MODES) {
	case FUZZ_HEADER:
		fuzz_header(&in, false);
		break;
	case FUZZ_HEADER_SEALED:
		fuzz_header(&in, true);
		break;
	case FUZZ_FILE:
		fuzz_file(in.p, in.n);
		break;
	case FUZZ_FILE_BUILT:
		fuzz_file_built(&in);
		break;
	}
	return 0;
}

#ifdef SNAPSHOT_FUZZ_SEEDS
/* ---- the seed corpus: valid inputs for every mode ---- */

static int seed_write(const char *dir, const char *name, uint8_t mode, const void *p,
		      size_t len)
{
	char path[512];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "snapshot_seeds: cannot write %s\n", path);
		return 1;
	}
	ok = fwrite(&mode, 1, 1, f) == 1 && fwrite(p, 1, len, f) == len;
	return fclose(f) || !ok;
}

/*
 * A header whose one slot spans the address space: its file size wraps
 * around to 2^48 + 4 KiB, which a sparse file has (a bug this target found).
 */
static int seed_wrap(const char *dir)
{
	uint64_t buf[(8 + SNAP_HEADER_SIZE) / 8] = { 0 };
	struct snap_header *h = (struct snap_header *)(buf + 1);
	struct mig_config *cfg = (struct mig_config *)(h + 1);

	*cfg = (struct mig_config){ .nr_slots = 1, .nr_vcpus = 1, .page_size = MIG_PAGE_SIZE,
				    .vcpu_state_size = 1, .ram_bytes = -(uint64_t)MIG_PAGE_SIZE };
	cfg->slots[0].size = cfg->ram_bytes;
	snap_layout(cfg, h);
	buf[0] = h->file_size;
	return seed_write(dir, "header_wrap", FUZZ_HEADER_SEALED, buf, sizeof(buf));
}

int main(int argc, char **argv)
{
	/* 2 slots (5 and 66 pages, a gap), 2 vCPUs of 48 bytes, no damage. */
	static const uint8_t guest[] = { 0, 1, 1, 47, 0, 4, 1, 65 };
	uint8_t desc[sizeof(guest) + 2 + 96 + 71], *file;
	struct fuzz_in in = { desc, sizeof(desc) };
	int err = 0;
	size_t len, i;

	if (argc != 2) {
		fprintf(stderr, "usage: snapshot_seeds DIR\n");
		return 2;
	}
	memcpy(desc, guest, sizeof(guest));
	/* taken_ns, vCPU states, then pages: odd bytes are holes */
	for (i = sizeof(guest); i < sizeof(desc); i++)
		desc[i] = i * 7;
	err |= seed_write(argv[1], "file_built", FUZZ_FILE_BUILT, desc, sizeof(desc));
	/* Small enough for -max_len: 1 slot of 2 pages, 1 vCPU of 16 bytes. */
	memcpy(desc, (uint8_t[]){ 0, 0, 15, 0, 1 }, 5);
	in.p = desc;
	in.n = sizeof(desc);
	file = built_file(&in, &len);
	err |= seed_write(argv[1], "file", FUZZ_FILE, file, len);
	err |= seed_write(argv[1], "header", FUZZ_HEADER, (uint8_t[]){ 0xff, 0xff }, 2);
	{
		uint8_t hdr[8 + SNAP_HEADER_SIZE];
		uint64_t size = len;

		memcpy(hdr, &size, 8);
		memcpy(hdr + 8, file, SNAP_HEADER_SIZE);
		err |= seed_write(argv[1], "header_ok", FUZZ_HEADER, hdr, sizeof(hdr));
		err |= seed_write(argv[1], "header_sealed", FUZZ_HEADER_SEALED, hdr, sizeof(hdr));
	}
	free(file);
	err |= seed_wrap(argv[1]);
	return err;
}
#endif
