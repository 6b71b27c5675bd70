// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reading a snapshot with its chain of bases (snapshot.h): an increment
 * holds only the pages written since its base's pause and names that base
 * (a file name in its own directory, or an absolute path) and its id; the
 * chain ends at a full snapshot.  Opening checks every header, that each
 * base is the very file the increment was taken against (its id), that all
 * files describe the same guest, that the chain is at most SNAP_CHAIN_MAX
 * files long and never comes back to a file it holds, and reads each
 * file's block checksums and presence map.  A page is then read from the
 * newest file whose map has it; a block is checked against the checksum of
 * every file it takes pages from.  All reads are pread(), so readers may
 * run in parallel.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csum.h"
#include "log.h"
#include "snapshot.h"
#include "zero.h"

struct snap_file {
	char path[PATH_MAX];
	int fd;
	dev_t dev;
	ino_t ino;
	struct snap_header h;
	uint32_t *table;		/* block checksums */
	uint64_t *map;			/* presence, one word per block */
};

struct snap_chain {
	unsigned int depth;
	struct snap_file f[SNAP_CHAIN_MAX];	/* f[0] the file opened, then its bases */
	struct mig_config *cfg;
	uint64_t first_block[MIG_MAX_SLOTS];
};

static int snap_file_pread(const struct snap_file *f, void *buf, size_t len, uint64_t off,
			   const char *what)
{
	while (len) {
		ssize_t n = pread(f->fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			kvmmig_err("cannot read the %s of %s: %s", what, f->path,
				   n < 0 ? strerror(err) : "the file ends early");
			return n < 0 ? -err : -EBADMSG;
		}
		buf = (char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

/* Open and check @f->path's header; *@cfg points into @hdr. */
static int snap_file_open(struct snap_file *f, uint8_t *hdr, const struct mig_config **cfg,
			  const char *named_by)
{
	struct stat st;
	int ret;

	f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		ret = -errno;
		if (named_by)
			kvmmig_err("cannot open %s, the base of %s: %s", f->path, named_by,
				   strerror(-ret));
		else
			kvmmig_err("cannot open %s: %s", f->path, strerror(-ret));
		return ret;
	}
	if (fstat(f->fd, &st))
		return kvmmig_ioctl_err("fstat of the snapshot", errno);
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	if ((uint64_t)st.st_size < SNAP_HEADER_SIZE) {
		kvmmig_err("%s is not a kvmmig snapshot: %lld bytes", f->path,
			   (long long)st.st_size);
		return -EBADMSG;
	}
	ret = snap_file_pread(f, hdr, SNAP_HEADER_SIZE, 0, "header");
	if (!ret)
		ret = snap_header_check(f->path, hdr, SNAP_HEADER_SIZE, st.st_size, cfg);
	if (!ret)
		memcpy(&f->h, hdr, sizeof(f->h));
	return ret;
}

/* The base @f names: beside @f, or the absolute path it gives. */
static int snap_base_path(const struct snap_file *f, char *out, size_t len)
{
	const char *slash = strrchr(f->path, '/');
	int dir = slash && f->h.base_name[0] != '/' ? (int)(slash - f->path) + 1 : 0;

	if ((size_t)snprintf(out, len, "%.*s%s", dir, f->path, f->h.base_name) >= len) {
		kvmmig_err("%s: the path of its base %s is too long", f->path, f->h.base_name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* File @i (not the first) against the one that names it: the same file, guest and id. */
static int snap_check_link(struct snap_chain *c, unsigned int i, const struct mig_config *cfg)
{
	const struct snap_file *f = &c->f[i], *by = &c->f[i - 1];
	unsigned int j;

	for (j = 0; j < i; j++)
		if (c->f[j].dev == f->dev && c->f[j].ino == f->ino) {
			kvmmig_err("the snapshot chain loops: %s names %s as its base, which is already in the chain",
				   by->path, f->path);
			return -ELOOP;
		}
	if (f->h.id != by->h.base_id) {
		kvmmig_err("%s is not the base of %s: its id is %#llx, %#llx expected (the file was replaced or overwritten)",
			   f->path, by->path, (unsigned long long)f->h.id,
			   (unsigned long long)by->h.base_id);
		return -EBADMSG;
	}
	if (f->h.config_len != c->f[0].h.config_len ||
	    memcmp(cfg, c->cfg, f->h.config_len)) {
		kvmmig_err("%s, the base of %s, describes another guest (its configuration differs)",
			   f->path, by->path);
		return -EBADMSG;
	}
	return 0;
}

/* Headers from @path down to the full snapshot. */
static int snap_chain_walk(struct snap_chain *c, const char *path)
{
	uint8_t hdr[SNAP_HEADER_SIZE];
	const struct mig_config *cfg;
	unsigned int i;
	int ret;

	if (strlen(path) >= sizeof(c->f[0].path)) {
		kvmmig_err("snapshot path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(c->f[0].path, path);
	for (i = 0;; i++) {
		c->depth = i + 1;
		ret = snap_file_open(&c->f[i], hdr, &cfg, i ? c->f[i - 1].path : NULL);
		if (!ret && !i) {
			c->cfg = malloc(c->f[0].h.config_len);
			if (!c->cfg)
				return -ENOMEM;
			memcpy(c->cfg, cfg, c->f[0].h.config_len);
		}
		if (!ret && i)
			ret = snap_check_link(c, i, cfg);
		if (ret || !(c->f[i].h.flags & SNAP_INCREMENTAL))
			return ret;
		if (i + 1 == SNAP_CHAIN_MAX) {
			kvmmig_err("%s: its chain of bases is longer than %d files", path,
				   SNAP_CHAIN_MAX);
			return -ELOOP;
		}
		c->f[i + 1].fd = -1;
		ret = snap_base_path(&c->f[i], c->f[i + 1].path, sizeof(c->f[i + 1].path));
		if (ret)
			return ret;
	}
}

/* A map word with bits beyond the block, or a full snapshot lacking a page. */
static int snap_check_map(const struct snap_chain *c, const struct snap_file *f)
{
	uint64_t b = 0, i, n;
	unsigned int slot;

	for (slot = 0; slot < c->cfg->nr_slots; slot++) {
		uint64_t npages = c->cfg->slots[slot].size / MIG_PAGE_SIZE;

		for (i = 0; i * SNAP_BLOCK_PAGES < npages; i++, b++) {
			uint64_t all;

			n = snap_block_len(npages, i);
			all = n == 64 ? ~0ULL : (1ULL << n) - 1;
			if ((f->map[b] & ~all) ||
			    (!(f->h.flags & SNAP_INCREMENTAL) && f->map[b] != all)) {
				kvmmig_err("%s: the presence map of slot %u, pages %llu-%llu is wrong (%#llx)",
					   f->path, slot, (unsigned long long)(i * SNAP_BLOCK_PAGES),
					   (unsigned long long)(i * SNAP_BLOCK_PAGES + n - 1),
					   (unsigned long long)f->map[b]);
				return -EBADMSG;
			}
		}
	}
	return 0;
}

static int snap_file_read_tables(const struct snap_chain *c, struct snap_file *f)
{
	uint64_t n = snap_nr_blocks(c->cfg);
	int ret;

	f->table = calloc(n ? n : 1, sizeof(*f->table));
	f->map = calloc(n ? n : 1, sizeof(*f->map));
	if (!f->table || !f->map)
		return -ENOMEM;
	ret = snap_file_pread(f, f->table, n * sizeof(*f->table), f->h.crc_off, "block checksums");
	if (!ret && crc32c(0, f->table, n * sizeof(*f->table)) != f->h.table_crc) {
		kvmmig_err("%s: the block checksums are corrupted", f->path);
		ret = -EBADMSG;
	}
	if (!ret)
		ret = snap_file_pread(f, f->map, n * sizeof(*f->map), f->h.map_off, "presence map");
	if (!ret && crc32c(0, f->map, n * sizeof(*f->map)) != f->h.map_crc) {
		kvmmig_err("%s: the presence map is corrupted (checksum mismatch)", f->path);
		ret = -EBADMSG;
	}
	return ret ? ret : snap_check_map(c, f);
}

int snap_chain_open(const char *path, struct snap_chain **out)
{
	struct snap_chain *c = calloc(1, sizeof(*c));
	unsigned int i;
	int ret;

	if (!c)
		return -ENOMEM;
	c->f[0].fd = -1;
	ret = snap_chain_walk(c, path);
	for (i = 0; !ret && i < c->depth; i++)
		ret = snap_file_read_tables(c, &c->f[i]);
	for (i = 0; !ret && i < c->cfg->nr_slots; i++)
		c->first_block[i] = snap_first_block(c->cfg, i);
	if (ret) {
		snap_chain_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

void snap_chain_close(struct snap_chain *c)
{
	unsigned int i;

	if (!c)
		return;
	for (i = 0; i < c->depth; i++) {
		if (c->f[i].fd >= 0)
			close(c->f[i].fd);
		free(c->f[i].table);
		free(c->f[i].map);
	}
	free(c->cfg);
	free(c);
}

const struct mig_config *snap_chain_config(const struct snap_chain *c)
{
	return c->cfg;
}

unsigned int snap_chain_depth(const struct snap_chain *c)
{
	return c->depth;
}

const char *snap_chain_path(const struct snap_chain *c, unsigned int i)
{
	return i < c->depth ? c->f[i].path : NULL;
}

static int snap_check_page(const struct snap_chain *c, unsigned int slot, uint64_t idx)
{
	if (slot >= c->cfg->nr_slots || idx >= c->cfg->slots[slot].size / MIG_PAGE_SIZE) {
		kvmmig_err("page %llu of slot %u is outside the guest of %s",
			   (unsigned long long)idx, slot, c->f[0].path);
		return -EINVAL;
	}
	return 0;
}

int snap_chain_locate(const struct snap_chain *c, unsigned int slot, uint64_t idx, int *fd,
		      uint64_t *off)
{
	uint64_t b = c->first_block[slot] + idx / SNAP_BLOCK_PAGES;
	unsigned int i;
	int ret = snap_check_page(c, slot, idx);

	if (ret)
		return ret;
	for (i = 0; i < c->depth; i++)
		if (c->f[i].map[b] >> (idx % SNAP_BLOCK_PAGES) & 1) {
			*fd = c->f[i].fd;
			*off = snap_page_off(&c->f[i].h, c->cfg, slot, idx);
			return i;
		}
	/* snap_check_map() makes the last file hold every page. */
	return -EBADMSG;
}

/*
 * File @f's pages of a block (@present), checked against its checksum:
 * those in @take land in @buf, the others (newer files have them) are read
 * only to be checked.
 */
static int snap_file_read_block(const struct snap_chain *c, const struct snap_file *f,
				unsigned int slot, uint64_t first, uint64_t gb, uint64_t present,
				uint64_t take, uint8_t *buf)
{
	uint8_t page[MIG_PAGE_SIZE];
	uint32_t crcs[SNAP_BLOCK_PAGES];
	uint64_t left = present;
	int ret = 0;

	while (left && !ret) {
		unsigned int a = __builtin_ctzll(left), b = a + 1;
		bool in = take >> a & 1;

		/* A run of pages to take; one not needed goes alone into @page. */
		while (in && b < 64 && (left >> b & 1) && (take >> b & 1))
			b++;
		ret = snap_file_pread(f, in ? buf + a * MIG_PAGE_SIZE : page,
				      (b - a) * MIG_PAGE_SIZE,
				      snap_page_off(&f->h, c->cfg, slot, first + a), "pages");
		for (; !ret && a < b; a++)
			crcs[a] = crc32c(0, in ? buf + a * MIG_PAGE_SIZE : page, MIG_PAGE_SIZE);
		left &= b < 64 ? ~((1ULL << b) - 1) : 0;
	}
	if (!ret && snap_block_crc(crcs, present) != f->table[gb]) {
		kvmmig_err("%s: slot %u, pages %llu-%llu do not match their checksum (the file is corrupted)",
			   f->path, slot, (unsigned long long)first,
			   (unsigned long long)(first + 63 - __builtin_clzll(present)));
		ret = -EBADMSG;
	}
	return ret;
}

int snap_chain_read_block(struct snap_chain *c, unsigned int slot, uint64_t block, void *buf,
			  uint64_t *zero_mask)
{
	uint64_t first = block * SNAP_BLOCK_PAGES, gb, n, need, i;
	unsigned int k;
	int ret = snap_check_page(c, slot, first);

	if (ret)
		return ret;
	gb = c->first_block[slot] + block;
	n = snap_block_len(c->cfg->slots[slot].size / MIG_PAGE_SIZE, block);
	need = n == 64 ? ~0ULL : (1ULL << n) - 1;
	/* Newest first: a page comes from the newest file that has it. */
	for (k = 0; k < c->depth && need && !ret; k++) {
		uint64_t present = c->f[k].map[gb];

		if (!(present & need))
			continue;
		ret = snap_file_read_block(c, &c->f[k], slot, first, gb, present, present & need,
					   buf);
		need &= ~present;
	}
	if (ret)
		return ret;
	if (zero_mask)
		for (*zero_mask = 0, i = 0; i < n; i++)
			if (buffer_is_zero((uint8_t *)buf + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE))
				*zero_mask |= 1ULL << i;
	return n;
}

int snap_chain_read_states(struct snap_chain *c, void *states)
{
	size_t len = (size_t)c->cfg->nr_vcpus * c->cfg->vcpu_state_size;
	int ret = snap_file_pread(&c->f[0], states, len, c->f[0].h.vcpu_off, "vCPU states");

	if (!ret && crc32c(0, states, len) != c->f[0].h.vcpu_crc) {
		kvmmig_err("%s: the vCPU states are corrupted", c->f[0].path);
		ret = -EBADMSG;
	}
	return ret;
}
