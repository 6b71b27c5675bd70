// SPDX-License-Identifier: GPL-2.0-only
/*
 * Lazy restore of a snapshot (see snapshot.h, Documentation/snapshot.rst):
 * the guest runs before its memory is there.  Guest RAM is discarded and
 * registered with the demand-fill engine (page_fill.h); a page the guest
 * touches makes the fault thread read the page's whole checksum block,
 * check it and place it, and reader threads place the other blocks in
 * order, continuing after the last faulting block (the spatial-locality
 * hint).  All file access goes through lazy_read_block(), on the chain
 * reader: a file and its bases (increments) restore lazily alike.  A block that fails its
 * checksum is never placed: the guest stalls on it, is paused and released
 * without running again, and the restore fails naming the block.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "snapshot.h"
#include "snapshot_read.h"

#define LAZY_PAUSE_MS	100	/* vCPUs not out by then wait on missing pages */

struct snap_lazy {
	struct snap_chain *c;		/* the file with its bases */
	struct kvmmig_vm *vm;
	uint8_t *buf;			/* one block, the fault thread's */
	void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running);
	void *vmm_opaque;
	struct page_fill *pf;
	uint64_t t0;			/* when the file was opened */
	double running_ms;
	bool resumed;
	bool paused;			/* atomic: stopped after a failure */
	unsigned int nr_wanted;		/* readers to start */
	unsigned int nr_readers;	/* started */
	pthread_t reader_threads[SNAP_MAX_READERS];
};

/* Block @block of @slot, checked, into @buf: its pages, from the chain's newest files. */
static int lazy_read_block(struct snap_lazy *z, unsigned int slot, uint64_t block, uint8_t *buf,
			   uint64_t *zero_mask)
{
	return snap_chain_read_block(z->c, slot, block, buf, zero_mask);
}

/* Read, check and place block @block of @slot: runs of data and runs of zeros. */
static int lazy_fill_block(struct snap_lazy *z, uint8_t *buf, unsigned int slot, uint64_t block)
{
	uint64_t first = block * SNAP_BLOCK_PAGES, zero = 0;
	long ret = lazy_read_block(z, slot, block, buf, &zero);
	int n = ret, i = 0, j;

	while (ret >= 0 && i < n) {
		bool is_zero = zero >> i & 1;

		for (j = i + 1; j < n && (bool)(zero >> j & 1) == is_zero; j++)
			;
		ret = page_fill_place(z->pf, slot, first + i,
				      is_zero ? NULL : buf + i * MIG_PAGE_SIZE, j - i);
		i = j;
	}
	return ret < 0 ? ret : 0;
}

/* A fault on @page of @slot: its block, at once, from the fault thread. */
static int lazy_request(void *opaque, unsigned int slot, uint64_t page)
{
	struct snap_lazy *z = opaque;

	return lazy_fill_block(z, z->buf, slot, page / SNAP_BLOCK_PAGES);
}

static void *lazy_reader_thread(void *arg)
{
	struct snap_lazy *z = arg;
	uint8_t *buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	uint64_t first, n;
	unsigned int slot;
	int ret;

	/* Said once, by the thread in snapshot_lazy_finish(). */
	kvmmig_log_quiet(true);
	if (!buf) {
		kvmmig_err("no memory for a lazy restore reader's buffer");
		page_fill_fail(z->pf, -ENOMEM);
		return NULL;
	}
	while ((ret = page_fill_next(z->pf, SNAP_BLOCK_PAGES, &slot, &first, &n)) == 1) {
		ret = lazy_fill_block(z, buf, slot, first / SNAP_BLOCK_PAGES);
		if (ret)
			break;
	}
	/* page_fill_place() failed the fill already; a read error fails it here. */
	if (ret < 0)
		page_fill_fail(z->pf, ret);
	free(buf);
	return NULL;
}

static int lazy_start_readers(struct snap_lazy *z)
{
	int ret = 0;

	while (!ret && z->nr_readers < z->nr_wanted) {
		ret = -pthread_create(&z->reader_threads[z->nr_readers], NULL, lazy_reader_thread, z);
		if (ret)
			kvmmig_err("cannot start lazy restore reader %u: %s", z->nr_readers,
				   strerror(-ret));
		else
			z->nr_readers++;
	}
	return ret;
}

static void *lazy_pause_thread(void *arg)
{
	struct snap_lazy *z = arg;

	kvmmig_vm_pause(z->vm);
	__atomic_store_n(&z->paused, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Stop a guest that must not run on.  A vCPU waiting on a page that will
 * never come cannot leave KVM_RUN (a signal does not pull KVM's emulator
 * out of a userfault: it retries the access), so the pause is asked for
 * first, in a thread of its own; if the vCPUs are not all out within
 * LAZY_PAUSE_MS, ending the fill lets their accesses complete on zero
 * pages, after which KVM sees the pause's kick and returns before the
 * guest runs again.  The VM is then released, never resumed.
 */
static int lazy_stop_guest(struct snap_lazy *z, struct page_fill_stats *st)
{
	uint64_t until = now_ns() + LAZY_PAUSE_MS * NSEC_PER_MSEC;
	pthread_t t;
	int ret;

	if (pthread_create(&t, NULL, lazy_pause_thread, z)) {
		ret = page_fill_end(z->pf, st);
		kvmmig_vm_pause(z->vm);
		return ret;
	}
	while (!__atomic_load_n(&z->paused, __ATOMIC_ACQUIRE) && now_ns() < until)
		usleep(1000);
	ret = page_fill_end(z->pf, st);
	pthread_join(t, NULL);
	return ret;
}

/* Stop the readers and the fill; after a failure, the guest too. */
static int lazy_end(struct snap_lazy *z, int err, struct page_fill_stats *st)
{
	int ret = 0;

	if (err && z->pf)
		page_fill_fail(z->pf, err);
	while (z->nr_readers)
		pthread_join(z->reader_threads[--z->nr_readers], NULL);
	if (err && z->resumed)
		ret = lazy_stop_guest(z, st);
	else if (z->pf)
		ret = page_fill_end(z->pf, st);
	z->pf = NULL;
	return err ? err : ret;
}

static void lazy_free(struct snap_lazy *z, int err)
{
	if (err && z->vm)
		z->release_vm(z->vmm_opaque, z->vm, false);
	snap_chain_close(z->c);
	free(z->buf);
	free(z);
}

int snapshot_lazy_start(const char *path,
			int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
					 struct kvmmig_vm **vm),
			void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
			void *vmm_opaque, const struct snap_restore_opts *o,
			struct snap_lazy **lazy, struct kvmmig_vm **out)
{
	struct snap_lazy *z = calloc(1, sizeof(*z));
	struct page_fill_opts fo = {
		.request = lazy_request, .opaque = z, .discard = true, .hint = !o->no_hint,
		.timeout_ms = o->fault_timeout_ms, .cancel = o->cancel,
	};
	unsigned int readers = o->readers ? o->readers : 1;
	int ret = z ? snap_check_readers(readers) : -ENOMEM;

	if (ret) {
		free(z);
		return ret;
	}
	z->release_vm = release_vm;
	z->vmm_opaque = vmm_opaque;
	z->nr_wanted = readers;
	z->t0 = now_ns();
	z->buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	ret = z->buf ? snap_chain_open(path, &z->c) : -ENOMEM;
	if (!ret)
		ret = snap_make_vm(z->c, create_vm, vmm_opaque, &z->vm);
	/* Registered before the vCPU states go in: loading them may touch memory. */
	if (!ret)
		ret = page_fill_start(z->vm, &fo, &z->pf);
	if (!ret)
		ret = snap_load_vcpus(z->c, z->vm);
	if (!ret)
		ret = kvmmig_vm_resume(z->vm);
	z->resumed = !ret;
	z->running_ms = (now_ns() - z->t0) / 1e6;
	if (!ret && !o->demand_only)
		ret = lazy_start_readers(z);
	if (ret) {
		lazy_end(z, ret, NULL);
		lazy_free(z, ret);
		return ret;
	}
	*lazy = z;
	*out = z->vm;
	return 0;
}

void snapshot_lazy_stats(struct snap_lazy *z, struct page_fill_stats *st)
{
	page_fill_stats(z->pf, st);
}

int snapshot_lazy_finish(struct snap_lazy *z, unsigned int timeout_ms,
			 struct snap_lazy_report *r)
{
	int ret = lazy_start_readers(z);

	if (!ret)
		ret = page_fill_wait(z->pf, timeout_ms);

	memset(r, 0, sizeof(*r));
	ret = lazy_end(z, ret, &r->fill);
	r->running_ms = z->running_ms;
	r->loaded_s = (now_ns() - z->t0) / 1e9;
	lazy_free(z, ret);
	return ret;
}
