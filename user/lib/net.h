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
#include <sys/types.h>
#include <sys/uio.h>

#include "cancel.h"
#include "stream.h"
#include "tls.h"

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
	const volatile sig_atomic_t *cancel;	/* cancel.h */
	const char *what;
};

struct mig_chan {
	int fd;
	struct tls_sess *tls;		/* NULL: plaintext */
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
int net_accept(int lfd, const volatile sig_atomic_t *cancel, int timeout_ms, int watch_fd);
/* Connect within @w's deadline; @w may be NULL (NET_CONNECT_TIMEOUT_MS). */
int net_connect(const char *addr, const struct net_wait *w);
/*
 * Wait until @fd is ready for @events, at most until @deadline (a
 * now_ms() value, 0: none), which is @limit_ms after the last progress.
 * 0, -ETIMEDOUT or -ECANCELED, each said.
 */
int net_poll(int fd, short events, const struct net_wait *w, int64_t deadline, int limit_ms);
int64_t net_deadline(const struct net_wait *w);

/*
 * Send or receive exactly @len bytes, bounded by @w (NULL: no deadline, no
 * cancel; for tests).  -ECONNRESET with a message when the peer closes
 * before @len bytes.
 */
int net_write_all(int fd, const void *buf, size_t len, const struct net_wait *w);
int net_writev_all(int fd, struct iovec *iov, int iovcnt, const struct net_wait *w);
int net_read_all(int fd, void *buf, size_t len, const struct net_wait *w);
/*
 * The loop behind net_read_all(), for other transports (TLS): @recv_some
 * returns bytes, 0 at the peer's close, -EAGAIN after setting *events to
 * what @fd must be ready for, or another -errno it has reported.  The
 * first byte may take @first_ms (0: no limit), each next one w->timeout_ms.
 */
typedef ssize_t (*net_recv_fn)(void *ctx, void *buf, size_t len, short *events);
int net_read_with(int fd, net_recv_fn recv_some, void *ctx, void *buf, size_t len,
		  const struct net_wait *w, int first_ms);

/* A channel on @fd with NET_IO_TIMEOUT_MS and no cancel until told otherwise. */
void mig_chan_init(struct mig_chan *c, int fd, unsigned int index);
/* Its deadline for progress (TCP_USER_TIMEOUT too) and its cancel flag. */
void mig_chan_limit(struct mig_chan *c, int io_timeout_ms, const volatile sig_atomic_t *cancel);
/* Name it for its index (after the hello said which channel it is). */
void mig_chan_set_index(struct mig_chan *c, unsigned int index);
/*
 * Make the channel TLS (see tls.h): a handshake bounded by @w (NULL: the
 * channel's I/O timeout and cancel flag), after which every byte of it is encrypted
 * and authenticated.  @hostname: the name the server must prove (client).
 */
int mig_chan_start_tls(struct mig_chan *c, struct tls_creds *creds, const char *peer,
		       const char *hostname, const struct net_wait *w);
/* Bytes through the channel's transport, TLS or not (the hello), bounded by @w. */
int mig_chan_write(struct mig_chan *c, const void *buf, size_t len);
int mig_chan_read(struct mig_chan *c, void *buf, size_t len, const struct net_wait *w);
/* Gathered bytes through the transport (@iov is consumed), bounded by the channel's wait. */
int mig_chan_writev(struct mig_chan *c, struct iovec *iov, int iovcnt);
/* End the TLS session if any and close the socket. */
void mig_chan_close(struct mig_chan *c);
int mig_chan_send(struct mig_chan *c, uint32_t type, const void *payload, uint32_t len);
/* Payload gathered from @iov (its total is the record's length). */
int mig_chan_sendv(struct mig_chan *c, uint32_t type, const struct iovec *iov, int iovcnt);
/*
 * Would a read return at once: bytes (or an error, or the peer's close) on
 * the socket, or decrypted bytes TLS holds already?  Never waits.
 */
bool mig_chan_readable(struct mig_chan *c);
/* Receive one record into @buf (MIG_MAX_PAYLOAD bytes), checked. */
int mig_chan_recv(struct mig_chan *c, struct mig_rec *rec, void *buf);
/*
 * The same in parts, for a receiver that places the payload itself: the
 * header (checked, within the idle deadline), then the payload read by the
 * caller (mig_chan_read, or mig_chan_readv on plaintext: @iov is consumed)
 * and checked against rec->crc, then mig_chan_recv_done() to count it.
 */
int mig_chan_recv_header(struct mig_chan *c, struct mig_rec *rec);
int mig_chan_readv(struct mig_chan *c, struct iovec *iov, int iovcnt);
void mig_chan_recv_done(struct mig_chan *c, const struct mig_rec *rec);

#endif /* KVMMIG_NET_H */
