// SPDX-License-Identifier: GPL-2.0-only
/*
 * Snapshots sent over TCP to a receiver (user/lib/snapshot_sink.c,
 * snapshot_recv.c), over loopback with real guests.  The received file
 * must hold memory exactly as it was at the pause, like a local one
 * (plaintext, TLS with a pre-shared key, O_DIRECT), and restore; a wrong
 * key is refused at the handshake.  Broken ends: a receiver killed mid-way, a sender killed
 * mid-way, a receiver that stalls while the snapshot is cancelled (in the
 * library and by `kvmmig cancel`), hostile bytes sent to a receiver, a
 * sender that goes quiet and a SIGINT to `kvmmig snapshot-receive` each
 * end with a clear error, no complete file, and a sender's guest running
 * on unprotected.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "kselftest_harness.h"
#include "mig_test_util.h"
#include "net.h"
#include "snapshot.h"
#include "snapshot_sink.h"
#include "snapshot_util.h"

#define RECV_WAIT_MS		60000
#define CANCEL_AFTER_MS		500

/* ---- a receiver in a thread of this process ---- */

struct recv_thread {
	pthread_t thread;
	struct snap_recv_opts o;
	struct snap_recv_report r;
	volatile sig_atomic_t cancel;
	int ret;
	int pfd[2];		/* the port, once listening */
	char addr[64];
};

static void recv_thread_listening(void *opaque, int port)
{
	struct recv_thread *t = opaque;

	if (write(t->pfd[1], &port, sizeof(port)) != sizeof(port))
		t->cancel = 1;
}

static void *recv_thread_fn(void *arg)
{
	struct recv_thread *t = arg;

	kvmmig_log_quiet(true);
	t->ret = snapshot_receive(&t->o, &t->r);
	return NULL;
}

static int recv_thread_start(struct recv_thread *t, const char *path, int io_timeout_ms)
{
	int port;

	memset(t, 0, sizeof(*t));
	t->o = (struct snap_recv_opts){
		.listen = "tcp:127.0.0.1:0", .path = path, .accept_timeout_ms = RECV_WAIT_MS,
		.io_timeout_ms = io_timeout_ms, .cancel = &t->cancel,
		.listening = recv_thread_listening, .opaque = t,
	};
	if (pipe(t->pfd) || pthread_create(&t->thread, NULL, recv_thread_fn, t))
		return -1;
	if (read(t->pfd[0], &port, sizeof(port)) != sizeof(port))
		return -1;
	snprintf(t->addr, sizeof(t->addr), "tcp:127.0.0.1:%d", port);
	return 0;
}

static int recv_thread_join(struct recv_thread *t)
{
	pthread_join(t->thread, NULL);
	close(t->pfd[0]);
	close(t->pfd[1]);
	return t->ret;
}

/* ---- a receiver in a child process, to kill or stop ---- */

struct recv_child {
	pid_t pid;
	int errfd;		/* its error, when it ends */
	char addr[64];
	char error[256];
};

static void recv_child_listening(void *opaque, int port)
{
	if (write(*(int *)opaque, &port, sizeof(port)) != sizeof(port))
		_exit(3);
}

static int recv_child_start(struct recv_child *c, const char *path, bool direct,
			    const struct tls_opts *tls)
{
	int pfd[2], efd[2], port;

	memset(c, 0, sizeof(*c));
	if (pipe(pfd) || pipe(efd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	c->pid = fork();
	if (c->pid < 0)
		return -1;
	if (!c->pid) {
		struct snap_recv_report r;
		struct snap_recv_opts o = {
			.listen = "tcp:127.0.0.1:0", .path = path, .direct = direct,
			.accept_timeout_ms = RECV_WAIT_MS, .io_timeout_ms = RECV_WAIT_MS,
			.listening = recv_child_listening, .opaque = &pfd[1],
		};
		int ret;

		if (tls)
			o.tls = *tls;
		kvmmig_log_quiet(true);
		ret = snapshot_receive(&o, &r);
		if (ret && write(efd[1], r.error, strlen(r.error)) < 0)
			_exit(4);
		_exit(ret ? 1 : 0);
	}
	close(pfd[1]);
	close(efd[1]);
	c->errfd = efd[0];
	if (read(pfd[0], &port, sizeof(port)) != sizeof(port))
		port = -1;
	close(pfd[0]);
	snprintf(c->addr, sizeof(c->addr), "tcp:127.0.0.1:%d", port);
	return port < 0 ? -1 : 0;
}

/* Its exit status (-1: a signal ended it, -2: still running after @ms, then killed). */
static int recv_child_wait(struct recv_child *c, int ms)
{
	int status = 0, i;
	ssize_t n;

	for (i = 0; i < ms / 10 && waitpid(c->pid, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (i >= ms / 10) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, &status, 0);
		status = -2;
	}
	n = read(c->errfd, c->error, sizeof(c->error) - 1);
	c->error[n > 0 ? n : 0] = '\0';
	close(c->errfd);
	c->pid = 0;
	if (status == -2)
		return -2;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the fixture ---- */

/* A fresh directory for a test's files: guest.snap, its .partial, a key. */
struct snap_dir {
	char dir[64];
	char path[128];
	char partial[160];
	char psk[160];
};

static char *snap_dir_make(struct snap_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/kvmmig-snaptcp-XXXXXX");
	if (!mkdtemp(d->dir))
		return NULL;
	snprintf(d->path, sizeof(d->path), "%s/guest.snap", d->dir);
	snprintf(d->partial, sizeof(d->partial), "%s.partial", d->path);
	snprintf(d->psk, sizeof(d->psk), "%s/keys.psk", d->dir);
	return d->dir;
}

static void snap_dir_remove(struct snap_dir *d)
{
	unlink(d->path);
	unlink(d->partial);
	unlink(d->psk);
	rmdir(d->dir);
}

FIXTURE(tcp) {
	struct snap_dir d;
	struct vm *vm;
	struct vm *restored;
	struct recv_child child;
};

FIXTURE_SETUP(tcp)
{
	ASSERT_NE(snap_dir_make(&self->d), NULL);
}

FIXTURE_TEARDOWN(tcp)
{
	if (self->child.pid > 0) {
		kill(self->child.pid, SIGKILL);
		recv_child_wait(&self->child, 1000);
	}
	vm_destroy(self->vm);
	vm_destroy(self->restored);
	snap_dir_remove(&self->d);
}

/* Pages of @path that differ from the copy at the pause (-1: unreadable). */
static long pages_differing(const char *path, struct kvmmig_vm *kv, struct at_pause *p)
{
	uint8_t *page = malloc(MIG_PAGE_SIZE);
	struct mig_config *cfg;
	struct snap_header h;
	long bad = 0;
	unsigned int s;
	uint64_t i;
	size_t len;
	int fd;

	cfg = mig_config_of(kv, &len);
	fd = open(path, O_RDONLY);
	if (!cfg || fd < 0 || !page)
		bad = -1;
	if (cfg)
		snap_layout(cfg, &h);
	for (s = 0; bad >= 0 && s < cfg->nr_slots; s++) {
		for (i = 0; bad >= 0 && i < cfg->slots[s].size / MIG_PAGE_SIZE; i++) {
			if (!p->copy[s] || pread(fd, page, MIG_PAGE_SIZE,
						 snap_page_off(&h, cfg, s, i)) != MIG_PAGE_SIZE)
				bad = -1;
			else
				bad += memcmp(page, p->copy[s] + i * MIG_PAGE_SIZE,
					      MIG_PAGE_SIZE) != 0;
		}
	}
	if (fd >= 0)
		close(fd);
	free(cfg);
	free(page);
	return bad;
}

/* How a snapshot checked for exactness is taken. */
struct exact_case {
	unsigned int writers;
	bool direct;		/* the file (local or the receiver's) with O_DIRECT */
	bool tcp;
	bool psk;		/* TLS with a pre-shared key */
};

/* A PSK file both ends read, at @path. */
static int write_psk(const char *path)
{
	static const char key[] =
		"qemu:5d60262c51fad88f6259b34ebf69001e2a873bb5063c83f189b2697c70bffe65\n";
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, key, sizeof(key) - 1) != sizeof(key) - 1)
		return -1;
	return close(fd);
}

/*
 * Locally or over TCP (plaintext or TLS): the file holds RAM as it was at
 * the pause, byte for byte, and restores into a guest that runs.
 */
static void tcp_exact(struct __test_metadata *_metadata, FIXTURE_DATA(tcp) *self,
		      const struct exact_case *x)
{
	struct at_pause p = { 0 };
	struct snap_opts o = { .paused = copy_at_pause, .opaque = &p, .writers = x->writers };
	bool tcp = x->tcp, direct = x->direct;
	struct snap_report r;
	struct kvmmig_vm *kv;
	unsigned int i;

	if (x->psk) {
		ASSERT_EQ(write_psk(self->d.psk), 0);
		o.tls.psk_file = self->d.psk;
	}
	if (tcp)
		ASSERT_EQ(recv_child_start(&self->child, self->d.path, direct,
					   x->psk ? &o.tls : NULL), 0);
	o.direct = direct && !tcp;
	self->vm = running_guest(WORKLOAD_RANDOM);
	ASSERT_NE(self->vm, NULL);
	p.vm = self->vm;
	for (i = 0; i < GUEST_PROGRESS_S * 20 && guest_loops(self->vm) < 20000; i++)
		usleep(50000);
	o.path = tcp ? self->child.addr : self->d.path;
	ASSERT_EQ(snapshot_save(self->vm->kv, &o, &r), 0) TH_LOG("%s", r.error);
	if (tcp) {
		ASSERT_EQ(recv_child_wait(&self->child, RECV_WAIT_MS), 0)
			TH_LOG("%s", self->child.error);
	} else if (direct && !r.direct) {
		TH_LOG("the filesystem of %s refused O_DIRECT: written buffered", self->d.dir);
	}
	ASSERT_FALSE(file_exists(self->d.partial));
	ASSERT_EQ(pages_differing(self->d.path, self->vm->kv, &p), 0);
	ASSERT_GT(r.pages_walk + r.pages_fault - r.zero_pages, 0ULL);
	at_pause_free(&p);
	ASSERT_EQ(snapshot_load(self->d.path, vm_create_for_stream, vm_release_for_stream,
				&self->restored, &kv), 0) TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(kvmmig_vm_resume(kv), 0);
	ASSERT_TRUE(guest_moves(self->restored));
	/* The source ran on, nothing protected. */
	ASSERT_TRUE(guest_moves(self->vm));
}

TEST_F_TIMEOUT(tcp, exact_one_channel, 180)
{
	tcp_exact(_metadata, self, &(struct exact_case){ .writers = 1, .tcp = true });
}

TEST_F_TIMEOUT(tcp, exact_four_channels, 180)
{
	tcp_exact(_metadata, self, &(struct exact_case){ .writers = 4, .tcp = true });
}

/* The receiver writes with O_DIRECT (where the filesystem takes it): the same bytes. */
TEST_F_TIMEOUT(tcp, exact_receiver_direct, 180)
{
	tcp_exact(_metadata, self,
		  &(struct exact_case){ .writers = 4, .direct = true, .tcp = true });
}

/* A local file with O_DIRECT: bounce-buffered header and tables, the same bytes. */
TEST_F_TIMEOUT(tcp, exact_local_direct, 180)
{
	tcp_exact(_metadata, self, &(struct exact_case){ .writers = 4, .direct = true });
}

/* Over TLS with a pre-shared key: the same bytes. */
TEST_F_TIMEOUT(tcp, exact_tls_psk, 180)
{
	tcp_exact(_metadata, self, &(struct exact_case){ .writers = 4, .tcp = true, .psk = true });
}

/* A sender whose key differs is refused at the handshake: no file, the guest unprotected. */
TEST_F_TIMEOUT(tcp, tls_wrong_key, 180)
{
	struct snap_opts o = { 0 };
	struct tls_opts recv_tls = { 0 };
	char wrong[200], why[256];
	struct snap_report r;
	int fd, ret;

	ASSERT_EQ(write_psk(self->d.psk), 0);
	snprintf(wrong, sizeof(wrong), "%s/wrong.psk", self->d.dir);
	fd = open(wrong, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, "qemu:0123456789abcdef0123456789abcdef\n", 38), 38);
	close(fd);
	recv_tls.psk_file = self->d.psk;
	o.tls.psk_file = wrong;
	ASSERT_EQ(recv_child_start(&self->child, self->d.path, false, &recv_tls), 0);
	self->vm = running_guest(WORKLOAD_INCR);
	ASSERT_NE(self->vm, NULL);
	o.path = self->child.addr;
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ret = snapshot_save(self->vm->kv, &o, &r);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	unlink(wrong);
	ASSERT_NE(ret, 0);
	ASSERT_NE(strstr(r.error, "PSK"), NULL) TH_LOG("%s", r.error);
	ASSERT_EQ(recv_child_wait(&self->child, RECV_WAIT_MS), 1);
	ASSERT_NE(strstr(self->child.error, "TLS handshake"), NULL) TH_LOG("%s", self->child.error);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
}

/* An incr guest whose snapshot (@o) goes to a receiver child sent @sig at the pause. */
static int guest_and_receiver(FIXTURE_DATA(tcp) *self, struct at_pause *p, struct snap_opts *o,
			      int sig)
{
	if (recv_child_start(&self->child, self->d.path, false, NULL))
		return -1;
	self->vm = running_guest(WORKLOAD_INCR);
	p->kill_pid = self->child.pid;
	p->kill_sig = sig;
	o->paused = copy_at_pause;
	o->opaque = p;
	o->path = self->child.addr;
	return self->vm ? 0 : -1;
}

/* The receiver dies at the pause: the snapshot fails, the guest runs on unprotected. */
TEST_F_TIMEOUT(tcp, receiver_killed, 180)
{
	struct at_pause p = { 0 };
	struct snap_opts o = { 0 };
	struct snap_report r;
	char why[256];
	int ret;

	ASSERT_EQ(guest_and_receiver(self, &p, &o, SIGKILL), 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ret = snapshot_save(self->vm->kv, &o, &r);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	self->child.pid = 0;
	close(self->child.errfd);
	ASSERT_TRUE(ret == -EPIPE || ret == -ECONNRESET) TH_LOG("%d: %s", ret, r.error);
	at_pause_free(&p);
	ASSERT_NE(strstr(r.error, "snapshot receiver"), NULL) TH_LOG("%s", r.error);
	/* A killed receiver cannot clean up; it never made a complete file. */
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
}

/* The sender dies at its pause: the receiver says so and leaves no file. */
TEST_F_TIMEOUT(tcp, sender_killed, 180)
{
	struct recv_thread t;
	pid_t pid;
	int status;

	ASSERT_EQ(recv_thread_start(&t, self->d.path, 10000), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		struct at_pause p = { .kill_pid = getpid(), .kill_sig = SIGKILL };
		struct snap_opts o = { .path = t.addr, .paused = copy_at_pause, .opaque = &p };
		struct vm *vm = running_guest(WORKLOAD_INCR);
		struct snap_report r;

		if (vm)
			snapshot_save(vm->kv, &o, &r);
		_exit(1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ASSERT_EQ(recv_thread_join(&t), -ECONNRESET) TH_LOG("%s", t.r.error);
	ASSERT_NE(strstr(t.r.error, "before the snapshot was complete"), NULL)
		TH_LOG("%s", t.r.error);
	ASSERT_EQ(t.r.file_size > 0, true);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

struct canceller {
	pthread_t thread;
	volatile sig_atomic_t flag;
};

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;

	usleep(CANCEL_AFTER_MS * 1000);
	kvmmig_cancel_set(&c->flag, 1);
	return NULL;
}

/*
 * The receiver stops reading at the pause; a cancel ends the blocked
 * snapshot: an error, the guest unprotected, and once the receiver runs
 * again it learns of it and removes its file.
 */
TEST_F_TIMEOUT(tcp, cancel_while_receiver_stalls, 180)
{
	struct canceller c = { 0 };
	struct snap_opts o = { .cancel = &c.flag };
	struct at_pause p = { 0 };
	struct snap_report r;
	char why[256];
	double t0;
	int ret;

	ASSERT_EQ(guest_and_receiver(self, &p, &o, SIGSTOP), 0);
	ASSERT_EQ(pthread_create(&c.thread, NULL, cancel_later, &c), 0);
	t0 = now_s();
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	ret = snapshot_save(self->vm->kv, &o, &r);
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	pthread_join(c.thread, NULL);
	at_pause_free(&p);
	ASSERT_EQ(ret, -ECANCELED) TH_LOG("%s", r.error);
	ASSERT_NE(strstr(r.error, "cancelled"), NULL) TH_LOG("%s", r.error);
	/* Not its 30 s I/O deadline: the cancel ended it. */
	ASSERT_LT(now_s() - t0, NET_IO_TIMEOUT_MS / 1000.0 / 2);
	ASSERT_EQ(source_intact(self->vm, why, sizeof(why)), 0) TH_LOG("%s", why);
	kill(self->child.pid, SIGCONT);
	ASSERT_EQ(recv_child_wait(&self->child, RECV_WAIT_MS), 1);
	ASSERT_TRUE(strstr(self->child.error, "gave up") ||
		    strstr(self->child.error, "before the snapshot was complete"))
		TH_LOG("%s", self->child.error);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

/*
 * `kvmmig cancel --pid` finds a running `kvmmig snapshot` (whose receiver
 * is stopped, so it cannot finish) and ends it: exit 1, no file.
 */
TEST_F_TIMEOUT(tcp, kvmmig_cancel, 180)
{
	const char *args[] = { "snapshot", "--to", self->child.addr, "--ram", "64M",
			       "--warmup-ms", "0", "--run-seconds", "0", NULL };
	char pid[16], out[4096], err[4096];
	const char *cancel[] = { "cancel", "--pid", pid, NULL };
	struct cli_child snap;
	int i, st;

	ASSERT_EQ(recv_child_start(&self->child, self->d.path, false, NULL), 0);
	ASSERT_EQ(cli_start(&snap, args), 0);
	/* The receiver has made its file: the snapshot is under way; stop it there. */
	for (i = 0; i < RECV_WAIT_MS / 10 && !file_exists(self->d.partial); i++)
		usleep(10000);
	ASSERT_TRUE(file_exists(self->d.partial));
	kill(self->child.pid, SIGSTOP);
	snprintf(pid, sizeof(pid), "%d", snap.pid);
	st = cli_run(cancel, 10000, err, sizeof(err));
	ASSERT_EQ(st, 0) TH_LOG("kvmmig cancel: %s", err);
	ASSERT_EQ(cli_wait(&snap, 10000), 0);
	st = cli_exit_status(&snap);
	cli_output(snap.err, err, sizeof(err));
	cli_output(snap.out, out, sizeof(out));
	cli_end(&snap);
	ASSERT_EQ(st, 1) TH_LOG("stdout: %s stderr: %s", out, err);
	ASSERT_NE(strstr(err, "cancelled"), NULL) TH_LOG("%s", err);
	ASSERT_NE(strstr(err, "the guest runs on, unprotected"), NULL) TH_LOG("%s", err);
	kill(self->child.pid, SIGCONT);
	ASSERT_EQ(recv_child_wait(&self->child, RECV_WAIT_MS), 1);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

/* ---- hostile senders ---- */

FIXTURE(hostile) {
	struct snap_dir d;
};

FIXTURE_VARIANT(hostile) {
	uint32_t type;		/* 0: no record, raw bytes */
	uint64_t open_size;	/* announced by an OPEN first, 0: none */
	uint64_t off;
	uint32_t len;
	int err;
	const char *what;
};

FIXTURE_VARIANT_ADD(hostile, garbage) {
	.type = 0, .err = -EBADMSG, .what = "not a kvmmig snapshot stream" };
FIXTURE_VARIANT_ADD(hostile, data_first) {
	.type = SNAP_NET_DATA, .len = 4096, .err = -EBADMSG, .what = "expected OPEN" };
FIXTURE_VARIANT_ADD(hostile, huge_file) {
	.type = SNAP_NET_OPEN, .off = 1ULL << 60, .err = -EBADMSG, .what = "announced" };
FIXTURE_VARIANT_ADD(hostile, odd_file) {
	.type = SNAP_NET_OPEN, .off = 8193, .err = -EBADMSG, .what = "announced" };
FIXTURE_VARIANT_ADD(hostile, data_past_end) {
	.open_size = 1 << 20, .type = SNAP_NET_DATA, .off = (1 << 20) - 4096, .len = 8192,
	.err = -EBADMSG, .what = "inside the announced file of 1048576" };
FIXTURE_VARIANT_ADD(hostile, data_too_long) {
	.open_size = 1 << 24, .type = SNAP_NET_DATA, .len = SNAP_NET_MAX_DATA + 1,
	.err = -EMSGSIZE, .what = "at most" };
FIXTURE_VARIANT_ADD(hostile, commit_without_header) {
	.open_size = 1 << 20, .type = SNAP_NET_COMMIT, .err = -EBADMSG,
	.what = "not a kvmmig snapshot" };
FIXTURE_VARIANT_ADD(hostile, unknown_type) {
	.open_size = 1 << 20, .type = 99, .err = -EBADMSG, .what = "record type 99" };

FIXTURE_SETUP(hostile)
{
	ASSERT_NE(snap_dir_make(&self->d), NULL);
}

FIXTURE_TEARDOWN(hostile)
{
	snap_dir_remove(&self->d);
}

static int send_rec(int fd, uint32_t type, uint64_t off, uint32_t len)
{
	struct snap_net_rec h;

	snap_net_seal(&h, type, off, len);
	return net_write_all(fd, &h, sizeof(h), NULL);
}

/* The receiver refuses, says why (to its caller and to the sender) and leaves no file. */
TEST_F_TIMEOUT(hostile, refused, 60)
{
	static uint8_t junk[8192];
	struct recv_thread t;
	struct snap_net_rec h;
	int fd;

	memset(junk, 0x5a, sizeof(junk));
	ASSERT_EQ(recv_thread_start(&t, self->d.path, 10000), 0);
	fd = net_connect(t.addr, NULL);
	ASSERT_GE(fd, 0);
	if (variant->open_size) {
		ASSERT_EQ(send_rec(fd, SNAP_NET_OPEN, variant->open_size, 0), 0);
		ASSERT_EQ(net_read_all(fd, &h, sizeof(h), NULL), 0);
		ASSERT_EQ(h.type, (uint32_t)SNAP_NET_READY);
		ASSERT_TRUE(file_exists(self->d.partial));
	}
	if (variant->type) {
		ASSERT_EQ(send_rec(fd, variant->type, variant->off, variant->len), 0);
	} else {
		ASSERT_EQ(net_write_all(fd, junk, sizeof(junk), NULL), 0);
	}
	/* What it may read before it refuses; the rest it never reads. */
	if (variant->len)
		send(fd, junk, sizeof(junk) < variant->len ? sizeof(junk) : variant->len,
		     MSG_NOSIGNAL | MSG_DONTWAIT);
	ASSERT_EQ(recv_thread_join(&t), variant->err) TH_LOG("%s", t.r.error);
	ASSERT_NE(strstr(t.r.error, variant->what), NULL) TH_LOG("%s", t.r.error);
	/* The sender is told, in a record it can check. */
	ASSERT_EQ(net_read_all(fd, &h, sizeof(h), NULL), 0);
	ASSERT_EQ(snap_net_check(&h, SNAP_NET_MAX_MSG), 0);
	ASSERT_EQ(h.type, (uint32_t)SNAP_NET_ERROR);
	close(fd);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

/* ---- senders that go quiet ---- */

FIXTURE(stall) {
	struct snap_dir d;
};

FIXTURE_SETUP(stall)
{
	ASSERT_NE(snap_dir_make(&self->d), NULL);
}

FIXTURE_TEARDOWN(stall)
{
	snap_dir_remove(&self->d);
}

/* A sender that stops after OPEN to the receiver at @addr (its file made): the fd. */
static int open_and_stall(struct __test_metadata *_metadata, const char *addr)
{
	struct snap_net_rec h;
	int fd = net_connect(addr, NULL);

	if (fd < 0 || send_rec(fd, SNAP_NET_OPEN, 1 << 20, 0) ||
	    net_read_all(fd, &h, sizeof(h), NULL) || h.type != SNAP_NET_READY) {
		TH_LOG("no READY from %s", addr);
		return -1;
	}
	return fd;
}

/* A sender that goes quiet meets the receiver's deadline: no file. */
TEST_F_TIMEOUT(stall, sender_times_out, 60)
{
	struct recv_thread t;
	int fd;

	ASSERT_EQ(recv_thread_start(&t, self->d.path, 500), 0);
	fd = open_and_stall(_metadata, t.addr);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(file_exists(self->d.partial));
	ASSERT_EQ(recv_thread_join(&t), -ETIMEDOUT) TH_LOG("%s", t.r.error);
	ASSERT_NE(strstr(t.r.error, "no progress"), NULL) TH_LOG("%s", t.r.error);
	close(fd);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

/*
 * `kvmmig snapshot-receive` interrupted by SIGINT while its sender is
 * quiet (its I/O deadline is far away): it ends, saying so, and removes
 * FILE.partial.
 */
TEST_F_TIMEOUT(stall, sigint_ends_receive, 60)
{
	const char *args[] = { "snapshot-receive", "--listen", "tcp:127.0.0.1:0", "--to",
			       self->d.path, "--accept-timeout", "30", NULL };
	char out[1024], err[1024], addr[64];
	struct cli_child c;
	const char *port;
	int i, fd = -1;

	ASSERT_EQ(cli_start(&c, args), 0);
	for (i = 0; i < 1000 && !strstr(cli_output(c.out, out, sizeof(out)), "(port "); i++)
		usleep(10000);
	port = strstr(out, "(port ");
	ASSERT_NE(port, NULL) TH_LOG("stdout: %s", out);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", atoi(port + 6));
	fd = open_and_stall(_metadata, addr);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(file_exists(self->d.partial));
	kill(c.pid, SIGINT);
	ASSERT_EQ(cli_wait(&c, 10000), 0);
	ASSERT_EQ(cli_exit_status(&c), 1);
	cli_output(c.err, err, sizeof(err));
	cli_end(&c);
	close(fd);
	ASSERT_NE(strstr(err, "cancelled"), NULL) TH_LOG("%s", err);
	ASSERT_NE(strstr(err, "was not written"), NULL) TH_LOG("%s", err);
	ASSERT_FALSE(file_exists(self->d.path));
	ASSERT_FALSE(file_exists(self->d.partial));
}

TEST_HARNESS_MAIN
