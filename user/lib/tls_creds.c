// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS credentials for migration channels (see tls.h and
 * Documentation/tls.rst): x509 from a QEMU-style directory (ca-cert.pem,
 * server- or client-cert.pem and -key.pem) or pre-shared keys from a
 * user:hexkey file, the priority string (TLS 1.3 then 1.2, AES-GCM only),
 * and the server's PSK lookup.  Keys are wiped before they are freed.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tls_internal.h"

/* TLS 1.3 first, then 1.2; AES-GCM (AES-NI) only, both key sizes. */
#define TLS_PRIO_BASE	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:" \
			"-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM"
#define TLS_PRIO_PSK	TLS_PRIO_BASE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK:+PSK"

static int tls_gnutls_err(const char *what, const char *file, int ret)
{
	kvmmig_err("TLS %s %s: %s", what, file, gnutls_strerror(ret));
	return -EINVAL;
}

static bool tls_file_exists(const char *path)
{
	return access(path, R_OK) == 0;
}

static int tls_load_x509(struct tls_creds *c, const char *dir)
{
	const char *who = c->server ? "server" : "client";
	char ca[4096], cert[4096], key[4096];
	int ret;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, who);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, who);
	if (!tls_file_exists(ca)) {
		kvmmig_err("--tls-creds %s: no readable ca-cert.pem (expected QEMU's tls-creds-x509 layout: ca-cert.pem, %s-cert.pem, %s-key.pem)",
			   dir, who, who);
		return -EINVAL;
	}
	ret = gnutls_certificate_allocate_credentials(&c->x509);
	if (ret < 0)
		return tls_gnutls_err("credentials for", dir, ret);
	ret = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (ret <= 0)
		return tls_gnutls_err("CA certificate", ca, ret ? ret : GNUTLS_E_NO_CERTIFICATE_FOUND);
	/* A server must show a certificate; QEMU's client may go without. */
	if (!c->server && !tls_file_exists(cert) && !tls_file_exists(key))
		return 0;
	ret = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		kvmmig_err("TLS %s certificate %s with key %s: %s", who, cert, key,
			   gnutls_strerror(ret));
		return -EINVAL;
	}
	return 0;
}

static bool tls_is_hex(const char *s)
{
	size_t n = strlen(s);

	return n && !(n & 1) && strspn(s, "0123456789abcdefABCDEF") == n;
}

static int tls_psk_add(struct tls_creds *c, const char *user, const char *hex)
{
	struct tls_psk_key *k;

	k = realloc(c->keys, (c->nr_keys + 1) * sizeof(*k));
	if (!k)
		return -ENOMEM;
	c->keys = k;
	k += c->nr_keys;
	k->user = strdup(user);
	k->hex = strdup(hex);
	if (!k->user || !k->hex) {
		free(k->user);
		free(k->hex);
		return -ENOMEM;
	}
	c->nr_keys++;
	return 0;
}

/* QEMU's PSK file: one "username:hexkey" per line. */
static int tls_psk_read(struct tls_creds *c, const char *path)
{
	char line[1024];
	unsigned int lineno = 0;
	int ret = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		kvmmig_err("--tls-psk %s: %s", path, strerror(errno));
		return -errno;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		char *colon;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		colon = strchr(line, ':');
		if (!colon || colon == line || !tls_is_hex(colon + 1)) {
			kvmmig_err("--tls-psk %s line %u: expected username:hexkey (an even number of hex digits)",
				   path, lineno);
			ret = -EINVAL;
			break;
		}
		*colon = '\0';
		ret = tls_psk_add(c, line, colon + 1);
	}
	fclose(f);
	if (!ret && !c->nr_keys) {
		kvmmig_err("--tls-psk %s: no username:hexkey line", path);
		ret = -EINVAL;
	}
	return ret;
}

static const struct tls_psk_key *tls_psk_find(const struct tls_creds *c, const char *user)
{
	unsigned int i;

	for (i = 0; i < c->nr_keys; i++)
		if (!strcmp(c->keys[i].user, user))
			return &c->keys[i];
	return NULL;
}

static int tls_psk_server_key(gnutls_session_t g, const char *user, gnutls_datum_t *key)
{
	struct tls_sess *s = gnutls_session_get_ptr(g);
	const struct tls_psk_key *k = tls_psk_find(s->c, user);
	gnutls_datum_t hex;
	size_t size;

	if (!k) {
		snprintf(s->why, sizeof(s->why), "PSK identity '%s' rejected: it is not in %s",
			 user, s->c->psk_file);
		return -1;
	}
	s->psk_known = true;
	snprintf(s->psk_user, sizeof(s->psk_user), "%s", user);
	hex.data = (unsigned char *)k->hex;
	hex.size = strlen(k->hex);
	size = hex.size / 2;
	key->data = gnutls_malloc(size);
	if (!key->data || gnutls_hex_decode(&hex, key->data, &size))
		return -1;
	key->size = size;
	return 0;
}

static int tls_load_psk(struct tls_creds *c, const struct tls_opts *o)
{
	const struct tls_psk_key *k;
	gnutls_datum_t key;
	int ret;

	c->psk = true;
	c->psk_file = strdup(o->psk_file);
	c->psk_user = strdup(o->psk_user ? o->psk_user : "qemu");
	if (!c->psk_file || !c->psk_user)
		return -ENOMEM;
	ret = tls_psk_read(c, o->psk_file);
	if (ret)
		return ret;
	if (c->server) {
		ret = gnutls_psk_allocate_server_credentials(&c->psk_srv);
		if (ret < 0)
			return tls_gnutls_err("PSK credentials for", o->psk_file, ret);
		gnutls_psk_set_server_credentials_function(c->psk_srv, tls_psk_server_key);
		return 0;
	}
	k = tls_psk_find(c, c->psk_user);
	if (!k) {
		kvmmig_err("--tls-psk %s: no key for username '%s' (--tls-psk-user)",
			   o->psk_file, c->psk_user);
		return -EINVAL;
	}
	ret = gnutls_psk_allocate_client_credentials(&c->psk_cli);
	if (ret < 0)
		return tls_gnutls_err("PSK credentials for", o->psk_file, ret);
	key.data = (unsigned char *)k->hex;
	key.size = strlen(k->hex);
	ret = gnutls_psk_set_client_credentials(c->psk_cli, c->psk_user, &key, GNUTLS_PSK_KEY_HEX);
	return ret < 0 ? tls_gnutls_err("PSK key in", o->psk_file, ret) : 0;
}

int tls_creds_load(const struct tls_opts *o, bool server, struct tls_creds **out)
{
	struct tls_creds *c;
	const char *err;
	int ret;

	if (o->creds_dir && o->psk_file) {
		kvmmig_err("--tls-creds and --tls-psk are exclusive: give x509 credentials or a pre-shared key");
		return -EINVAL;
	}
	if (server && o->authz && !o->creds_dir) {
		kvmmig_err("--tls-authz names the client certificate a receiver accepts: it needs --tls-creds on the receiving side");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->server = server;
	c->no_ktls = o->no_ktls;
	ret = o->psk_file ? tls_load_psk(c, o) : tls_load_x509(c, o->creds_dir);
	if (!ret && c->x509)
		gnutls_certificate_set_verify_function(c->x509, tls_verify_peer);
	if (!ret && o->authz && !(c->authz = strdup(o->authz)))
		ret = -ENOMEM;
	if (!ret) {
		ret = gnutls_priority_init(&c->prio, c->psk ? TLS_PRIO_PSK : TLS_PRIO_BASE, &err);
		if (ret < 0) {
			kvmmig_err("TLS priority string rejected at '%s': %s", err,
				   gnutls_strerror(ret));
			ret = -EINVAL;
		}
	}
	if (ret) {
		tls_creds_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void tls_creds_free(struct tls_creds *c)
{
	unsigned int i;

	if (!c)
		return;
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk_srv)
		gnutls_psk_free_server_credentials(c->psk_srv);
	if (c->psk_cli)
		gnutls_psk_free_client_credentials(c->psk_cli);
	for (i = 0; i < c->nr_keys; i++) {
		explicit_bzero(c->keys[i].hex, strlen(c->keys[i].hex));
		free(c->keys[i].hex);
		free(c->keys[i].user);
	}
	free(c->keys);
	free(c->authz);
	free(c->psk_user);
	free(c->psk_file);
	free(c);
}
