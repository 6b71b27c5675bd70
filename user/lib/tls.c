// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS sessions for migration channels (see tls.h), on GnuTLS: the peer
 * checks, the handshake, the hand-off to kernel TLS and the record layer
 * (credentials are tls_creds.c's).  GnuTLS
 * never blocks on the socket (MSG_DONTWAIT in its transport functions);
 * the waits are net_poll()'s, so a deadline and a cancel flag end the
 * handshake and every record as they end net.c's waits.  After the
 * handshake the server confirms the channel with one data byte: a refusal
 * of the client's certificate (a TLS 1.3 client finishes its handshake
 * before the server has checked it) is then an error on both sides, and
 * there is a point where neither side has records in flight, at which the
 * keys can move to the kernel.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "tls_internal.h"

#ifndef SOL_TLS
#define SOL_TLS		282
#endif

/* Read-ahead of the receive side (tls_pull_buffered()). */
#define TLS_RBUF_SIZE	(256 << 10)

/* The byte a server sends once it has accepted a channel. */
#define TLS_CHANNEL_OK	0x4b

#define TLS_REC_HANDSHAKE	0x16
#define TLS_REC_ALERT		0x15

/* ---- peer checks (run by GnuTLS inside the handshake) ---- */

static void tls_status_why(struct tls_sess *s, unsigned int status)
{
	gnutls_datum_t txt;

	if (status & GNUTLS_CERT_SIGNER_NOT_FOUND)
		snprintf(s->why, sizeof(s->why), "certificate signed by an unknown CA");
	else if (status & GNUTLS_CERT_UNEXPECTED_OWNER)
		snprintf(s->why, sizeof(s->why),
			 "the server's certificate is not for host '%s' (--tls-hostname)",
			 s->hostname);
	else if (status & GNUTLS_CERT_EXPIRED)
		snprintf(s->why, sizeof(s->why), "the peer's certificate has expired");
	else if (status & GNUTLS_CERT_NOT_ACTIVATED)
		snprintf(s->why, sizeof(s->why), "the peer's certificate is not valid yet");
	else if (!gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
								&txt, 0)) {
		snprintf(s->why, sizeof(s->why), "peer certificate refused: %s", txt.data);
		gnutls_free(txt.data);
	} else {
		snprintf(s->why, sizeof(s->why), "peer certificate refused (status 0x%x)", status);
	}
}

/* Whether @crt's DN, formatted with @flags, is the one --tls-authz names. */
static bool tls_dn_is(gnutls_x509_crt_t crt, unsigned int flags, const char *want, char *got,
		      size_t len)
{
	gnutls_datum_t dn = { 0 };
	bool same;

	if (gnutls_x509_crt_get_dn3(crt, &dn, flags))
		return false;
	same = !strcmp((char *)dn.data, want);
	if (got)
		snprintf(got, len, "%s", dn.data);
	gnutls_free(dn.data);
	return same;
}

/*
 * The client's distinguished name against --tls-authz, as QEMU's
 * authz-simple: the whole DN, in the order QEMU compares it (GnuTLS's
 * compat order, "O=org,CN=host") or as RFC 4514 and certtool -i print it
 * ("CN=host,O=org").
 */
static int tls_check_authz(struct tls_sess *s)
{
	const gnutls_datum_t *list;
	gnutls_x509_crt_t crt;
	char dn[256] = "?";
	unsigned int n;
	int ret = -1;

	list = gnutls_certificate_get_peers(s->g, &n);
	if (!list || !n || gnutls_x509_crt_init(&crt) < 0)
		return -1;
	if (!gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) &&
	    (tls_dn_is(crt, 0, s->c->authz, dn, sizeof(dn)) ||
	     tls_dn_is(crt, GNUTLS_X509_DN_FLAG_COMPAT, s->c->authz, NULL, 0)))
		ret = 0;
	else
		snprintf(s->why, sizeof(s->why),
			 "client certificate '%s' refused: --tls-authz accepts only '%s'", dn,
			 s->c->authz);
	gnutls_x509_crt_deinit(crt);
	return ret;
}

int tls_verify_peer(gnutls_session_t g)
{
	struct tls_sess *s = gnutls_session_get_ptr(g);
	unsigned int status = 0;
	int ret;

	ret = gnutls_certificate_verify_peers3(g, s->c->server || !s->hostname[0] ? NULL :
					       s->hostname, &status);
	if (ret == GNUTLS_E_NO_CERTIFICATE_FOUND) {
		snprintf(s->why, sizeof(s->why), "the peer sent no certificate (%s needs one)",
			 s->c->server ? "a receiver with --tls-creds" : "TLS");
		return -1;
	}
	if (ret < 0) {
		snprintf(s->why, sizeof(s->why), "peer certificate: %s", gnutls_strerror(ret));
		return -1;
	}
	if (status) {
		tls_status_why(s, status);
		return -1;
	}
	return s->c->server && s->c->authz ? tls_check_authz(s) : 0;
}

/* ---- handshake ---- */

/*
 * Once GnuTLS keeps the receive side for good, records come through a
 * buffer filled by large reads: GnuTLS asks for each record's 5-byte
 * header and then its body, two system calls a record otherwise.
 */
static ssize_t tls_pull_buffered(struct tls_sess *s, void *buf, size_t len)
{
	ssize_t n;

	if (s->rhead == s->rtail) {
		n = recv(s->fd, s->rbuf, TLS_RBUF_SIZE, MSG_DONTWAIT);
		if (n <= 0)
			return n;
		s->rhead = 0;
		s->rtail = n;
	}
	n = s->rtail - s->rhead < len ? s->rtail - s->rhead : len;
	memcpy(buf, s->rbuf + s->rhead, n);
	s->rhead += n;
	return n;
}

/*
 * During the handshake GnuTLS reads records exactly (a 5-byte header,
 * then its length), never ahead, so the kernel may take over the receive
 * side with nothing left behind in user space.  The first byte must open
 * a handshake or an alert record; anything else is a peer that speaks
 * plaintext, refused at once rather than read as a TLS length.
 */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tls_sess *s = p;
	ssize_t n;

	if (s->rbuf)
		return tls_pull_buffered(s, buf, len);
	n = recv(s->fd, buf, len, MSG_DONTWAIT);
	if (n > 0 && !s->nr_rx) {
		unsigned char b = *(unsigned char *)buf;

		if (b != TLS_REC_HANDSHAKE && b != TLS_REC_ALERT) {
			s->plaintext_peer = true;
			snprintf(s->why, sizeof(s->why),
				 "the peer speaks plaintext, TLS was required (--tls-creds/--tls-psk on both sides)");
			errno = EPROTO;
			return -1;
		}
	}
	if (n > 0)
		s->nr_rx += n;
	return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	struct tls_sess *s = p;

	return send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int tls_sess_setup(struct tls_sess *s)
{
	struct tls_creds *c = s->c;
	unsigned int flags = (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK |
			     GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
	int ret;

	ret = gnutls_init(&s->g, flags);
	if (ret < 0)
		return ret;
	gnutls_session_set_ptr(s->g, s);
	ret = gnutls_priority_set(s->g, c->prio);
	if (ret < 0)
		return ret;
	if (c->x509) {
		ret = gnutls_credentials_set(s->g, GNUTLS_CRD_CERTIFICATE, c->x509);
		if (c->server)
			gnutls_certificate_server_set_request(s->g, GNUTLS_CERT_REQUIRE);
	} else {
		ret = gnutls_credentials_set(s->g, GNUTLS_CRD_PSK,
					     c->server ? (void *)c->psk_srv : (void *)c->psk_cli);
	}
	if (ret < 0)
		return ret;
	gnutls_transport_set_ptr(s->g, s);
	gnutls_transport_set_pull_function(s->g, tls_pull);
	gnutls_transport_set_push_function(s->g, tls_push);
	return 0;
}

/* Tell a TLS peer why, best effort; a plaintext one could not read it. */
static void tls_send_alert(struct tls_sess *s, int ret)
{
	if (!s->plaintext_peer)
		gnutls_alert_send_appropriate(s->g, ret);
}

/* What went wrong, in the words of the side that knows. */
static void tls_handshake_err(struct tls_sess *s, int ret)
{
	const char *alert;

	if (s->why[0]) {
		kvmmig_err("TLS handshake with %s: %s", s->peer, s->why);
	} else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		alert = gnutls_alert_get_name(gnutls_alert_get(s->g));
		if (s->c->psk)
			kvmmig_err("TLS handshake with %s: PSK identity '%s' rejected by the peer, or its key differs (alert: %s)",
				   s->peer, s->c->psk_user, alert);
		else
			kvmmig_err("TLS handshake with %s: the peer refused this side's certificate (alert: %s)",
				   s->peer, alert);
	} else if (s->c->psk && s->psk_known) {
		kvmmig_err("TLS handshake with %s: PSK identity '%s' rejected: the client's key differs from this side's (%s)",
			   s->peer, s->psk_user, gnutls_strerror(ret));
	} else if (ret == GNUTLS_E_PREMATURE_TERMINATION || ret == GNUTLS_E_PUSH_ERROR ||
		   (ret == GNUTLS_E_PULL_ERROR && !s->nr_rx)) {
		kvmmig_err("TLS handshake with %s: the peer closed the connection (a peer without TLS? TLS was required)",
			   s->peer);
	} else {
		kvmmig_err("TLS handshake with %s: %s", s->peer, gnutls_strerror(ret));
	}
}

/* Wait for the direction GnuTLS is blocked on (see net_poll()). */
static int tls_wait(struct tls_sess *s, const struct net_wait *w, int64_t deadline, int limit_ms)
{
	return net_poll(s->fd, gnutls_record_get_direction(s->g) ? POLLOUT : POLLIN, w, deadline,
			limit_ms);
}

/* One step of the handshake: 0 done, -EAGAIN to wait for *events, else failed. */
static int tls_handshake_step(struct tls_sess *s, short *events)
{
	int ret = gnutls_handshake(s->g);

	if (!ret)
		return 0;
	if (gnutls_error_is_fatal(ret)) {
		tls_send_alert(s, ret);
		tls_handshake_err(s, ret);
		return -EPROTO;
	}
	*events = gnutls_record_get_direction(s->g) ? POLLOUT : POLLIN;
	return -EAGAIN;
}

/* The server's verdict on the channel: a data byte, or its alert. */
static int tls_confirm_step(struct tls_sess *s, short *events)
{
	unsigned char b = TLS_CHANNEL_OK;
	ssize_t n;

	n = s->c->server ? gnutls_record_send(s->g, &b, 1) : gnutls_record_recv(s->g, &b, 1);
	if (n == 0 || (n < 0 && gnutls_error_is_fatal(n))) {
		tls_handshake_err(s, n ? (int)n : GNUTLS_E_PREMATURE_TERMINATION);
		return -EPROTO;
	}
	if (n < 0) {
		*events = gnutls_record_get_direction(s->g) ? POLLOUT : POLLIN;
		return -EAGAIN;
	}
	if (b != TLS_CHANNEL_OK) {
		kvmmig_err("TLS handshake with %s: the server confirmed the channel with 0x%02x, expected 0x%02x",
			   s->peer, b, TLS_CHANNEL_OK);
		return -EPROTO;
	}
	return 0;
}

/* ---- kernel TLS ---- */

bool tls_kernel_offers_ktls(void)
{
	char buf[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	/* The file lists loaded ULPs; setsockopt() below may still load tls.ko. */
	return strstr(buf, "tls") != NULL;
}

union tls_kinfo {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
};

/*
 * The kernel's AES-GCM nonce is salt (4 bytes) + iv (8): TLS 1.3's whole
 * 12-byte IV splits so; TLS 1.2 has a 4-byte implicit salt and an explicit
 * iv that starts at the record sequence number, as the kernel expects.
 */
static void tls_kinfo_fill(unsigned char *salt, unsigned char *kiv, unsigned char *kkey,
			   size_t keylen, unsigned char *rec_seq, const gnutls_datum_t *iv,
			   const gnutls_datum_t *key, const unsigned char seq[8], bool tls13)
{
	memcpy(salt, iv->data, 4);
	memcpy(kiv, tls13 ? iv->data + 4 : seq, 8);
	memcpy(kkey, key->data, keylen);
	memcpy(rec_seq, seq, 8);
}

static int tls_ktls_dir(struct tls_sess *s, bool rx)
{
	gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(s->g);
	bool tls13 = gnutls_protocol_get_version(s->g) == GNUTLS_TLS1_3;
	union tls_kinfo ci = { 0 };
	gnutls_datum_t mac, iv, key;
	unsigned char seq[8];
	socklen_t len;
	int ret;

	if (gnutls_record_get_state(s->g, rx, &mac, &iv, &key, seq) < 0)
		return -EINVAL;
	ci.base.version = tls13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
	if (cipher == GNUTLS_CIPHER_AES_128_GCM && key.size == 16 && iv.size >= 4) {
		ci.base.cipher_type = TLS_CIPHER_AES_GCM_128;
		tls_kinfo_fill(ci.gcm128.salt, ci.gcm128.iv, ci.gcm128.key, sizeof(ci.gcm128.key),
			       ci.gcm128.rec_seq, &iv, &key, seq, tls13);
		len = sizeof(ci.gcm128);
	} else if (cipher == GNUTLS_CIPHER_AES_256_GCM && key.size == 32 && iv.size >= 4) {
		ci.base.cipher_type = TLS_CIPHER_AES_GCM_256;
		tls_kinfo_fill(ci.gcm256.salt, ci.gcm256.iv, ci.gcm256.key, sizeof(ci.gcm256.key),
			       ci.gcm256.rec_seq, &iv, &key, seq, tls13);
		len = sizeof(ci.gcm256);
	} else {
		return -EOPNOTSUPP;
	}
	if (tls13 && iv.size != 12)
		return -EINVAL;
	ret = setsockopt(s->fd, SOL_TLS, rx ? TLS_RX : TLS_TX, &ci, len) ? -errno : 0;
	explicit_bzero(&ci, sizeof(ci));
	return ret;
}

/*
 * Hand the record layer to the kernel where it offers the "tls" ULP.
 * Both directions: no TLS 1.3 post-handshake message can reach a kernel
 * receiver, as servers send no session tickets (GNUTLS_NO_TICKETS) and
 * kvmmig never requests a key update; a KeyUpdate from a peer (GnuTLS
 * may send one itself after 2^24 records, some 380 GiB on one channel)
 * ends the channel with an error rather than a silent corruption, since
 * the kernel refuses a non-data record on read with EIO.  A failure after
 * the ULP is attached leaves a direction to GnuTLS, which then writes
 * through the kernel's pass-through path.
 */
static void tls_try_ktls(struct tls_sess *s)
{
	int ret;

	if (s->c->no_ktls || gnutls_record_check_pending(s->g))
		return;
	if (setsockopt(s->fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		kvmmig_dbg("TLS with %s: no kernel TLS (TCP_ULP tls: %s)", s->peer, strerror(errno));
		return;
	}
	ret = tls_ktls_dir(s, false);
	s->ktls_tx = !ret;
	if (!ret)
		ret = tls_ktls_dir(s, true);
	s->ktls_rx = s->ktls_tx && !ret;
	/* ENOENT: the kernel found no gcm(aes) (crypto modules not loaded). */
	if (ret)
		kvmmig_info("TLS with %s: the kernel took %s (TLS_%s: %s), GnuTLS does the rest",
			    s->peer, s->ktls_tx ? "the send side only" : "neither side",
			    s->ktls_tx ? "RX" : "TX", strerror(-ret));
}

int tls_sess_start(struct tls_creds *c, int fd, const char *peer, const char *hostname,
		   struct tls_sess **out)
{
	struct tls_sess *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->c = c;
	s->fd = fd;
	snprintf(s->hostname, sizeof(s->hostname), "%s", hostname ? hostname : "");
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	ret = tls_sess_setup(s);
	if (ret < 0) {
		kvmmig_err("TLS session for %s: %s", peer, gnutls_strerror(ret));
		tls_sess_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

int tls_sess_step(struct tls_sess *s, short *events)
{
	int ret = 0;

	if (s->ready)
		return 0;
	if (!s->handshaken) {
		ret = tls_handshake_step(s, events);
		s->handshaken = !ret;
	}
	if (!ret)
		ret = tls_confirm_step(s, events);
	if (ret)
		return ret;
	s->ready = true;
	tls_try_ktls(s);
	/* Without it GnuTLS still works, one record per read. */
	if (!s->ktls_rx)
		s->rbuf = malloc(TLS_RBUF_SIZE);
	return 0;
}

int tls_sess_handshake(struct tls_creds *c, int fd, const char *peer, const char *hostname,
		       const struct net_wait *w, struct tls_sess **out)
{
	int64_t deadline = net_deadline(w);
	struct tls_sess *s;
	short events;
	int ret;

	ret = tls_sess_start(c, fd, peer, hostname, &s);
	if (ret)
		return ret;
	while ((ret = tls_sess_step(s, &events)) == -EAGAIN) {
		ret = net_poll(fd, events, w, deadline, w->timeout_ms);
		if (ret)
			break;
	}
	if (ret) {
		tls_sess_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void tls_sess_free(struct tls_sess *s)
{
	if (!s)
		return;
	/* No close_notify: the stream has its own END record; the fd is the caller's. */
	if (s->g)
		gnutls_deinit(s->g);
	free(s->rbuf);
	free(s);
}

/* ---- record layer ---- */

static ssize_t tls_record_err(struct tls_sess *s, ssize_t ret, bool rx)
{
	const char *dir = rx ? "receive" : "send";

	if (ret == GNUTLS_E_DECRYPTION_FAILED || ret == GNUTLS_E_MAC_VERIFY_FAILED) {
		kvmmig_err("TLS with %s: a record failed authentication (the stream was altered on the way)",
			   s->peer);
		return -EBADMSG;
	}
	if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		kvmmig_err("TLS with %s: the peer sent alert '%s'", s->peer,
			   gnutls_alert_get_name(gnutls_alert_get(s->g)));
		return -ECONNABORTED;
	}
	if (ret == GNUTLS_E_PUSH_ERROR || ret == GNUTLS_E_PULL_ERROR) {
		kvmmig_err("TLS %s with %s failed: the connection broke (%s)", dir, s->peer,
			   strerror(errno));
		return -ECONNRESET;
	}
	if (ret == GNUTLS_E_INVALID_SESSION) {
		kvmmig_err("TLS %s with %s: the session ended at an earlier TLS error", dir, s->peer);
		return -EPIPE;
	}
	kvmmig_err("TLS %s with %s failed: %s", dir, s->peer, gnutls_strerror(ret));
	return -EPROTO;
}

static int tls_sess_ktls_error(struct tls_sess *s, int err)
{
	if (err == EBADMSG)
		kvmmig_err("kernel TLS with %s: a record failed authentication (the stream was altered on the way)",
			   s->peer);
	else if (err == EIO)
		kvmmig_err("kernel TLS with %s: a record that is not data arrived (an alert or a TLS 1.3 key update, which kernel TLS receive cannot follow)",
			   s->peer);
	else
		kvmmig_err("kernel TLS receive with %s failed: %s", s->peer, strerror(err));
	return -err;
}

/*
 * Each part whole; GnuTLS cuts records of at most 16 KiB.  The socket is
 * never blocked on (MSG_DONTWAIT in tls_push()): GnuTLS says AGAIN and
 * the wait is net_poll()'s, bounded by @w's time without progress.
 */
static int tls_send_all(struct tls_sess *s, const char *buf, size_t len,
			const struct net_wait *w)
{
	int64_t deadline = net_deadline(w);
	ssize_t n;
	int ret;

	while (len) {
		n = gnutls_record_send(s->g, buf, len);
		if (n == GNUTLS_E_AGAIN) {
			ret = tls_wait(s, w, deadline, w ? w->timeout_ms : 0);
			if (ret)
				return ret;
			continue;
		}
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return tls_record_err(s, n, false);
		buf += n;
		len -= n;
		deadline = net_deadline(w);
	}
	return 0;
}

int tls_sess_writev_all(struct tls_sess *s, struct iovec *iov, int iovcnt,
			const struct net_wait *w)
{
	int i, ret = 0;

	/* The kernel encrypts what the socket is given. */
	if (s->ktls_tx)
		return net_writev_all(s->fd, iov, iovcnt, w);
	for (i = 0; !ret && i < iovcnt; i++)
		ret = tls_send_all(s, iov[i].iov_base, iov[i].iov_len, w);
	return ret;
}

/* The kernel decrypts: a plain read, its errors named. */
static ssize_t tls_ktls_recv_some(struct tls_sess *s, void *buf, size_t len, short *events)
{
	ssize_t n;

	do {
		n = recv(s->fd, buf, len, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	if (errno == EAGAIN) {
		*events = POLLIN;
		return -EAGAIN;
	}
	return tls_sess_ktls_error(s, errno);
}

ssize_t tls_sess_recv_some(void *ctx, void *buf, size_t len, short *events)
{
	struct tls_sess *s = ctx;
	ssize_t n;

	if (s->ktls_rx)
		return tls_ktls_recv_some(s, buf, len, events);
	do {
		n = gnutls_record_recv(s->g, buf, len);
	} while (n == GNUTLS_E_INTERRUPTED);
	if (n == GNUTLS_E_AGAIN) {
		*events = gnutls_record_get_direction(s->g) ? POLLOUT : POLLIN;
		return -EAGAIN;
	}
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	return n < 0 ? tls_record_err(s, n, true) : n;
}

int tls_sess_read_all(struct tls_sess *s, void *buf, size_t len, const struct net_wait *w,
		      int first_ms)
{
	return net_read_with(s->fd, tls_sess_recv_some, s, buf, len, w, first_ms);
}

bool tls_sess_pending(struct tls_sess *s)
{
	/* kTLS keeps nothing in user space: the socket's readiness says it all. */
	return !s->ktls_rx && gnutls_record_check_pending(s->g) > 0;
}

const char *tls_sess_engine(const struct tls_sess *s)
{
	if (s->ktls_tx && s->ktls_rx)
		return "ktls";
	return s->ktls_tx ? "ktls-tx" : "gnutls";
}

const char *tls_sess_describe(struct tls_sess *s, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(s->g)),
		 gnutls_cipher_get_name(gnutls_cipher_get(s->g)));
	return buf;
}
