/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kvmmig migration stream, version 2 (Documentation/stream.rst).  Every
 * connection (the main channel and each multifd channel) opens with a
 * struct mig_hello; then come records, each a struct mig_rec header and a
 * payload, both checksummed with CRC32C.  All integers are little-endian.
 * The receiver validates each record against the guest configuration before
 * it writes anything: a corrupted or hostile stream can never write outside
 * guest RAM.
 */
#ifndef KVMMIG_STREAM_H
#define KVMMIG_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lat_hist.h"

#define MIG_MAGIC		0x00474d4d564b0a4bULL	/* "K\nKVMMG\0" */
#define MIG_VERSION		2
#define MIG_MAX_SLOTS		32
#define MIG_MAX_VCPUS		64
#define MIG_PAGE_SIZE		4096
#define MIG_MAX_BATCH		128	/* pages per MIG_REC_PAGES */
#define MIG_MAX_VCPU_STATE	65536	/* bytes of one vCPU's state, the VMM's blob */
#define MIG_MAX_PAYLOAD		(16 + MIG_MAX_BATCH * (8 + MIG_PAGE_SIZE))
#define MIG_MAX_CHANNELS	65	/* the main channel and up to 64 page channels */

/* mig_hello.flags: a connection that re-delivers a handover decision. */
#define MIG_HELLO_RECOVER	(1U << 0)
/*
 * ... or, with MIG_HELLO_RECOVER, a channel of a new link for a postcopy
 * that lost its own (postcopy.rst: recovery): nr_channels as before.
 */
#define MIG_HELLO_POSTCOPY	(1U << 1)

/* First bytes on every connection, in both directions' first message. */
struct mig_hello {
	uint64_t magic;
	uint32_t version;
	uint32_t channel;	/* 0: main, 1..nr_channels-1: multifd */
	uint64_t session;	/* chosen by the source; all its channels carry it */
	uint32_t nr_channels;	/* including the main channel */
	uint32_t flags;		/* must be 0 */
	uint64_t reserved[2];	/* must be 0 */
	uint32_t pad;		/* must be 0 */
	uint32_t crc;		/* CRC32C of everything above */
};

enum mig_rec_type {
	MIG_REC_CONFIG = 1,	/* main: guest layout, first record */
	MIG_REC_PAGES,		/* any channel: a batch of pages of one slot */
	MIG_REC_SYNC,		/* every channel: end of a pass */
	MIG_REC_VCPU,		/* main: one vCPU's state, at switchover */
	MIG_REC_END,		/* main: the stream is complete (a mig_handover) */
	MIG_REC_ACK,		/* destination -> source: an error */
	MIG_REC_CANCEL,		/* source -> destination: give up, before END */
	MIG_REC_PREPARED,	/* destination: all of it arrived, the guest is loaded, paused */
	MIG_REC_COMMIT,		/* source: its copy stays stopped, start yours */
	MIG_REC_ABORT,		/* source: its copy runs on, discard yours */
	MIG_REC_STARTED,	/* destination: the guest runs here */
	MIG_REC_DISCARD,	/* main, before a postcopy END: pages dirtied since sent */
	MIG_REC_REQ,		/* destination -> source, postcopy: pages a vCPU waits for */
	MIG_REC_POSTCOPY_DONE,	/* destination -> source: every page placed; its figures */
	MIG_REC_RECV_MAP,	/* destination, recovery: the pages it already holds */
	MIG_REC_MAX,
};

struct mig_rec {
	uint32_t type;
	uint32_t len;		/* payload bytes, at most MIG_MAX_PAYLOAD */
	uint64_t seq;		/* per channel, from 0: a lost or repeated record shows */
	uint32_t crc;		/* CRC32C of the payload */
	uint32_t hcrc;		/* CRC32C of the 20 bytes above */
};

struct mig_slot_desc {
	uint64_t gpa;
	uint64_t size;		/* bytes, a multiple of MIG_PAGE_SIZE */
	uint32_t id;		/* KVM memslot id */
	uint32_t flags;		/* must be 0 */
};

struct mig_config {
	uint32_t nr_slots;
	uint32_t nr_vcpus;
	uint32_t page_size;	/* MIG_PAGE_SIZE */
	uint32_t vcpu_state_size;	/* the VMM's vCPU state blob, 1..MIG_MAX_VCPU_STATE */
	uint64_t ram_bytes;	/* sum of the slots' sizes */
	uint64_t flags;		/* MIG_CONFIG_*, others must be 0 */
	struct mig_slot_desc slots[];
};

/* mig_config.flags */
#define MIG_CONFIG_POSTCOPY	(1ULL << 0)	/* the source may switch to postcopy */
#define MIG_CONFIG_PREEMPT	(1ULL << 1)	/* with POSTCOPY: the last page channel
						   carries requested pages only */
#define MIG_CONFIG_FLAGS	(MIG_CONFIG_POSTCOPY | MIG_CONFIG_PREEMPT)

/*
 * MIG_REC_PAGES payload: header, @count entries (page index within the slot,
 * MIG_PAGE_ZERO set for a zero page), then the data of the non-zero pages
 * in entry order.
 */
#define MIG_PAGE_ZERO		(1ULL << 63)
#define MIG_PAGE_INDEX_MASK	(~MIG_PAGE_ZERO)

struct mig_pages {
	uint32_t slot;		/* index into mig_config.slots */
	uint32_t count;		/* 1..MIG_MAX_BATCH */
	uint64_t gen;		/* sync generation the pages were sent in, from 1 */
	uint64_t entries[];
};

struct mig_sync_rec {
	uint64_t pass;
};

struct mig_vcpu {
	uint32_t index;
	uint32_t size;		/* == mig_config.vcpu_state_size */
	uint8_t state[];
};

/* What one channel carried before END: records and their headers' digest. */
struct mig_tally {
	uint64_t records;
	uint32_t digest;	/* CRC32C chained over every record header (mig_tally_add) */
	uint32_t pad;		/* must be 0 */
};

/*
 * The payload of every handover record (END, PREPARED, COMMIT, ABORT,
 * STARTED; Documentation/handover.rst).  END carries what the source sent;
 * PREPARED what the destination counted itself; the others echo END.  The
 * session and the nonce, random per migration, tie an answer to this END.
 */
struct mig_handover {
	uint64_t session;
	uint64_t nonce;
	uint64_t passes;
	uint64_t pages;		/* page entries the source sent, all channels */
	uint32_t nr_channels;	/* tallies that follow are meaningful */
	uint32_t flags;		/* must be 0 */
	struct mig_tally ch[MIG_MAX_CHANNELS];
};

/* mig_handover.flags: END of the precopy part; the guest starts with pages missing. */
#define MIG_HANDOVER_POSTCOPY	(1U << 0)

/*
 * MIG_REC_DISCARD payload (main, after the VCPU records of a postcopy
 * END): pages of @slot the destination holds stale copies of, or none, and
 * must take from postcopy.  Bit i of words[j] is page first + 64 * j + i;
 * @first is a multiple of 64; bits past the slot's end must be 0.
 * MIG_REC_RECV_MAP (destination -> source, recovery) has the same shape:
 * the pages it holds.
 */
#define MIG_MAX_BITMAP_WORDS	4096	/* 256 Ki pages, 1 GiB of guest per record */

struct mig_bitmap_rec {
	uint32_t slot;
	uint32_t nr_words;	/* 1..MIG_MAX_BITMAP_WORDS */
	uint64_t first;
	uint64_t words[];
};

/* MIG_REC_REQ payload: @count pages from @page of @slot, wanted now. */
struct mig_req {
	uint32_t slot;
	uint32_t count;		/* 1..MIG_MAX_BATCH, inside the slot */
	uint64_t page;
};

/* MIG_REC_POSTCOPY_DONE payload: the destination's figures (mig_report's postcopy_*). */
struct mig_postcopy_done {
	uint64_t session;
	uint64_t requests;
	uint64_t urgent_pages;
	uint64_t background_pages;
	uint64_t remote_faults;
	uint64_t blocktime_ns;
	uint64_t dropped;
	uint64_t fault_us_hist[LAT_HIST_SLOTS];
};

struct mig_ack {
	int32_t status;		/* a negative errno */
	uint32_t pad;
	char msg[120];		/* NUL-terminated */
};

/*
 * What a receiver writes into: the destination guest's memory.  A page may
 * be sent again after a dirty sync and the copies may travel on different
 * channels, so each page remembers the generation it was last written
 * from and an older copy arriving late is dropped.  Writes to one page are
 * serialised by a striped lock, one per 2 MiB run of pages, so that a batch
 * of neighbours takes one or two locks, not one per page.
 */
#define MIG_TARGET_LOCKS	256
#define MIG_TARGET_LOCK_SHIFT	9	/* pages per lock: 512 */

struct mig_target {
	const struct mig_config *cfg;
	void *hva[MIG_MAX_SLOTS];	/* host address of each slot */
	uint32_t *gen[MIG_MAX_SLOTS];	/* per page: generation written, 0 = never */
	unsigned int fresh_from;	/* slots from this one on start zeroed: a
					   zero page never written needs no write */
	bool populate;			/* prefault fresh slots with MADV_POPULATE_WRITE
					   (never on userfaultfd-registered memory) */
	/*
	 * Per page: a receiver is reading it straight from its socket
	 * (mig_pages_recv).  Set and cleared under the page's lock; a writer
	 * that finds it set waits on the lock's condition variable.
	 */
	unsigned long *inflight[MIG_MAX_SLOTS];
	pthread_mutex_t locks[MIG_TARGET_LOCKS];
	pthread_cond_t landed[MIG_TARGET_LOCKS];
	uint64_t pages, zero_pages, zero_skipped, stale;	/* atomic counters */
};

int mig_target_init(struct mig_target *t, const struct mig_config *cfg, void *const *hva,
		    unsigned int fresh_from);
void mig_target_destroy(struct mig_target *t);

/* Fill in magic, version and crc; check one (returns -EPROTO etc., says why). */
void mig_hello_seal(struct mig_hello *h);
int mig_hello_check(const struct mig_hello *h);

/* Seal a record header for @payload; check one received. */
void mig_rec_seal(struct mig_rec *r, uint32_t type, uint64_t seq, const void *payload,
		  uint32_t len);
int mig_rec_check_header(const struct mig_rec *r, uint64_t expect_seq);
int mig_rec_check_payload(const struct mig_rec *r, const void *payload);

/* A hello that re-delivers a decision (MIG_HELLO_RECOVER, one channel). */
int mig_hello_check_recover(const struct mig_hello *h);

/* Count @r, sent or received, into its channel's tally. */
void mig_tally_add(struct mig_tally *t, const struct mig_rec *r);
/* Count the record mig_chan_sendv() is about to send as number @seq. */
void mig_tally_sent(struct mig_tally *t, uint32_t type, uint64_t seq, const struct iovec *iov,
		    int iovcnt);

/*
 * Shape of a handover payload of @len bytes (-EBADMSG, says why); then
 * whether @got answers @want: same session and nonce and, with @tallies,
 * the same counts and digests (-EPROTO naming the first difference).
 */
int mig_handover_check(const struct mig_handover *h, uint32_t len, const char *what);
int mig_handover_match(const struct mig_handover *want, const struct mig_handover *got,
		       bool tallies, const char *what);

/* Validate a CONFIG payload on its own (sizes, counts, overlaps). */
int mig_config_check(const struct mig_config *cfg, uint32_t len);
size_t mig_config_size(uint32_t nr_slots);

/*
 * Validate a PAGES payload against @t's configuration and, only if all of
 * it is valid, copy the pages into guest memory.  Returns the page count,
 * or -EBADMSG with a message naming what was wrong.
 */
int mig_pages_apply(struct mig_target *t, const void *payload, uint32_t len);
/*
 * The same for a PAGES record whose header @rec was just read from the
 * plaintext channel @c, reading the payload itself: the page data goes
 * straight from the socket into guest pages nobody has written yet, whose
 * entries it claimed first; a record it cannot claim whole is read into
 * @scratch (MIG_MAX_PAYLOAD bytes) and applied as above.  Every check of
 * mig_pages_apply() and the record's CRC32C come before the pages count as
 * written.  Returns the page count or a negative errno (said).
 */
struct mig_chan;
int mig_pages_recv(struct mig_target *t, struct mig_chan *c, const struct mig_rec *rec,
		   void *scratch);
/*
 * For mig_pages_recv(), on a checked @mp: claim every page it names (in a
 * fresh slot, never written, not being read by another channel, not named
 * twice), all or none; fault in the claimed data pages; then release the
 * first @n claims, as written in mp->gen when @landed.
 */
bool mig_pages_claim(struct mig_target *t, const struct mig_pages *mp);
void mig_pages_prefault(struct mig_target *t, const struct mig_pages *mp);
void mig_pages_release(struct mig_target *t, const struct mig_pages *mp, uint32_t n,
		       bool landed);
/* The same checks, writing nothing (postcopy places pages through page_fill). */
int mig_pages_check(const struct mig_config *cfg, const void *payload, uint32_t len);
/* Shape of a DISCARD or RECV_MAP payload against @cfg: 0 or -EBADMSG, said. */
int mig_bitmap_rec_check(const struct mig_config *cfg, const void *payload, uint32_t len,
			 const char *what);
/* Shape of a REQ payload against @cfg: 0 or -EBADMSG, said. */
int mig_req_check(const struct mig_config *cfg, const void *payload, uint32_t len);

const char *mig_rec_name(uint32_t type);

#endif /* KVMMIG_STREAM_H */
