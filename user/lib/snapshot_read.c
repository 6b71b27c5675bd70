// SPDX-License-Identifier: GPL-2.0-only
/*
 * Eager restore with several reader threads (snapshot_load_with() with
 * readers > 1): each thread takes the next block of the file from a shared
 * counter, reads it with its own pread() into its own buffer, checks it
 * and copies it into guest memory, so reads overlap on storage that serves
 * several at once.  The first failure stops every reader; its message is
 * said again by the calling thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "log.h"
#include "snapshot_read.h"

struct snap_par {
	struct snap_chain *c;
	struct kvmmig_vm *vm;
	const volatile sig_atomic_t *cancel;
	uint64_t next;			/* atomic: the next block to take */
	uint64_t nr_blocks;
	pthread_mutex_t lock;
	int error;			/* the first failure, under lock */
	char why[512];
};

int snap_check_readers(unsigned int readers)
{
	if (readers < 1 || readers > SNAP_MAX_READERS) {
		kvmmig_err("%u reader threads: expected 1 to %d", readers, SNAP_MAX_READERS);
		return -EINVAL;
	}
	return 0;
}

/* Block @block of the file: its slot and its index in the slot. */
static void snap_block_at(const struct mig_config *cfg, uint64_t block, unsigned int *slot,
			  uint64_t *in_slot)
{
	unsigned int s;

	*slot = 0;
	*in_slot = 0;
	for (s = 0; s < cfg->nr_slots; s++) {
		uint64_t npages = cfg->slots[s].size / MIG_PAGE_SIZE;
		uint64_t nb = (npages + SNAP_BLOCK_PAGES - 1) / SNAP_BLOCK_PAGES;

		if (block < nb) {
			*slot = s;
			*in_slot = block;
			return;
		}
		block -= nb;
	}
}

static void snap_par_fail(struct snap_par *p, int err)
{
	pthread_mutex_lock(&p->lock);
	if (!p->error) {
		p->error = err;
		snprintf(p->why, sizeof(p->why), "%s", kvmmig_last_error());
	}
	pthread_mutex_unlock(&p->lock);
}

static bool snap_par_failed(struct snap_par *p)
{
	bool failed;

	pthread_mutex_lock(&p->lock);
	failed = p->error;
	pthread_mutex_unlock(&p->lock);
	return failed;
}

static void *snap_reader_thread(void *arg)
{
	struct snap_par *p = arg;
	uint8_t *buf = malloc(SNAP_BLOCK_PAGES * MIG_PAGE_SIZE);
	uint64_t b, in_slot;
	unsigned int slot;
	int ret = buf ? 0 : -ENOMEM;

	/* Said once, by the caller's thread. */
	kvmmig_log_quiet(true);
	if (ret)
		kvmmig_err("no memory for a snapshot reader's buffer");
	while (!ret && !snap_par_failed(p) &&
	       (b = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->nr_blocks) {
		if (kvmmig_cancelled(p->cancel)) {
			kvmmig_err("the restore of %s was cancelled", snap_chain_path(p->c, 0));
			ret = -ECANCELED;
			break;
		}
		snap_block_at(snap_chain_config(p->c), b, &slot, &in_slot);
		ret = snap_load_block(p->c, p->vm, buf, slot, in_slot);
	}
	if (ret)
		snap_par_fail(p, ret);
	free(buf);
	return NULL;
}

int snap_load_parallel(struct snap_chain *c, struct kvmmig_vm *vm, unsigned int readers,
		       const volatile sig_atomic_t *cancel)
{
	struct snap_par p = {
		.c = c, .vm = vm, .cancel = cancel, .nr_blocks = snap_nr_blocks(snap_chain_config(c)),
	};
	pthread_t th[SNAP_MAX_READERS];
	unsigned int i, started = 0;
	int ret = snap_check_readers(readers);

	if (ret)
		return ret;
	pthread_mutex_init(&p.lock, NULL);
	for (i = 0; i < readers; i++) {
		ret = -pthread_create(&th[i], NULL, snap_reader_thread, &p);
		if (ret) {
			kvmmig_err("cannot start snapshot reader %u: %s", i, strerror(-ret));
			snap_par_fail(&p, ret);
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (p.error) {
		kvmmig_err("%s", p.why);
		ret = p.error;
	}
	pthread_mutex_destroy(&p.lock);
	return ret;
}
