/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Debian's QEMU as a test's VMM: start qemu-system-x86_64 with -accel kvm
 * (dirty ring or bitmap) on the dirtying guest firmware qemu_dirty_bios.bin
 * (next to the test program), its RAM a memfd that QEMU maps as a
 * memory-backend-file and the test maps too, driven over QMP on an abstract
 * socket.  Through that memory the test sets the guest's working set and
 * pace (qemu_guest.h) and reads each vCPU's own count of pages written; a
 * sampler thread records the counts every QG_SAMPLE_MS with their time, so
 * a test can ask for the guest's own rate over any past interval and set
 * it beside what kvmmig measured over the same interval.  QEMU dies with
 * the test (PR_SET_PDEATHSIG), its log is a memfd shown on failure.
 */
#ifndef KVMMIG_QEMU_UTIL_H
#define KVMMIG_QEMU_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "qemu_guest.h"
#include "qmp.h"

#define QG_SAMPLE_MS		10
#define QG_MAX_SAMPLES		(20 * 60 * 1000 / QG_SAMPLE_MS)	/* 20 minutes */
#define QG_START_MS		60000	/* QEMU listens on QMP and every vCPU writes */
#define QG_QMP_MS		30000	/* a QMP command is answered */
/* A slack that drops what a throttle's 10 ms sleep misses (see qg_set_rate). */
#define QG_SLACK_US		500

struct qg_opts {
	unsigned int nr_vcpus;
	unsigned int ram_mib;
	unsigned int ring_entries;	/* 0: the dirty bitmap */
	unsigned int pages;		/* each vCPU's working set */
	double rate;			/* pages per second per vCPU; 0: flat out */
	double slack_us;		/* a write this late is dropped; 0: never */
	uint32_t compute_mask;		/* bit n: vCPU n computes (qemu_guest.h) */
	bool incoming;			/* a migration destination: -incoming defer, */
					/* paused once it has come (-S) */
	bool second_qmp;		/* a second QMP monitor, for a kvmmig command */
};

struct qg_sample {
	double t;
	uint32_t writes[QG_MAX_VCPUS];
};

struct qemu_guest {
	struct qg_opts o;
	pid_t pid;			/* QEMU; 0 once reaped */
	int status;			/* its wait status once reaped */
	int mem_fd, log_fd;
	uint8_t *mem;
	char sock[64];			/* "@name": QMP's abstract socket */
	char sock2[64];			/* the second monitor's (o.second_qmp) */
	struct qmp qmp;
	double tsc_hz;
	pthread_t sampler;
	bool sampling;
	volatile bool stop;
	pthread_mutex_t lock;
	struct qg_sample *samples;
	size_t nr_samples;
};

static inline volatile struct qg_status *qg_status(struct qemu_guest *g, unsigned int vcpu)
{
	return (volatile struct qg_status *)(g->mem + QG_STATUS + vcpu * QG_PAGE_SIZE);
}

static inline volatile struct qg_ctl *qg_ctl(struct qemu_guest *g)
{
	return (volatile struct qg_ctl *)(g->mem + QG_CTL);
}

/* The TSC's ticks per second, against CLOCK_MONOTONIC over 200 ms. */
static inline double qg_tsc_hz(void)
{
	uint64_t t0 = now_ns(), c0 = __builtin_ia32_rdtsc(), t1, c1;

	usleep(200000);
	t1 = now_ns();
	c1 = __builtin_ia32_rdtsc();
	return (c1 - c0) * 1e9 / (t1 - t0);
}

/*
 * Pace every vCPU to @rate pages per second (0: as fast as it can), each
 * write dropped when the vCPU runs more than o.slack_us after its time
 * (o.slack_us 0: done however late, catching up).
 */
static inline void qg_set_rate(struct qemu_guest *g, double rate)
{
	uint64_t period = rate > 0 ? (uint64_t)(g->tsc_hz / rate) : 0;
	uint64_t slack = rate > 0 && g->o.slack_us > 0 ?
			 (uint64_t)(g->tsc_hz * g->o.slack_us / 1e6) : INT64_MAX;
	volatile struct qg_ctl *c = qg_ctl(g);

	/* The guest reads the halves apart: values move by < 2^32 here. */
	c->slack_hi = slack >> 32;
	c->slack_lo = (uint32_t)slack;
	c->period_hi = period >> 32;
	c->period_lo = (uint32_t)period;
}

/* Where a file next to this test program is, into @buf. */
static inline int qg_next_to_me(const char *name, char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = '\0';
	snprintf(buf, len, "%s/%s", dirname(exe), name);
	return access(buf, R_OK) ? -errno : 0;
}

/* QEMU's last words (its log), for a failure message. */
static inline const char *qg_log(struct qemu_guest *g, char *buf, size_t len)
{
	off_t end = g->log_fd >= 0 ? lseek(g->log_fd, 0, SEEK_END) : 0;
	off_t from = end > (off_t)len - 1 ? end - (off_t)len + 1 : 0;
	ssize_t n = g->log_fd >= 0 ? pread(g->log_fd, buf, len - 1, from) : 0;

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? buf : "(QEMU wrote nothing)";
}

static void *qg_sampler(void *arg)
{
	struct qemu_guest *g = arg;
	struct qg_sample s;
	unsigned int k;

	while (!g->stop) {
		s.t = now_s();
		for (k = 0; k < g->o.nr_vcpus; k++)
			s.writes[k] = qg_status(g, k)->writes;
		pthread_mutex_lock(&g->lock);
		if (g->nr_samples == QG_MAX_SAMPLES) {
			memmove(g->samples, g->samples + QG_MAX_SAMPLES / 2,
				QG_MAX_SAMPLES / 2 * sizeof(s));
			g->nr_samples -= QG_MAX_SAMPLES / 2;
		}
		g->samples[g->nr_samples++] = s;
		pthread_mutex_unlock(&g->lock);
		usleep(QG_SAMPLE_MS * 1000);
	}
	return NULL;
}

/* Record the guest's counts from now on (a destination, once it runs). */
static inline int qg_sample(struct qemu_guest *g)
{
	if (!g->sampling)
		g->sampling = !pthread_create(&g->sampler, NULL, qg_sampler, g);
	return g->sampling ? 0 : -EAGAIN;
}

/*
 * vCPU @vcpu's count of writes at time @t (now_s()), interpolated between
 * the samples around it; -1 when @t is outside what was sampled.
 */
static inline double qg_count_at(struct qemu_guest *g, unsigned int vcpu, double t)
{
	double c = -1;
	size_t lo = 0, hi, mid;

	pthread_mutex_lock(&g->lock);
	hi = g->nr_samples;
	if (hi < 2 || t < g->samples[0].t || t > g->samples[hi - 1].t)
		goto out;
	/* The last sample at or before t. */
	while (hi - lo > 1) {
		mid = (lo + hi) / 2;
		if (g->samples[mid].t <= t)
			lo = mid;
		else
			hi = mid;
	}
	if (lo + 1 == g->nr_samples) {
		c = g->samples[lo].writes[vcpu];
	} else {
		const struct qg_sample *a = &g->samples[lo], *b = &g->samples[lo + 1];
		uint32_t d = b->writes[vcpu] - a->writes[vcpu];

		c = a->writes[vcpu] + d * (t - a->t) / (b->t - a->t);
	}
out:
	pthread_mutex_unlock(&g->lock);
	return c;
}

/* Wait (at most a second) until the sampler has a sample from @t or later. */
static inline void qg_wait_sampled(struct qemu_guest *g, double t)
{
	double deadline = now_s() + 1, last;

	do {
		pthread_mutex_lock(&g->lock);
		last = g->nr_samples ? g->samples[g->nr_samples - 1].t : 0;
		pthread_mutex_unlock(&g->lock);
		if (last >= t)
			return;
		usleep(QG_SAMPLE_MS * 1000 / 2);
	} while (now_s() < deadline);
}

/* vCPU @vcpu's own rate, pages per second, from @t0 to @t1; -1 if not sampled. */
static inline double qg_rate(struct qemu_guest *g, unsigned int vcpu, double t0, double t1)
{
	double c0, c1;

	qg_wait_sampled(g, t1);
	c0 = qg_count_at(g, vcpu, t0);
	c1 = qg_count_at(g, vcpu, t1);

	if (c0 < 0 || c1 < 0 || t1 <= t0)
		return -1;
	/* Counts wrap at 2^32; an interval here holds far fewer writes. */
	return (uint32_t)((uint64_t)c1 - (uint64_t)c0) / (t1 - t0);
}

/* The child's half of qg_start(). */
static void __attribute__((noreturn)) qg_exec(struct qemu_guest *g, const char *bios)
{
	char accel[64], mem[128], qmp[96], qmp2[96], size[16], smp[16];
	const char *argv[32] = {
		"qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc,memory-backend=m", "-accel", accel, "-smp", smp,
		"-m", size, "-bios", bios, "-object", mem, "-qmp", qmp,
		"-serial", "none", "-monitor", "none",
	};
	unsigned int n = 0;
	int null = open("/dev/null", O_RDONLY);

	while (argv[n])
		n++;
	/* A QMP server takes one client at a time: a kvmmig command gets its own. */
	if (g->o.second_qmp) {
		snprintf(qmp2, sizeof(qmp2), "unix:%s,abstract=on,server=on,wait=off", g->sock2 + 1);
		argv[n++] = "-qmp";
		argv[n++] = qmp2;
	}
	if (g->o.incoming) {
		argv[n++] = "-incoming";
		argv[n++] = "defer";
		argv[n++] = "-S";
	}
	argv[n] = NULL;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(accel, sizeof(accel), "kvm,dirty-ring-size=%u", g->o.ring_entries);
	snprintf(smp, sizeof(smp), "%u", g->o.nr_vcpus);
	snprintf(size, sizeof(size), "%uM", g->o.ram_mib);
	snprintf(mem, sizeof(mem), "memory-backend-file,id=m,size=%uM,mem-path=/proc/self/fd/%d,share=on",
		 g->o.ram_mib, g->mem_fd);
	snprintf(qmp, sizeof(qmp), "unix:%s,abstract=on,server=on,wait=off", g->sock + 1);
	if (null < 0 || dup2(null, 0) < 0 || dup2(g->log_fd, 1) < 0 || dup2(g->log_fd, 2) < 0 ||
	    fcntl(g->mem_fd, F_SETFD, 0) < 0)
		_exit(126);
	execvp(argv[0], (char *const *)argv);
	dprintf(2, "cannot run %s: %s (Debian's qemu-system-x86)\n", argv[0], strerror(errno));
	_exit(127);
}

/* Connect to QMP once QEMU listens; fails at once if QEMU exits. */
static inline int qg_connect(struct qemu_guest *g, char *why, size_t len)
{
	double deadline = now_s() + QG_START_MS / 1000.0;
	char log[512];
	int r;

	while (now_s() < deadline) {
		if (waitpid(g->pid, &g->status, WNOHANG) == g->pid) {
			g->pid = 0;
			snprintf(why, len, "QEMU exited at start: %s", qg_log(g, log, sizeof(log)));
			return -ECHILD;
		}
		r = qmp_connect(&g->qmp, g->sock, QG_QMP_MS);
		if (!r)
			return 0;
		if (r != -ECONNREFUSED && r != -ENOENT) {
			/* QEMU listens before it builds the machine: it may be failing. */
			usleep(500000);
			snprintf(why, len, "QMP: %s; QEMU: %s", kvmmig_last_error(),
				 qg_log(g, log, sizeof(log)));
			return r;
		}
		usleep(20000);
	}
	snprintf(why, len, "QEMU did not listen on QMP within %d s: %s", QG_START_MS / 1000,
		 qg_log(g, log, sizeof(log)));
	return -ETIMEDOUT;
}

/* Every vCPU of the guest has written a page (a destination: none runs yet). */
static inline int qg_wait_running(struct qemu_guest *g, char *why, size_t len)
{
	double deadline = now_s() + QG_START_MS / 1000.0;
	unsigned int k, up;
	char log[512];

	do {
		for (k = up = 0; k < g->o.nr_vcpus; k++)
			up += qg_status(g, k)->alive == QG_MAGIC && qg_status(g, k)->writes;
		if (up == g->o.nr_vcpus)
			return 0;
		usleep(20000);
	} while (now_s() < deadline);
	snprintf(why, len, "%u of %u vCPUs of the guest wrote within %d s; QEMU: %s", up,
		 g->o.nr_vcpus, QG_START_MS / 1000, qg_log(g, log, sizeof(log)));
	return -ETIMEDOUT;
}

/*
 * Start QEMU on the dirtying guest and wait until every vCPU writes (a
 * source) or QEMU answers on QMP (a destination).  0, or a negative errno
 * with the reason in @why; qg_stop() in every case.
 */
static inline int qg_start(struct qemu_guest *g, const struct qg_opts *o, char *why, size_t len)
{
	static unsigned int seq;
	size_t ram = (size_t)o->ram_mib << 20;
	volatile struct qg_ctl *c;
	char bios[PATH_MAX];
	int r;

	memset(g, 0, sizeof(*g));
	g->o = *o;
	g->mem_fd = g->log_fd = g->qmp.fd = -1;
	pthread_mutex_init(&g->lock, NULL);
	if (o->nr_vcpus < 1 || o->nr_vcpus > QG_MAX_VCPUS ||
	    QG_RANGES + (size_t)o->nr_vcpus * o->pages * QG_PAGE_SIZE > ram) {
		snprintf(why, len, "%u vCPUs of %u pages do not fit %u MiB", o->nr_vcpus,
			 o->pages, o->ram_mib);
		return -EINVAL;
	}
	r = qg_next_to_me("qemu_dirty_bios.bin", bios, sizeof(bios));
	if (r) {
		snprintf(why, len, "%.200s: %s (run make)", bios, strerror(-r));
		return r;
	}
	g->samples = calloc(QG_MAX_SAMPLES, sizeof(*g->samples));
	g->mem_fd = memfd_create("qemu-guest-ram", MFD_CLOEXEC);
	g->log_fd = memfd_create("qemu-log", MFD_CLOEXEC);
	if (!g->samples || g->mem_fd < 0 || g->log_fd < 0 || ftruncate(g->mem_fd, ram)) {
		snprintf(why, len, "guest memory: %s", strerror(errno));
		return -ENOMEM;
	}
	g->mem = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED, g->mem_fd, 0);
	if (g->mem == MAP_FAILED) {
		g->mem = NULL;
		snprintf(why, len, "mmap of guest memory: %s", strerror(errno));
		return -ENOMEM;
	}
	g->tsc_hz = qg_tsc_hz();
	if (!o->incoming) {
		c = qg_ctl(g);
		c->pages = o->pages;
		c->base = QG_RANGES;
		c->compute = o->compute_mask;
		qg_set_rate(g, o->rate);
		__atomic_store_n(&c->magic, QG_MAGIC, __ATOMIC_RELEASE);
	}
	snprintf(g->sock, sizeof(g->sock), "@kvmmig-qemu-%d-%u", getpid(), seq);
	snprintf(g->sock2, sizeof(g->sock2), "@kvmmig-qemu-%d-%u-2", getpid(), seq++);
	fflush(stdout);
	fflush(stderr);
	g->pid = fork();
	if (g->pid < 0) {
		g->pid = 0;
		snprintf(why, len, "fork: %s", strerror(errno));
		return -errno;
	}
	if (!g->pid)
		qg_exec(g, bios);
	r = qg_connect(g, why, len);
	if (r || o->incoming)
		return r;
	r = qg_wait_running(g, why, len);
	if (r)
		return r;
	if (qg_sample(g)) {
		snprintf(why, len, "sampler thread: %s", strerror(errno));
		return -EAGAIN;
	}
	return 0;
}

/* The guest's first memory-check error, as text, or NULL if it found none. */
static inline const char *qg_check_errors(struct qemu_guest *g, char *buf, size_t len)
{
	unsigned int k;

	for (k = 0; k < g->o.nr_vcpus; k++) {
		volatile struct qg_status *s = qg_status(g, k);

		if (s->errors) {
			snprintf(buf, len, "vCPU %u found %u bad pages, the first at 0x%x holding %u instead of %u",
				 k, s->errors, s->bad_gpa, s->bad_found, s->bad_wanted);
			return buf;
		}
	}
	return NULL;
}

static inline void qg_stop(struct qemu_guest *g)
{
	g->stop = true;
	if (g->sampling)
		pthread_join(g->sampler, NULL);
	g->sampling = false;
	qmp_close(&g->qmp);
	if (g->pid > 0) {
		kill(g->pid, SIGKILL);
		waitpid(g->pid, &g->status, 0);
		g->pid = 0;
	}
	if (g->mem)
		munmap(g->mem, (size_t)g->o.ram_mib << 20);
	g->mem = NULL;
	if (g->mem_fd >= 0)
		close(g->mem_fd);
	if (g->log_fd >= 0)
		close(g->log_fd);
	g->mem_fd = g->log_fd = -1;
	free(g->samples);
	g->samples = NULL;
	pthread_mutex_destroy(&g->lock);
}

#endif /* KVMMIG_QEMU_UTIL_H */
