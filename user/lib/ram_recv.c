// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiver's direct read of PAGES records on a plaintext channel: the
 * header and the entries first, checked against the guest configuration,
 * then the page data read by recvmsg() straight into the guest pages the
 * entries name, one iovec per run of neighbours, instead of into a buffer
 * copied from afterwards (QEMU's multifd reads into guest RAM the same
 * way).  Only pages nobody has written yet are read so (ram_writer.c claims
 * them all or none), as every page of a first pass is; any other record is
 * read whole into a buffer and applied by mig_pages_apply().  A page read
 * directly counts as written only after the record's CRC32C, computed over
 * the pages where they landed, matched.
 */
#include <string.h>

#include "csum.h"
#include "log.h"
#include "net.h"
#include "stream.h"

/*
 * The data of @mp's pages, read into their places in the guest (one
 * iovec per run of neighbours), and the record's CRC32C over the header,
 * the entries and that data, in the order it came.
 */
static int mig_pages_read_direct(struct mig_target *t, struct mig_chan *c,
				 const struct mig_rec *rec, const struct mig_pages *mp,
				 uint32_t head)
{
	struct iovec iov[MIG_MAX_BATCH], left[MIG_MAX_BATCH];
	uint8_t *base = t->hva[mp->slot];
	uint32_t crc = crc32c(0, mp, head);
	int i, n = 0, ret;
	uint32_t e;

	for (e = 0; e < mp->count; e++) {
		uint8_t *page = base + (mp->entries[e] & MIG_PAGE_INDEX_MASK) * MIG_PAGE_SIZE;

		if (mp->entries[e] & MIG_PAGE_ZERO)
			continue;
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == page) {
			iov[n - 1].iov_len += MIG_PAGE_SIZE;
			continue;
		}
		iov[n].iov_base = page;
		iov[n++].iov_len = MIG_PAGE_SIZE;
	}
	/* mig_chan_readv() consumes @left; @iov stays for the checksum. */
	memcpy(left, iov, n * sizeof(iov[0]));
	ret = n ? mig_chan_readv(c, left, n) : 0;
	if (ret)
		return ret;
	for (i = 0; i < n; i++)
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	if (crc != rec->crc) {
		kvmmig_err("%s record %llu is corrupted (payload checksum mismatch)",
			   mig_rec_name(rec->type), (unsigned long long)rec->seq);
		return -EBADMSG;
	}
	return 0;
}

int mig_pages_recv(struct mig_target *t, struct mig_chan *c, const struct mig_rec *rec,
		   void *scratch)
{
	struct mig_pages *mp = scratch;
	uint64_t i, zero = 0;
	uint32_t head = sizeof(*mp);
	int ret;

	/* The header, the entries and their checks, before any page is chosen. */
	if (rec->len >= head) {
		ret = mig_chan_read(c, mp, head, &c->wait);
		if (ret)
			return ret;
		if (mp->count <= MIG_MAX_BATCH && rec->len >= head + mp->count * sizeof(uint64_t)) {
			ret = mig_chan_read(c, mp->entries, mp->count * sizeof(uint64_t), &c->wait);
			if (ret)
				return ret;
			head += mp->count * sizeof(uint64_t);
		}
	} else {
		head = 0;
	}
	if (head > sizeof(*mp) && !mig_pages_check(t->cfg, mp, rec->len) &&
	    mig_pages_claim(t, mp)) {
		mig_pages_prefault(t, mp);
		ret = mig_pages_read_direct(t, c, rec, mp, head);
		/* Failed: the pages hold what never passed the checksum; fresh again. */
		for (i = 0; ret && i < mp->count; i++)
			if (!(mp->entries[i] & MIG_PAGE_ZERO))
				memset((uint8_t *)t->hva[mp->slot] +
				       (mp->entries[i] & MIG_PAGE_INDEX_MASK) * MIG_PAGE_SIZE, 0,
				       MIG_PAGE_SIZE);
		mig_pages_release(t, mp, mp->count, !ret);
		if (ret)
			return ret;
		mig_chan_recv_done(c, rec);
		for (i = 0; i < mp->count; i++)
			zero += !!(mp->entries[i] & MIG_PAGE_ZERO);
		__atomic_add_fetch(&t->pages, mp->count, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->zero_pages, zero, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->zero_skipped, zero, __ATOMIC_RELAXED);
		return mp->count;
	}
	/* The rest through @scratch, checked whole, then applied as any record. */
	ret = mig_chan_read(c, (uint8_t *)scratch + head, rec->len - head, &c->wait);
	if (!ret)
		ret = mig_rec_check_payload(rec, scratch);
	if (ret)
		return ret;
	mig_chan_recv_done(c, rec);
	return mig_pages_apply(t, scratch, rec->len);
}
