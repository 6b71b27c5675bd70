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
 * renamed only when complete.  snapshot_load() checks a file and loads it
 * into a VM the VMM makes from its configuration, ready to resume.
 */
#ifndef KVMMIG_SNAPSHOT_H
#define KVMMIG_SNAPSHOT_H

#include <signal.h>
#include <stdint.h>

#include "kvmmig_vm.h"
#include "stream.h"
#include "tls.h"

#define SNAP_MAGIC		0x31504e53474d4b0aULL	/* "\nKMGSNP1" */
#define SNAP_VERSION		1
#define SNAP_HEADER_SIZE	4096			/* header + configuration */
#define SNAP_BLOCK_PAGES	64			/* pages per checksum */
#define SNAP_COMPLETE		(1U << 0)		/* header flag: every part written */
#define SNAP_MAX_WRITERS	64

/* At offset 0; the guest configuration (struct mig_config) follows it. */
struct snap_header {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;			/* SNAP_COMPLETE */
	uint64_t taken_ns;		/* CLOCK_REALTIME of the pause */
	uint64_t vcpu_off;		/* nr_vcpus states of vcpu_state_size bytes */
	uint64_t crc_off;		/* one uint32 per block, slot after slot */
	uint64_t data_off;		/* slot 0's pages, then slot 1's, ... */
	uint64_t file_size;
	uint32_t config_len;		/* bytes of the configuration that follows */
	uint32_t vcpu_crc;		/* CRC32C of the vCPU states */
	uint32_t table_crc;		/* CRC32C of the block checksums */
	uint32_t hcrc;			/* CRC32C of header and configuration, this 0 */
};

struct snap_opts {
	const char *path;		/* the file to write (FILE.partial meanwhile), or tcp:HOST:PORT */
	bool direct;			/* O_DIRECT where the filesystem allows it */
	struct tls_opts tls;		/* tcp: only; all NULL: plaintext */
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

/* The fault-latency percentile @p (0-100) of @r, in microseconds (an upper bound). */
uint64_t snap_fault_percentile_us(const struct snap_report *r, double p);

/* ---- the file's layout (snapshot_file.c) ---- */

/* Offsets for @cfg: fills @h (but flags and CRCs). */
void snap_layout(const struct mig_config *cfg, struct snap_header *h);
/* Byte offset of page @idx of slot @slot. */
uint64_t snap_page_off(const struct snap_header *h, const struct mig_config *cfg,
		       unsigned int slot, uint64_t idx);
/* Index of the first checksum of slot @slot in the block table. */
uint64_t snap_first_block(const struct mig_config *cfg, unsigned int slot);
uint64_t snap_nr_blocks(const struct mig_config *cfg);
/* Seal (hcrc) and check a header with its configuration; the check says what is wrong. */
void snap_header_seal(struct snap_header *h, const struct mig_config *cfg);
int snap_header_check(const void *buf, size_t len, uint64_t file_size,
		      const struct mig_config **cfg);

#endif /* KVMMIG_SNAPSHOT_H */
