/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Background snapshots of a running guest and their restore
 * (Documentation/snapshot.rst).  snapshot_save() pauses the VM just long
 * enough to save the vCPU state and write-protect guest RAM with
 * userfaultfd, resumes it, and then writes every page as it was at the
 * pause: a walker saves pages in order, a fault thread saves a page the
 * guest is about to write first.  The file has every page at a fixed
 * offset (zero pages are holes), the guest configuration, the vCPU state
 * and a CRC32C per block of pages; it is written as FILE.partial and
 * renamed only when complete.  A series (snap_series_new()) makes the
 * snapshots after its first live increments: only the pages written since
 * the previous one's pause, marked present in the file's map, the rest
 * coming from the base the file names.  snapshot_load() checks a file with
 * its chain of bases (snap_chain_open(), also the lazy restore's reader)
 * and loads it into a VM the VMM makes from its configuration, ready to
 * resume.
 */
#ifndef KVMMIG_SNAPSHOT_H
#define KVMMIG_SNAPSHOT_H

#include <signal.h>
#include <stdint.h>

#include "dirty.h"
#include "kvmmig_vm.h"
#include "page_fill.h"
#include "stream.h"
#include "tls.h"

#define SNAP_MAGIC		0x31504e53474d4b0aULL	/* "\nKMGSNP1" */
#define SNAP_VERSION		2
#define SNAP_HEADER_SIZE	4096			/* header + configuration */
#define SNAP_BLOCK_PAGES	64			/* pages per checksum and map word */
#define SNAP_COMPLETE		(1U << 0)		/* header flag: every part written */
#define SNAP_INCREMENTAL	(1U << 1)		/* header flag: absent pages are the base's */
#define SNAP_FLAGS		(SNAP_COMPLETE | SNAP_INCREMENTAL)
#define SNAP_MAX_WRITERS	64
#define SNAP_BASE_NAME_MAX	256			/* with its NUL */
#define SNAP_CHAIN_MAX		32			/* files in a chain, the full one too */
#define SNAP_MAX_READERS	64

/* At offset 0; the guest configuration (struct mig_config) follows it. */
struct snap_header {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;			/* SNAP_COMPLETE, SNAP_INCREMENTAL */
	uint64_t taken_ns;		/* CLOCK_REALTIME of the pause */
	uint64_t vcpu_off;		/* nr_vcpus states of vcpu_state_size bytes */
	uint64_t crc_off;		/* one uint32 per block, slot after slot */
	uint64_t map_off;		/* one uint64 per block: its pages present here */
	uint64_t data_off;		/* slot 0's pages, then slot 1's, ... */
	uint64_t file_size;
	uint32_t config_len;		/* bytes of the configuration that follows */
	uint32_t vcpu_crc;		/* CRC32C of the vCPU states */
	uint32_t table_crc;		/* CRC32C of the block checksums */
	uint32_t map_crc;		/* CRC32C of the presence map */
	uint64_t id;			/* this file's random id, never 0 */
	uint64_t base_id;		/* SNAP_INCREMENTAL: the base file's id, else 0 */
	/*
	 * SNAP_INCREMENTAL: the base file, NUL-terminated: a plain file name in
	 * this file's directory, or an absolute path; else all zero.
	 */
	char base_name[SNAP_BASE_NAME_MAX];
	uint32_t pad;
	uint32_t hcrc;			/* CRC32C of header and configuration, this 0 */
};

/* How a series finds the pages dirtied since its previous snapshot. */
enum snap_tracker {
	SNAP_TRACK_DIRTY,		/* the VM's dirty source (ring, bitmap, module) */
	SNAP_TRACK_PAGEMAP,		/* PAGEMAP_SCAN with UFFD_FEATURE_WP_ASYNC */
	NR_SNAP_TRACKERS,
};

/*
 * A live series of snapshots of one running VM (snapshot_track.c): the
 * first snapshot saved with it is full, each later one an increment that
 * holds only the pages written since the pause of the one before and names
 * it as its base.  Tracking starts at the first snapshot's pause and runs
 * until snap_series_free().  After a failed snapshot the next one is full
 * again (tracking restarts at its pause).
 */
struct snap_series;

/*
 * A series of @vm tracked by @tracker; SNAP_TRACK_PAGEMAP falls back to
 * SNAP_TRACK_DIRTY where the kernel lacks it (snap_series_fallback() says
 * why).  @dirty: the dirty source's options for SNAP_TRACK_DIRTY.
 */
int snap_series_new(struct kvmmig_vm *vm, enum snap_tracker tracker,
		    const struct dirty_options *dirty, struct snap_series **out);
void snap_series_free(struct snap_series *s);
enum snap_tracker snap_series_tracker(const struct snap_series *s);
/* Why the tracker asked for is not the one in use, or NULL. */
const char *snap_series_fallback(const struct snap_series *s);
const char *snap_tracker_name(enum snap_tracker t);
int snap_tracker_parse(const char *name);
/*
 * The VMM wrote guest memory [@gpa, @gpa + @len) itself: KVM's dirty log
 * sees only the guest's own writes (and KVM's), so a VMM that writes guest
 * RAM while a SNAP_TRACK_DIRTY series runs says so here, as QEMU marks its
 * own DMA dirty.  Thread-safe; the pagemap tracker needs no help.
 */
void snap_series_mark_dirty(struct snap_series *s, uint64_t gpa, uint64_t len);

struct snap_opts {
	const char *path;		/* the file to write (FILE.partial meanwhile), or tcp:HOST:PORT */
	bool direct;			/* O_DIRECT where the filesystem allows it */
	struct tls_opts tls;		/* tcp: only; all NULL: plaintext */
	/*
	 * A series (NULL: a lone full snapshot): the snapshot is an increment
	 * on the series' previous one when there is one.
	 */
	struct snap_series *series;
	unsigned int writers;		/* walker threads, 1..SNAP_MAX_WRITERS (0: 1) */
	const volatile sig_atomic_t *cancel;	/* set non-zero to cancel (cancel.h) */
	/*
	 * Pre-fault guest RAM before protecting it even where the kernel has
	 * UFFD_FEATURE_WP_UNPOPULATED (the older kernels' path, to test and
	 * measure it).
	 */
	bool prefault;
	/*
	 * Called with the VM paused, its vCPU states saved and its memory not
	 * yet protected: the snapshot holds memory as it is when this returns
	 * (tests copy RAM here).
	 */
	void (*paused)(void *opaque, struct kvmmig_vm *vm);
	void *opaque;
};

struct snap_report {
	double pause_ms;		/* the guest stood still this long */
	double handover_ms;		/* pagemap tracker: the second, short pause */
	bool incremental;		/* an increment on base_path */
	char base_path[256];
	uint64_t id;			/* the file's id */
	uint64_t pages_total;		/* pages of guest RAM */
	uint64_t pages_saved;		/* present in the file (walk + fault) */
	const char *tracker;		/* series only: its tracker's name */
	double total_s;
	uint64_t pages_walk;		/* saved by the walker */
	uint64_t pages_fault;		/* saved first because the guest wrote them */
	uint64_t zero_pages;		/* left as holes */
	uint64_t bytes_written;
	bool wp_unpopulated;		/* no pre-faulting was needed */
	bool direct;			/* the file was written with O_DIRECT */
	/* fault service time, from reading the fault to lifting protection */
	uint64_t fault_us_hist[24];	/* bucket i: [2^i, 2^(i+1)) us; 0: < 2 us */
	char error[256];
};

/*
 * Snapshot @vm, which is running, into o->path.  0 with the guest running
 * on and the file complete, or -errno with r->error: then the guest runs
 * on unprotected and no file is left.
 */
int snapshot_save(struct kvmmig_vm *vm, const struct snap_opts *o, struct snap_report *r);

/*
 * Check @path and load it into a VM made by @create_vm (as for
 * mig_dest_run()) from the file's configuration: memory and vCPU state,
 * not yet running; kvmmig_vm_resume() runs it.  -EBADMSG (or another
 * -errno) names what is wrong with the file; the VM is then released.
 */
int snapshot_load(const char *path,
		  int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
				   struct kvmmig_vm **vm),
		  void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
		  void *vmm_opaque, struct kvmmig_vm **out);

/* ---- reading a chain: a file and its bases (snapshot_chain.c) ---- */

/*
 * A snapshot file opened with its chain of bases, checked: every header,
 * every base's id against what the file after it names, the same guest
 * configuration throughout, at most SNAP_CHAIN_MAX files, no loop; the
 * presence maps are read and checked against their checksums.  Page data
 * is read on demand, so several threads may call snap_chain_read_block()
 * at once.  Errors name the file and what is wrong with it.
 */
struct snap_chain;

int snap_chain_open(const char *path, struct snap_chain **out);
void snap_chain_close(struct snap_chain *c);
/* The guest configuration (the newest file's; all files agree). */
const struct mig_config *snap_chain_config(const struct snap_chain *c);
/* Files in the chain: 1 for a full snapshot. */
unsigned int snap_chain_depth(const struct snap_chain *c);
/* File @i's path, 0 the one opened, depth - 1 the full one. */
const char *snap_chain_path(const struct snap_chain *c, unsigned int i);
/*
 * Where page @idx of slot @slot lives: the fd and offset of its bytes in
 * the newest file that holds it (a hole reads as zeros).  The file's index
 * (as snap_chain_path()), or -EINVAL for a page outside the guest.
 */
int snap_chain_locate(const struct snap_chain *c, unsigned int slot, uint64_t idx, int *fd,
		      uint64_t *off);
/*
 * Block @block of slot @slot (pages @block * SNAP_BLOCK_PAGES on, fewer at
 * the slot's end) into @buf, each page from the newest file that holds it;
 * every file's checksum over its pages of the block is checked.  Sets bit
 * i of *@zero_mask (if not NULL) for each page that is all zeros.  The
 * number of pages, or -EBADMSG (or another -errno) naming file and pages.
 */
int snap_chain_read_block(struct snap_chain *c, unsigned int slot, uint64_t block, void *buf,
			  uint64_t *zero_mask);
/* The newest file's vCPU states (nr_vcpus x vcpu_state_size bytes), checked. */
int snap_chain_read_states(struct snap_chain *c, void *states);
/* How a restore reads the file. */
struct snap_restore_opts {
	unsigned int readers;		/* reader threads, 1..SNAP_MAX_READERS (0: 1) */
	/* lazy: background readers do not jump to the block after a fault's (seed 003) */
	bool no_hint;
	unsigned int fault_timeout_ms;	/* lazy: a faulting page's deadline (0: page_fill's) */
	/*
	 * lazy: no background reading before snapshot_lazy_finish(): until
	 * then only what the guest touches is read (tests see every fault).
	 */
	bool demand_only;
	const volatile sig_atomic_t *cancel;	/* set non-zero to cancel (cancel.h) */
};

/* snapshot_load() with @o's readers (NULL: one). */
int snapshot_load_with(const char *path,
		       int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
					struct kvmmig_vm **vm),
		       void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
		       void *vmm_opaque, const struct snap_restore_opts *o, struct kvmmig_vm **out);

/*
 * Lazy restore (snapshot_lazy.c): the VM is made and its vCPU states
 * loaded, its memory registered for demand fill (page_fill.h), and it is
 * resumed at once; a page the guest touches is read with its whole
 * checksum block, checked and placed, while o->readers background threads
 * place the rest in order.  snapshot_lazy_start() returns with the guest
 * running (or -errno, the VM released); snapshot_lazy_finish() waits until
 * every page is placed and unregisters.  If a block turns out bad (or the
 * fill fails, times out or is cancelled), the guest can only stall on the
 * pages it lacks: finish pauses it, releases the VM with @release_vm and
 * returns the error naming the block.
 */
struct snap_lazy;

struct snap_lazy_report {
	double running_ms;		/* from opening the file to the guest resumed */
	double loaded_s;		/* from opening the file to every page placed */
	struct page_fill_stats fill;
};

int snapshot_lazy_start(const char *path,
			int (*create_vm)(void *vmm_opaque, const struct mig_config *cfg,
					 struct kvmmig_vm **vm),
			void (*release_vm)(void *vmm_opaque, struct kvmmig_vm *vm, bool running),
			void *vmm_opaque, const struct snap_restore_opts *o,
			struct snap_lazy **lazy, struct kvmmig_vm **out);
/* The demand fill's counters so far. */
void snapshot_lazy_stats(struct snap_lazy *z, struct page_fill_stats *st);
/* Wait up to @timeout_ms for the whole file; @r filled either way. Frees @z. */
int snapshot_lazy_finish(struct snap_lazy *z, unsigned int timeout_ms,
			 struct snap_lazy_report *r);

/* The fault-latency percentile @p (0-100) of @r, in microseconds (an upper bound). */
uint64_t snap_fault_percentile_us(const struct snap_report *r, double p);

/* ---- the file's layout (snapshot_file.c) ---- */

/* Offsets for @cfg: fills @h (but flags, ids and CRCs). */
void snap_layout(const struct mig_config *cfg, struct snap_header *h);
/* Bytes of the presence map (one uint64 per block). */
uint64_t snap_map_size(const struct mig_config *cfg);
/*
 * A block's checksum: the CRC32C of the CRC32Cs of the pages of it that
 * are present (set in @present; bit i: @page_crc[i]), in order.
 */
uint32_t snap_block_crc(const uint32_t *page_crc, uint64_t present);
/* Pages in block @b (from 0) of a slot of @npages pages. */
uint64_t snap_block_len(uint64_t npages, uint64_t b);
/* Byte offset of page @idx of slot @slot. */
uint64_t snap_page_off(const struct snap_header *h, const struct mig_config *cfg,
		       unsigned int slot, uint64_t idx);
/* Index of the first checksum of slot @slot in the block table. */
uint64_t snap_first_block(const struct mig_config *cfg, unsigned int slot);
uint64_t snap_nr_blocks(const struct mig_config *cfg);
/* Seal (hcrc) and check a header with its configuration; the check says what is wrong. */
void snap_header_seal(struct snap_header *h, const struct mig_config *cfg);
int snap_header_check(const char *path, const void *buf, size_t len, uint64_t file_size,
		      const struct mig_config **cfg);

#endif /* KVMMIG_SNAPSHOT_H */
