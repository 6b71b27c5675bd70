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
 *   migration_perf [--quick] [--only idle|seeds|compute] [--json FILE]
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "mig_test_util.h"
#include "net.h"
#include "perf_util.h"

#define HALF_ZERO_CHUNK	(2ULL << 20)

static bool quick;

static void quiet(int level, const char *msg)
{
}

/*
 * Raw TCP: send @len bytes from @buf to a process that reads them in 1 MiB
 * reads, either into fresh memory (@fresh: as a destination must, first
 * touch included) or over and over into one buffer (the wire alone);
 * seconds taken, or -1.
 */
static double raw_tcp_seconds(const uint8_t *buf, uint64_t len, bool fresh)
{
	int lfd, fd, port = 0, st;
	uint64_t off = 0;
	char ack, addr[64];
	double t0, t;
	pid_t pid;

	lfd = net_listen("tcp:127.0.0.1:0", &port);
	if (lfd < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		uint64_t size = fresh ? len : 1 << 20, got = 0;
		uint8_t *sink = mmap(NULL, size, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		ssize_t n;

		fd = net_accept(lfd, NULL, 10000, -1);
		while (sink != MAP_FAILED && got < len) {
			uint64_t want = len - got < (1 << 20) ? len - got : (1 << 20);

			n = read(fd, sink + (fresh ? got : 0), want);
			if (n <= 0)
				break;
			got += n;
		}
		ack = got == len;
		_exit(write(fd, &ack, 1) == 1 && ack ? 0 : 1);
	}
	close(lfd);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	fd = net_connect(addr, NULL);
	t0 = mig_now();
	while (fd >= 0 && off < len) {
		uint64_t n = len - off < (1 << 20) ? len - off : (1 << 20);

		if (net_write_all(fd, buf + off, n, NULL))
			break;
		off += n;
	}
	if (fd < 0 || read(fd, &ack, 1) != 1)
		ack = 0;
	t = mig_now() - t0;
	if (fd >= 0)
		close(fd);
	waitpid(pid, &st, 0);
	return ack ? t : -1;
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
	double compute_ratio;
};

/* Migrate @vm to a fresh destination child on loopback. */
static void migrate_once(struct vm *vm, const struct mig_params *p, struct mig_result *r)
{
	struct mig_source_opts o = { .params = *p };
	struct dest_child dest;

	memset(r, 0, sizeof(*r));
	if (dest_child_start(&dest, "127.0.0.1", NULL)) {
		r->ret = -ECHILD;
		return;
	}
	o.to = dest.addr;
	r->ret = mig_source_run(vm, &o, &r->rep);
	if (r->ret)
		kill(dest.pid, SIGKILL);
	if (dest_child_wait(&dest) != DEST_OK && !r->ret)
		r->ret = -EIO;
}

static struct vm *make_guest(uint64_t ram, unsigned int vcpus, enum guest_workload w,
			     uint64_t wss, uint64_t compute_mask, enum dirty_backend b)
{
	struct vm_config cfg = {
		.nr_vcpus = vcpus,
		.ram_bytes = ram,
		.nr_slots = 1,
		.guest.workload = w,
		.guest.wss_pages = wss / GUEST_PAGE_SIZE,
		.guest.compute_mask = compute_mask,
	};
	struct vm *vm;

	if (dirty_prepare_config(b, &cfg) < 0 || vm_create(&cfg, &vm))
		return NULL;
	return vm;
}

/* Every other 2 MiB of the guest's RAM is data, the rest zero. */
static void fill_half_zero(struct vm *vm, uint64_t ram)
{
	uint8_t *hva = vm->slots[1].hva;
	uint64_t off;

	for (off = 0; off < ram; off += 2 * HALF_ZERO_CHUNK)
		memset(hva + off, 0x5a + (off >> 21), HALF_ZERO_CHUNK);
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
	uint64_t ram = quick ? 1ULL << 30 : 4ULL << 30, off;
	struct mig_result res[2];
	unsigned int channels[] = { 1, 4 }, i;
	double raw = -1, wire = -1;
	uint8_t *copy;
	struct vm *vm;

	copy = malloc(ram / 2);
	if (!copy)
		return;
	for (off = 0; off < ram / 2; off += HALF_ZERO_CHUNK)
		memset(copy + off, 0x5a + ((2 * off) >> 21), HALF_ZERO_CHUNK);
	keep_best(&wire, raw_tcp_seconds(copy, ram / 2, false));
	for (i = 0; i < 2; i++) {
		struct mig_params p;

		/* Each migration moves the guest away; bring up a new source. */
		vm = make_guest(ram, 1, WORKLOAD_IDLE, 0, 0, DIRTY_AUTO);
		if (!vm) {
			memset(&res[i], 0, sizeof(res[i]));
			res[i].ret = -ENOMEM;
			snprintf(res[i].rep.error, sizeof(res[i].rep.error),
				 "cannot create the guest: %s", kvmmig_last_error());
			continue;
		}
		fill_half_zero(vm, ram);
		vm_start(vm);
		/* Raw then migration at once: the destination gets the pages raw freed. */
		keep_best(&raw, raw_tcp_seconds(copy, ram / 2, true));
		mig_params_init(&p);
		p.multifd_channels = channels[i];
		migrate_once(vm, &p, &res[i]);
		vm_destroy(vm);
	}
	/* And once more on the pages the last destination freed. */
	keep_best(&raw, raw_tcp_seconds(copy, ram / 2, true));
	free(copy);

	printf("\n1. Idle %llu GiB guest, half its pages zero, loopback\n",
	       (unsigned long long)(ram >> 30));
	printf("   raw TCP of the %llu MiB of non-zero bytes into fresh memory: %.3f s (%.2f GB/s)\n",
	       (unsigned long long)(ram >> 21), raw, ram / 2 / raw / 1e9);
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
			       r->rep.total_s, r->rep.total_s / raw, r->rep.total_s / wire,
			       r->rep.downtime_ms, (unsigned long long)r->rep.zero_pages);
			perf_json_begin(j);
			perf_json_str(j, "bench", "idle_half_zero", 1);
			perf_json_num(j, "ram_gib", ram >> 30);
			perf_json_num(j, "channels", channels[i]);
			perf_json_num(j, "migration_s", r->rep.total_s);
			perf_json_num(j, "raw_tcp_s", raw);
			perf_json_num(j, "wire_s", wire);
			perf_json_num(j, "ratio_vs_raw_tcp", r->rep.total_s / raw);
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
		struct vm *vm = make_guest(ram, 2, WORKLOAD_SEQ, wss, 0, DIRTY_RING);
		struct mig_params p;
		struct mig_result r;

		if (!vm)
			return;
		mig_params_init(&p);
		p.max_bandwidth = 200000000;
		p.sync_mode = modes[i].sync;
		p.policy = modes[i].policy;
		p.sync_interval_ms = 1000;
		p.max_passes = 200;
		vm_start(vm);
		usleep(500000);
		migrate_once(vm, &p, &r);
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
		perf_json_str(j, "bench", "seeds", 1);
		perf_json_str(j, "mode", modes[i].name, 0);
		perf_json_num(j, "ok", !r.ret);
		perf_json_num(j, "total_s", r.rep.total_s);
		perf_json_num(j, "passes", r.rep.passes);
		perf_json_num(j, "syncs", r.rep.syncs);
		perf_json_num(j, "max_throttle_pct", r.rep.max_throttle_pct);
		perf_json_num(j, "downtime_ms", r.rep.downtime_ms);
		perf_json_num(j, "ratio_vs_legacy", r.rep.total_s / legacy_s);
		perf_json_end(j);
		mig_report_free(&r.rep);
		vm_destroy(vm);
	}
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
	double t0 = mig_now();

	/* Sampled until the source guest stops (switchover). */
	while (!c->stop) {
		usleep(20000);
		if (c->vm->vcpus[1].state == VCPU_RUNNING || c->vm->vcpus[1].state == VCPU_PAUSED)
			l1 = c->vm->vcpus[1].area->loops;
		if (c->vm->vcpus[1].state == VCPU_PAUSED)
			break;
	}
	c->loops = l1 - l0;
	c->seconds = mig_now() - t0;
	return NULL;
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

	printf("\n3. Side effects: vCPU 0 dirties (incr over 512 MiB), vCPU 1 only computes;\n"
	       "   max-bandwidth 100 MB/s, periodic syncs; the compute vCPU's loop rate during\n"
	       "   migration vs unthrottled (measured just before, vCPU 0 held back as by a throttle)\n");
	printf("   %-14s %14s %14s %9s %9s %8s %7s\n", "policy", "before loops/s",
	       "during loops/s", "ratio", "max thr%", "total s", "passes");
	for (i = 0; i < 2; i++) {
		struct vm *vm = make_guest(ram, 2, WORKLOAD_INCR, 0, 1 << 1, DIRTY_RING);
		struct compute_probe probe = { 0 };
		struct mig_params p;
		struct mig_result r;
		pthread_t th;
		uint64_t l0;
		double t0, before;

		if (!vm)
			return;
		vm->shared->mem_pages = (ram / 2) / GUEST_PAGE_SIZE;
		vm_start(vm);
		/*
		 * The compute vCPU's unthrottled rate, with the dirtying vCPU held
		 * back as a throttle would: on a small host the two compete for
		 * cores, and only the throttle's own effect is of interest.
		 */
		vm_set_throttle(vm, 0, 99);
		usleep(300000);
		l0 = vm->vcpus[1].area->loops;
		t0 = mig_now();
		usleep(1000000);
		before = (vm->vcpus[1].area->loops - l0) / (mig_now() - t0);
		vm_set_throttle(vm, 0, 0);
		/*
		 * The throttle's last sleep may run on for up to a second: wait
		 * until the dirtying vCPU has written its whole slice once, so the
		 * migration starts with a busy guest, not a sleeping one.
		 */
		l0 = vm->vcpus[0].area->passes;
		for (t0 = mig_now(); vm->vcpus[0].area->passes < l0 + 2 && mig_now() - t0 < 10;)
			usleep(10000);
		mig_params_init(&p);
		p.max_bandwidth = 100000000;
		p.policy = pol[i].policy;
		p.sync_mode = MIG_SYNC_PERIODIC;
		p.sync_interval_ms = 1000;
		p.vcpu_dirty_limit = 20;
		p.max_passes = 200;
		probe.vm = vm;
		pthread_create(&th, NULL, compute_probe_thread, &probe);
		migrate_once(vm, &p, &r);
		probe.stop = true;
		pthread_join(th, NULL);
		r.compute_ratio = probe.seconds > 0 ? probe.loops / probe.seconds / before : 0;
		if (r.ret)
			printf("   %-14s failed: %s\n", pol[i].name, r.rep.error);
		else
			printf("   %-14s %14.0f %14.0f %8.2fx %9u %8.2f %7llu\n", pol[i].name, before,
			       probe.loops / probe.seconds, r.compute_ratio, r.rep.max_throttle_pct,
			       r.rep.total_s, (unsigned long long)r.rep.passes);
		perf_json_begin(j);
		perf_json_str(j, "bench", "compute_vcpu", 1);
		perf_json_str(j, "policy", pol[i].name, 0);
		perf_json_num(j, "ok", !r.ret);
		perf_json_num(j, "loops_per_s_before", before);
		perf_json_num(j, "loops_per_s_during", probe.loops / probe.seconds);
		perf_json_num(j, "ratio", r.compute_ratio);
		perf_json_num(j, "total_s", r.rep.total_s);
		perf_json_end(j);
		mig_report_free(&r.rep);
		vm_destroy(vm);
	}
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	struct perf_json j;
	int i;

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
	perf_json_close(&j);
	return 0;
}
