/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TCP plumbing for migration: "tcp:HOST:PORT" addresses, listening and
 * connecting, and a channel that sends and receives checksummed stream
 * records with per-channel sequence numbers.  Errors are negative errno
 * with a message that names the peer and what went wrong.
 */
#ifndef KVMMIG_NET_H
#define KVMMIG_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "stream.h"

struct mig_chan {
	int fd;
	unsigned int index;		/* 0: main */
	uint64_t tx_seq, rx_seq;
	uint64_t tx_bytes, rx_bytes;	/* updated by the owning thread */
};

/* Parse "tcp:HOST:PORT" into host and port strings (host may be [v6]). */
int net_parse_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen);
int net_listen(const char *addr, int *port_out);
/*
 * Accept one connection; gives up with -ECANCELED when *cancel is set, and
 * with -ECONNRESET when the peer of @watch_fd (-1: none) hangs up first.
 */
int net_accept(int lfd, volatile int *cancel, int timeout_ms, int watch_fd);
int net_connect(const char *addr);

int net_write_all(int fd, const void *buf, size_t len);
int net_writev_all(int fd, struct iovec *iov, int iovcnt);
/* -ECONNRESET with a message when the peer closes before @len bytes. */
int net_read_all(int fd, void *buf, size_t len);

void mig_chan_init(struct mig_chan *c, int fd, unsigned int index);
int mig_chan_send(struct mig_chan *c, uint32_t type, const void *payload, uint32_t len);
/* Payload gathered from @iov (its total is the record's length). */
int mig_chan_sendv(struct mig_chan *c, uint32_t type, const struct iovec *iov, int iovcnt);
/* Receive one record into @buf (MIG_MAX_PAYLOAD bytes), checked. */
int mig_chan_recv(struct mig_chan *c, struct mig_rec *rec, void *buf);

#endif /* KVMMIG_NET_H */
