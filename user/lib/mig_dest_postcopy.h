/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the destination's postcopy shares between its two files: the state
 * in d->pc, and the helpers of the active phase (mig_dest_postcopy.c) that
 * the recovery of a broken link (mig_dest_postcopy_recover.c) uses.  Only
 * the migration's main thread calls these; send_lock guards the main
 * channel's sends and link_up against the fault thread's requests.
 */
#ifndef KVMMIG_MIG_DEST_POSTCOPY_H
#define KVMMIG_MIG_DEST_POSTCOPY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mig_dest_internal.h"
#include "page_fill.h"

#define PC_TICK_MS	100	/* how often the main thread looks at progress and deadlines */
#define PC_PAUSE_MS	100	/* vCPUs not out of a stopped guest by then wait on missing pages */
/*
 * How long the fault thread waits on its core for the pages it asked for
 * on the preempt channel (page_fill's spin_us): a loopback round trip is
 * 50-100 us.  postcopy_perf measured 50, 100 and 200 alike (p99 150-220
 * us), against 400 us for a fault thread that sleeps at once.
 */
#define PC_COLLECT_US	100

enum { PC_BROKEN = 1 };		/* the link broke, recover */

/* A channel of a new link, from a listener thread. */
struct pc_conn {
	int fd;
	struct tls_sess *tls;
	struct mig_hello h;
};

struct mig_dst_pc {
	struct page_fill *pf;
	struct page_fill_stats st;	/* the fill's figures once it ended */
	unsigned long *discard[MIG_MAX_SLOTS];	/* DISCARD's pages, per slot */
	pthread_mutex_t send_lock;	/* the main channel's sends, link_up */
	/*
	 * The preempt channel's reads, preempt_open: its receiver thread and
	 * the fault thread, which collects the pages it asked for while it
	 * still has a core (pc_collect()), both read it.
	 */
	pthread_mutex_t preempt_lock;
	bool preempt_open;		/* its channel may be read (preempt_lock) */
	bool link_up;			/* REQ may be sent */
	uint64_t requests_sent;		/* REQ records sent (send_lock) */
	int wake[2];			/* a receiver ended */
	int conns[2];			/* struct pc_conn, from the listener threads */
	int settle_fd;			/* @kvmmig/dest/<session> while paused, or -1 */
	struct mig_listener extra;	/* a --recover address */
	struct mig_listener_thread extra_thread;
	uint64_t rx_old;		/* bytes of links that broke */
	double t_start, t_done;
	bool cancel_said;
	char why[300];			/* why the link broke */
};

/* Start one receiver thread per page channel of the link. */
int mig_dest_pc_start_receivers(struct mig_dst *d);
/* Stop and close every channel of the link (it broke, or postcopy ended). */
void mig_dest_pc_close_link(struct mig_dst *d);
/* A cancel in postcopy is refused: said once. */
void mig_dest_pc_say_no_cancel(struct mig_dst *d);

/* Recovery (mig_dest_postcopy_recover.c). */
void mig_dest_pc_conn_close(struct pc_conn *c);
/*
 * postcopy-paused: the link is gone.  Wait for every channel of a new one
 * (or an operator's --recover address) until postcopy_recover_timeout_ms:
 * 0 with the new link up, or -errno with the guest beyond help.
 */
int mig_dest_pc_paused(struct mig_dst *d);

#endif /* KVMMIG_MIG_DEST_POSTCOPY_H */
