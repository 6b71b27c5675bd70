/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TLS sessions for migration channels, with QEMU's credential model: x509
 * from a directory laid out as QEMU's tls-creds-x509 (ca-cert.pem,
 * server-cert.pem, server-key.pem, client-cert.pem, client-key.pem), the
 * peer checked against the CA, the server's name checked by the client and
 * the client's distinguished name by the server (authz); or a pre-shared
 * key from a file of "username:hexkey" lines as QEMU's tls-creds-psk reads.
 * Credentials are loaded once per process and shared by every channel; a
 * session is a handshake on an already connected TCP socket, bounded by a
 * deadline and a cancel flag like every wait in net.c.  After it, the record layer is handed to the
 * kernel (kTLS) when the kernel offers the "tls" ULP, else GnuTLS encrypts.
 */
#ifndef KVMMIG_TLS_H
#define KVMMIG_TLS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* What the command line asked for; all NULL: no TLS. */
struct tls_opts {
	const char *creds_dir;		/* --tls-creds DIR (x509) */
	const char *psk_file;		/* --tls-psk FILE */
	const char *psk_user;		/* --tls-psk-user, "qemu" when NULL */
	const char *hostname;		/* --tls-hostname: the name the server's cert must carry */
	const char *authz;		/* --tls-authz: the client DN a server accepts */
	bool no_ktls;			/* keep the record layer in GnuTLS (benchmarks) */
};

struct tls_creds;
struct tls_sess;
struct net_wait;		/* net.h: a deadline, a cancel flag, a name */

static inline bool tls_opts_enabled(const struct tls_opts *o)
{
	return o && (o->creds_dir || o->psk_file);
}

/*
 * Load the credentials of one side (@server: the destination) once for all
 * channels; a client ignores authz, a server the hostname.  -EINVAL with a message naming the file for a bad option, a
 * missing file or a key that does not parse.
 */
int tls_creds_load(const struct tls_opts *o, bool server, struct tls_creds **out);
void tls_creds_free(struct tls_creds *c);

/*
 * Handshake on the connected socket @fd as client or server (as the creds
 * were loaded).  @peer names the channel in errors ("tcp:HOST:PORT");
 * @hostname (client, x509) is the name the server's certificate must carry.
 * Bounded by @w: -ETIMEDOUT once w->timeout_ms pass, -ECANCELED within a
 * tick of *w->cancel.  The fd stays the caller's; tls_sess_free() does not
 * close it.
 */
int tls_sess_handshake(struct tls_creds *c, int fd, const char *peer, const char *hostname,
		       const struct net_wait *w, struct tls_sess **out);
void tls_sess_free(struct tls_sess *s);
/*
 * The same without waiting, for a caller that polls many sockets: start
 * sets the session up (no I/O); each step goes as far as the socket
 * allows: 0 once the channel is ready, -EAGAIN until @fd is ready for
 * *@events, or another -errno with the message tls_sess_handshake() gives.
 * The caller bounds the whole in time.
 */
int tls_sess_start(struct tls_creds *c, int fd, const char *peer, const char *hostname,
		   struct tls_sess **out);
int tls_sess_step(struct tls_sess *s, short *events);

/*
 * The record layer, GnuTLS's or the kernel's (kTLS: then plain socket
 * calls), bounded by @w as net.c's calls are (time without progress;
 * @first_ms for the first byte); @iov is consumed as net_writev_all()'s.
 * Errors are -errno with a message that names an altered record
 * (-EBADMSG) or the peer's alert; a close before @len bytes is
 * -ECONNRESET.
 */
int tls_sess_writev_all(struct tls_sess *s, struct iovec *iov, int iovcnt,
			const struct net_wait *w);
int tls_sess_read_all(struct tls_sess *s, void *buf, size_t len, const struct net_wait *w,
		      int first_ms);
/*
 * Some bytes (see net_read_with()): the count, 0 at the peer's close,
 * -EAGAIN after setting *@events, or -errno with a message.  Under kTLS a
 * plain read whose kernel errors are named (EBADMSG: an altered record;
 * EIO: a record that is not data).
 */
ssize_t tls_sess_recv_some(void *sess, void *buf, size_t len, short *events);
/*
 * Decrypted bytes held in user space (GnuTLS's buffer) that a read returns
 * without touching the socket: a poll on the socket does not see them.
 */
bool tls_sess_pending(struct tls_sess *s);
/* "ktls" when the kernel has both directions, "ktls-tx", or "gnutls". */
const char *tls_sess_engine(const struct tls_sess *s);
/* TLS 1.3 / 1.2 and the cipher, e.g. "TLS1.3 AES-128-GCM". */
const char *tls_sess_describe(struct tls_sess *s, char *buf, size_t len);

/* Whether this kernel lists the "tls" ULP (kTLS possible at all). */
bool tls_kernel_offers_ktls(void);

#endif /* KVMMIG_TLS_H */
