// SPDX-License-Identifier: GPL-2.0-only
/*
 * Migration benchmarks, each with its baseline measured in the same run:
 *
 *  1. Idle guest, half its pages zero, over loopback: migration time with 1
 *     and 4 multifd channels against a raw TCP transfer of the same non-zero
 *     bytes (one stream, 1 MiB writes, received into fresh memory as a
 *     destination must; and, for scale, into one reused buffer), and the
 *     downtime.
 *  2. The seeds' experiment, scaled down: a guest whose dirty working set
 *     outruns max-bandwidth, migrated with auto-converge under legacy,
 *     background and periodic syncs, and with the rate-driven policy: total
 *     time, passes, syncs, maximum throttle, downtime; ratios to legacy.
 *  3. Throttling side effects: a guest with one dirtying vCPU and one that
 *     only computes, migrated with auto-converge and with dirty-limit: the
 *     compute vCPU's loop rate during migration relative to its unthrottled
 *     rate measured just before.
 *
 *
 * Each side runs in its own process, as a user would run it: this program
 * re-executes itself as a source (which creates and fills the guest, then
 * migrates when told where to), a destination, a raw TCP sender or a raw
 * TCP receiver (perf_side.h), and reads back their results as JSON.  The
 * program that prints the tables holds no guest and no buffer, so no side
 * pays for another's memory (an earlier version kept a 2 GiB raw buffer and
 * two 4 GiB guests in one process and forked the destination from it,
 * which made migrations 1.3x slower than the engine run alone).
 *
 *   migration_perf [--quick] [--only idle|seeds|compute] [--json FILE]
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mig_test_util.h"
#include "net.h"
#include "perf_side.h"
#include "perf_util.h"

#define HALF_ZERO_CHUNK	(2ULL << 20)
#define SIDE_READY_MS	300000		/* a side creates, fills and warms its guest */
#define SIDE_PORT_MS	30000		/* a listening side names its port */
#define SIDE_RUN_MS	1800000		/* a migration or raw transfer ends */
#define SIDE_EXIT_MS	120000		/* a side that reported exits */

static bool quick;

static void quiet(int level, const char *msg)
{
}

/* ---- the sides (each its own process) ---- */

/* What a side was asked for: key=value arguments after --side ROLE. */
struct side_opts {
	const char *role;
	uint64_t ram, bytes, wss, max_bandwidth, compute_mask, mem_pages;
	unsigned int vcpus, channels, sync_interval_ms, max_passes, vcpu_dirty_limit;
	unsigned int warmup_ms, workload, sync, policy, backend, dest_backing;
	bool half_zero, alloc_all, fresh, probe_compute;
	const char *to;
};

static int side_parse(int argc, char **argv, struct side_opts *o)
{
	static const struct {
		const char *key;
		size_t off;
		int size;	/* 8, 4 or 1 (bool) */
	} keys[] = {
#define K(f) { #f, offsetof(struct side_opts, f), sizeof(((struct side_opts *)0)->f) }
		K(ram), K(bytes), K(wss), K(max_bandwidth), K(compute_mask), K(mem_pages),
		K(vcpus), K(channels), K(sync_interval_ms), K(max_passes), K(vcpu_dirty_limit),
		K(warmup_ms), K(workload), K(sync), K(policy), K(backend), K(dest_backing),
		K(half_zero), K(alloc_all), K(fresh), K(probe_compute),
#undef K
	};
	int i;
	unsigned int k;

	memset(o, 0, sizeof(*o));
	o->role = argv[0];
	for (i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		unsigned long long v;

		if (!eq)
			goto bad;
		*eq = '\0';
		v = strtoull(eq + 1, NULL, 0);
		if (!strcmp(argv[i], "to")) {
			o->to = eq + 1;
			continue;
		}
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strcmp(argv[i], keys[k].key))
				break;
		if (k == sizeof(keys) / sizeof(keys[0]))
			goto bad;
		if (keys[k].size == 8)
			*(uint64_t *)((char *)o + keys[k].off) = v;
		else if (keys[k].size == 4)
			*(unsigned int *)((char *)o + keys[k].off) = v;
		else
			*(bool *)((char *)o + keys[k].off) = v;
	}
	return 0;
bad:
	fprintf(stderr, "migration_perf --side %s: bad argument '%s': expected key=value\n",
		o->role, argv[i]);
	return -EINVAL;
}

/* The non-zero half of an idle guest's RAM, as the raw baseline sends it. */
static void fill_raw_pattern(uint8_t *buf, uint64_t len)
{
	uint64_t off;

	for (off = 0; off < len; off += HALF_ZERO_CHUNK)
		memset(buf + off, 0x5a + ((2 * off) >> 21), HALF_ZERO_CHUNK);
}

/*
 * Raw TCP receiver: read o->bytes in 1 MiB reads, either into fresh memory
 * (fresh: as a destination must, first touch included) or over and over
 * into one buffer (the wire alone).
 */
static int side_raw_recv(const struct side_opts *o)
{
	uint64_t size = o->fresh ? o->bytes : 1 << 20, got = 0;
	uint8_t *sink = mmap(NULL, size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int lfd, fd, port = 0;
	char ack;

	lfd = net_listen("tcp:127.0.0.1:0", &port);
	if (lfd < 0 || sink == MAP_FAILED)
		return 1;
	perf_side_say("port", port, 0);
	fd = net_accept(lfd, NULL, SIDE_PORT_MS, -1);
	while (fd >= 0 && got < o->bytes) {
		uint64_t want = o->bytes - got < (1 << 20) ? o->bytes - got : (1 << 20);
		ssize_t n = read(fd, sink + (o->fresh ? got : 0), want);

		if (n <= 0)
			break;
		got += n;
	}
	ack = got == o->bytes;
	return fd >= 0 && write(fd, &ack, 1) == 1 && ack ? 0 : 1;
}

/* Raw TCP sender: o->bytes of the idle guest's data to o->to; prints the seconds. */
static int side_raw_send(const struct side_opts *o)
{
	uint8_t *buf = malloc(o->bytes);
	uint64_t off = 0;
	double t0;
	char ack = 0;
	int fd;

	if (!buf || !o->to)
		return 1;
	fill_raw_pattern(buf, o->bytes);
	fd = net_connect(o->to, NULL);
	t0 = now_s();
	while (fd >= 0 && off < o->bytes) {
		uint64_t n = o->bytes - off < (1 << 20) ? o->bytes - off : (1 << 20);

		if (net_write_all(fd, buf + off, n, NULL))
			break;
		off += n;
	}
	if (fd < 0 || read(fd, &ack, 1) != 1 || !ack)
		return 1;
	perf_side_say("seconds", now_s() - t0, 6);
	return 0;
}

static void side_dest_listening(void *opaque, int port)
{
	perf_side_say("port", port, 0);
}

/* Destination: receive one guest on loopback; the exit code says how it went. */
static int side_dest(const struct side_opts *o)
{
	struct mig_dest_opts d = {
		.listen = "tcp:127.0.0.1:0",
		.listening = side_dest_listening,
		.resumed = dest_child_resumed,
		DEST_CHILD_VMM,
	};
	struct mig_report rep;
	int ret;

	vm_set_stream_backing(o->dest_backing);
	ret = mig_dest_run(&d, &rep);
	return ret == -DEST_CHECK_FAILED ? DEST_CHECK_FAILED :
	       ret == -DEST_NO_PROGRESS ? DEST_NO_PROGRESS :
	       ret ? DEST_RECEIVE_FAILED : DEST_OK;
}

struct compute_probe {
	struct vm *vm;
	volatile bool stop;
	uint64_t loops;
	double seconds;
};

static void *compute_probe_thread(void *arg)
{
	struct compute_probe *c = arg;
	uint64_t l0 = c->vm->vcpus[1].area->loops, l1 = l0;
	double t0 = now_s();

	/* Sampled until the source guest stops (switchover). */
	while (!c->stop) {
		usleep(20000);
		if (c->vm->vcpus[1].state == VCPU_RUNNING || c->vm->vcpus[1].state == VCPU_PAUSED)
			l1 = c->vm->vcpus[1].area->loops;
		if (c->vm->vcpus[1].state == VCPU_PAUSED)
			break;
	}
	c->loops = l1 - l0;
	c->seconds = now_s() - t0;
	return NULL;
}

/*
 * The compute vCPU's unthrottled rate, with the dirtying vCPU held back as
 * a throttle would: on a small host the two compete for cores, and only
 * the throttle's own effect is of interest.
 */
static double compute_rate_before(struct vm *vm)
{
	uint64_t l0;
	double t0, before;

	vm_set_throttle(vm, 0, 99);
	usleep(300000);
	l0 = vm->vcpus[1].area->loops;
	t0 = now_s();
	usleep(1000000);
	before = (vm->vcpus[1].area->loops - l0) / (now_s() - t0);
	vm_set_throttle(vm, 0, 0);
	/*
	 * The throttle's last sleep may run on for up to a second: wait until
	 * the dirtying vCPU has written its whole slice once, so the migration
	 * starts with a busy guest, not a sleeping one.
	 */
	l0 = vm->vcpus[0].area->passes;
	for (t0 = now_s(); vm->vcpus[0].area->passes < l0 + 2 && now_s() - t0 < 10;)
		usleep(10000);
	return before;
}

/* The guest's loops/s before the migration and during it, for bench_compute(). */
static void compute_say(double before, double during)
{
	struct json_writer w;

	json_event_begin(&w, stdout, "compute");
	json_key_double(&w, "before", before, 1);
	json_key_double(&w, "during", during, 1);
	json_line_end(&w);
}

static struct vm *side_guest(const struct side_opts *o)
{
	struct vm_config cfg = {
		.nr_vcpus = o->vcpus,
		.ram_bytes = o->ram,
		.nr_slots = 1,
		.guest.workload = o->workload,
		.guest.wss_pages = o->wss / GUEST_PAGE_SIZE,
		.guest.compute_mask = o->compute_mask,
	};
	struct vm *vm;
	uint64_t off;

	if (dirty_prepare_config(o->backend, &cfg) < 0 || vm_create(&cfg, &vm))
		return NULL;
	/*
	 * Every other 2 MiB of the guest's RAM is data, the rest zero: never
	 * touched (the kernel's zero page on a read), or with alloc_all
	 * allocated and zeroed, as in a guest that has run (qemu_perf gives
	 * QEMU's source the same).
	 */
	for (off = 0; o->half_zero && off < o->ram; off += 2 * HALF_ZERO_CHUNK) {
		memset((uint8_t *)vm->slots[1].hva + off, 0x5a + (off >> 21), HALF_ZERO_CHUNK);
		if (o->alloc_all && off + HALF_ZERO_CHUNK < o->ram)
			memset((uint8_t *)vm->slots[1].hva + off + HALF_ZERO_CHUNK, 0,
			       HALF_ZERO_CHUNK);
	}
	if (o->mem_pages)
		vm->shared->mem_pages = o->mem_pages;
	return vm;
}

/*
 * Source: create, fill and start the guest, say it is ready, migrate it
 * wherever the benchmark then says, and print the report (and, probing the
 * compute vCPU, its loop rates) as JSON.
 */
static int side_source(const struct side_opts *o)
{
	struct compute_probe probe = { 0 };
	struct mig_source_opts so = { 0 };
	struct mig_params *p = &so.params;
	struct vm *vm = side_guest(o);
	double before = 0;
	struct mig_report rep;
	char to[128];
	pthread_t th;
	int ret;

	if (!vm || vm_start(vm))
		return 1;
	usleep(o->warmup_ms * 1000);
	if (o->probe_compute)
		before = compute_rate_before(vm);
	perf_side_say("ready", 1, 0);
	if (perf_side_wait_go(to, sizeof(to), SIDE_READY_MS))
		return 1;
	mig_params_init(p);
	p->multifd_channels = o->channels ? o->channels : 1;
	p->max_bandwidth = o->max_bandwidth;
	p->sync_mode = o->sync;
	p->policy = o->policy;
	if (o->sync_interval_ms)
		p->sync_interval_ms = o->sync_interval_ms;
	if (o->vcpu_dirty_limit)
		p->vcpu_dirty_limit = o->vcpu_dirty_limit;
	p->max_passes = o->max_passes;
	so.to = to;
	probe.vm = vm;
	if (o->probe_compute)
		pthread_create(&th, NULL, compute_probe_thread, &probe);
	ret = mig_source_run(vm->kv, &so, &rep);
	if (o->probe_compute) {
		probe.stop = true;
		pthread_join(th, NULL);
		compute_say(before, probe.seconds > 0 ? probe.loops / probe.seconds : 0);
	}
	mig_report_print_json(&rep, stdout);
	mig_report_free(&rep);
	vm_destroy(vm);
	return ret ? 1 : 0;
}

static int side_main(int argc, char **argv)
{
	struct side_opts o;

	if (side_parse(argc, argv, &o))
		return 2;
	kvmmig_set_log(quiet, KVMMIG_LOG_ERR);
	if (!strcmp(o.role, "raw-recv"))
		return side_raw_recv(&o);
	if (!strcmp(o.role, "raw-send"))
		return side_raw_send(&o);
	if (!strcmp(o.role, "dest"))
		return side_dest(&o);
	if (!strcmp(o.role, "source"))
		return side_source(&o);
	fprintf(stderr, "migration_perf --side '%s': expected raw-recv, raw-send, dest or source\n",
		o.role);
	return 2;
}

/* ---- the benchmark, starting sides ---- */

#define SIDE_MAX_ARGS	32

struct side_argv {
	char *v[SIDE_MAX_ARGS + 1];
	char store[SIDE_MAX_ARGS][96];
	unsigned int n;
};

static void side_argv_init(struct side_argv *a, const char *role)
{
	memset(a, 0, sizeof(*a));
	a->v[a->n++] = "migration_perf";
	a->v[a->n++] = "--side";
	a->v[a->n++] = (char *)role;
}

static void __attribute__((format(printf, 2, 3))) side_arg(struct side_argv *a,
							   const char *fmt, ...)
{
	va_list ap;

	if (a->n >= SIDE_MAX_ARGS)
		return;
	va_start(ap, fmt);
	vsnprintf(a->store[a->n], sizeof(a->store[0]), fmt, ap);
	va_end(ap);
	a->v[a->n] = a->store[a->n];
	a->n++;
}

/* Start a listening side and learn its address. */
static int side_listen(struct perf_side *s, struct side_argv *a, char *addr, size_t size)
{
	char line[256];
	int port;

	if (perf_side_spawn(s, a->v))
		return -ECHILD;
	if (perf_side_read(s, line, sizeof(line), SIDE_PORT_MS)) {
		perf_side_wait(s, 0);
		return -EPIPE;
	}
	port = perf_json_get(line, "port", -1);
	snprintf(addr, size, "tcp:127.0.0.1:%d", port);
	return port > 0 ? 0 : -EPROTO;
}

/*
 * Raw TCP in two fresh processes: @len bytes to a receiver reading into
 * fresh memory (@fresh) or into one reused buffer; seconds taken, or -1.
 */
static double raw_tcp_seconds(uint64_t len, bool fresh)
{
	struct perf_side recv, send;
	struct side_argv a;
	char addr[64], line[256];
	double t = -1;

	side_argv_init(&a, "raw-recv");
	side_arg(&a, "bytes=%llu", (unsigned long long)len);
	side_arg(&a, "fresh=%d", fresh);
	if (side_listen(&recv, &a, addr, sizeof(addr)))
		return -1;
	side_argv_init(&a, "raw-send");
	side_arg(&a, "bytes=%llu", (unsigned long long)len);
	side_arg(&a, "to=%s", addr);
	if (!perf_side_spawn(&send, a.v)) {
		if (!perf_side_read(&send, line, sizeof(line), SIDE_RUN_MS))
			t = perf_json_get(line, "seconds", -1);
		if (perf_side_wait(&send, SIDE_EXIT_MS))
			t = -1;
	}
	if (perf_side_wait(&recv, SIDE_EXIT_MS))
		t = -1;
	return t;
}

/* Keep the smallest positive time: the baseline at its best. */
static void keep_best(double *best, double t)
{
	if (t > 0 && (*best <= 0 || t < *best))
		*best = t;
}

struct mig_result {
	int ret;
	struct mig_report rep;
	double compute_before, compute_during;
};

/* The report line a source side printed, into @r. */
static void parse_report(const char *line, struct mig_result *r)
{
	char status[32];

	perf_json_get_str(line, "status", status, sizeof(status));
	r->rep.total_s = perf_json_get(line, "total_s", 0);
	r->rep.downtime_ms = perf_json_get(line, "downtime_ms", 0);
	r->rep.passes = perf_json_get(line, "passes", 0);
	r->rep.syncs = perf_json_get(line, "syncs", 0);
	r->rep.zero_pages = perf_json_get(line, "zero_pages", 0);
	r->rep.max_throttle_pct = perf_json_get(line, "max_throttle_pct", 0);
	perf_json_get_str(line, "error", r->rep.error, sizeof(r->rep.error));
	if (strcmp(status, "completed"))
		r->ret = -EIO;
}

/*
 * Migrate the guest a source side (@src) creates to a fresh destination
 * side.  @before_dest runs once the source is ready and before the
 * destination starts (the idle benchmark's raw baseline).
 */
static void migrate_once(struct side_argv *src, struct mig_result *r,
			 void (*before_dest)(void *), void *opaque)
{
	struct perf_side source, dest;
	struct side_argv d;
	char addr[64], line[1024];
	bool reported = false;
	int st;

	memset(r, 0, sizeof(*r));
	r->ret = -ECHILD;
	snprintf(r->rep.error, sizeof(r->rep.error), "the source side did not get ready");
	if (perf_side_spawn(&source, src->v))
		return;
	if (perf_side_read(&source, line, sizeof(line), SIDE_READY_MS) ||
	    perf_json_get(line, "ready", 0) != 1)
		goto out_source;
	if (before_dest)
		before_dest(opaque);
	side_argv_init(&d, "dest");
	snprintf(r->rep.error, sizeof(r->rep.error), "the destination side did not listen");
	if (side_listen(&dest, &d, addr, sizeof(addr)))
		goto out_source;
	snprintf(r->rep.error, sizeof(r->rep.error), "the source side did not report");
	if (!perf_side_go(&source, addr)) {
		while (!reported && !perf_side_read(&source, line, sizeof(line), SIDE_RUN_MS)) {
			if (strstr(line, "\"event\":\"compute\"")) {
				r->compute_before = perf_json_get(line, "before", 0);
				r->compute_during = perf_json_get(line, "during", 0);
			} else if (strstr(line, "\"event\":\"report\"")) {
				r->ret = 0;
				parse_report(line, r);
				reported = true;
			}
		}
	}
	if (!reported)
		kill(dest.pid, SIGKILL);
	st = perf_side_wait(&dest, SIDE_EXIT_MS);
	if (st != DEST_OK && !r->ret) {
		r->ret = -EIO;
		snprintf(r->rep.error, sizeof(r->rep.error), "the destination side exited with %d", st);
	}
out_source:
	/* A source that never reported may still wait for its word to go. */
	if (!reported)
		kill(source.pid, SIGKILL);
	if (perf_side_wait(&source, SIDE_EXIT_MS) && !r->ret)
		r->ret = -EIO;
}

static void source_argv(struct side_argv *a, uint64_t ram, unsigned int vcpus,
			enum guest_workload w, uint64_t wss, uint64_t compute_mask,
			enum dirty_backend b)
{
	side_argv_init(a, "source");
	side_arg(a, "ram=%llu", (unsigned long long)ram);
	side_arg(a, "vcpus=%u", vcpus);
	side_arg(a, "workload=%u", w);
	side_arg(a, "wss=%llu", (unsigned long long)wss);
	side_arg(a, "compute_mask=%llu", (unsigned long long)compute_mask);
	side_arg(a, "backend=%u", b);
}

struct idle_raw {
	uint64_t bytes;
	double best;
};

/* Raw then migration at once: the destination gets the pages raw freed. */
static void idle_raw_before_dest(void *opaque)
{
	struct idle_raw *raw = opaque;

	keep_best(&raw->best, raw_tcp_seconds(raw->bytes, true));
}

/*
 * Free page reporting on these machines hands memory that stays free for a
 * few seconds back to the hypervisor, and touching it again costs up to
 * 14 us a page instead of 2 to 3: whoever allocates first after a pause
 * pays.  So the source guest is filled first, the raw baseline runs just
 * before each migration (whose destination then reuses the pages raw just
 * freed) and once after the last, and the best raw run is the one compared
 * against, which can only make the ratios worse for the migration.
 */
static void bench_idle(struct perf_json *j)
{
	uint64_t ram = quick ? 1ULL << 30 : 4ULL << 30;
	struct idle_raw raw = { .bytes = ram / 2, .best = -1 };
	struct mig_result res[2];
	unsigned int channels[] = { 1, 4 }, i;
	double wire = -1;

	keep_best(&wire, raw_tcp_seconds(ram / 2, false));
	for (i = 0; i < 2; i++) {
		struct side_argv a;

		/* Each migration moves the guest away; a new source brings up another. */
		source_argv(&a, ram, 1, WORKLOAD_IDLE, 0, 0, DIRTY_AUTO);
		side_arg(&a, "half_zero=1");
		side_arg(&a, "channels=%u", channels[i]);
		migrate_once(&a, &res[i], idle_raw_before_dest, &raw);
	}
	/* And once more on the pages the last destination freed. */
	keep_best(&raw.best, raw_tcp_seconds(ram / 2, true));

	printf("\n1. Idle %llu GiB guest, half its pages zero, loopback\n",
	       (unsigned long long)(ram >> 30));
	printf("   raw TCP of the %llu MiB of non-zero bytes into fresh memory: %.3f s (%.2f GB/s)\n",
	       (unsigned long long)(ram >> 21), raw.best, ram / 2 / raw.best / 1e9);
	printf("   the same into one reused buffer (the wire alone):     %.3f s (%.2f GB/s)\n",
	       wire, ram / 2 / wire / 1e9);
	printf("   %-10s %10s %10s %10s %12s %10s\n", "channels", "total s", "vs raw",
	       "vs wire", "downtime ms", "zero pages");
	for (i = 0; i < 2; i++) {
		struct mig_result *r = &res[i];

		if (r->ret) {
			printf("   %-10u failed: %s\n", channels[i], r->rep.error);
		} else {
			printf("   %-10u %10.3f %9.2fx %9.2fx %12.1f %10llu\n", channels[i],
			       r->rep.total_s, r->rep.total_s / raw.best, r->rep.total_s / wire,
			       r->rep.downtime_ms, (unsigned long long)r->rep.zero_pages);
			perf_json_begin(j);
			perf_json_str(j, "bench", "idle_half_zero");
			perf_json_num(j, "ram_gib", ram >> 30);
			perf_json_num(j, "channels", channels[i]);
			perf_json_num(j, "migration_s", r->rep.total_s);
			perf_json_num(j, "raw_tcp_s", raw.best);
			perf_json_num(j, "wire_s", wire);
			perf_json_num(j, "ratio_vs_raw_tcp", r->rep.total_s / raw.best);
			perf_json_num(j, "ratio_vs_wire", r->rep.total_s / wire);
			perf_json_num(j, "downtime_ms", r->rep.downtime_ms);
			perf_json_num(j, "zero_pages", r->rep.zero_pages);
			perf_json_end(j);
		}
		mig_report_free(&r->rep);
	}
}

static void bench_seeds(struct perf_json *j)
{
	static const struct {
		const char *name;
		enum mig_sync_mode sync;
		enum mig_policy policy;
	} modes[] = {
		{ "legacy", MIG_SYNC_LEGACY, MIG_POLICY_AUTO_CONVERGE },
		{ "background", MIG_SYNC_BACKGROUND, MIG_POLICY_AUTO_CONVERGE },
		{ "periodic", MIG_SYNC_PERIODIC, MIG_POLICY_AUTO_CONVERGE },
		{ "rate-driven", MIG_SYNC_LEGACY, MIG_POLICY_RATE_DRIVEN },
	};
	uint64_t ram = quick ? 1ULL << 30 : 4ULL << 30, wss = ram / 8;
	double legacy_s = 0;
	unsigned int i;

	printf("\n2. The seeds' experiment: %llu GiB guest, 2 vCPUs writing a %llu MiB working set\n"
	       "   each, max-bandwidth 200 MB/s, auto-converge (QEMU defaults), sync interval 1 s\n",
	       (unsigned long long)(ram >> 30), (unsigned long long)(wss >> 20));
	printf("   %-12s %9s %7s %6s %9s %12s %10s\n", "sync", "total s", "passes", "syncs",
	       "max thr%", "downtime ms", "vs legacy");
	for (i = 0; i < 4; i++) {
		struct side_argv a;
		struct mig_result r;

		source_argv(&a, ram, 2, WORKLOAD_SEQ, wss, 0, DIRTY_RING);
		side_arg(&a, "max_bandwidth=200000000");
		side_arg(&a, "sync=%u", modes[i].sync);
		side_arg(&a, "policy=%u", modes[i].policy);
		side_arg(&a, "sync_interval_ms=1000");
		side_arg(&a, "max_passes=200");
		side_arg(&a, "warmup_ms=500");
		migrate_once(&a, &r, NULL, NULL);
		if (!i)
			legacy_s = r.rep.total_s;
		if (r.ret)
			printf("   %-12s failed: %s\n", modes[i].name, r.rep.error);
		else
			printf("   %-12s %9.2f %7llu %6llu %9u %12.1f %9.2fx\n", modes[i].name,
			       r.rep.total_s, (unsigned long long)r.rep.passes,
			       (unsigned long long)r.rep.syncs, r.rep.max_throttle_pct,
			       r.rep.downtime_ms, r.rep.total_s / legacy_s);
		fflush(stdout);
		perf_json_begin(j);
		perf_json_str(j, "bench", "seeds");
		perf_json_str(j, "mode", modes[i].name);
		perf_json_num(j, "ok", !r.ret);
		perf_json_num(j, "total_s", r.rep.total_s);
		perf_json_num(j, "passes", r.rep.passes);
		perf_json_num(j, "syncs", r.rep.syncs);
		perf_json_num(j, "max_throttle_pct", r.rep.max_throttle_pct);
		perf_json_num(j, "downtime_ms", r.rep.downtime_ms);
		perf_json_num(j, "ratio_vs_legacy", r.rep.total_s / legacy_s);
		perf_json_end(j);
		mig_report_free(&r.rep);
	}
}

static void bench_compute(struct perf_json *j)
{
	static const struct {
		const char *name;
		enum mig_policy policy;
	} pol[] = {
		{ "auto-converge", MIG_POLICY_AUTO_CONVERGE },
		{ "dirty-limit", MIG_POLICY_DIRTY_LIMIT },
	};
	uint64_t ram = 1ULL << 30;
	unsigned int i;
	double ratio;

	printf("\n3. Side effects: vCPU 0 dirties (incr over 512 MiB), vCPU 1 only computes;\n"
	       "   max-bandwidth 100 MB/s, periodic syncs; the compute vCPU's loop rate during\n"
	       "   migration vs unthrottled (measured just before, vCPU 0 held back as by a throttle)\n");
	printf("   %-14s %14s %14s %9s %9s %8s %7s\n", "policy", "before loops/s",
	       "during loops/s", "ratio", "max thr%", "total s", "passes");
	for (i = 0; i < 2; i++) {
		struct side_argv a;
		struct mig_result r;

		source_argv(&a, ram, 2, WORKLOAD_INCR, 0, 1 << 1, DIRTY_RING);
		side_arg(&a, "mem_pages=%llu", (unsigned long long)(ram / 2 / GUEST_PAGE_SIZE));
		side_arg(&a, "probe_compute=1");
		side_arg(&a, "max_bandwidth=100000000");
		side_arg(&a, "policy=%u", pol[i].policy);
		side_arg(&a, "sync=%u", MIG_SYNC_PERIODIC);
		side_arg(&a, "sync_interval_ms=1000");
		side_arg(&a, "vcpu_dirty_limit=20");
		side_arg(&a, "max_passes=200");
		migrate_once(&a, &r, NULL, NULL);
		ratio = r.compute_before > 0 ? r.compute_during / r.compute_before : 0;
		if (r.ret)
			printf("   %-14s failed: %s\n", pol[i].name, r.rep.error);
		else
			printf("   %-14s %14.0f %14.0f %8.2fx %9u %8.2f %7llu\n", pol[i].name,
			       r.compute_before, r.compute_during, ratio, r.rep.max_throttle_pct,
			       r.rep.total_s, (unsigned long long)r.rep.passes);
		perf_json_begin(j);
		perf_json_str(j, "bench", "compute_vcpu");
		perf_json_str(j, "policy", pol[i].name);
		perf_json_num(j, "ok", !r.ret);
		perf_json_num(j, "loops_per_s_before", r.compute_before);
		perf_json_num(j, "loops_per_s_during", r.compute_during);
		perf_json_num(j, "ratio", ratio);
		perf_json_num(j, "total_s", r.rep.total_s);
		perf_json_end(j);
		mig_report_free(&r.rep);
	}
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	struct perf_json j;
	int i;

	if (argc > 2 && !strcmp(argv[1], "--side"))
		return side_main(argc - 2, argv + 2);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			i++;
		} else {
			fprintf(stderr, "usage: migration_perf [--quick] [--only idle|seeds|compute] [--json FILE]\n");
			return 2;
		}
	}
	if (only && strcmp(only, "idle") && strcmp(only, "seeds") && strcmp(only, "compute")) {
		fprintf(stderr, "migration_perf: --only '%s': expected idle, seeds or compute\n", only);
		return 2;
	}
	if (perf_json_open(&j, argc, argv, "migration"))
		return 2;
	kvmmig_set_log(quiet, KVMMIG_LOG_ERR);
	printf("Migration benchmarks (loopback TCP, guests in this host's KVM)\n");
	if (!only || !strcmp(only, "idle"))
		bench_idle(&j);
	if (!only || !strcmp(only, "seeds"))
		bench_seeds(&j);
	if (!only || !strcmp(only, "compute"))
		bench_compute(&j);
	return perf_json_close(&j) ? 1 : 0;
}
