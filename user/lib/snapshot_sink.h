/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a snapshot's bytes go (Documentation/snapshot.rst, "Over TCP"):
 * a sink takes writes at fixed offsets from any number of threads, makes
 * them durable on sync, and on commit turns FILE.partial into FILE; closed
 * without a commit it leaves nothing.  The file sink writes a local file
 * (O_DIRECT if asked and the filesystem allows it); the TCP sink sends
 * each write as a record (offset, length, data) to snapshot_receive(),
 * which writes them into its own file sink, so the file it commits is
 * byte for byte the one a local snapshot would be.  The receiver treats
 * the stream as hostile: every length is bounded, every offset must lie
 * inside the size the first record announced, and the header must pass
 * snap_header_check() before the file is renamed.  The connection may be
 * TLS, with the migration's credentials (Documentation/tls.rst).
 */
#ifndef KVMMIG_SNAPSHOT_SINK_H
#define KVMMIG_SNAPSHOT_SINK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"

#define SNAP_NET_MAGIC		0x524e534bU	/* "KSNR" */
#define SNAP_NET_MAX_DATA	(1U << 20)	/* bytes of one DATA record */
#define SNAP_NET_MAX_MSG	255		/* bytes of an ABORT or ERROR text */
/* A receiver takes files up to this size (16 TiB) unless told less. */
#define SNAP_NET_MAX_FILE	(1ULL << 44)

enum snap_net_type {
	SNAP_NET_OPEN = 1,	/* sender: off = the file's size; first record */
	SNAP_NET_READY,		/* receiver: FILE.partial is made */
	SNAP_NET_DATA,		/* sender: len bytes to write at off */
	SNAP_NET_SYNC,		/* sender: make what came so far durable */
	SNAP_NET_COMMIT,	/* sender: complete; check, sync and rename */
	SNAP_NET_DONE,		/* receiver: FILE is complete and durable */
	SNAP_NET_ABORT,		/* sender: giving up, the text says why */
	SNAP_NET_ERROR,		/* receiver: failed, the text says why */
	SNAP_NET_MAX,
};

/* Every record's header; the payload (len bytes) follows it. */
struct snap_net_rec {
	uint32_t magic;
	uint32_t type;
	uint64_t off;
	uint32_t len;
	uint32_t hcrc;		/* CRC32C of the header with this 0 */
};

struct snap_sink;

struct snap_sink_opts {
	const char *path;	/* FILE, or tcp:HOST:PORT for a receiver */
	bool direct;		/* a local file: O_DIRECT where the filesystem allows */
	int io_timeout_ms;	/* TCP: progress deadline (0: NET_IO_TIMEOUT_MS) */
	const volatile sig_atomic_t *cancel;	/* TCP waits give up when set */
	struct tls_opts tls;	/* TCP: the client's credentials (all NULL: plaintext) */
};

/*
 * A sink for a file of @file_size bytes (made that size at once: what is
 * never written stays a hole).  -errno said with kvmmig_err().
 */
int snap_sink_open(const struct snap_sink_opts *o, uint64_t file_size, struct snap_sink **out);
/* @len bytes at @off; any thread, concurrently with others. */
int snap_sink_write(struct snap_sink *k, const void *buf, size_t len, uint64_t off);
/* Everything written so far is durable. */
int snap_sink_sync(struct snap_sink *k);
/* Durable and renamed FILE.partial -> FILE (TCP: by the receiver, who confirms). */
int snap_sink_commit(struct snap_sink *k);
/*
 * Free @k; if it was not committed, nothing is left (the receiver is told
 * @why, which may be NULL).
 */
void snap_sink_close(struct snap_sink *k, const char *why);
/* Did the file sink get O_DIRECT (false: buffered, or not a file)? */
bool snap_sink_direct(const struct snap_sink *k);

/* ---- the receiving side (snapshot_recv.c) ---- */

struct snap_recv_opts {
	const char *listen;		/* tcp:HOST:PORT (port 0: the kernel picks) */
	const char *path;		/* the file to write */
	bool direct;
	uint64_t max_file;		/* refuse bigger files (0: SNAP_NET_MAX_FILE) */
	int accept_timeout_ms;		/* -1: wait for the sender for ever */
	int io_timeout_ms;		/* progress deadline (0: NET_IO_TIMEOUT_MS) */
	const volatile sig_atomic_t *cancel;
	struct tls_opts tls;		/* the server's credentials (all NULL: plaintext) */
	void (*listening)(void *opaque, int port);
	void *opaque;
};

struct snap_recv_report {
	uint64_t file_size;
	uint64_t bytes;			/* data received */
	uint64_t records;
	double seconds;			/* from the first record to DONE */
	bool direct;
	char error[256];
};

/*
 * Accept one sender on o->listen and write the snapshot it sends to
 * o->path (FILE.partial until it is complete, checked and durable).  0, or
 * -errno with r->error; then no file is left.
 */
int snapshot_receive(const struct snap_recv_opts *o, struct snap_recv_report *r);

/* ---- shared by both ends of the TCP stream ---- */

void snap_net_seal(struct snap_net_rec *h, uint32_t type, uint64_t off, uint32_t len);
/* A received header's shape: magic, type, checksum, len <= @max_len. */
int snap_net_check(const struct snap_net_rec *h, uint32_t max_len);

#endif /* KVMMIG_SNAPSHOT_SINK_H */
