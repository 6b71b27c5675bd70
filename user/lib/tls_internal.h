/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the TLS files share: the credentials (tls_creds.c loads them) and a
 * channel's session (tls.c runs it).  A session points at its credentials,
 * which outlive it and are read-only once loaded.
 */
#ifndef KVMMIG_TLS_INTERNAL_H
#define KVMMIG_TLS_INTERNAL_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>

#include "tls.h"

struct tls_psk_key {
	char *user;
	char *hex;
};

struct tls_creds {
	bool server;
	bool psk;
	bool no_ktls;
	gnutls_priority_t prio;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk_srv;
	gnutls_psk_client_credentials_t psk_cli;
	char *authz;
	char *psk_user;
	char *psk_file;
	struct tls_psk_key *keys;
	unsigned int nr_keys;
};

struct tls_sess {
	gnutls_session_t g;
	struct tls_creds *c;
	int fd;
	bool ktls_tx, ktls_rx;
	bool psk_known;			/* the server found the client's PSK identity */
	bool plaintext_peer;		/* its first byte opened no TLS record */
	char psk_user[64];		/* the identity the client presented */
	unsigned char *rbuf;		/* read-ahead once GnuTLS receives for good */
	size_t rhead, rtail;
	unsigned int nr_rx;		/* bytes received so far, for the plaintext check */
	char hostname[256];		/* the name the server must prove; "": none */
	bool handshaken, ready;		/* the handshake, then the confirmation, done */
	char peer[128];
	char why[320];			/* what a callback refused, for the error */
};

/* GnuTLS's verify callback of x509 credentials: the peer's chain, name and authz. */
int tls_verify_peer(gnutls_session_t g);

#endif /* KVMMIG_TLS_INTERNAL_H */
