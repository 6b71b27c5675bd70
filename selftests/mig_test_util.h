/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for the migration tests: a destination in a child process (a
 * separate process, as in real use, joined by TCP; one that also reports
 * its error), a busy incr source guest, and the checks that a guest is alive and its memory intact
 * (QEMU migration-test's one-edge check on incr memory).
 */
#ifndef KVMMIG_MIG_TEST_UTIL_H
#define KVMMIG_MIG_TEST_UTIL_H

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "migrate.h"
#include "test_util.h"

/* Exit codes of the destination child. */
enum {
	DEST_OK = 0,
	DEST_RECEIVE_FAILED = 10,	/* mig_dest_run() failed */
	DEST_CHECK_FAILED = 11,		/* the guest ran but its memory was wrong */
	DEST_NO_PROGRESS = 12,		/* the guest did not run on the destination */
};

struct dest_child {
	pid_t pid;
	int port;
	char addr[64];
};

/*
 * A guest that should run must make progress within GUEST_PROGRESS_S: a
 * loaded host need not schedule its vCPUs in any fixed short window.
 */
#define GUEST_PROGRESS_S	20

/* The destination child's guest, made by the built-in VMM from the stream. */
static struct vm *dest_child_vm;

/* mig_dest_opts fields: the built-in VMM receives, into dest_child_vm. */
#define DEST_CHILD_VMM							\
	.create_vm = vm_create_for_stream,				\
	.release_vm = vm_release_for_stream,				\
	.vmm_opaque = &dest_child_vm

/* The received guest runs at least 300 ms, and until it has made progress. */
static int dest_child_resumed(void *opaque, struct kvmmig_vm *kv)
{
	struct vm *vm = dest_child_vm;
	uint64_t before, after;
	struct guest_shared g;
	unsigned int i;

	/* Guest memory: a rewritten parameter page is a failed check, not a crash. */
	if (vm_guest_params(vm, &g))
		return -DEST_CHECK_FAILED;
	before = guest_loops(vm);
	usleep(300000);
	for (i = 0; g.workload != WORKLOAD_IDLE && i < GUEST_PROGRESS_S * 20 &&
		    guest_loops(vm) == before && !vm_failure(vm); i++)
		usleep(50000);
	vm_pause(vm);
	after = guest_loops(vm);
	if (vm_failure(vm) || (after == before && g.workload != WORKLOAD_IDLE))
		return -DEST_NO_PROGRESS;
	if (g.workload == WORKLOAD_INCR && !g.compute_mask && workload_check_incr(vm, NULL))
		return -DEST_CHECK_FAILED;
	vm_stop(vm);
	return 0;
}

static void dest_child_listening(void *opaque, int port)
{
	int fd = *(int *)opaque;

	if (write(fd, &port, sizeof(port)) != sizeof(port))
		_exit(DEST_RECEIVE_FAILED);
	close(fd);
}

/* A destination child's exit code for what mig_dest_run() returned. */
static inline int dest_exit_code(int ret)
{
	return ret == -DEST_CHECK_FAILED ? DEST_CHECK_FAILED :
	       ret == -DEST_NO_PROGRESS ? DEST_NO_PROGRESS :
	       ret ? DEST_RECEIVE_FAILED : DEST_OK;
}

/*
 * In the parent: the port the child (@pid, -1 if fork failed) passes on
 * @fd once listening, as "tcp:@host:PORT" in @addr; @fd is closed.
 */
static inline int dest_child_addr(int fd, pid_t pid, const char *host, char *addr, size_t len)
{
	int port;

	if (pid < 0 || read(fd, &port, sizeof(port)) != sizeof(port)) {
		close(fd);
		return -1;
	}
	close(fd);
	snprintf(addr, len, "tcp:%s:%d", host, port);
	return port;
}

/* Enter the network namespace /run/netns/@name (made by `ip netns add`). */
static inline int dest_enter_netns(const char *name)
{
	char path[128];
	int fd, ret;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = setns(fd, CLONE_NEWNET);
	close(fd);
	return ret;
}

/*
 * Fork a destination listening on @host (port chosen by the kernel), with
 * TLS when @tls says so; its messages (connections it ignored, why it
 * failed) land in @log_file when given, for tests that check their words.
 * With @netns, the child first enters that network namespace (path in
 * /run/netns).
 */
static inline int dest_child_start_tls(struct dest_child *d, const char *host, const char *netns,
				       const struct tls_opts *tls, const char *log_file)
{
	int pfd[2];

	memset(d, 0, sizeof(*d));
	if (pipe(pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0) {
		char listen[80];
		struct mig_report rep;
		struct mig_dest_opts o = {
			.listen = listen,
			.listening = dest_child_listening,
			.resumed = dest_child_resumed,
			.opaque = &pfd[1],
			DEST_CHILD_VMM,
		};
		int ret;

		close(pfd[0]);
		if (log_file && !freopen(log_file, "we", stderr))
			_exit(DEST_RECEIVE_FAILED);
		setvbuf(stderr, NULL, _IONBF, 0);
		if (netns && dest_enter_netns(netns))
			_exit(DEST_RECEIVE_FAILED);
		snprintf(listen, sizeof(listen), "tcp:%s:0", host);
		if (tls)
			o.tls = *tls;
		ret = mig_dest_run(&o, &rep);
		_exit(dest_exit_code(ret));
	}
	close(pfd[1]);
	d->port = dest_child_addr(pfd[0], d->pid, host, d->addr, sizeof(d->addr));
	if (d->port < 0) {
		waitpid(d->pid, NULL, 0);
		return -1;
	}
	return 0;
}

static inline int dest_child_start(struct dest_child *d, const char *host, const char *netns)
{
	return dest_child_start_tls(d, host, netns, NULL, NULL);
}

/* The child's exit code, or -1 if it died of a signal. */
static inline int dest_child_wait(struct dest_child *d)
{
	int status;

	if (waitpid(d->pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A running guest as @cfg says, set up for @backend (the one chosen returned in it). */
static inline struct vm *source_guest_of(struct vm_config *cfg, enum dirty_backend *backend)
{
	struct vm *vm;
	int b = dirty_prepare_config(*backend, cfg);

	if (b < 0 || vm_create(cfg, &vm))
		return NULL;
	*backend = b;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

/* A running incr guest: @nr_vcpus, @ram bytes, set up for @backend. */
static inline struct vm *source_guest(unsigned int nr_vcpus, uint64_t ram,
				      enum dirty_backend *backend)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = ram,
		.nr_slots = 2,
		.guest.workload = WORKLOAD_INCR,
	};
	struct vm *vm = source_guest_of(&cfg, backend);

	if (vm)
		usleep(200000);
	return vm;
}

/*
 * After a failed migration: the source guest runs (its counters move), its
 * memory passes the incr check, and nothing is throttled or tracked.
 * 0 if all holds, else a description in @why.
 */
static inline int source_intact(struct vm *vm, char *why, size_t len)
{
	uint64_t a, b;
	unsigned int i;
	int ret;

	a = guest_loops(vm);
	for (i = 0; i < GUEST_PROGRESS_S * 20 && (b = guest_loops(vm)) == a && !vm_failure(vm); i++)
		usleep(50000);
	if (a == b || vm_failure(vm)) {
		snprintf(why, len, "source guest stopped: %s", vm_failure(vm) ?: "no progress");
		return -1;
	}
	if (vm_max_throttle(vm)) {
		snprintf(why, len, "source guest still throttled at %u%%", vm_max_throttle(vm));
		return -1;
	}
	/* Dirty logging is libkvmmig's: its view of the slots (vm->kv) says. */
	for (i = 0; i < vm->kv->nr_slots; i++)
		if (vm->kv->slots[i].flags & KVM_MEM_LOG_DIRTY_PAGES) {
			snprintf(why, len, "dirty logging still on in slot %u", i);
			return -1;
		}
	vm_pause(vm);
	ret = workload_check_incr(vm, NULL);
	if (ret)
		snprintf(why, len, "source memory: %s", kvmmig_last_error());
	vm_resume(vm);
	return ret;
}

/*
 * A destination child that also says why it failed: its report's error
 * comes back through a pipe; with @log_all set, every error it logged
 * before it too (messages it printed while it waited, say).
 */
struct fail_dest {
	pid_t pid;
	int errfd;		/* its report's error arrives here */
	char addr[64];
	char error[2048];
	unsigned int handover_timeout_ms;	/* set before fail_dest_start() */
	bool log_all;
	bool hold;		/* the resumed guest runs until fail_dest_release() */
	int hold_fd;		/* ... which closes this */
	int accepted_fd;	/* readable once it has taken a source's session */
};

#define FAIL_DEST_HOLD_S	60

static int fail_dest_logfd = -1;
static int fail_dest_hold_fd = -1;
static int fail_dest_accepted_fd = -1;

static inline void fail_dest_accepted(void *opaque, uint64_t session)
{
	if (write(fail_dest_accepted_fd, "A", 1) != 1)
		_exit(DEST_RECEIVE_FAILED);
}

/*
 * Wait until the destination has taken the source's session (at most
 * @timeout_ms): before that, a link that goes down takes only connections
 * it sets aside, and it rightly goes on waiting for a source.
 */
static inline bool fail_dest_wait_accepted(const struct fail_dest *d, int timeout_ms)
{
	struct pollfd p = { .fd = d->accepted_fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

/* Run on until the parent lets go (or FAIL_DEST_HOLD_S), then the usual checks. */
static inline int fail_dest_held(void *opaque, struct kvmmig_vm *vm)
{
	struct pollfd p = { .fd = fail_dest_hold_fd, .events = POLLIN };

	poll(&p, 1, FAIL_DEST_HOLD_S * 1000);
	return dest_child_resumed(opaque, vm);
}

static inline void fail_dest_release(struct fail_dest *d)
{
	if (d->hold && d->hold_fd >= 0)
		close(d->hold_fd);
	d->hold_fd = -1;
}

static inline void fail_dest_log(int level, const char *msg)
{
	fprintf(stderr, "kvmmig: %s\n", msg);
	if (write(fail_dest_logfd, msg, strlen(msg)) < 0 || write(fail_dest_logfd, "\n", 1) < 0)
		_exit(DEST_RECEIVE_FAILED);
}

static inline void fail_dest_child(const struct fail_dest *d, int portfd, int errfd)
{
	char listen[] = "tcp:127.0.0.1:0";
	struct mig_dest_opts o = {
		.listen = listen,
		.listening = dest_child_listening,
		.accepted = fail_dest_accepted,
		.resumed = d->hold ? fail_dest_held : dest_child_resumed,
		.opaque = &portfd,
		DEST_CHILD_VMM,
		.handover_timeout_ms = d->handover_timeout_ms,
	};
	struct mig_report rep;
	int ret;

	fail_dest_logfd = errfd;
	if (d->log_all)
		kvmmig_set_log(fail_dest_log, KVMMIG_LOG_ERR);
	/* The harness kills a hung test: no guest may outlive it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	ret = mig_dest_run(&o, &rep);
	if (write(errfd, rep.error, strlen(rep.error)) < 0)
		_exit(DEST_RECEIVE_FAILED);
	_exit(ret == -DEST_CHECK_FAILED ? DEST_CHECK_FAILED :
	      ret == -DEST_NO_PROGRESS ? DEST_NO_PROGRESS :
	      ret ? DEST_RECEIVE_FAILED : DEST_OK);
}

static inline int fail_dest_start(struct fail_dest *d)
{
	int pfd[2], efd[2], hfd[2] = { -1, -1 }, afd[2], port;

	d->pid = 0;
	d->error[0] = '\0';
	d->errfd = -1;
	d->hold_fd = -1;
	d->accepted_fd = -1;
	if (d->hold && pipe2(hfd, O_CLOEXEC))
		return -1;
	if (pipe2(afd, O_CLOEXEC))
		return -1;
	d->accepted_fd = afd[0];
	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	if (pipe2(efd, O_CLOEXEC)) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	d->pid = fork();
	if (d->pid == 0) {
		close(pfd[0]);
		close(efd[0]);
		if (d->hold)
			close(hfd[1]);
		fail_dest_hold_fd = hfd[0];
		close(afd[0]);
		fail_dest_accepted_fd = afd[1];
		fail_dest_child(d, pfd[1], efd[1]);
	}
	close(afd[1]);
	close(pfd[1]);
	close(efd[1]);
	if (d->hold)
		close(hfd[0]);
	d->hold_fd = hfd[1];
	d->errfd = efd[0];
	if (d->pid < 0 || read(pfd[0], &port, sizeof(port)) != sizeof(port)) {
		close(pfd[0]);
		return -1;
	}
	close(pfd[0]);
	snprintf(d->addr, sizeof(d->addr), "tcp:127.0.0.1:%d", port);
	return 0;
}

/* Wait for the child: its wait status, and its error in d->error. */
static inline int fail_dest_wait(struct fail_dest *d)
{
	int status = -1;
	size_t got = 0;
	ssize_t n;

	if (d->pid <= 0)
		return -1;
	if (waitpid(d->pid, &status, 0) < 0)
		status = -1;
	d->pid = 0;
	close(d->accepted_fd);
	d->accepted_fd = -1;
	while (got < sizeof(d->error) - 1) {
		n = read(d->errfd, d->error + got, sizeof(d->error) - 1 - got);
		if (n <= 0)
			break;
		got += n;
	}
	d->error[got] = '\0';
	close(d->errfd);
	d->errfd = -1;
	return status;
}

static inline void fail_dest_kill(struct fail_dest *d)
{
	fail_dest_release(d);
	if (d->pid > 0)
		kill(d->pid, SIGKILL);
	fail_dest_wait(d);
	if (d->errfd >= 0)
		close(d->errfd);
}

#endif /* KVMMIG_MIG_TEST_UTIL_H */
