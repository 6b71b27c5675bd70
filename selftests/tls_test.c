// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS on the migration channels (Documentation/tls.rst), with credentials
 * made at test time by certtool: a CA with server and client certificates,
 * an unrelated second CA with its own client, a PSK file and one with the
 * same identity but another key.  First the library alone on loopback TCP
 * (a handshake and data both ways, a deadline, a cancel, bad credential
 * files), then an incr guest migrated with x509 and with PSK over 1 and 4
 * multifd channels, and each refusal: wrong CA, wrong PSK, wrong hostname,
 * authz mismatch, a plaintext source to a TLS receiver and the reverse,
 * each with its message checked, the destination refusing and the source
 * guest running on intact; last a man in the middle flipping one byte of
 * the encrypted stream, which must end in a TLS error, not a corrupt guest.
 */
#include <pthread.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "kselftest_harness.h"
#include "mig_test_util.h"
#include "net.h"
#include "tls.h"

#define GUEST_RAM	(32ULL << 20)
/* As certtool -i prints the client certificate's Subject. */
#define CLIENT_DN	"CN=source.example,O=kvmmig test"

/* ---- credentials ---- */

static const char *const tmpl_ca = "cn = kvmmig test CA\nca\ncert_signing_key\nexpiration_days = 2\n";
static const char *const tmpl_server =
	"cn = localhost\norganization = kvmmig test\ndns_name = localhost\n"
	"ip_address = 127.0.0.1\ntls_www_server\nsigning_key\nexpiration_days = 2\n";
static const char *const tmpl_client =
	"cn = source.example\norganization = kvmmig test\ntls_www_client\nsigning_key\n"
	"expiration_days = 2\n";

static int write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* A CA in @dir/@ca (ca-cert.pem) and the named leaves signed by it. */
static int make_pki(const char *dir, const char *ca, bool server)
{
	const char *q = "certtool -q >/dev/null 2>&1";

	if (sh("mkdir -p %s/%s", dir, ca) ||
	    sh("%s --generate-privkey --key-type ecdsa --outfile %s/%s.key", q, dir, ca) ||
	    sh("%s --generate-self-signed --load-privkey %s/%s.key --template %s/ca.tmpl --outfile %s/%s/ca-cert.pem",
	       q, dir, ca, dir, dir, ca))
		return -1;
	for (int i = server ? 0 : 1; i < 2; i++) {
		const char *who = i ? "client" : "server";

		if (sh("%s --generate-privkey --key-type ecdsa --outfile %s/%s/%s-key.pem", q, dir,
		       ca, who) ||
		    sh("%s --generate-certificate --load-privkey %s/%s/%s-key.pem --load-ca-certificate %s/%s/ca-cert.pem --load-ca-privkey %s/%s.key --template %s/%s.tmpl --outfile %s/%s/%s-cert.pem",
		       q, dir, ca, who, dir, ca, dir, ca, dir, who, dir, ca, who))
			return -1;
	}
	return 0;
}

static int make_creds(const char *dir)
{
	if (write_file(dir, "ca.tmpl", tmpl_ca) || write_file(dir, "server.tmpl", tmpl_server) ||
	    write_file(dir, "client.tmpl", tmpl_client))
		return -1;
	if (make_pki(dir, "good", true) || make_pki(dir, "other", false))
		return -1;
	return write_file(dir, "keys.psk", "other:00112233445566778899aabbccddeeff\nqemu:5d60262c51fad88f6259b34ebf69001e2a873bb5063c83f189b2697c70bffe65\n") ||
	       write_file(dir, "wrong.psk", "qemu:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n") ||
	       write_file(dir, "bad.psk", "qemu:xyz\n");
}

FIXTURE(tls) {
	char dir[64];
	char good[96], other[96], psk[96], wrong_psk[96], bad_psk[96], dest_err[96];
	struct vm *vm;
	struct dest_child dest;
};

FIXTURE_SETUP(tls)
{
	self->dest.pid = 0;
	self->vm = NULL;
	if (access("/usr/bin/certtool", X_OK))
		SKIP(return, "certtool (Debian's gnutls-bin) is not installed: make deps");
	strcpy(self->dir, "/tmp/kvmmig-tls-XXXXXX");
	ASSERT_NE(mkdtemp(self->dir), NULL);
	ASSERT_EQ(make_creds(self->dir), 0) TH_LOG("certtool failed in %s", self->dir);
	snprintf(self->good, sizeof(self->good), "%s/good", self->dir);
	snprintf(self->other, sizeof(self->other), "%s/other", self->dir);
	snprintf(self->psk, sizeof(self->psk), "%s/keys.psk", self->dir);
	snprintf(self->wrong_psk, sizeof(self->wrong_psk), "%s/wrong.psk", self->dir);
	snprintf(self->bad_psk, sizeof(self->bad_psk), "%s/bad.psk", self->dir);
	snprintf(self->dest_err, sizeof(self->dest_err), "%s/dest.err", self->dir);
}

FIXTURE_TEARDOWN(tls)
{
	if (self->dest.pid > 0)
		kill(self->dest.pid, SIGKILL), dest_child_wait(&self->dest);
	vm_destroy(self->vm);
	if (self->dir[0])
		sh("rm -rf %s", self->dir);
}

/* ---- the library alone, on a loopback TCP pair ---- */

struct side {
	struct tls_opts o;
	bool server;
	int fd;
	int timeout_ms;
	volatile sig_atomic_t *cancel;
	struct tls_creds *c;
	struct tls_sess *s;
	int ret;
	char err[320];
};

static void *side_handshake(void *arg)
{
	struct side *sd = arg;
	struct net_wait w = {
		.timeout_ms = sd->timeout_ms ? sd->timeout_ms : 10000,
		.cancel = sd->cancel,
		.what = "the TLS handshake",
	};

	sd->ret = tls_creds_load(&sd->o, sd->server, &sd->c);
	if (!sd->ret)
		sd->ret = tls_sess_handshake(sd->c, sd->fd, "tcp:127.0.0.1:test", "localhost", &w,
					     &sd->s);
	snprintf(sd->err, sizeof(sd->err), "%s", sd->ret ? kvmmig_last_error() : "");
	return NULL;
}

static int tcp_pair(int fds[2])
{
	int port, lfd = net_listen("tcp:127.0.0.1:0", &port);
	char addr[64];

	if (lfd < 0)
		return -1;
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	fds[0] = net_connect(addr, NULL);
	fds[1] = net_accept(lfd, NULL, 5000, -1);
	close(lfd);
	return fds[0] < 0 || fds[1] < 0 ? -1 : 0;
}

/* Client in this thread, server in another; both results in @cl, @sv. */
static int handshake_pair(struct side *cl, struct side *sv)
{
	pthread_t t;
	int fds[2];

	if (tcp_pair(fds))
		return -1;
	cl->fd = fds[0];
	sv->fd = fds[1];
	sv->server = true;
	pthread_create(&t, NULL, side_handshake, sv);
	side_handshake(cl);
	pthread_join(t, NULL);
	return 0;
}

static void side_end(struct side *sd)
{
	tls_sess_free(sd->s);
	tls_creds_free(sd->c);
	close(sd->fd);
}

TEST_F(tls, lib_x509_data_both_ways)
{
	struct side cl = { .o.creds_dir = self->good }, sv = { .o.creds_dir = self->good,
							       .o.authz = CLIENT_DN };
	static uint8_t out[1 << 20], in[1 << 20];
	struct iovec iov[2] = { { out, 100 }, { out + 100, sizeof(out) - 100 } };
	struct net_wait w = { .timeout_ms = 10000, .what = "the data" };
	char desc[64];
	unsigned int i;

	ASSERT_EQ(handshake_pair(&cl, &sv), 0);
	ASSERT_EQ(cl.ret, 0) TH_LOG("client: %s", cl.err);
	ASSERT_EQ(sv.ret, 0) TH_LOG("server: %s", sv.err);
	tls_sess_describe(cl.s, desc, sizeof(desc));
	TH_LOG("%s, record layer %s", desc, tls_sess_engine(cl.s));
	ASSERT_NE(strstr(desc, "TLS1.3"), NULL);
	ASSERT_NE(strstr(desc, "GCM"), NULL);
	if (!tls_kernel_offers_ktls())
		ASSERT_STREQ(tls_sess_engine(cl.s), "gnutls");
	for (i = 0; i < sizeof(out); i++)
		out[i] = i * 7 + (i >> 12);
	/* 1 MiB does not fit the socket buffers: the reader must run meanwhile. */
	if (fork() == 0)
		_exit(tls_sess_writev_all(cl.s, iov, 2, &w) ? 1 : 0);
	ASSERT_EQ(tls_sess_read_all(sv.s, in, sizeof(in), &w, 0), 0);
	ASSERT_EQ(memcmp(in, out, sizeof(in)), 0);
	ASSERT_EQ(tls_sess_writev_all(sv.s, iov, 1, &w), 0);
	ASSERT_EQ(tls_sess_read_all(cl.s, in, 100, &w, 0), 0);
	ASSERT_EQ(memcmp(in, out, 100), 0);
	side_end(&cl);
	side_end(&sv);
}

TEST_F(tls, lib_psk_unknown_identity)
{
	struct side cl = { .o.psk_file = self->psk, .o.psk_user = "other" },
		    sv = { .o.psk_file = self->wrong_psk };

	ASSERT_EQ(handshake_pair(&cl, &sv), 0);
	ASSERT_NE(sv.ret, 0);
	ASSERT_NE(strstr(sv.err, "PSK identity 'other' rejected: it is not in"), NULL)
		TH_LOG("server: %s", sv.err);
	ASSERT_NE(strstr(cl.err, "PSK identity 'other' rejected"), NULL) TH_LOG("client: %s", cl.err);
	side_end(&cl);
	side_end(&sv);
}

/* A server whose client never says a word gives up at its deadline. */
TEST_F(tls, lib_deadline)
{
	struct side cl = { 0 }, sv = { .o.psk_file = self->psk, .server = true, .timeout_ms = 300 };
	int fds[2];

	ASSERT_EQ(tcp_pair(fds), 0);
	sv.fd = fds[1];
	side_handshake(&sv);
	ASSERT_EQ(sv.ret, -ETIMEDOUT);
	ASSERT_NE(strstr(sv.err, "the TLS handshake: no progress for 0.3 s"), NULL)
		TH_LOG("%s", sv.err);
	cl.fd = fds[0];
	side_end(&cl);
	side_end(&sv);
}

static volatile sig_atomic_t cancel_flag;

static void *set_cancel_later(void *arg)
{
	usleep(200000);
	kvmmig_cancel_set(&cancel_flag, 1);
	return NULL;
}

TEST_F(tls, lib_cancel)
{
	struct side cl = { 0 }, sv = { .o.creds_dir = self->good, .server = true,
				       .timeout_ms = 60000, .cancel = &cancel_flag };
	pthread_t t;
	int fds[2];

	ASSERT_EQ(tcp_pair(fds), 0);
	sv.fd = fds[1];
	pthread_create(&t, NULL, set_cancel_later, NULL);
	side_handshake(&sv);
	pthread_join(t, NULL);
	ASSERT_EQ(sv.ret, -ECANCELED) TH_LOG("%s", sv.err);
	cl.fd = fds[0];
	side_end(&cl);
	side_end(&sv);
}

TEST_F(tls, lib_bad_credentials)
{
	struct tls_opts o = { .creds_dir = self->dir };
	struct tls_creds *c = NULL;

	/* The top directory has templates, no ca-cert.pem. */
	ASSERT_EQ(tls_creds_load(&o, true, &c), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "no readable ca-cert.pem"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	o = (struct tls_opts){ .psk_file = self->bad_psk };
	ASSERT_EQ(tls_creds_load(&o, false, &c), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "line 1: expected username:hexkey"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	o = (struct tls_opts){ .psk_file = self->psk, .psk_user = "nobody" };
	ASSERT_EQ(tls_creds_load(&o, false, &c), -EINVAL);
	ASSERT_NE(strstr(kvmmig_last_error(), "no key for username 'nobody'"), NULL);
	o = (struct tls_opts){ .creds_dir = self->good, .psk_file = self->psk };
	ASSERT_EQ(tls_creds_load(&o, false, &c), -EINVAL);
	ASSERT_EQ(c, NULL);
}

/* ---- a man in the middle that flips one byte going to the destination ---- */

struct mitm {
	int lfd;
	char addr[64];
	const char *dest;
	unsigned int conn;	/* the connection to tamper with, in accept order */
	uint64_t off;		/* the byte of it to flip */
	pthread_t thread;
	volatile sig_atomic_t stop;	/* ends the accept loop (cancel.h) */
	volatile bool hit;
};

struct mitm_pipe {
	struct mitm *m;
	int in, out;
	bool tamper;
};

static void *mitm_pipe_run(void *arg)
{
	struct mitm_pipe *p = arg;
	static __thread uint8_t buf[65536];
	uint64_t pos = 0;
	ssize_t n;

	while ((n = read(p->in, buf, sizeof(buf))) > 0) {
		if (p->tamper && p->m->off >= pos && p->m->off < pos + n) {
			buf[p->m->off - pos] ^= 0x01;
			p->m->hit = true;
		}
		pos += n;
		if (send(p->out, buf, n, MSG_NOSIGNAL) != n)
			break;
	}
	shutdown(p->in, SHUT_RDWR);
	shutdown(p->out, SHUT_RDWR);
	free(p);
	return NULL;
}

static void mitm_pipe_start(struct mitm *m, int in, int out, bool tamper)
{
	struct mitm_pipe *p = malloc(sizeof(*p));
	pthread_t t;

	*p = (struct mitm_pipe){ .m = m, .in = in, .out = out, .tamper = tamper };
	pthread_create(&t, NULL, mitm_pipe_run, p);
	pthread_detach(t);
}

static void *mitm_run(void *arg)
{
	struct mitm *m = arg;
	unsigned int i;

	for (i = 0; i < 8; i++) {
		int a = net_accept(m->lfd, &m->stop, 60000, -1), b;

		if (a < 0)
			break;
		b = net_connect(m->dest, NULL);
		if (b < 0) {
			close(a);
			break;
		}
		mitm_pipe_start(m, a, b, i == m->conn);
		mitm_pipe_start(m, b, a, false);
	}
	return NULL;
}

static int mitm_start(struct mitm *m, const char *dest, unsigned int conn, uint64_t off)
{
	int port;

	memset(m, 0, sizeof(*m));
	m->dest = dest;
	m->conn = conn;
	m->off = off;
	m->lfd = net_listen("tcp:127.0.0.1:0", &port);
	if (m->lfd < 0)
		return -1;
	snprintf(m->addr, sizeof(m->addr), "tcp:127.0.0.1:%d", port);
	return pthread_create(&m->thread, NULL, mitm_run, m);
}

/* ---- migrations ---- */

static int start_guest_and_dest(struct __test_metadata *_metadata, FIXTURE_DATA(tls) *self,
				const struct tls_opts *dest_tls)
{
	enum dirty_backend backend = DIRTY_AUTO;

	self->vm = source_guest(1, GUEST_RAM, &backend);
	if (!self->vm)
		return -1;
	return dest_child_start_tls(&self->dest, "127.0.0.1", NULL, dest_tls, self->dest_err);
}

static int migrate(struct vm *vm, const char *to, const struct tls_opts *tls,
		   unsigned int channels, struct mig_report *rep)
{
	struct mig_source_opts o = { .to = to };
	int ret;

	mig_params_init(&o.params);
	o.params.multifd_channels = channels;
	o.params.max_passes = 400;
	o.params.downtime_limit_ms = 500;
	o.params.policy = MIG_POLICY_AUTO_CONVERGE;
	o.params.cpu_throttle_initial = 80;
	o.params.cpu_throttle_increment = 19;
	if (tls)
		o.tls = *tls;
	ret = mig_source_run(vm->kv, &o, rep);
	return ret;
}

/* What the destination said (its stderr), whole. */
static void dest_log(FIXTURE_DATA(tls) *self, char *buf, size_t len)
{
	FILE *f = fopen(self->dest_err, "re");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

static void run_ok(struct __test_metadata *_metadata, FIXTURE_DATA(tls) *self,
		   const struct tls_opts *src, const struct tls_opts *dst, unsigned int channels)
{
	struct mig_report rep;
	int ret, st;

	ASSERT_EQ(start_guest_and_dest(_metadata, self, dst), 0);
	ret = migrate(self->vm, self->dest.addr, src, channels, &rep);
	TH_LOG("%u channels: %s in %.2f s, record layer %s%s%s", channels, mig_state_name(rep.state),
	       rep.total_s, rep.tls, rep.error[0] ? ": " : "", rep.error);
	ASSERT_EQ(ret, 0);
	ASSERT_NE(rep.tls, NULL);
	st = dest_child_wait(&self->dest);
	self->dest.pid = 0;
	ASSERT_EQ(st, DEST_OK) TH_LOG("destination exit code %d", st);
	mig_report_free(&rep);
}

/*
 * A refused migration: the source fails naming @src_msg (NULL: not
 * checked) and its guest runs on intact; the destination said @dst_msg.
 * A channel refused at its handshake is set aside by the receiver, which
 * goes on listening (@dest_fails false); one that fails inside the
 * session fails the receive, which keeps nothing.
 */
static void run_refused(struct __test_metadata *_metadata, FIXTURE_DATA(tls) *self,
			const struct tls_opts *src, const char *to, const char *src_msg,
			const char *dst_msg, bool dest_fails)
{
	struct mig_report rep;
	char why[256], dlog[4096];
	int ret, st;

	ret = migrate(self->vm, to ? to : self->dest.addr, src, 1, &rep);
	TH_LOG("source: %s", rep.error);
	ASSERT_NE(ret, 0);
	ASSERT_EQ(rep.state, (enum mig_state)MIG_FAILED);
	if (src_msg)
		ASSERT_NE(strstr(rep.error, src_msg), NULL) TH_LOG("expected '%s'", src_msg);
	if (dest_fails) {
		st = dest_child_wait(&self->dest);
		ASSERT_EQ(st, DEST_RECEIVE_FAILED);
	} else {
		/* Still listening for a valid source. */
		ASSERT_EQ(waitpid(self->dest.pid, NULL, WNOHANG), 0);
		kill(self->dest.pid, SIGKILL);
		dest_child_wait(&self->dest);
	}
	self->dest.pid = 0;
	dest_log(self, dlog, sizeof(dlog));
	TH_LOG("destination said: %s", dlog);
	ASSERT_NE(strstr(dlog, dst_msg), NULL) TH_LOG("expected '%s'", dst_msg);
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	mig_report_free(&rep);
}

TEST_F_TIMEOUT(tls, x509_1ch, 300)
{
	struct tls_opts src = { .creds_dir = self->good }, dst = { .creds_dir = self->good,
								   .authz = CLIENT_DN };

	run_ok(_metadata, self, &src, &dst, 1);
}

/* authz also in the order QEMU's authz-simple compares (GnuTLS's compat order). */
TEST_F_TIMEOUT(tls, x509_4ch, 300)
{
	struct tls_opts src = { .creds_dir = self->good },
			dst = { .creds_dir = self->good, .authz = "O=kvmmig test,CN=source.example" };

	run_ok(_metadata, self, &src, &dst, 4);
}

TEST_F_TIMEOUT(tls, psk_1ch, 300)
{
	struct tls_opts t = { .psk_file = self->psk };

	run_ok(_metadata, self, &t, &t, 1);
}

TEST_F_TIMEOUT(tls, psk_4ch, 300)
{
	struct tls_opts t = { .psk_file = self->psk };

	run_ok(_metadata, self, &t, &t, 4);
}

TEST_F_TIMEOUT(tls, wrong_ca, 120)
{
	struct tls_opts src = { .creds_dir = self->other }, dst = { .creds_dir = self->good };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &dst), 0);
	run_refused(_metadata, self, &src, NULL, "certificate signed by an unknown CA",
		    "the peer refused this side's certificate (alert: ", false);
}

TEST_F_TIMEOUT(tls, wrong_psk, 120)
{
	struct tls_opts src = { .psk_file = self->wrong_psk }, dst = { .psk_file = self->psk };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &dst), 0);
	run_refused(_metadata, self, &src, NULL, "PSK identity 'qemu' rejected",
		    "PSK identity 'qemu' rejected: the client's key differs", false);
}

TEST_F_TIMEOUT(tls, wrong_hostname, 120)
{
	struct tls_opts src = { .creds_dir = self->good, .hostname = "dest.example" },
			dst = { .creds_dir = self->good };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &dst), 0);
	run_refused(_metadata, self, &src, NULL,
		    "the server's certificate is not for host 'dest.example'",
		    "the peer refused this side's certificate (alert: ", false);
}

TEST_F_TIMEOUT(tls, authz_mismatch, 120)
{
	struct tls_opts src = { .creds_dir = self->good },
			dst = { .creds_dir = self->good, .authz = "CN=someone.else,O=kvmmig test" };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &dst), 0);
	run_refused(_metadata, self, &src, NULL, "the peer refused this side's certificate",
		    "client certificate '" CLIENT_DN "' refused: --tls-authz accepts only", false);
}

TEST_F_TIMEOUT(tls, plaintext_source_to_tls_dest, 120)
{
	struct tls_opts dst = { .psk_file = self->psk };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &dst), 0);
	run_refused(_metadata, self, NULL, NULL, NULL,
		    "the peer speaks plaintext, TLS was required", false);
}

TEST_F_TIMEOUT(tls, tls_source_to_plaintext_dest, 120)
{
	struct tls_opts src = { .creds_dir = self->good };

	ASSERT_EQ(start_guest_and_dest(_metadata, self, NULL), 0);
	run_refused(_metadata, self, &src, NULL,
		    "the peer closed the connection (a peer without TLS? TLS was required)",
		    "the peer speaks TLS (a ClientHello), this side was given no --tls-creds", false);
}

/* The byte 1 MiB into the first page channel: well inside encrypted pages. */
TEST_F_TIMEOUT(tls, mitm_flip_breaks_the_connection, 120)
{
	struct tls_opts t = { .psk_file = self->psk };
	struct mitm m;

	ASSERT_EQ(start_guest_and_dest(_metadata, self, &t), 0);
	ASSERT_EQ(mitm_start(&m, self->dest.addr, 1, 1 << 20), 0);
	run_refused(_metadata, self, &t, m.addr, NULL,
		    "a record failed authentication (the stream was altered on the way)", true);
	kvmmig_cancel_set(&m.stop, 1);
	pthread_join(m.thread, NULL);
	close(m.lfd);
	ASSERT_TRUE(m.hit);
}

TEST_HARNESS_MAIN
