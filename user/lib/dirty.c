// SPDX-License-Identifier: GPL-2.0-only
/*
 * The dirty-source interface: picking a backend (the best the host offers,
 * or the one asked for), turning dirty logging on and off around it, and
 * the per-slot result sets the backends fill.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "dirty_internal.h"
#include "log.h"

static const char *const backend_names[NR_DIRTY_BACKENDS] = {
	[DIRTY_AUTO] = "auto",
	[DIRTY_BITMAP] = "bitmap",
	[DIRTY_BITMAP_MANUAL] = "bitmap-manual",
	[DIRTY_RING] = "ring",
	[DIRTY_MODULE] = "module",
};

const char *dirty_backend_name(enum dirty_backend b)
{
	return b < NR_DIRTY_BACKENDS ? backend_names[b] : "?";
}

int dirty_backend_parse(const char *name)
{
	int i;

	for (i = 0; i < NR_DIRTY_BACKENDS; i++)
		if (!strcmp(name, backend_names[i]))
			return i;
	return -EINVAL;
}

static int kvm_check_extension(long cap)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), ret;

	if (fd < 0)
		return 0;
	ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);
	close(fd);
	return ret > 0 ? ret : 0;
}

/* The module when loaded, else the ring, else the bitmap. */
static enum dirty_backend dirty_best_backend(void)
{
	if (access("/dev/kvmmig", R_OK | W_OK) == 0)
		return DIRTY_MODULE;
	if (kvm_check_extension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) ||
	    kvm_check_extension(KVM_CAP_DIRTY_LOG_RING))
		return DIRTY_RING;
	if (kvm_check_extension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2))
		return DIRTY_BITMAP_MANUAL;
	return DIRTY_BITMAP;
}

int dirty_prepare_caps(enum dirty_backend backend, struct dirty_vm_caps *cfg)
{
	if (backend == DIRTY_AUTO)
		backend = dirty_best_backend();
	switch (backend) {
	case DIRTY_BITMAP:
		break;
	case DIRTY_BITMAP_MANUAL:
		if (!kvm_check_extension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)) {
			kvmmig_err("bitmap-manual needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, which this KVM lacks");
			return -EOPNOTSUPP;
		}
		cfg->manual_protect = true;
		break;
	case DIRTY_RING:
	case DIRTY_MODULE:
		if (!cfg->ring_entries)
			cfg->ring_entries = DIRTY_RING_DEFAULT_ENTRIES;
		break;
	default:
		kvmmig_err("unknown dirty backend %d", backend);
		return -EINVAL;
	}
	return backend;
}

static const struct dirty_source_ops *dirty_ops(enum dirty_backend b)
{
	switch (b) {
	case DIRTY_BITMAP:
		return &dirty_bitmap_ops;
	case DIRTY_BITMAP_MANUAL:
		return &dirty_bitmap_manual_ops;
	case DIRTY_RING:
		return &dirty_ring_ops;
	case DIRTY_MODULE:
		return &dirty_module_ops;
	default:
		return NULL;
	}
}

/* The backend a VM was configured for, when the caller said "auto". */
static enum dirty_backend dirty_backend_of(struct kvmmig_vm *vm, enum dirty_backend want)
{
	if (want != DIRTY_AUTO)
		return want;
	if (vm->ring_entries)
		return access("/dev/kvmmig", R_OK | W_OK) == 0 ?
		       DIRTY_MODULE : DIRTY_RING;
	return vm->manual_protect ? DIRTY_BITMAP_MANUAL : DIRTY_BITMAP;
}

int dirty_source_open(struct kvmmig_vm *vm, const struct dirty_options *opts,
		      struct dirty_source **out)
{
	struct dirty_source *ds;
	enum dirty_backend b = dirty_backend_of(vm, opts->backend);
	int ret;

	if (!dirty_ops(b)) {
		kvmmig_err("dirty backend '%s' is not available in this build",
			   dirty_backend_name(b));
		return -EOPNOTSUPP;
	}
	if ((b == DIRTY_RING || b == DIRTY_MODULE) && !vm->ring_entries) {
		kvmmig_err("the %s backend needs a VM created with a dirty ring",
			   dirty_backend_name(b));
		return -EINVAL;
	}
	if ((b == DIRTY_BITMAP || b == DIRTY_BITMAP_MANUAL) && vm->ring_entries) {
		kvmmig_err("a VM with a dirty ring has no dirty bitmap: use the ring backend");
		return -EINVAL;
	}
	if (b == DIRTY_BITMAP_MANUAL && !vm->manual_protect) {
		kvmmig_err("bitmap-manual needs a VM created with manual dirty-log protection");
		return -EINVAL;
	}
	ds = calloc(1, sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	ds->ops = dirty_ops(b);
	ds->vm = vm;
	ds->opts = *opts;
	ds->opts.backend = b;
	if (!ds->opts.reap_interval_us)
		ds->opts.reap_interval_us = DIRTY_REAP_DEFAULT_US;
	ret = kvmmig_vm_set_dirty_logging(vm, true);
	if (!ret)
		ret = ds->ops->start(ds);
	if (ret) {
		kvmmig_vm_set_dirty_logging(vm, false);
		free(ds);
		return ret;
	}
	kvmmig_info("dirty tracking: %s backend", ds->ops->name);
	*out = ds;
	return 0;
}

int dirty_source_collect(struct dirty_source *ds, struct dirty_set *out)
{
	int ret = ds->ops->collect(ds, out);

	if (ret >= 0) {
		ds->stats.collections++;
		ds->stats.pages += ret;
	}
	return ret;
}

int dirty_source_clear(struct dirty_source *ds, unsigned int slot, uint64_t first_page,
		       uint64_t npages, const unsigned long *bits)
{
	if (!ds->opts.clear_on_send || !ds->ops->clear)
		return 0;
	return ds->ops->clear(ds, slot, first_page, npages, bits);
}

int dirty_source_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	if (!ds->ops->vcpu_counts)
		return -EOPNOTSUPP;
	return ds->ops->vcpu_counts(ds, counts);
}

void dirty_source_close(struct dirty_source *ds)
{
	if (!ds)
		return;
	/* Logging off first: no new entries while the backend winds down. */
	kvmmig_vm_set_dirty_logging(ds->vm, false);
	ds->ops->stop(ds);
	free(ds);
}

int dirty_set_alloc_layout(struct dirty_set *set, unsigned int nr_slots,
			   const uint64_t *nr_pages, unsigned int nr_vcpus)
{
	unsigned int i;

	memset(set, 0, sizeof(*set));
	set->nr_slots = nr_slots;
	set->nr_vcpus = nr_vcpus;
	set->nr_pages = calloc(set->nr_slots, sizeof(*set->nr_pages));
	set->bitmaps = calloc(set->nr_slots, sizeof(*set->bitmaps));
	set->vcpu_pages = calloc(set->nr_vcpus, sizeof(*set->vcpu_pages));
	if (!set->nr_pages || !set->bitmaps || !set->vcpu_pages)
		goto nomem;
	for (i = 0; i < set->nr_slots; i++) {
		set->nr_pages[i] = nr_pages[i];
		set->bitmaps[i] = bitmap_alloc(set->nr_pages[i]);
		if (!set->bitmaps[i])
			goto nomem;
	}
	return 0;
nomem:
	dirty_set_free(set);
	kvmmig_err("out of memory for dirty bitmaps");
	return -ENOMEM;
}

int dirty_set_alloc(struct kvmmig_vm *vm, struct dirty_set *set)
{
	uint64_t nr_pages[MIG_MAX_SLOTS];
	unsigned int i;

	for (i = 0; i < vm->nr_slots; i++)
		nr_pages[i] = kvmmig_slot_pages(&vm->slots[i]);
	return dirty_set_alloc_layout(set, vm->nr_slots, nr_pages, vm->nr_vcpus);
}

void dirty_set_clear(struct dirty_set *set)
{
	unsigned int i;

	for (i = 0; i < set->nr_slots; i++)
		bitmap_zero(set->bitmaps[i], set->nr_pages[i]);
	memset(set->vcpu_pages, 0, set->nr_vcpus * sizeof(*set->vcpu_pages));
	set->all_dirty = false;
}

void dirty_set_free(struct dirty_set *set)
{
	unsigned int i;

	for (i = 0; set->bitmaps && i < set->nr_slots; i++)
		free(set->bitmaps[i]);
	free(set->bitmaps);
	free(set->nr_pages);
	free(set->vcpu_pages);
	memset(set, 0, sizeof(*set));
}

uint64_t dirty_set_count(const struct dirty_set *set)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < set->nr_slots; i++)
		n += bitmap_weight(set->bitmaps[i], set->nr_pages[i]);
	return n;
}
