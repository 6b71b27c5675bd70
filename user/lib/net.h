/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TCP plumbing for migration: "tcp:HOST:PORT" addresses, listening and
 * connecting, and a channel that sends and receives checksummed stream
 * records with per-channel sequence numbers.  Errors are negative errno
 * with a message that names the peer and what went wrong.  No call blocks
 * without bound: every wait for the network ends when its deadline passes
 * (-ETIMEDOUT) or, within NET_TICK_MS, when its cancel flag is set
 * (-ECANCELED).
 */
#ifndef KVMMIG_NET_H
#define KVMMIG_NET_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "stream.h"

/* How often a blocked wait looks at its cancel flag. */
#define NET_TICK_MS		100
/* Defaults of --connect-timeout and --io-timeout. */
#define NET_CONNECT_TIMEOUT_MS	10000
#define NET_IO_TIMEOUT_MS	30000

/*
 * What ends a wait on a socket besides success.  timeout_ms bounds the
 * time without progress (a slow link that moves keeps going; a peer that
 * stops does not), 0 means no deadline; @what names the wait in errors
 * ("the ACK", "a record on multifd channel 2").
 */
struct net_wait {
	int timeout_ms;
	const volatile sig_atomic_t *cancel;
	const char *what;
};

struct mig_chan {
	int fd;
	unsigned int index;		/* 0: main */
	uint64_t tx_seq, rx_seq;
	uint64_t tx_bytes, rx_bytes;	/* updated by the owning thread */
	/*
	 * Sends and the rest of a record once it has begun: wait.timeout_ms.
	 * The start of the next record: idle_timeout_ms, 0 = as long as the
	 * peer is alive (TCP keepalive), since a channel may rightly be quiet
	 * for a whole pass.
	 */
	struct net_wait wait;
	int idle_timeout_ms;
	char name[32];			/* "main channel", "multifd channel 2" */
};

/* Parse "tcp:HOST:PORT" into host and port strings (host may be [v6]). */
int net_parse_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen);
int net_listen(const char *addr, int *port_out);
/*
 * Accept one connection; gives up with -ECANCELED when *cancel is set, and
 * with -ECONNRESET when the peer of @watch_fd (-1: none) hangs up first.
 */
int net_accept(int lfd, volatile int *cancel, int timeout_ms, int watch_fd);
/* Connect within @w's deadline; @w may be NULL (NET_CONNECT_TIMEOUT_MS). */
int net_connect(const char *addr, const struct net_wait *w);

/*
 * Send or receive exactly @len bytes, bounded by @w (NULL: no deadline, no
 * cancel; for tests).  -ECONNRESET with a message when the peer closes
 * before @len bytes.
 */
int net_write_all(int fd, const void *buf, size_t len, const struct net_wait *w);
int net_writev_all(int fd, struct iovec *iov, int iovcnt, const struct net_wait *w);
int net_read_all(int fd, void *buf, size_t len, const struct net_wait *w);

/* A channel on @fd with NET_IO_TIMEOUT_MS and no cancel until told otherwise. */
void mig_chan_init(struct mig_chan *c, int fd, unsigned int index);
/* Its deadline for progress (TCP_USER_TIMEOUT too) and its cancel flag. */
void mig_chan_limit(struct mig_chan *c, int io_timeout_ms, const volatile sig_atomic_t *cancel);
int mig_chan_send(struct mig_chan *c, uint32_t type, const void *payload, uint32_t len);
/* Payload gathered from @iov (its total is the record's length). */
int mig_chan_sendv(struct mig_chan *c, uint32_t type, const struct iovec *iov, int iovcnt);
/* Receive one record into @buf (MIG_MAX_PAYLOAD bytes), checked. */
int mig_chan_recv(struct mig_chan *c, struct mig_rec *rec, void *buf);

#endif /* KVMMIG_NET_H */
