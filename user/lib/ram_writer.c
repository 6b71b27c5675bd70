// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiver's RAM writer: applies a PAGES record to the destination
 * guest's memory only after every field of it has been checked against the
 * guest configuration, drops a copy older than the one already written (a
 * page resent after a sync may overtake itself on another channel), skips
 * zero pages that a fresh slot already holds, and faults in each run of new
 * pages with one MADV_POPULATE_WRITE outside the locks; and it claims
 * pages nobody wrote yet for ram_recv.c, which reads their data straight
 * from the socket, and marks them written once the record checked out.
 * See struct mig_target in stream.h for the locking.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bitmap.h"
#include "log.h"
#include "stream.h"

int mig_target_init(struct mig_target *t, const struct mig_config *cfg, void *const *hva,
		    unsigned int fresh_from)
{
	uint32_t i;

	memset(t, 0, sizeof(*t));
	t->cfg = cfg;
	t->fresh_from = fresh_from;
	t->populate = true;
	for (i = 0; i < MIG_TARGET_LOCKS; i++) {
		pthread_mutex_init(&t->locks[i], NULL);
		pthread_cond_init(&t->landed[i], NULL);
	}
	for (i = 0; i < cfg->nr_slots; i++) {
		t->hva[i] = hva[i];
		t->gen[i] = calloc(cfg->slots[i].size / MIG_PAGE_SIZE, sizeof(uint32_t));
		t->inflight[i] = bitmap_alloc(cfg->slots[i].size / MIG_PAGE_SIZE);
		if (!t->gen[i] || !t->inflight[i]) {
			mig_target_destroy(t);
			return -ENOMEM;
		}
	}
	return 0;
}

void mig_target_destroy(struct mig_target *t)
{
	uint32_t i;

	for (i = 0; i < MIG_MAX_SLOTS; i++) {
		free(t->gen[i]);
		free(t->inflight[i]);
	}
	for (i = 0; i < MIG_TARGET_LOCKS; i++) {
		pthread_mutex_destroy(&t->locks[i]);
		pthread_cond_destroy(&t->landed[i]);
	}
	memset(t->gen, 0, sizeof(t->gen));
	memset(t->inflight, 0, sizeof(t->inflight));
}

static unsigned int mig_page_lock(uint64_t idx)
{
	return (idx >> MIG_TARGET_LOCK_SHIFT) % MIG_TARGET_LOCKS;
}

/* Every field of a PAGES payload, before anything is written. */
static int mig_pages_check_data(const struct mig_config *cfg, const struct mig_pages *mp,
				uint32_t len, uint64_t *nr_data)
{
	uint64_t npages, data = 0, i;

	if (len < sizeof(*mp) || !mp->count || mp->count > MIG_MAX_BATCH ||
	    len < sizeof(*mp) + mp->count * sizeof(uint64_t)) {
		kvmmig_err("bad PAGES record: %u bytes, %u pages (1 to %u)", len,
			   len >= sizeof(*mp) ? mp->count : 0, MIG_MAX_BATCH);
		return -EBADMSG;
	}
	if (mp->slot >= cfg->nr_slots || !mp->gen || mp->gen > UINT32_MAX) {
		kvmmig_err("bad PAGES record: slot %u of %u, generation %llu", mp->slot,
			   cfg->nr_slots, (unsigned long long)mp->gen);
		return -EBADMSG;
	}
	npages = cfg->slots[mp->slot].size / MIG_PAGE_SIZE;
	for (i = 0; i < mp->count; i++) {
		uint64_t idx = mp->entries[i] & MIG_PAGE_INDEX_MASK;

		if (idx >= npages) {
			kvmmig_err("bad PAGES record: page %llu of slot %u, which has %llu pages",
				   (unsigned long long)idx, mp->slot, (unsigned long long)npages);
			return -EBADMSG;
		}
		data += !(mp->entries[i] & MIG_PAGE_ZERO);
	}
	if (len != sizeof(*mp) + mp->count * sizeof(uint64_t) + data * MIG_PAGE_SIZE) {
		kvmmig_err("bad PAGES record: %u bytes for %u pages of which %llu carry data",
			   len, mp->count, (unsigned long long)data);
		return -EBADMSG;
	}
	*nr_data = data;
	return 0;
}

int mig_pages_check(const struct mig_config *cfg, const void *payload, uint32_t len)
{
	uint64_t nr_data;

	return mig_pages_check_data(cfg, payload, len, &nr_data);
}

/*
 * Fault in, before any lock is taken, the never-written pages of a fresh
 * slot that this batch brings data for: one madvise per run of neighbours
 * instead of a page fault per page, taken with a lock held.  Only a hint:
 * whatever it leaves undone, the copy faults in.
 */
void mig_pages_prefault(struct mig_target *t, const struct mig_pages *mp)
{
	uint8_t *base = t->hva[mp->slot];
	uint64_t i, start = 0, len = 0;

	if (mp->slot < t->fresh_from || !__atomic_load_n(&t->populate, __ATOMIC_RELAXED))
		return;
	for (i = 0; i <= mp->count; i++) {
		uint64_t idx = i < mp->count ? mp->entries[i] & MIG_PAGE_INDEX_MASK : 0;

		if (i < mp->count && ((mp->entries[i] & MIG_PAGE_ZERO) ||
				      __atomic_load_n(&t->gen[mp->slot][idx], __ATOMIC_RELAXED)))
			continue;
		if (i < mp->count && len && idx == start + len) {
			len++;
			continue;
		}
		/* EINVAL: a kernel before 5.14, which has no MADV_POPULATE_WRITE. */
		if (len && madvise(base + start * MIG_PAGE_SIZE, len * MIG_PAGE_SIZE,
				   MADV_POPULATE_WRITE) && errno == EINVAL)
			__atomic_store_n(&t->populate, false, __ATOMIC_RELAXED);
		start = idx;
		len = 1;
	}
}

int mig_pages_apply(struct mig_target *t, const void *payload, uint32_t len)
{
	const struct mig_pages *mp = payload;
	uint64_t nr_data, i, zero = 0, skipped = 0, stale = 0;
	pthread_mutex_t *held = NULL;
	const uint8_t *data;
	uint32_t gen;
	int ret;

	ret = mig_pages_check_data(t->cfg, mp, len, &nr_data);
	if (ret)
		return ret;
	mig_pages_prefault(t, mp);
	gen = mp->gen;
	data = (const uint8_t *)&mp->entries[mp->count];
	for (i = 0; i < mp->count; i++) {
		uint64_t idx = mp->entries[i] & MIG_PAGE_INDEX_MASK;
		bool is_zero = mp->entries[i] & MIG_PAGE_ZERO;
		unsigned int l = mig_page_lock(idx);
		pthread_mutex_t *lock = &t->locks[l];
		uint8_t *dst = (uint8_t *)t->hva[mp->slot] + idx * MIG_PAGE_SIZE;
		uint32_t *pgen = &t->gen[mp->slot][idx];

		if (lock != held) {
			if (held)
				pthread_mutex_unlock(held);
			pthread_mutex_lock(lock);
			held = lock;
		}
		/* Another channel is reading a copy into it: after that one, by generation. */
		while (bitmap_test_bit(t->inflight[mp->slot], idx))
			pthread_cond_wait(&t->landed[l], lock);
		if (gen < *pgen) {
			stale++;	/* a newer copy already arrived on another channel */
		} else if (is_zero) {
			/* Fresh memory never written from the stream is zero already. */
			if (*pgen || mp->slot < t->fresh_from)
				memset(dst, 0, MIG_PAGE_SIZE);
			else
				skipped++;
			__atomic_store_n(pgen, gen, __ATOMIC_RELAXED);
		} else {
			memcpy(dst, data, MIG_PAGE_SIZE);
			__atomic_store_n(pgen, gen, __ATOMIC_RELAXED);
		}
		zero += is_zero;
		if (!is_zero)
			data += MIG_PAGE_SIZE;
	}
	if (held)
		pthread_mutex_unlock(held);
	__atomic_add_fetch(&t->pages, mp->count, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->zero_pages, zero, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->zero_skipped, skipped, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->stale, stale, __ATOMIC_RELAXED);
	return mp->count;
}

/* The page of each entry of @mp, claimed for a direct read: done with @landed. */
void mig_pages_release(struct mig_target *t, const struct mig_pages *mp, uint32_t n,
		       bool landed)
{
	unsigned int l, held = MIG_TARGET_LOCKS;
	uint32_t i;

	for (i = 0; i < n; i++) {
		uint64_t idx = mp->entries[i] & MIG_PAGE_INDEX_MASK;

		l = mig_page_lock(idx);
		if (l != held) {
			if (held < MIG_TARGET_LOCKS) {
				pthread_cond_broadcast(&t->landed[held]);
				pthread_mutex_unlock(&t->locks[held]);
			}
			pthread_mutex_lock(&t->locks[l]);
			held = l;
		}
		if (landed)
			__atomic_store_n(&t->gen[mp->slot][idx], (uint32_t)mp->gen, __ATOMIC_RELAXED);
		bitmap_clear_bit(t->inflight[mp->slot], idx);
	}
	if (held < MIG_TARGET_LOCKS) {
		pthread_cond_broadcast(&t->landed[held]);
		pthread_mutex_unlock(&t->locks[held]);
	}
}

/*
 * Claim every page of @mp for a direct read: each must be in a fresh slot,
 * never written and not being read by another channel (nor twice in this
 * record).  All or none: false with nothing claimed.
 */
bool mig_pages_claim(struct mig_target *t, const struct mig_pages *mp)
{
	unsigned int l, held = MIG_TARGET_LOCKS;
	uint32_t i;

	if (mp->slot < t->fresh_from)
		return false;
	for (i = 0; i < mp->count; i++) {
		uint64_t idx = mp->entries[i] & MIG_PAGE_INDEX_MASK;

		l = mig_page_lock(idx);
		if (l != held) {
			if (held < MIG_TARGET_LOCKS)
				pthread_mutex_unlock(&t->locks[held]);
			pthread_mutex_lock(&t->locks[l]);
			held = l;
		}
		if (t->gen[mp->slot][idx] || bitmap_test_bit(t->inflight[mp->slot], idx))
			break;
		bitmap_set_bit(t->inflight[mp->slot], idx);
	}
	if (held < MIG_TARGET_LOCKS)
		pthread_mutex_unlock(&t->locks[held]);
	if (i == mp->count)
		return true;
	mig_pages_release(t, mp, i, false);
	return false;
}
