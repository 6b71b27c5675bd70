/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The destination's listening socket and the handshakes on it.  Anyone who
 * can reach the port may connect, so a connection counts only once it has
 * sent a valid hello of the session the caller waits for, within the hello
 * deadline.  Up to MIG_LISTEN_MAX_PENDING handshakes run at once under one
 * poll(), so a slow or silent peer delays no other; past that bound the
 * oldest is dropped.  A page channel whose hello beats its main channel's
 * is kept (parked) until its deadline for when that session starts.  Every
 * connection set aside is closed and named in one
 * line (peer address and reason); the main channel of a source that cannot
 * be served (another version, another migration in progress) first gets an
 * ACK saying why.  Documentation/migration.rst, "One migration, one session".
 * From the handover on it also takes a source's recovery connections: one
 * that re-delivers its decision, and during postcopy the channels of a new
 * link (Documentation/postcopy.rst).
 */
#ifndef KVMMIG_MIG_LISTEN_H
#define KVMMIG_MIG_LISTEN_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cancel.h"
#include "stream.h"
#include "tls.h"

#define MIG_LISTEN_MAX_PENDING	8
#define MIG_HELLO_TIMEOUT_MS	5000	/* default of --hello-timeout */

struct mig_pending {
	int fd;			/* -1: a free slot */
	double deadline;	/* now_s() by which the hello must be complete */
	size_t got;		/* hello bytes so far; all: parked */
	struct tls_sess *tls;	/* its TLS session (handshake first), or NULL */
	short events;		/* what poll() waits for on it */
	struct mig_hello h;
	char peer[64];		/* "ADDR:PORT" */
};

struct mig_listener {
	int fd;
	int hello_timeout_ms;
	unsigned int nr_ignored;
	char last_ignored[320];	/* "PEER: reason" of the last one set aside */
	struct tls_creds *tls;	/* set by the caller: every connection must be TLS */
	struct tls_sess *taken_tls;	/* the session of the connection last handed over */
	struct mig_pending pend[MIG_LISTEN_MAX_PENDING];
};

/* What mig_listener_next() waits for. */
struct mig_want {
	bool new_session;	/* the main channel of a new session; else: */
	bool recover;		/* ... or a recovery connection (MIG_HELLO_RECOVER) of: */
	bool postcopy;		/* ... or, with recover, a channel of a postcopy's new
				   link (MIG_HELLO_RECOVER | MIG_HELLO_POSTCOPY) of: */
	uint64_t session;	/* a page channel of this session */
	uint32_t nr_channels;	/* whose hello announces this many channels */
	const bool *taken;	/* [nr_channels]: channels already connected */
};

/* Closed and empty: mig_listener_close() may be called on it. */
void mig_listener_init(struct mig_listener *l);
/* Listen on "tcp:HOST:PORT"; @hello_timeout_ms 0 means the default. */
int mig_listener_open(struct mig_listener *l, const char *addr, int *port, int hello_timeout_ms);
void mig_listener_close(struct mig_listener *l);

/*
 * The next connection that completes a hello matching @w: its fd (blocking,
 * the hello in @h), or -ETIMEDOUT after @timeout_ms (-1: none), -ECANCELED
 * once *@cancel is set, -ECONNRESET when @watch_fd (-1: none) hangs up
 * (with no message: the caller knows what it watched).
 */
int mig_listener_next(struct mig_listener *l, const struct mig_want *w, struct mig_hello *h,
		      int timeout_ms, const volatile sig_atomic_t *cancel, int watch_fd);
/*
 * With l->tls, each connection completes its TLS handshake (within the
 * hello deadline, side by side as the hellos) before its hello is read
 * through it; the session of the fd mig_listener_next() returned is then
 * the caller's, taken from here once (NULL without TLS).
 */
struct tls_sess *mig_listener_take_tls(struct mig_listener *l);

/*
 * A thread that owns the listener until it is stopped: its function loops
 * on mig_listener_next() with stop[0] as the watched fd, and returns when
 * that fails.  Start it with mig_listener_thread_start(); stopping closes
 * stop[1] and joins it, and the listener is the caller's again.
 */
struct mig_listener_thread {
	pthread_t thread;
	bool started;
	int stop[2];		/* -1, -1 until started */
};

#define MIG_LISTENER_THREAD_INIT	{ .stop = { -1, -1 } }

int mig_listener_thread_start(struct mig_listener_thread *t, void *(*fn)(void *), void *arg,
			      const char *what);
void mig_listener_thread_stop(struct mig_listener_thread *t);

#endif /* KVMMIG_MIG_LISTEN_H */
