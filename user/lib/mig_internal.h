/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the source side's files (mig_source.c, mig_sender.c,
 * mig_handover.c, mig_postcopy.c) share: the migration's state, the sync
 * engine's included.
 */
#ifndef KVMMIG_MIG_INTERNAL_H
#define KVMMIG_MIG_INTERNAL_H

#include <pthread.h>

#include "migrate.h"
#include "mig_sync.h"
#include "mig_throttle.h"
#include "net.h"
#include "stream.h"

/* Batches in flight: enough to keep every channel busy, not a buffer of RAM. */
#define MIG_QUEUE_DEPTH		16

/* What a batch is, for postcopy's counts. */
enum mig_job_kind {
	MIG_JOB_PRECOPY,
	MIG_JOB_URGENT,		/* postcopy: pages the destination asked for */
	MIG_JOB_BACKGROUND,	/* postcopy: the walk of the discard set */
};

struct mig_job {
	uint32_t slot;
	uint32_t count;
	uint64_t gen;
	enum mig_job_kind kind;
	uint64_t idx[MIG_MAX_BATCH];
};

struct mig_src;

struct mig_sender {
	struct mig_src *src;
	struct mig_chan chan;
	struct mig_tally tally;		/* what this channel sent, for END */
	pthread_t thread;
	bool started;
	bool preempt;			/* takes urgent batches only (postcopy-preempt) */
	bool background;		/* set up for postcopy's background walk */
	struct mig_pages *hdr;		/* header + entries of one record */
	uint8_t *data;			/* page copies of one record */
};

struct mig_src {
	struct kvmmig_vm *vm;
	const struct mig_source_opts *opts;
	struct mig_params p;
	struct mig_report *rep;
	enum mig_state state;
	struct dirty_source *ds;
	struct mig_sync sync;
	struct mig_throttle thr;
	struct kmod_session *own_ks;	/* our kvmmig.ko session, when not the dirty source's */
	struct bpf_rates *br;		/* BPF rate source (x-rate-source bpf), or NULL */
	uint64_t session;
	uint64_t pass;
	bool paused;
	bool gave_up;			/* the source ended it (--max-passes), not the peer */
	bool rates_ok;			/* the policy reads per-vCPU rates */

	struct tls_creds *tls;		/* loaded once for all channels, or NULL */
	char tls_host[256];		/* the name the destination's certificate must carry */
	struct mig_chan main;
	struct mig_tally main_tally;	/* what the main channel sent, for END */
	unsigned int nr_senders;
	struct mig_sender *senders;

	/*
	 * The return path: a thread reads the main channel for the whole
	 * migration.  Before END anything from the destination fails the
	 * migration; from END on, it passes one record at a time to the
	 * migration thread (rp_have), or the channel's end (rp_err).
	 */
	pthread_t rp_thread;
	bool rp_started;
	struct mig_chan rp_chan;	/* the main channel's receiving side */
	pthread_mutex_t rplock;
	pthread_cond_t rpcond;
	bool rp_handover;		/* END sent: records are answers */
	bool rp_have;			/* rp_rec/rp_buf hold an unread record */
	bool rp_stopping;		/* mig_rp_stop(): take no more */
	int rp_err;			/* the channel ended: why */
	char rp_msg[256];		/* ... in words */
	bool peer_failed;		/* ... an ACK: the destination gave up */
	struct mig_rec rp_rec;
	void *rp_buf;
	struct mig_vcpu *vcpu_rec;	/* one VCPU record, the VMM's state size */

	/* the handover (Documentation/handover.rst) */
	struct mig_handover end;	/* as sent in END */
	bool committed;			/* COMMIT may have reached the destination */

	/* the batch queue; error is the first failure of any thread */
	pthread_mutex_t qlock;
	pthread_cond_t qwork, qspace, qidle;
	struct mig_job queue[MIG_QUEUE_DEPTH];
	unsigned int qhead, qcount, qbusy;
	bool stop;
	int error;

	/*
	 * Postcopy (mig_postcopy.c; Documentation/postcopy.rst).  With
	 * preempt the last sender is the preempt channel's, fed by uqueue
	 * alone (qlock, uqwork).  The discard set is sync.bmap: the walk and
	 * the return path clear its words with atomics, pc_left counts its
	 * bits.  The hint (qlock) is left by the return path, taken by the walk.
	 */
	struct mig_config *cfg;		/* as sent in CONFIG */
	bool preempt;
	bool pc_switch;			/* migrate-start-postcopy seen between batches */
	bool postcopy;			/* COMMIT of a postcopy END sent: cancel refused,
					   a broken link pauses (atomic) */
	bool pc_cancel_said;
	uint32_t end_flags;		/* mig_handover.flags of END */
	uint64_t pc_gen;		/* generation of postcopy's PAGES: sync.gen + 1 */
	uint64_t pc_prev_pending;	/* auto rule: pending after the pass before */
	uint64_t pc_left;		/* bits of the discard set (atomic) */
	unsigned int pc_slot;		/* the walk's cursor */
	uint64_t pc_word;
	bool hint_set;
	unsigned int hint_slot;
	uint64_t hint_page;
	pthread_cond_t uqwork;
	struct mig_job uqueue[MIG_QUEUE_DEPTH];
	unsigned int uqhead, uqcount;
	uint64_t pc_requests, pc_urgent, pc_background;	/* pages (atomic) */
	int64_t pc_progress_ms;		/* now_ms() of the last record either way (atomic) */
	bool pc_done;			/* POSTCOPY_DONE received (rplock) */
	struct mig_postcopy_done done;
	double t_started;		/* STARTED heard */
	const char *to;			/* where channels connect: opts->to, or a
					   settle RESUME_AT's address (to_buf) */
	char to_buf[256];
	uint32_t hello_flags;		/* MIG_HELLO_RECOVER | POSTCOPY on a new link */

	pthread_mutex_t bwlock;		/* max-bandwidth token bucket */
	double bw_tokens, bw_last;

	uint64_t bytes_sent, pages_sent, zero_pages;	/* atomics, by senders */
	double throughput, dirty_rate;			/* bytes/s */
	uint64_t dirty_pages;		/* found by the syncs after the first pass */
	/* the dirty rate's period: since the last throttle check */
	uint64_t period_pages, period_bytes_sent;
	double period_t;
	double t_iter_sync;		/* the latest iteration sync */
	uint64_t tp_bytes;
	double tp_last;
	double t_start, t_pause, last_sample, last_rates, progress_interval;
};

/* A point of the timeline, through the progress callback too. */
void mig_sample(struct mig_src *s, bool sync);
/* The throughput measured, and a sample when one is due. */
void mig_progress_tick(struct mig_src *s);
/* 0, a negative errno, or MIG_PC_SWITCH: migrate-start-postcopy asks to switch now. */
#define MIG_PC_SWITCH	1
int mig_between_batches(struct mig_src *s);
/* The first failure of any thread: recorded, and every waiter woken. */
void mig_src_fail(struct mig_src *s, int err);
/* -ECANCELED (named) on a cancel, else the first failure, else 0. */
int mig_check_cancel(struct mig_src *s);
/* Cancelled or failed: for loops that must stop within a tick. */
bool mig_cancelled(const struct mig_src *s);

/* The senders (mig_sender.c). */
/* In postcopy a background channel keeps at most this much unsent in its socket. */
#define MIG_PC_UNSENT_BYTES	(128 << 10)
/* Connect channel @index (0: main), TLS and hello included. */
int mig_connect_channel(struct mig_src *s, struct mig_chan *c, unsigned int index);
int mig_start_senders(struct mig_src *s);
/* Join the senders once the queue is empty; after a failure, shut their sockets first. */
void mig_stop_senders(struct mig_src *s);
/* Wait until every queued batch has been sent (or a sender failed). */
int mig_queue_drain(struct mig_src *s);
/*
 * Queue the pages set in @map (slot @slot, @npages bits), clearing each
 * word before its pages are copied (the sync engine relies on it:
 * mig_sync.h), and count them into @sent; runs mig_between_batches()
 * every 64 words.
 */
int mig_queue_pages(struct mig_src *s, unsigned int slot, unsigned long *map, uint64_t npages,
		    uint64_t *sent);
/* Queue a postcopy batch: urgent ones on the preempt queue or at the head. */
int mig_queue_urgent(struct mig_src *s, const struct mig_job *job);
int mig_queue_job(struct mig_src *s, const struct mig_job *job);
/* Every sender's channel: a sender blocked on a dead peer returns. */
void mig_shutdown_channels(struct mig_src *s);

/* The return path and the handover (mig_handover.c). */
int mig_rp_start(struct mig_src *s);
void mig_rp_linger(struct mig_src *s, unsigned int ms);
void mig_rp_stop(struct mig_src *s);
/* Send a record, counting it into @t for END. */
int mig_send_tallied(struct mig_chan *c, struct mig_tally *t, uint32_t type,
		     const struct iovec *iov, int iovcnt);
int mig_send_main(struct mig_src *s, uint32_t type, const void *payload, uint32_t len);
/*
 * END to the decision.  0: the guest runs on the destination.  An error
 * with s->committed clear: resume here.  With it set: the destination may
 * hold the guest; never resume.
 */
int mig_handover(struct mig_src *s);
/* After resuming: tell a destination that got END to discard its copy. */
void mig_handover_abort(struct mig_src *s);

/* Postcopy (mig_postcopy.c). */
/* After a pass: the switch rule of params.postcopy_start says switch. */
bool mig_postcopy_due(struct mig_src *s);
/* The switch's part after the guest paused and the last sync: DISCARD records. */
int mig_postcopy_send_discard(struct mig_src *s);
/* Before COMMIT of a postcopy END: from here requests are served, cancel refused. */
void mig_postcopy_commit(struct mig_src *s);
/* The return path's postcopy records (REQ, POSTCOPY_DONE): 0, or the link is broken. */
int mig_postcopy_rp_record(struct mig_src *s, const struct mig_rec *rec);
/* From STARTED to POSTCOPY_DONE, recoveries included. */
int mig_postcopy_run(struct mig_src *s);
/* Requests and pages served so far, into the report. */
void mig_postcopy_counts(struct mig_src *s);

#endif /* KVMMIG_MIG_INTERNAL_H */
