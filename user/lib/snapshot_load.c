// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restoring a snapshot (see snapshot.h): the header is checked against
 * its configuration, the VMM makes a VM of that layout, and every block of
 * pages is read, checked against its checksum and only then copied into
 * guest memory (zero pages are skipped in slots the VMM handed over
 * zeroed).  The vCPU states are checked and loaded last.  A file is
 * untrusted: a bad one is refused with what is wrong, and the VM released.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csum.h"
#include "log.h"
#include "snapshot.h"
#include "zero.h"

struct snap_load {
	int fd;
	const char *path;
	struct snap_header h;
	struct mig_config *cfg;
	struct kvmmig_vm *vm;
	uint32_t *table;
	uint8_t *buf;			/* one block */
	uint32_t zero_crc;		/* of one zero page */
};

static int snap_pread(struct snap_load *l, void *buf, size_t len, uint64_t off, const char *what)
{
	while (len) {
		ssize_t n = pread(l->fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			kvmmig_err("cannot read the %s of %s: %s", what, l->path,
				   n < 0 ? strerror(err) : "the file ends early");
			return n < 0 ? -err : -EBADMSG;
		}
		buf = (char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

static int snap_open(struct snap_load *l)
{
	uint8_t hdr[SNAP_HEADER_SIZE];
	const struct mig_config *cfg;
	struct stat st;
	int ret;

	l->fd = open(l->path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0) {
		ret = -errno;
		kvmmig_err("cannot open %s: %s", l->path, strerror(errno));
		return ret;
	}
	if (fstat(l->fd, &st))
		return kvmmig_ioctl_err("fstat of the snapshot", errno);
	if ((uint64_t)st.st_size < sizeof(hdr)) {
		kvmmig_err("%s is not a kvmmig snapshot: %lld bytes", l->path,
			   (long long)st.st_size);
		return -EBADMSG;
	}
	ret = snap_pread(l, hdr, sizeof(hdr), 0, "header");
	if (!ret)
		ret = snap_header_check(hdr, sizeof(hdr), st.st_size, &cfg);
	if (ret)
		return ret;
	memcpy(&l->h, hdr, sizeof(l->h));
	l->cfg = malloc(l->h.config_len);
	if (!l->cfg)
		return -ENOMEM;
	memcpy(l->cfg, cfg, l->h.config_len);
	return 0;
}

static int snap_read_table(struct snap_load *l)
{
	uint64_t n = snap_nr_blocks(l->cfg);
	int ret;

	l->table = calloc(n ? n : 1, sizeof(*l->table));
	if (!l->table)
		return -ENOMEM;
	ret = snap_pread(l, l->table, n * sizeof(*l->table), l->h.crc_off, "block checksums");
	if (!ret && crc32c(0, l->table, n * sizeof(*l->table)) != l->h.table_crc) {
		kvmmig_err("%s: the block checksums are corrupted", l->path);
		ret = -EBADMSG;
	}
	return ret;
}

/* One block of slot @slot: read, checked whole, then copied into the guest. */
static int snap_load_block(struct snap_load *l, unsigned int slot, uint64_t first, uint64_t n,
			   uint64_t block)
{
	uint32_t crcs[SNAP_BLOCK_PAGES];
	uint8_t *dst = (uint8_t *)l->vm->slots[slot].hva + first * MIG_PAGE_SIZE;
	bool zeroed = l->vm->slots[slot].zeroed;
	uint64_t i;
	int ret;

	ret = snap_pread(l, l->buf, n * MIG_PAGE_SIZE, snap_page_off(&l->h, l->cfg, slot, first),
			 "pages");
	if (ret)
		return ret;
	for (i = 0; i < n; i++)
		crcs[i] = crc32c(0, l->buf + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	if (crc32c(0, crcs, n * sizeof(crcs[0])) != l->table[block]) {
		kvmmig_err("%s: slot %u, pages %llu-%llu do not match their checksum (the file is corrupted)",
			   l->path, slot, (unsigned long long)first,
			   (unsigned long long)(first + n - 1));
		return -EBADMSG;
	}
	for (i = 0; i < n; i++) {
		/* A zero page in fresh memory needs no write (and no memory). */
		if (zeroed && crcs[i] == l->zero_crc &&
		    buffer_is_zero(l->buf + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE))
			continue;
		memcpy(dst + i * MIG_PAGE_SIZE, l->buf + i * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	}
	return 0;
}

static int snap_load_memory(struct snap_load *l)
{
	uint64_t block = 0, first;
	unsigned int slot;
	int ret = 0;

	for (slot = 0; !ret && slot < l->cfg->nr_slots; slot++) {
		uint64_t npages = l->cfg->slots[slot].size / MIG_PAGE_SIZE;

		for (first = 0; !ret && first < npages; first += SNAP_BLOCK_PAGES, block++) {
			uint64_t n = npages - first < SNAP_BLOCK_PAGES ? npages - first :
									 SNAP_BLOCK_PAGES;

			ret = snap_load_block(l, slot, first, n, block);
		}
	}
	return ret;
}

static int snap_load_vcpus(struct snap_load *l)
{
	uint32_t size = l->cfg->vcpu_state_size;
	size_t len = (size_t)l->cfg->nr_vcpus * size;
	uint8_t *states = malloc(len);
	unsigned int i;
	int ret;

	if (!states)
		return -ENOMEM;
	ret = snap_pread(l, states, len, l->h.vcpu_off, "vCPU states");
	if (!ret && crc32c(0, states, len) != l->h.vcpu_crc) {
		kvmmig_err("%s: the vCPU states are corrupted", l->path);
		ret = -EBADMSG;
	}
	for (i = 0; !ret && i < l->cfg->nr_vcpus; i++)
		ret = kvmmig_vm_load_state(l->vm, i, states + (size_t)i * size);
	free(states);
	return ret;
}

int snapshot_load(const char *path,
		  int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
				   struct kvmmig_vm **vm),
		  void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
		  void *vmm_opaque, struct kvmmig_vm **out)
{
	static const uint8_t zero_page[MIG_PAGE_SIZE];
	struct snap_load l = { .fd = -1, .path = path };
	int ret;

	l.zero_crc = crc32c(0, zero_page, sizeof(zero_page));
	l.buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	ret = l.buf ? snap_open(&l) : -ENOMEM;
	if (!ret)
		ret = snap_read_table(&l);
	if (!ret) {
		ret = create_vm(vmm_opaque, l.cfg, &l.vm);
		if (ret > 0)
			ret = -EIO;
	}
	if (!ret)
		ret = kvmmig_vm_check_config(l.vm, l.cfg);
	if (!ret)
		ret = snap_load_memory(&l);
	if (!ret)
		ret = snap_load_vcpus(&l);
	if (ret && l.vm)
		release_vm(vmm_opaque, l.vm, false);
	else if (!ret)
		*out = l.vm;
	if (l.fd >= 0)
		close(l.fd);
	free(l.table);
	free(l.cfg);
	free(l.buf);
	return ret;
}
