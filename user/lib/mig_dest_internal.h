/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the destination's files share: mig_dest.c (listening, the
 * channels, the records, the guest) and mig_dest_handover.c (PREPARED,
 * then the source's or an operator's decision).  One struct mig_dst per
 * mig_dest_run(); the main thread owns it, but for the fields marked
 * atomic and what the receiver and listener threads own.  A postcopy
 * (mig_dest_postcopy.c) keeps its state in d->pc.
 */
#ifndef KVMMIG_MIG_DEST_INTERNAL_H
#define KVMMIG_MIG_DEST_INTERNAL_H

#include <pthread.h>

#include "mig_listen.h"
#include "migrate.h"
#include "net.h"
#include "stream.h"

struct mig_dst;
struct mig_dst_pc;

/* Which side failed first (mig_dst.first_failure). */
enum { FAIL_NONE, FAIL_MAIN, FAIL_CHANNEL };

/* One page channel's receiver thread. */
struct mig_receiver {
	struct mig_dst *dst;
	struct mig_chan chan;
	pthread_t thread;
	bool started;
	void *buf;
	int error;
	char msg[256];		/* why it failed, reported by the main thread */
	bool done;
	struct mig_tally tally;	/* what arrived, for PREPARED */
};

struct mig_dst {
	const struct mig_dest_opts *opts;
	struct mig_report *rep;
	struct mig_listener lis;
	struct tls_creds *tls;		/* every channel must be TLS, or NULL */
	struct mig_listener_thread gate;	/* sets others aside while this one runs */
	struct mig_chan main;
	struct mig_hello hello;
	void *buf;
	struct mig_config *cfg;
	struct kvmmig_vm *vm;
	struct mig_target target;
	bool target_ok;
	unsigned int nr_receivers;
	struct mig_receiver *receivers;
	uint8_t *states;		/* nr_vcpus blobs of cfg->vcpu_state_size */
	unsigned long vcpus_seen;
	int first_failure;		/* FAIL_MAIN or FAIL_CHANNEL, whichever came first */

	/* the handover (Documentation/handover.rst) */
	struct mig_tally main_tally;	/* main-channel records before END */
	struct mig_handover end;	/* as the source sent it */
	struct mig_handover own;	/* what arrived here: PREPARED */
	bool prepared;			/* PREPARED sent: the source may commit */
	bool source_aborted;		/* ... and it said ABORT: it runs its copy */
	struct mig_listener_thread answer;	/* owns the listener from PREPARED on */
	int recovered[2];		/* a pipe of struct mig_recovered: decisions it took */
	bool started;			/* the guest runs here (atomic) */

	/* postcopy (Documentation/postcopy.rst), NULL without MIG_CONFIG_POSTCOPY */
	struct mig_dst_pc *pc;
};

/*
 * Postcopy (mig_dest_postcopy.c).  At CONFIG: can postcopy work on this
 * guest's memory and these channels? Then: collect a DISCARD record; for
 * a postcopy END, discard and start the page fill before PREPARED; once
 * the guest runs, fetch every missing page, surviving broken links; free.
 */
int mig_dest_postcopy_check(struct mig_dst *d);
int mig_dest_postcopy_discard(struct mig_dst *d, const struct mig_rec *rec);
int mig_dest_postcopy_prepare(struct mig_dst *d);
int mig_dest_postcopy_run(struct mig_dst *d);
/* The report's postcopy fields (and its page and byte counts) from the fill. */
void mig_dest_postcopy_report(struct mig_dst *d);
void mig_dest_postcopy_free(struct mig_dst *d);
/*
 * Around a send on the main channel while a postcopy may run: the fault
 * thread sends its requests there from the moment the guest starts, and
 * two threads must never send on one channel at once (with TLS, on one
 * session's record layer).  No-ops without postcopy.
 */
void mig_dest_postcopy_send_lock(struct mig_dst *d);
void mig_dest_postcopy_send_unlock(struct mig_dst *d);
/*
 * A channel of a postcopy's new link, taken by a listener thread (its TLS
 * session taken too): the postcopy's now, or closed if it has none.
 */
void mig_dest_postcopy_offer(struct mig_dst *d, int fd, struct tls_sess *tls,
			     const struct mig_hello *h);

/* PREPARED, then the decision; 0 with the guest running here. */
int mig_dest_handover(struct mig_dst *d);
/* Stop the handover's answer thread; its untaken decisions are closed. */
void mig_dest_answer_stop(struct mig_dst *d);
/* A failure, told to the source (ACK before PREPARED, ABORT after). */
void mig_send_ack(struct mig_dst *d, int status);

#endif /* KVMMIG_MIG_DEST_INTERNAL_H */
