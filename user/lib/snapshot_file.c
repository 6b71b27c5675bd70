// SPDX-License-Identifier: GPL-2.0-only
/*
 * The snapshot file's layout (Documentation/snapshot.rst): a 4 KiB header
 * block holding struct snap_header and the guest configuration, the vCPU
 * states, the block checksums, the presence map (which pages of each block
 * the file holds: all of them in a full snapshot, the dirtied ones in an
 * increment), then every slot's pages at fixed offsets, 4 KiB aligned, so
 * that writers and readers work in parallel with pwrite()/pread() and zero
 * pages stay holes.  A file is untrusted input: the check accepts only a
 * header whose every offset is the one the configuration implies and
 * whose base name cannot lead out of its directory but by an absolute
 * path, so nothing read from it can land outside a slot.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "csum.h"
#include "log.h"
#include "snapshot.h"

#define SNAP_ALIGN	4096ULL

static uint64_t snap_align(uint64_t x)
{
	return (x + SNAP_ALIGN - 1) & ~(SNAP_ALIGN - 1);
}

static uint64_t snap_slot_blocks(const struct mig_config *cfg, unsigned int slot)
{
	uint64_t pages = cfg->slots[slot].size / MIG_PAGE_SIZE;

	return (pages + SNAP_BLOCK_PAGES - 1) / SNAP_BLOCK_PAGES;
}

uint64_t snap_first_block(const struct mig_config *cfg, unsigned int slot)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < slot; i++)
		n += snap_slot_blocks(cfg, i);
	return n;
}

uint64_t snap_nr_blocks(const struct mig_config *cfg)
{
	return snap_first_block(cfg, cfg->nr_slots);
}

uint64_t snap_map_size(const struct mig_config *cfg)
{
	return snap_nr_blocks(cfg) * sizeof(uint64_t);
}

uint64_t snap_block_len(uint64_t npages, uint64_t b)
{
	uint64_t first = b * SNAP_BLOCK_PAGES;

	return npages - first < SNAP_BLOCK_PAGES ? npages - first : SNAP_BLOCK_PAGES;
}

uint32_t snap_block_crc(const uint32_t *page_crc, uint64_t present)
{
	uint32_t crc = 0;

	for (; present; present &= present - 1)
		crc = crc32c(crc, &page_crc[__builtin_ctzll(present)], sizeof(uint32_t));
	return crc;
}

void snap_layout(const struct mig_config *cfg, struct snap_header *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = SNAP_MAGIC;
	h->version = SNAP_VERSION;
	h->config_len = mig_config_size(cfg->nr_slots);
	h->vcpu_off = SNAP_HEADER_SIZE;
	h->crc_off = snap_align(h->vcpu_off + (uint64_t)cfg->nr_vcpus * cfg->vcpu_state_size);
	h->map_off = snap_align(h->crc_off + snap_nr_blocks(cfg) * sizeof(uint32_t));
	h->data_off = snap_align(h->map_off + snap_map_size(cfg));
	h->file_size = h->data_off + cfg->ram_bytes;
}

uint64_t snap_page_off(const struct snap_header *h, const struct mig_config *cfg,
		       unsigned int slot, uint64_t idx)
{
	uint64_t off = h->data_off;
	unsigned int i;

	for (i = 0; i < slot; i++)
		off += cfg->slots[i].size;
	return off + idx * MIG_PAGE_SIZE;
}

static uint32_t snap_header_crc(const struct snap_header *h, const struct mig_config *cfg)
{
	struct snap_header copy = *h;

	copy.hcrc = 0;
	return crc32c(crc32c(0, &copy, sizeof(copy)), cfg, h->config_len);
}

void snap_header_seal(struct snap_header *h, const struct mig_config *cfg)
{
	h->hcrc = snap_header_crc(h, cfg);
}

/*
 * An increment's base: a NUL-terminated plain name (the base is in the same
 * directory) or an absolute path, so a file can never point its reader at
 * a relative path that climbs out of its directory.  A full snapshot names
 * no base and has no base id.
 */
static int snap_check_base(const char *path, const struct snap_header *h)
{
	size_t len = strnlen(h->base_name, sizeof(h->base_name));
	bool absolute = h->base_name[0] == '/';

	if (!(h->flags & SNAP_INCREMENTAL)) {
		if (h->base_id || len) {
			kvmmig_err("%s: a full snapshot that names a base", path);
			return -EBADMSG;
		}
		return 0;
	}
	if (!h->base_id || !len || len == sizeof(h->base_name)) {
		kvmmig_err("%s: an increment without a valid base (id %#llx, name of %zu bytes): expected a base id and a name of 1 to %d bytes",
			   path, (unsigned long long)h->base_id, len, SNAP_BASE_NAME_MAX - 1);
		return -EBADMSG;
	}
	if ((!absolute && strchr(h->base_name, '/')) || !strcmp(h->base_name, ".") ||
	    !strcmp(h->base_name, "..")) {
		kvmmig_err("%s: base name \"%s\": expected a file name in the same directory or an absolute path",
			   path, h->base_name);
		return -EBADMSG;
	}
	return 0;
}

int snap_header_check(const char *path, const void *buf, size_t len, uint64_t file_size,
		      const struct mig_config **cfg)
{
	const struct snap_header *h = buf;
	const struct mig_config *c = (const void *)(h + 1);
	struct snap_header want;

	if (len < sizeof(*h) || h->magic != SNAP_MAGIC) {
		kvmmig_err("%s is not a kvmmig snapshot (no snapshot header)", path);
		return -EBADMSG;
	}
	if (h->version != SNAP_VERSION) {
		kvmmig_err("%s: snapshot format version %u: this build reads version %u only",
			   path, h->version, SNAP_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->config_len > len - sizeof(*h) || h->config_len < sizeof(*c) ||
	    mig_config_check(c, h->config_len)) {
		kvmmig_err("%s: snapshot header: bad guest configuration (%u bytes)", path,
			   h->config_len);
		return -EBADMSG;
	}
	if (h->hcrc != snap_header_crc(h, c)) {
		kvmmig_err("%s: snapshot header: checksum mismatch (the file is corrupted)", path);
		return -EBADMSG;
	}
	if (!(h->flags & SNAP_COMPLETE)) {
		kvmmig_err("%s: the snapshot is incomplete: it was interrupted before its end", path);
		return -EBADMSG;
	}
	if (h->flags & ~SNAP_FLAGS || !h->id || h->pad) {
		kvmmig_err("%s: snapshot header: unknown flags %#x, id 0 or padding set", path,
			   h->flags & ~SNAP_FLAGS);
		return -EBADMSG;
	}
	snap_layout(c, &want);
	/* Slots may span all of the address space: their pages must still fit a file. */
	if (want.file_size < want.data_off) {
		kvmmig_err("%s: snapshot header: %llu bytes of guest RAM cannot fit in a file", path,
			   (unsigned long long)c->ram_bytes);
		return -EBADMSG;
	}
	if (h->vcpu_off != want.vcpu_off || h->crc_off != want.crc_off ||
	    h->map_off != want.map_off || h->data_off != want.data_off ||
	    h->file_size != want.file_size) {
		kvmmig_err("%s: snapshot header: offsets do not match its configuration", path);
		return -EBADMSG;
	}
	if (snap_check_base(path, h))
		return -EBADMSG;
	if (file_size < h->file_size) {
		kvmmig_err("%s: the snapshot is truncated: %llu bytes, %llu expected", path,
			   (unsigned long long)file_size, (unsigned long long)h->file_size);
		return -EBADMSG;
	}
	*cfg = c;
	return 0;
}
