// SPDX-License-Identifier: GPL-2.0-only
/*
 * The bitmap dirty sources.  "bitmap" uses KVM_GET_DIRTY_LOG, which returns
 * a slot's dirty bits and write-protects them in one call.  "bitmap-manual"
 * uses KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG only reads, and
 * KVM_CLEAR_DIRTY_LOG re-protects exactly the pages collected, so a caller
 * that clears just before sending shortens the window in which a written
 * page is reported twice.  Both fetch into a private per-slot buffer and OR
 * it into the caller's set.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "bitmap.h"
#include "dirty_internal.h"
#include "log.h"

struct bitmap_priv {
	unsigned long *buf[VM_MAX_SLOTS];
};

static int dirty_bitmap_start(struct dirty_source *ds)
{
	struct bitmap_priv *p = calloc(1, sizeof(*p));
	struct vm *vm = ds->vm;
	unsigned int i;

	if (!p)
		return -ENOMEM;
	ds->priv = p;
	for (i = 0; i < vm->nr_slots; i++) {
		p->buf[i] = bitmap_alloc(vm->slots[i].size / GUEST_PAGE_SIZE);
		if (!p->buf[i]) {
			ds->ops->stop(ds);
			return -ENOMEM;
		}
	}
	return 0;
}

static void dirty_bitmap_stop(struct dirty_source *ds)
{
	struct bitmap_priv *p = ds->priv;
	unsigned int i;

	if (!p)
		return;
	for (i = 0; i < VM_MAX_SLOTS; i++)
		free(p->buf[i]);
	free(p);
	ds->priv = NULL;
}

static int dirty_bitmap_get(struct dirty_source *ds, unsigned int slot, unsigned long *buf)
{
	struct kvm_dirty_log log = {
		.slot = ds->vm->slots[slot].id,
		.dirty_bitmap = buf,
	};

	if (ioctl(ds->vm->fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return kvmmig_ioctl_err("KVM_GET_DIRTY_LOG", errno);
	return 0;
}

static int dirty_bitmap_clear(struct dirty_source *ds, unsigned int slot, unsigned long *buf)
{
	struct kvm_clear_dirty_log clr = {
		.slot = ds->vm->slots[slot].id,
		.first_page = 0,
		.num_pages = ds->vm->slots[slot].size / GUEST_PAGE_SIZE,
		.dirty_bitmap = buf,
	};

	if (ioctl(ds->vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
		return kvmmig_ioctl_err("KVM_CLEAR_DIRTY_LOG", errno);
	return 0;
}

static int dirty_bitmap_collect_one(struct dirty_source *ds, struct dirty_set *out, bool manual)
{
	struct bitmap_priv *p = ds->priv;
	uint64_t added = 0, t0 = dirty_now_ns();
	unsigned int i;
	int ret;

	for (i = 0; i < ds->vm->nr_slots; i++) {
		uint64_t npages = out->nr_pages[i];

		ret = dirty_bitmap_get(ds, i, p->buf[i]);
		if (!ret && manual)
			ret = dirty_bitmap_clear(ds, i, p->buf[i]);
		if (ret)
			return ret;
		added += bitmap_or_count(out->bitmaps[i], p->buf[i], npages);
	}
	ds->stats.harvest_ns += dirty_now_ns() - t0;
	return added > INT32_MAX ? INT32_MAX : (int)added;
}

static int dirty_bitmap_collect(struct dirty_source *ds, struct dirty_set *out)
{
	return dirty_bitmap_collect_one(ds, out, false);
}

static int dirty_bitmap_manual_collect(struct dirty_source *ds, struct dirty_set *out)
{
	return dirty_bitmap_collect_one(ds, out, true);
}

const struct dirty_source_ops dirty_bitmap_ops = {
	.name = "bitmap",
	.start = dirty_bitmap_start,
	.collect = dirty_bitmap_collect,
	.stop = dirty_bitmap_stop,
};

const struct dirty_source_ops dirty_bitmap_manual_ops = {
	.name = "bitmap-manual",
	.start = dirty_bitmap_start,
	.collect = dirty_bitmap_manual_collect,
	.stop = dirty_bitmap_stop,
};
