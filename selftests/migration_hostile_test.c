// SPDX-License-Identifier: GPL-2.0-only
/*
 * A receiver that anyone can reach, and guest memory that anyone on the path
 * can rewrite.  Hostile peers on loopback (a connection that opens and
 * closes, a hello dribbled a byte at a time, a record header instead of a
 * hello, more silent connections than the receiver keeps pending, a second
 * source during a migration, a channel of another session during the
 * channel accept) must be set aside, each named in one line, while a real
 * migration to the same destination child completes and its memory check
 * passes.  A port out of range is refused.  A source guest whose parameter
 * page was rewritten (the stream's checksums are then valid) makes the
 * destination report a clear failed check, not hang, spin or crash.  And
 * the other way round: a scripted destination that answers the source with
 * a truncated, oversized, wrong-type or wrong-sequence record, or garbage,
 * after the hello, during the passes or at the end, leaves the source failed
 * cleanly with its guest running and intact.
 */
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "kselftest_harness.h"
#include "csum.h"
#include "mig_internal.h"
#include "mig_listen.h"
#include "mig_test_util.h"
#include "net.h"

#define GUEST_RAM	(32ULL << 20)
#define HELLO_MS	1000	/* the destination's hello deadline here */
#define FLOOD		(3 * MIG_LISTEN_MAX_PENDING)

/* ---- a destination child whose log is kept ---- */

struct hdest {
	pid_t pid;
	FILE *log;		/* its stderr */
	char addr[64];
	char text[16384];	/* the log, once it exited */
};

/* The child says what it ignored and why it failed, into its log. */
static void hdest_log(int level, const char *msg)
{
	fprintf(stderr, "kvmmig: %s\n", msg);
}

static int hdest_start(struct hdest *d)
{
	int pfd[2];

	memset(d, 0, sizeof(*d));
	d->log = tmpfile();
	if (!d->log || pipe(pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	d->pid = fork();
	if (d->pid == 0) {
		struct mig_dest_opts o = {
			.listen = "tcp:127.0.0.1:0",
			.hello_timeout_ms = HELLO_MS,
			.listening = dest_child_listening,
			.resumed = dest_child_resumed,
			.opaque = &pfd[1],
			DEST_CHILD_VMM,
		};
		struct mig_report rep;
		int ret;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(pfd[0]);
		dup2(fileno(d->log), STDERR_FILENO);
		kvmmig_set_log(hdest_log, KVMMIG_LOG_ERR);
		ret = mig_dest_run(&o, &rep);
		_exit(dest_exit_code(ret));
	}
	close(pfd[1]);
	return dest_child_addr(pfd[0], d->pid, "127.0.0.1", d->addr, sizeof(d->addr)) < 0 ? -1 : 0;
}

/* Its exit code (-1: a signal), its log in d->text. */
static int hdest_wait(struct hdest *d)
{
	size_t n;
	int st;

	if (d->pid <= 0 || waitpid(d->pid, &st, 0) < 0)
		return -1;
	d->pid = 0;
	rewind(d->log);
	n = fread(d->text, 1, sizeof(d->text) - 1, d->log);
	d->text[n] = '\0';
	fclose(d->log);
	d->log = NULL;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void hdest_kill(struct hdest *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
	}
	if (d->log)
		fclose(d->log);
}

static bool hdest_alive(const struct hdest *d)
{
	return waitpid(d->pid, NULL, WNOHANG) == 0;
}

/* ---- hostile peers ---- */

/* Wait until the destination closes @fd (it set the connection aside). */
static bool peer_closed_by_dest(int fd)
{
	struct timeval tv = { .tv_sec = 30 };
	char c;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = recv(fd, &c, 1, 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
}

static struct mig_hello valid_hello(uint64_t session, uint32_t channel, uint32_t nr)
{
	struct mig_hello h = { .channel = channel, .session = session, .nr_channels = nr };

	mig_hello_seal(&h);
	return h;
}

struct dribbler {
	pthread_t thread;
	char addr[64];
	size_t sent;		/* hello bytes that went through */
	bool closed;		/* the destination hung up */
};

/* A valid hello, one byte every 250 ms: far slower than the deadline. */
static void *dribble_thread(void *arg)
{
	struct dribbler *b = arg;
	struct mig_hello h = valid_hello(0xd1bb1e, 0, 1);
	int fd = net_connect(b->addr, NULL);

	if (fd < 0)
		return NULL;
	for (b->sent = 0; b->sent < sizeof(h); b->sent++) {
		if (send(fd, (char *)&h + b->sent, 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(250000);
	}
	b->closed = peer_closed_by_dest(fd);
	close(fd);
	return NULL;
}

/* ---- a real migration to the same destination ---- */

/* Migrate a fresh incr guest to @d; the destination's exit code. */
static int migrate_to(struct __test_metadata *_metadata, struct hdest *d,
		      void (*progress)(void *, enum mig_state, const struct mig_sample *,
				       const struct mig_report *),
		      void *opaque)
{
	enum dirty_backend backend = DIRTY_AUTO;
	struct mig_source_opts o = {
		.to = d->addr,
		.progress = progress,
		.opaque = opaque,
		.progress_interval_s = 0.05,
	};
	struct mig_report rep = { 0 };
	struct vm *vm;
	int ret, st;

	vm = source_guest(2, GUEST_RAM, &backend);
	if (!vm)
		return -1;
	mig_params_init(&o.params);
	o.params.multifd_channels = 2;
	o.params.max_passes = 400;
	ret = mig_source_run(vm->kv, &o, &rep);
	st = hdest_wait(d);
	TH_LOG("source: %s %s; destination exit %d; its log:\n%s", mig_state_name(rep.state),
	       rep.error, st, d->text);
	mig_report_free(&rep);
	vm_destroy(vm);
	return ret ? -2 : st;
}

FIXTURE(hostile) {
	struct hdest d;
};

FIXTURE_SETUP(hostile)
{
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_EQ(hdest_start(&self->d), 0);
}

FIXTURE_TEARDOWN(hostile)
{
	hdest_kill(&self->d);
}

TEST_F_TIMEOUT(hostile, open_and_close, 120)
{
	unsigned int i;

	for (i = 0; i < 3; i++) {
		int fd = net_connect(self->d.addr, NULL);

		ASSERT_GE(fd, 0);
		close(fd);
	}
	ASSERT_EQ(migrate_to(_metadata, &self->d, NULL, NULL), DEST_OK);
	ASSERT_NE(strstr(self->d.text, "closed after 0 of"), NULL);
}

TEST_F_TIMEOUT(hostile, slow_hello, 120)
{
	struct dribbler b = { 0 };

	snprintf(b.addr, sizeof(b.addr), "%s", self->d.addr);
	ASSERT_EQ(pthread_create(&b.thread, NULL, dribble_thread, &b), 0);
	pthread_join(b.thread, NULL);
	/* Set aside by its deadline, not by a receiver that gave up. */
	ASSERT_TRUE(b.closed);
	ASSERT_LT(b.sent, sizeof(struct mig_hello));
	ASSERT_TRUE(hdest_alive(&self->d));
	ASSERT_EQ(migrate_to(_metadata, &self->d, NULL, NULL), DEST_OK);
	ASSERT_NE(strstr(self->d.text, "hello bytes within the hello deadline"), NULL);
}

/* A slow peer that keeps dribbling does not hold up a good one meanwhile. */
TEST_F_TIMEOUT(hostile, slow_hello_beside_a_migration, 120)
{
	struct dribbler b = { 0 };

	snprintf(b.addr, sizeof(b.addr), "%s", self->d.addr);
	ASSERT_EQ(pthread_create(&b.thread, NULL, dribble_thread, &b), 0);
	while (!__atomic_load_n(&b.sent, __ATOMIC_RELAXED))
		usleep(10000);
	ASSERT_EQ(migrate_to(_metadata, &self->d, NULL, NULL), DEST_OK);
	pthread_join(b.thread, NULL);
	ASSERT_TRUE(b.closed);
}

TEST_F_TIMEOUT(hostile, stall_after_max_length_header, 120)
{
	struct mig_rec rec;
	int fd;

	/* A record header where the hello belongs: 24 of 56 bytes, then silence. */
	mig_rec_seal(&rec, MIG_REC_PAGES, 0, NULL, 0);
	rec.len = MIG_MAX_PAYLOAD;
	rec.hcrc = crc32c(0, &rec, offsetof(struct mig_rec, hcrc));
	fd = net_connect(self->d.addr, NULL);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(net_write_all(fd, &rec, sizeof(rec), NULL), 0);
	ASSERT_TRUE(peer_closed_by_dest(fd));
	close(fd);
	ASSERT_TRUE(hdest_alive(&self->d));
	ASSERT_EQ(migrate_to(_metadata, &self->d, NULL, NULL), DEST_OK);
	ASSERT_NE(strstr(self->d.text, "24 of 56 hello bytes"), NULL);
}

/*
 * A valid main hello, then a CONFIG header of the maximum length and
 * silence: the receiver gives up on that source within its deadline.
 */
TEST_F_TIMEOUT(hostile, stall_after_config_header, 60)
{
	struct mig_hello h = valid_hello(0x57a11, 0, 1);
	struct mig_rec rec;
	int fd, st;

	mig_rec_seal(&rec, MIG_REC_CONFIG, 0, NULL, 0);
	rec.len = MIG_MAX_PAYLOAD;
	rec.hcrc = crc32c(0, &rec, offsetof(struct mig_rec, hcrc));
	fd = net_connect(self->d.addr, NULL);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(net_write_all(fd, &h, sizeof(h), NULL), 0);
	ASSERT_EQ(net_write_all(fd, &rec, sizeof(rec), NULL), 0);
	st = hdest_wait(&self->d);
	close(fd);
	TH_LOG("destination exit %d:\n%s", st, self->d.text);
	ASSERT_EQ(st, DEST_RECEIVE_FAILED);
	ASSERT_NE(strstr(self->d.text, "no complete CONFIG record"), NULL);
}

TEST_F_TIMEOUT(hostile, more_silent_connections_than_the_bound, 120)
{
	int fds[FLOOD], i;

	for (i = 0; i < FLOOD; i++) {
		fds[i] = net_connect(self->d.addr, NULL);
		ASSERT_GE(fds[i], 0);
	}
	/* They stay open, silent, while the real source migrates. */
	ASSERT_EQ(migrate_to(_metadata, &self->d, NULL, NULL), DEST_OK);
	for (i = 0; i < FLOOD; i++)
		close(fds[i]);
	ASSERT_NE(strstr(self->d.text, "handshakes pending"), NULL);
}

/* ---- a second source while a migration runs ---- */

struct second_source {
	const char *addr;
	bool tried;
	struct mig_ack ack;
	int ret;
};

/* In the first pass: connect as another source and read the answer. */
static void second_source_progress(void *opaque, enum mig_state state,
				   const struct mig_sample *s, const struct mig_report *r)
{
	struct second_source *x = opaque;
	struct mig_hello h = valid_hello(0x5ec0d, 0, 1);
	struct mig_rec rec;
	struct mig_chan c;
	void *buf;
	int fd;

	if (x->tried || state != MIG_ACTIVE)
		return;
	x->tried = true;
	x->ret = -1;
	fd = net_connect(x->addr, NULL);
	if (fd < 0)
		return;
	mig_chan_init(&c, fd, 0);
	c.idle_timeout_ms = 20000;	/* the answer is due, not a hang */
	buf = malloc(MIG_MAX_PAYLOAD);
	if (buf && !net_write_all(fd, &h, sizeof(h), NULL))
		x->ret = mig_chan_recv(&c, &rec, buf);
	if (!x->ret && rec.type == MIG_REC_ACK && rec.len == sizeof(x->ack))
		memcpy(&x->ack, buf, sizeof(x->ack));
	else if (!x->ret)
		x->ret = -EPROTO;
	free(buf);
	close(fd);
}

TEST_F_TIMEOUT(hostile, second_source_during_a_migration, 120)
{
	struct second_source x = { .addr = self->d.addr };

	ASSERT_EQ(migrate_to(_metadata, &self->d, second_source_progress, &x), DEST_OK);
	ASSERT_TRUE(x.tried);
	ASSERT_EQ(x.ret, 0);
	x.ack.msg[sizeof(x.ack.msg) - 1] = '\0';
	TH_LOG("the second source was told: %d %s", x.ack.status, x.ack.msg);
	ASSERT_EQ(x.ack.status, -EBUSY);
	ASSERT_NE(strstr(x.ack.msg, "busy"), NULL);
	ASSERT_NE(strstr(self->d.text, "a second source"), NULL);
}

/*
 * A scripted source announces two channels; a channel of another session
 * arrives first.  It is set aside and the receiver keeps waiting for the
 * real one: it fails only when the source itself goes, and says what it
 * ignored.
 */
TEST_F_TIMEOUT(hostile, foreign_channel_during_the_accept, 60)
{
	struct vm_config vc = { .nr_vcpus = 1, .ram_bytes = GUEST_RAM, .nr_slots = 1 };
	struct mig_hello h = valid_hello(0xaaaa, 0, 2), other = valid_hello(0xbbbb, 1, 2);
	struct mig_config *cfg;
	struct mig_chan c;
	struct vm *vm;
	size_t len;
	int fd, fd2, st;

	ASSERT_EQ(vm_create(&vc, &vm), 0);
	cfg = mig_config_of(vm->kv, &len);
	ASSERT_NE(cfg, NULL);
	fd = net_connect(self->d.addr, NULL);
	ASSERT_GE(fd, 0);
	mig_chan_init(&c, fd, 0);
	ASSERT_EQ(net_write_all(fd, &h, sizeof(h), NULL), 0);
	ASSERT_EQ(mig_chan_send(&c, MIG_REC_CONFIG, cfg, len), 0);
	fd2 = net_connect(self->d.addr, NULL);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(net_write_all(fd2, &other, sizeof(other), NULL), 0);
	ASSERT_TRUE(peer_closed_by_dest(fd2));
	close(fd2);
	ASSERT_TRUE(hdest_alive(&self->d));
	close(fd);
	st = hdest_wait(&self->d);
	TH_LOG("destination exit %d:\n%s", st, self->d.text);
	ASSERT_EQ(st, DEST_RECEIVE_FAILED);
	ASSERT_NE(strstr(self->d.text, "session 000000000000bbbb"), NULL);
	ASSERT_NE(strstr(self->d.text, "closed its main channel"), NULL);
	free(cfg);
	vm_destroy(vm);
}

/* ---- addresses ---- */

TEST(port_out_of_range)
{
	static const char *const bad[] = {
		"tcp:127.0.0.1:99999", "tcp:127.0.0.1:65536", "tcp:127.0.0.1:-1",
		"tcp:127.0.0.1:4444x", "tcp:127.0.0.1:http", "tcp:[::1]:1000000",
	};
	char host[64], port[16];
	unsigned int i;
	int fd;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		fd = net_listen(bad[i], NULL);
		if (fd >= 0)
			close(fd);
		ASSERT_EQ(fd, -EINVAL) TH_LOG("%s was accepted", bad[i]);
		ASSERT_NE(strstr(kvmmig_last_error(), "0 to 65535"), NULL);
	}
	ASSERT_EQ(net_parse_addr("tcp:127.0.0.1:65535", host, sizeof(host), port, sizeof(port)), 0);
	ASSERT_STREQ(port, "65535");
	ASSERT_EQ(net_parse_addr("tcp:127.0.0.1:0", host, sizeof(host), port, sizeof(port)), 0);
}

/*
 * A page channel accepted while the main channel's hello was read, whose
 * hello then sits in its socket while the receiver is away (creating the
 * guest takes seconds on a loaded host) for longer than the hello
 * deadline: it must be read before it is judged, not set aside unread.
 */
TEST(hello_that_came_while_the_listener_was_away)
{
	struct mig_hello main = valid_hello(0xa1a1, 0, 2), page = valid_hello(0xa1a1, 1, 2);
	struct mig_want want = { .new_session = true };
	struct mig_listener l;
	struct mig_hello got;
	bool taken[2] = { true, false };
	char addr[64];
	int port, m, p, fd;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	ASSERT_EQ(mig_listener_open(&l, "tcp:127.0.0.1:0", &port, 200), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	/* The page channel first and silent, so it is accepted before main is read. */
	p = net_connect(addr, NULL);
	ASSERT_GE(p, 0);
	m = net_connect(addr, NULL);
	ASSERT_GE(m, 0);
	ASSERT_EQ(net_write_all(m, &main, sizeof(main), NULL), 0);
	fd = mig_listener_next(&l, &want, &got, 5000, NULL, -1);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(got.channel, 0U);
	close(fd);
	/* Its hello arrives, and the receiver looks again only well after its deadline. */
	ASSERT_EQ(net_write_all(p, &page, sizeof(page), NULL), 0);
	usleep(3 * 200 * 1000);
	want = (struct mig_want){ .session = 0xa1a1, .nr_channels = 2, .taken = taken };
	fd = mig_listener_next(&l, &want, &got, 1000, NULL, -1);
	ASSERT_GE(fd, 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(got.channel, 1U);
	close(fd);
	close(p);
	close(m);
	mig_listener_close(&l);
}

/* ---- rewritten guest parameters, checksums valid ---- */

FIXTURE(rewritten) {
	struct hdest d;
	struct vm *vm;
};

FIXTURE_VARIANT(rewritten) {
	size_t off;		/* of the field in struct guest_shared */
	uint64_t value;
	const char *says;
};

#define REWRITE(name, field, v, s)						\
	FIXTURE_VARIANT_ADD(rewritten, name) {					\
		.off = offsetof(struct guest_shared, field), .value = v, .says = s, \
	}

REWRITE(nr_vcpus_0, nr_vcpus, 0, "nr_vcpus 0");
REWRITE(nr_vcpus_2p32_plus_1, nr_vcpus, (1ULL << 32) + 1, "nr_vcpus 4294967297");
REWRITE(mem_pages_huge, mem_pages, 1ULL << 50, "pages at");
REWRITE(mem_pages_0, mem_pages, 0, "0 pages at");
REWRITE(mem_gpa_low, mem_gpa, 0x1000, "mem_gpa 0x1000");
REWRITE(mem_gpa_wraps, mem_gpa, ~0ULL << 12, "pages at");
REWRITE(mem_gpa_unaligned, mem_gpa, GUEST_RAM_GPA + 1, "page-aligned");
REWRITE(workload, workload, 1000, "workload 1000");

FIXTURE_SETUP(rewritten)
{
	enum dirty_backend backend = DIRTY_AUTO;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	self->vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->vm, NULL);
	ASSERT_EQ(hdest_start(&self->d), 0);
}

FIXTURE_TEARDOWN(rewritten)
{
	hdest_kill(&self->d);
	if (self->vm)
		vm_destroy(self->vm);
}

/*
 * The guest computed its slice when it started, so it runs on; only the
 * page that travels is wrong, exactly as if rewritten in the stream with
 * its CRCs fixed.
 */
TEST_F_TIMEOUT(rewritten, destination_says_so, 120)
{
	struct mig_source_opts o = { .to = self->d.addr };
	struct mig_report rep = { 0 };
	int st;

	vm_pause(self->vm);
	memcpy((char *)self->vm->shared + variant->off, &variant->value, sizeof(uint64_t));
	vm_resume(self->vm);
	mig_params_init(&o.params);
	mig_source_run(self->vm->kv, &o, &rep);
	st = hdest_wait(&self->d);
	TH_LOG("source: %s %s; destination exit %d:\n%s", mig_state_name(rep.state), rep.error,
	       st, self->d.text);
	mig_report_free(&rep);
	/* Not a signal, not a hang (the harness timeout), not a success. */
	ASSERT_EQ(st, DEST_CHECK_FAILED);
	ASSERT_NE(strstr(self->d.text, "guest parameters"), NULL);
	ASSERT_NE(strstr(self->d.text, variant->says), NULL);
}

/* ---- a destination that answers wrongly: the source must stay whole ---- */

enum answer_phase {
	AT_HELLO,	/* right after the main channel's hello */
	AT_CONFIG,	/* once CONFIG arrived: the passes run on the page channels */
	AT_END,		/* instead of the ACK after END */
};

enum answer_kind {
	ANS_TRUNCATED,	/* an ACK header, part of its payload, then EOF */
	ANS_OVERSIZED,	/* a header claiming more than MIG_MAX_PAYLOAD */
	ANS_WRONG_TYPE,	/* a PAGES record where an ACK belongs */
	ANS_WRONG_SEQ,	/* a success ACK with a sequence number from nowhere */
	ANS_GARBAGE,	/* bytes that are no record at all */
};

struct fake_dest {
	int lfd;
	char addr[64];
	enum answer_phase phase;
	enum answer_kind kind;
	pthread_t thread;
	bool answered;
	int drains[MIG_MAX_CHANNELS];
	pthread_t drain_threads[MIG_MAX_CHANNELS];
	unsigned int nr_drains;
};

/* A page channel: read and forget until the source closes it. */
static void *fake_drain_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static int fake_accept(struct fake_dest *f)
{
	struct pollfd p = { .fd = f->lfd, .events = POLLIN };

	if (poll(&p, 1, 30000) != 1)
		return -1;
	return accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void fake_answer(struct fake_dest *f, struct mig_chan *c)
{
	struct mig_ack ack = { .status = 0 };
	uint8_t junk[64];
	struct mig_rec rec;

	switch (f->kind) {
	case ANS_TRUNCATED:
		mig_rec_seal(&rec, MIG_REC_ACK, c->tx_seq, &ack, sizeof(ack));
		net_write_all(c->fd, &rec, sizeof(rec), NULL);
		net_write_all(c->fd, &ack, 10, NULL);
		shutdown(c->fd, SHUT_WR);
		break;
	case ANS_OVERSIZED:
		mig_rec_seal(&rec, MIG_REC_ACK, c->tx_seq, NULL, 0);
		rec.len = MIG_MAX_PAYLOAD + 1;
		rec.hcrc = crc32c(0, &rec, offsetof(struct mig_rec, hcrc));
		net_write_all(c->fd, &rec, sizeof(rec), NULL);
		break;
	case ANS_WRONG_TYPE:
		mig_chan_send(c, MIG_REC_PAGES, &ack, sizeof(ack));
		break;
	case ANS_WRONG_SEQ:
		c->tx_seq = 7;
		mig_chan_send(c, MIG_REC_ACK, &ack, sizeof(ack));
		break;
	case ANS_GARBAGE:
		memset(junk, 0xff, sizeof(junk));
		net_write_all(c->fd, junk, sizeof(junk), NULL);
		break;
	}
	f->answered = true;
}

/*
 * Take the source's main channel and its page channels, follow the main
 * channel's records, answer wrongly at the chosen phase, then read on until
 * the source gives up.
 */
static void *fake_dest_thread(void *arg)
{
	struct fake_dest *f = arg;
	struct mig_hello h;
	struct mig_rec rec;
	struct mig_chan c;
	void *buf = malloc(MIG_MAX_PAYLOAD);
	int fd, i;

	fd = fake_accept(f);
	if (fd < 0 || !buf || net_read_all(fd, &h, sizeof(h), NULL) || mig_hello_check(&h))
		goto out;
	mig_chan_init(&c, fd, 0);
	for (i = 1; i < (int)h.nr_channels && i < MIG_MAX_CHANNELS; i++) {
		int cfd = fake_accept(f);

		if (cfd < 0)
			break;
		f->drains[f->nr_drains] = cfd;
		if (pthread_create(&f->drain_threads[f->nr_drains], NULL, fake_drain_thread,
				   (void *)(intptr_t)cfd))
			break;
		f->nr_drains++;
	}
	if (f->phase == AT_HELLO)
		fake_answer(f, &c);
	while (!mig_chan_recv(&c, &rec, buf)) {
		if (!f->answered && ((f->phase == AT_CONFIG && rec.type == MIG_REC_CONFIG) ||
				     (f->phase == AT_END && rec.type == MIG_REC_END)))
			fake_answer(f, &c);
	}
out:
	for (i = 0; i < (int)f->nr_drains; i++) {
		pthread_join(f->drain_threads[i], NULL);
		close(f->drains[i]);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

FIXTURE(bad_answer) {
	struct vm *vm;
	struct fake_dest f;
};

FIXTURE_VARIANT(bad_answer) {
	enum answer_phase phase;
	enum answer_kind kind;
};

#define BAD_ANSWER(p, k)							\
	FIXTURE_VARIANT_ADD(bad_answer, p##_##k) {				\
		.phase = AT_##p, .kind = ANS_##k,				\
	}

BAD_ANSWER(HELLO, TRUNCATED);
BAD_ANSWER(HELLO, OVERSIZED);
BAD_ANSWER(HELLO, WRONG_TYPE);
BAD_ANSWER(HELLO, WRONG_SEQ);
BAD_ANSWER(CONFIG, OVERSIZED);
BAD_ANSWER(CONFIG, WRONG_SEQ);
BAD_ANSWER(CONFIG, GARBAGE);
BAD_ANSWER(END, TRUNCATED);
BAD_ANSWER(END, OVERSIZED);
BAD_ANSWER(END, WRONG_TYPE);
BAD_ANSWER(END, WRONG_SEQ);
BAD_ANSWER(END, GARBAGE);

FIXTURE_SETUP(bad_answer)
{
	enum dirty_backend backend = DIRTY_AUTO;
	int port;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	self->f.lfd = -1;
	self->vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->vm, NULL);
	self->f.lfd = net_listen("tcp:127.0.0.1:0", &port);
	ASSERT_GE(self->f.lfd, 0);
	snprintf(self->f.addr, sizeof(self->f.addr), "tcp:127.0.0.1:%d", port);
	self->f.phase = variant->phase;
	self->f.kind = variant->kind;
	ASSERT_EQ(pthread_create(&self->f.thread, NULL, fake_dest_thread, &self->f), 0);
}

FIXTURE_TEARDOWN(bad_answer)
{
	if (self->f.lfd >= 0)
		close(self->f.lfd);
	if (self->vm)
		vm_destroy(self->vm);
}

TEST_F_TIMEOUT(bad_answer, source_fails_whole, 120)
{
	struct mig_source_opts o = { .to = self->f.addr };
	struct mig_report rep = { 0 };
	char why[512];
	int ret;

	mig_params_init(&o.params);
	o.params.multifd_channels = 2;
	o.params.max_passes = 400;
	ret = mig_source_run(self->vm->kv, &o, &rep);
	pthread_join(self->f.thread, NULL);
	TH_LOG("source: %s: %s", mig_state_name(rep.state), rep.error);
	ASSERT_TRUE(self->f.answered);
	ASSERT_NE(ret, 0);
	ASSERT_EQ((int)rep.state, (int)MIG_FAILED);
	ASSERT_NE(rep.error[0], '\0');
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	mig_report_free(&rep);
}

TEST_HARNESS_MAIN
