/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for the postcopy tests (selftests/postcopy_test.c).  A
 * destination child that tells the test what only it sees: when it listens
 * and takes a session, when its guest starts with pages still missing, each
 * message it logs (a "postcopy-paused" one is also an event), and at its
 * end its whole report and, for a `random` guest, the first word of every
 * workload page; it can also widen a `random` guest's working set at the
 * start of postcopy, so that the guest writes pages it never wrote before.
 * A watch on the source's progress that records every state the source
 * enters and injects one fault (cancel, migrate-start-postcopy, a dropped
 * link, a killed peer) at the first sample of a chosen state.  The source's
 * log, kept for checking its words.  And the memory check of a `random`
 * guest: what the destination holds against the source's paused copy.
 */
#ifndef KVMMIG_POSTCOPY_UTIL_H
#define KVMMIG_POSTCOPY_UTIL_H

#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>

#include "clock.h"
#include "mig_proxy.h"
#include "mig_test_util.h"

#define PC_LOG_BYTES	32768
#define EVENT_WAIT_S	60		/* for a state or an event of the other side */
#define PC_MAX_PAGES	((256ULL << 20) / GUEST_PAGE_SIZE)

/* What the destination child leaves for the test, in memory both see. */
struct pc_dest_area {
	struct mig_report rep;		/* as mig_dest_run() left it (no samples) */
	bool reported;			/* ... once it returned */
	char log[PC_LOG_BYTES];		/* every message it logged, a line each */
	/*
	 * A widened random guest: how long after postcopy started one of
	 * the pages outside its old working set, zero and never placed,
	 * first held memory (-1: not before the migration ended).
	 */
	double zero_touched_s;
	uint64_t nr_pages;		/* a random guest's workload pages: */
	uint64_t vals[PC_MAX_PAGES];	/* ... the first word of each, after its run */
};

/* Events on the child's pipe, in the order they happen. */
enum pc_event_type {
	PC_EV_LISTENING = 1,		/* val: the port */
	PC_EV_ACCEPTED,			/* val: the session */
	PC_EV_STARTED,			/* the guest runs, pages still missing */
	PC_EV_PAUSED,			/* it logged that it is in postcopy-paused */
	NR_PC_EVENTS,
};

struct pc_event {
	uint32_t type;
	uint32_t pad;
	uint64_t val;
};

struct pc_dest {
	/* set before pc_dest_start() */
	unsigned int recover_timeout_ms;	/* mig_dest_opts.postcopy_recover_timeout_ms */
	const char *psk_file;		/* non-NULL: TLS-PSK on every channel */
	uint64_t widen_to;		/* non-zero: at postcopy's start a random guest
					   writes this value into its whole slice */
	/* the child */
	pid_t pid;
	char addr[64];
	int evfd;
	struct pc_dest_area *area;
	unsigned int seen[NR_PC_EVENTS];	/* events read so far */
	uint64_t session;
	int status;			/* its wait status, once reaped */
	bool hung;			/* pc_dest_wait() had to kill it */
};

/* ---- the child ---- */

static int pc_child_evfd = -1;
static struct pc_dest_area *pc_child_area;
static uint64_t pc_child_widen_to;
static double pc_child_started_at;
static bool pc_child_over;		/* the migration ended: stop looking */
static pthread_mutex_t pc_child_log_lock = PTHREAD_MUTEX_INITIALIZER;

static inline void pc_child_event(uint32_t type, uint64_t val)
{
	struct pc_event ev = { .type = type, .val = val };

	/* Smaller than PIPE_BUF: atomic, whichever thread writes. */
	if (write(pc_child_evfd, &ev, sizeof(ev)) != sizeof(ev))
		_exit(DEST_RECEIVE_FAILED);
}

static inline void pc_child_log(int level, const char *msg)
{
	size_t n;

	if (level == KVMMIG_LOG_ERR)
		fprintf(stderr, "kvmmig (destination): %s\n", msg);
	pthread_mutex_lock(&pc_child_log_lock);
	n = strnlen(pc_child_area->log, sizeof(pc_child_area->log));
	snprintf(pc_child_area->log + n, sizeof(pc_child_area->log) - n, "%s\n", msg);
	pthread_mutex_unlock(&pc_child_log_lock);
	/* The state's name, or the words of it. */
	if (strcasestr(msg, "postcopy-paused") || strcasestr(msg, "postcopy paused"))
		pc_child_event(PC_EV_PAUSED, 0);
}

static inline void pc_child_listening(void *opaque, int port)
{
	pc_child_event(PC_EV_LISTENING, port);
}

static inline void pc_child_accepted(void *opaque, uint64_t session)
{
	pc_child_event(PC_EV_ACCEPTED, session);
}

/*
 * Does any page [@first, @first + @n) of the workload hold memory?  A
 * look at the page tables (mincore()), which never faults a page in.
 */
static inline bool pc_child_any_resident(struct vm *vm, uint64_t first, uint64_t n)
{
	uintptr_t lo = (uintptr_t)workload_page(vm, first);
	uintptr_t hi = (uintptr_t)workload_page(vm, first + n - 1);
	unsigned char vec[4096];
	uint64_t i, j, k;

	/* One run of host memory (a slice inside one memslot): a call per 4096 pages. */
	if (hi - lo == (n - 1) * GUEST_PAGE_SIZE) {
		for (i = 0; i < n; i += k) {
			k = n - i < sizeof(vec) ? n - i : sizeof(vec);
			if (mincore((void *)(lo + i * GUEST_PAGE_SIZE), k * GUEST_PAGE_SIZE, vec))
				return false;
			for (j = 0; j < k; j++)
				if (vec[j] & 1)
					return true;
		}
		return false;
	}
	for (i = 0; i < n; i++)
		if (!mincore(workload_page(vm, first + i), GUEST_PAGE_SIZE, vec) && (vec[0] & 1))
			return true;
	return false;
}

/*
 * The random guest reads its working set every 256 writes and the value
 * on every write: the value first, so that no write past the old working
 * set carries the old one.  Guest memory written from the host may fault
 * (userfaultfd) and wait for the source: never in the engine's thread.
 * Then, until the migration ends, watch the pages past the old working
 * set (zero at the switch, never placed by postcopy): the first of them
 * to hold memory was written by the guest, and the fault it took was
 * answered (seed 004).
 */
static inline void *pc_child_widen(void *arg)
{
	struct vm *vm = dest_child_vm;
	struct guest_shared *g = vm->shared, p;
	uint64_t per, v;

	pc_child_area->zero_touched_s = -1;
	if (vm_guest_params(vm, &p) || !p.wss_pages)
		return NULL;
	__atomic_store_n(&g->iteration, pc_child_widen_to, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g->wss_pages, 0, __ATOMIC_SEQ_CST);
	per = p.mem_pages / p.nr_vcpus;
	while (!__atomic_load_n(&pc_child_over, __ATOMIC_ACQUIRE) &&
	       now_s() - pc_child_started_at < EVENT_WAIT_S) {
		for (v = 0; v < p.nr_vcpus; v++) {
			uint64_t n = v == p.nr_vcpus - 1 ? p.mem_pages - v * per : per;

			if (n > p.wss_pages &&
			    pc_child_any_resident(vm, v * per + p.wss_pages, n - p.wss_pages)) {
				pc_child_area->zero_touched_s = now_s() - pc_child_started_at;
				return NULL;
			}
		}
		usleep(5000);
	}
	return NULL;
}

static inline void pc_child_started(void *opaque, struct kvmmig_vm *kv)
{
	pthread_t t;

	pc_child_started_at = now_s();
	pc_child_event(PC_EV_STARTED, 0);
	if (pc_child_widen_to && !pthread_create(&t, NULL, pc_child_widen, NULL))
		pthread_detach(t);
}

/*
 * A random guest's memory after its run: every page holds its value in its
 * first word and nothing else (the test compares the words with the
 * source's copy).
 */
static inline int pc_child_random_pages(struct vm *vm)
{
	struct pc_dest_area *a = pc_child_area;
	struct guest_shared g;
	uint64_t i, j;

	if (vm_guest_params(vm, &g))
		return -DEST_CHECK_FAILED;
	if (g.workload != WORKLOAD_RANDOM)
		return 0;
	if (g.mem_pages > PC_MAX_PAGES) {
		kvmmig_err("random check: %llu pages, at most %llu", (unsigned long long)g.mem_pages,
			   (unsigned long long)PC_MAX_PAGES);
		return -DEST_CHECK_FAILED;
	}
	for (i = 0; i < g.mem_pages; i++) {
		const uint64_t *p = workload_page(vm, i);

		for (j = 1; j < GUEST_PAGE_SIZE / sizeof(*p); j++) {
			if (p[j]) {
				kvmmig_err("random check: page %llu holds %#llx at byte %llu, where the guest never writes",
					   (unsigned long long)i, (unsigned long long)p[j],
					   (unsigned long long)(j * sizeof(*p)));
				return -DEST_CHECK_FAILED;
			}
		}
		a->vals[i] = p[0];
	}
	a->nr_pages = g.mem_pages;
	return 0;
}

/* The usual checks (it runs on, incr memory intact), then a random guest's pages. */
static inline int pc_child_resumed(void *opaque, struct kvmmig_vm *kv)
{
	int ret;

	__atomic_store_n(&pc_child_over, true, __ATOMIC_RELEASE);
	ret = dest_child_resumed(opaque, kv);
	return ret ? ret : pc_child_random_pages(dest_child_vm);
}

static inline void pc_child_run(const struct pc_dest *d, int evfd)
{
	struct mig_dest_opts o = {
		.listen = "tcp:127.0.0.1:0",
		.listening = pc_child_listening,
		.accepted = pc_child_accepted,
		.resumed = pc_child_resumed,
		.postcopy_started = pc_child_started,
		.postcopy_recover_timeout_ms = d->recover_timeout_ms,
		.tls.psk_file = d->psk_file,
		DEST_CHILD_VMM,
	};
	struct mig_report rep;
	int ret;

	pc_child_evfd = evfd;
	pc_child_area = d->area;
	pc_child_widen_to = d->widen_to;
	/* The harness kills a hung test: no guest may outlive it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	kvmmig_set_log(pc_child_log, KVMMIG_LOG_INFO);
	ret = mig_dest_run(&o, &rep);
	/* Pointers into this process mean nothing to the test. */
	rep.samples = NULL;
	rep.nr_samples = rep.cap_samples = 0;
	rep.dirty_backend = rep.throttle_backend = rep.rate_source = rep.tls = NULL;
	d->area->rep = rep;
	d->area->reported = true;
	_exit(dest_exit_code(ret));
}

/* ---- the test's side of it ---- */

/* Read events for up to @timeout_ms (0: those already there); false at EOF. */
static inline bool pc_dest_events(struct pc_dest *d, int timeout_ms)
{
	struct pollfd p = { .fd = d->evfd, .events = POLLIN };
	double until = now_s() + timeout_ms / 1000.0;
	struct pc_event ev;
	int left;

	for (;;) {
		left = (int)((until - now_s()) * 1000);
		if (poll(&p, 1, left > 0 ? left : 0) != 1)
			return true;
		if (read(d->evfd, &ev, sizeof(ev)) != sizeof(ev))
			return false;
		if (ev.type < NR_PC_EVENTS)
			d->seen[ev.type]++;
		if (ev.type == PC_EV_LISTENING)
			snprintf(d->addr, sizeof(d->addr), "tcp:127.0.0.1:%llu",
				 (unsigned long long)ev.val);
		if (ev.type == PC_EV_ACCEPTED)
			d->session = ev.val;
		/* One event at a time when waiting: the caller looks at each. */
		if (timeout_ms)
			return true;
	}
}

/* Wait until the child has sent @type @n times in all: true, or false at its deadline. */
static inline bool pc_dest_wait_event(struct pc_dest *d, uint32_t type, unsigned int n,
				      int timeout_ms)
{
	double until = now_s() + timeout_ms / 1000.0;

	while (d->seen[type] < n && now_s() < until)
		if (!pc_dest_events(d, (int)((until - now_s()) * 1000) + 1))
			break;
	return d->seen[type] >= n;
}

static inline int pc_dest_start(struct pc_dest *d)
{
	int efd[2];

	d->pid = 0;
	d->evfd = -1;
	d->status = -1;
	d->hung = false;
	d->session = 0;
	memset(d->seen, 0, sizeof(d->seen));
	d->area = mmap(NULL, sizeof(*d->area), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (d->area == MAP_FAILED) {
		d->area = NULL;
		return -1;
	}
	if (pipe2(efd, O_CLOEXEC))
		return -1;
	fflush(stdout);
	fflush(stderr);
	d->pid = fork();
	if (d->pid == 0) {
		close(efd[0]);
		pc_child_run(d, efd[1]);
	}
	close(efd[1]);
	d->evfd = efd[0];
	if (d->pid < 0 || !pc_dest_wait_event(d, PC_EV_LISTENING, 1, 10000))
		return -1;
	return 0;
}

/*
 * Wait up to @timeout_s for the child to end (then it is killed): its wait
 * status, also in d->status.
 */
static inline int pc_dest_wait(struct pc_dest *d, unsigned int timeout_s)
{
	double until = now_s() + timeout_s;
	int status;
	pid_t got;

	if (d->pid <= 0)
		return d->status;
	while ((got = waitpid(d->pid, &status, WNOHANG)) == 0 && now_s() < until) {
		pc_dest_events(d, 0);
		usleep(20000);
	}
	if (got == 0) {
		d->hung = true;
		kill(d->pid, SIGKILL);
		got = waitpid(d->pid, &status, 0);
	}
	pc_dest_events(d, 0);
	d->status = got == d->pid ? status : -1;
	d->pid = 0;
	return d->status;
}

static inline bool pc_dest_exited(const struct pc_dest *d, int code)
{
	return d->status != -1 && WIFEXITED(d->status) && WEXITSTATUS(d->status) == code;
}

static inline void pc_dest_free(struct pc_dest *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->evfd >= 0)
		close(d->evfd);
	d->evfd = -1;
	if (d->area)
		munmap(d->area, sizeof(*d->area));
	d->area = NULL;
}

/* ---- the source's progress, and a fault at a chosen state ---- */

enum pc_act {
	PC_ACT_NONE,
	PC_ACT_CANCEL,		/* set the cancel flag */
	PC_ACT_START,		/* set the start_postcopy flag */
	PC_ACT_DROP,		/* the proxy drops the link */
	PC_ACT_KILL,		/* SIGKILL @pid */
};

struct pc_watch {
	pthread_mutex_t lock;
	unsigned int entered[NR_MIG_STATES];	/* samples that changed the state */
	int last;				/* the last sample's state, -1: none */
	unsigned int precopy_syncs;		/* sync samples while MIG_ACTIVE: passes done */
	/* the fault: at the first sample in state @at from pass @at_pass on */
	enum mig_state at;
	uint64_t at_pass;
	enum pc_act act;
	bool fired;
	uint64_t fired_pass;
	volatile sig_atomic_t cancel;
	volatile sig_atomic_t start_postcopy;
	struct proxy *px;
	pid_t pid;
	int state_fd;				/* >= 0: each state entered, a byte */
};

static inline void pc_watch_init(struct pc_watch *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	w->last = -1;
	w->state_fd = -1;
}

static inline void pc_watch_act(struct pc_watch *w)
{
	switch (w->act) {
	case PC_ACT_CANCEL:
		kvmmig_cancel_set(&w->cancel, 1);
		break;
	case PC_ACT_START:
		kvmmig_cancel_set(&w->start_postcopy, 1);
		break;
	case PC_ACT_DROP:
		proxy_drop(w->px);
		break;
	case PC_ACT_KILL:
		if (w->pid > 0)
			kill(w->pid, SIGKILL);
		break;
	default:
		break;
	}
}

/* mig_source_opts.progress, with a struct pc_watch as opaque. */
static inline void pc_watch_progress(void *opaque, enum mig_state state, const struct mig_sample *s,
				     const struct mig_report *r)
{
	struct pc_watch *w = opaque;
	uint8_t b = state;
	bool changed;

	pthread_mutex_lock(&w->lock);
	changed = w->last != (int)state;
	if (changed && state < NR_MIG_STATES)
		w->entered[state]++;
	if (state == MIG_ACTIVE && s->sync)
		w->precopy_syncs++;
	w->last = state;
	pthread_mutex_unlock(&w->lock);
	if (changed && w->state_fd >= 0 && write(w->state_fd, &b, 1) != 1)
		_exit(1);
	if (w->act && !w->fired && state == w->at && s->pass >= w->at_pass) {
		w->fired = true;
		w->fired_pass = s->pass;
		pc_watch_act(w);
	}
}

static inline unsigned int pc_watch_entered(struct pc_watch *w, enum mig_state state)
{
	unsigned int n;

	pthread_mutex_lock(&w->lock);
	n = w->entered[state];
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* Wait until the source has entered @state @n times: true, or false at the deadline. */
static inline bool pc_watch_wait(struct pc_watch *w, enum mig_state state, unsigned int n,
				 int timeout_ms)
{
	double until = now_s() + timeout_ms / 1000.0;

	while (pc_watch_entered(w, state) < n && now_s() < until)
		usleep(10000);
	return pc_watch_entered(w, state) >= n;
}

/* ---- the source's log ---- */

static pthread_mutex_t pc_src_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char pc_src_log[PC_LOG_BYTES];

static inline void pc_src_log_hook(int level, const char *msg)
{
	size_t n;

	if (level == KVMMIG_LOG_ERR)
		fprintf(stderr, "kvmmig (source): %s\n", msg);
	pthread_mutex_lock(&pc_src_log_lock);
	n = strnlen(pc_src_log, sizeof(pc_src_log));
	snprintf(pc_src_log + n, sizeof(pc_src_log) - n, "%s\n", msg);
	pthread_mutex_unlock(&pc_src_log_lock);
}

static inline bool pc_src_log_has(const char *what)
{
	bool ret;

	pthread_mutex_lock(&pc_src_log_lock);
	ret = strstr(pc_src_log, what);
	pthread_mutex_unlock(&pc_src_log_lock);
	return ret;
}

/* ---- guests and their memory ---- */

/*
 * A running guest of 2 vCPUs and @ram bytes in two RAM slots: @workload
 * over all of it, a random guest writing @value into the first @wss pages
 * of each vCPU's slice (0: all of it).  Returned once each vCPU has
 * written as many times as its slice has pages (incr: a pass over it), so
 * that a migration meets a guest at work: one that has not run yet leaves
 * nothing dirty, and precopy ends before any switch to postcopy.  NULL if
 * it cannot be made or does not get there within GUEST_PROGRESS_S.
 */
static inline struct vm *pc_guest(enum guest_workload workload, uint64_t ram, uint64_t wss,
				  uint64_t value)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = ram,
		.nr_slots = 2,
		.guest = { .workload = workload, .wss_pages = wss, .iteration = value },
	};
	enum dirty_backend backend = DIRTY_AUTO;
	struct vm *vm = source_guest_of(&cfg, &backend);
	uint64_t slice = ram / GUEST_PAGE_SIZE / cfg.nr_vcpus;
	unsigned int i, t;

	for (t = 0; vm && t < GUEST_PROGRESS_S * 100; t++) {
		for (i = 0; i < cfg.nr_vcpus && vm->vcpus[i].area->loops >= slice; i++)
			;
		if (i == cfg.nr_vcpus)
			return vm;
		usleep(10000);
	}
	if (vm)
		vm_destroy(vm);
	return NULL;
}

/*
 * A random guest after a postcopy migration: each page the destination
 * holds is what the source's paused copy holds, or what the guest wrote
 * after the switch: @widened (its value once its working set grew, 0 if
 * it never did) anywhere, @value where the source's page was still zero.
 * 0, or -1 with the first page that breaks it in @why.
 */
static inline int pc_random_compare(struct vm *src, const struct pc_dest_area *a, uint64_t value,
				    uint64_t widened, char *why, size_t len)
{
	struct guest_shared g;
	uint64_t i, s, d;

	if (vm_guest_params(src, &g) || a->nr_pages != g.mem_pages) {
		snprintf(why, len, "the destination checked %llu pages of %llu",
			 (unsigned long long)a->nr_pages, (unsigned long long)g.mem_pages);
		return -1;
	}
	for (i = 0; i < a->nr_pages; i++) {
		s = *(const uint64_t *)workload_page(src, i);
		d = a->vals[i];
		if (d == s || (widened && d == widened) || (!s && d == value))
			continue;
		snprintf(why, len, "page %llu holds %#llx on the destination, %#llx on the source",
			 (unsigned long long)i, (unsigned long long)d, (unsigned long long)s);
		return -1;
	}
	return 0;
}

/* Its counters stand still over a second: a stopped guest. */
static inline bool pc_guest_stands_still(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < 5; i++) {
		uint64_t a = guest_loops(vm);

		usleep(200000);
		if (guest_loops(vm) != a)
			return false;
	}
	return true;
}

#endif /* KVMMIG_POSTCOPY_UTIL_H */
