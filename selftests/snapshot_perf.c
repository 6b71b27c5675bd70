// SPDX-License-Identifier: GPL-2.0-only
/*
 * Background snapshot benchmarks, each against a baseline measured in the
 * same run, in alternating rounds (median and range of each):
 *
 *  1. Save: an idle guest whose memory is half random data and half zero
 *     pages, snapshotted to /var/tmp (or --dir) with 1 and 4 channels,
 *     buffered and with O_DIRECT, against a raw sequential write of the
 *     same non-zero bytes to the same filesystem (1 MiB writes and fsync,
 *     buffered and O_DIRECT).
 *  2. Restore: snapshot_load() of that file into a new guest against a raw
 *     sequential read of the same bytes into fresh memory; both files are
 *     dropped from the page cache first (posix_fadvise), so both read disk
 *     or neither does.
 *  3. The guest's write throughput (a random workload's page writes per
 *     second) while a snapshot runs and in the second after it, against the
 *     second before (goal: 0.5x during, 1.0x after).
 *  4. Untouched memory: pause and total time with UFFD_FEATURE_WP_UNPOPULATED
 *     against pre-faulting it (the older kernels' path).
 *  5. Live increments: a guest writing a small working set, snapshotted
 *     whole (a series' base) and then again 300 ms later as an increment,
 *     with each tracker (the VM's dirty source; PAGEMAP_SCAN with
 *     UFFD_FEATURE_WP_ASYNC where the kernel has them), against the plain
 *     uffd-wp full snapshot of the same guest without a series.
 *
 * The table is printed for people; --json FILE writes the same rows.
 *
 *   snapshot_perf [--quick] [--dir DIR] [--json FILE]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "dirty.h"
#include "log.h"
#include "perf_util.h"
#include "snapshot.h"
#include "snapshot_util.h"
#include "zero.h"

#define BENCH_RAM		(512ULL << 20)
#define BENCH_QUICK_RAM		(128ULL << 20)
#define ROUNDS			3
#define HALF_ZERO_CHUNK		(2ULL << 20)
#define RAW_IO			(1U << 20)
#define THROUGHPUT_WINDOW_MS	1000

struct bench {
	const char *dir;
	uint64_t ram;
	unsigned int rounds;
	char path[256];
	char raw[256];
	struct perf_json json;
};

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static struct vm *bench_guest(uint64_t ram, enum guest_workload workload)
{
	return snap_guest(workload, ram, 1, 1);
}

/*
 * Every other 2 MiB of the guest's RAM (the slots after slot 0, which
 * holds its code) random, the rest left zero; the idle guest writes only
 * its own control block.  Returns the bytes of every page with data.
 */
static uint64_t fill_half(struct vm *vm)
{
	uint64_t off, i, data = 0;
	unsigned int k;

	for (k = 1; k < vm->kv->nr_slots; k++) {
		struct kvmmig_slot *s = &vm->kv->slots[k];

		for (off = 0; off + HALF_ZERO_CHUNK <= s->size; off += 2 * HALF_ZERO_CHUNK) {
			uint64_t *p = (uint64_t *)((uint8_t *)s->hva + off);

			for (i = 0; i < HALF_ZERO_CHUNK / 8; i++)
				p[i] = rnd();
		}
	}
	for (k = 0; k < vm->kv->nr_slots; k++)
		for (off = 0; off < vm->kv->slots[k].size; off += 4096)
			data += buffer_is_zero((uint8_t *)vm->kv->slots[k].hva + off, 4096) ? 0 : 4096;
	return data;
}

static void print_row(struct bench *b, const char *section, const char *what,
		      struct perf_range r, const char *unit, double baseline)
{
	printf("  %-34s %9.3f %s  (%.3f-%.3f)", what, r.median, unit, r.min, r.max);
	if (baseline > 0)
		printf("  %.2fx the baseline", r.median / baseline);
	printf("\n");
	perf_json_begin(&b->json);
	perf_json_str(&b->json, "section", section);
	perf_json_str(&b->json, "what", what);
	perf_json_str(&b->json, "unit", unit);
	perf_json_num(&b->json, "median", r.median);
	perf_json_num(&b->json, "min", r.min);
	perf_json_num(&b->json, "max", r.max);
	if (baseline > 0)
		perf_json_num(&b->json, "ratio", r.median / baseline);
	perf_json_end(&b->json);
}

/* ---- raw baselines ---- */

/* @len bytes (whole MiBs) written in 1 MiB writes and fsync'd to @path: seconds, or -1. */
static double raw_write(const char *path, uint64_t len, bool direct)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0600);
	double t0 = now_s(), t = -1;
	uint64_t done;
	void *buf;

	if (fd < 0)
		return -1;
	if (posix_memalign(&buf, 4096, RAW_IO)) {
		close(fd);
		return -1;
	}
	memset(buf, 0x5a, RAW_IO);
	for (done = 0; done < len; done += RAW_IO)
		if (write(fd, buf, RAW_IO) != RAW_IO)
			break;
	if (done >= len && !fsync(fd))
		t = now_s() - t0;
	close(fd);
	free(buf);
	return t;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* @len bytes (whole MiBs) of @path read in 1 MiB reads into fresh memory: seconds, or -1. */
static double raw_read(const char *path, uint64_t len)
{
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double t0, t = -1;
	uint64_t done;
	int fd;

	if (mem == MAP_FAILED)
		return -1;
	drop_cache(path);
	fd = open(path, O_RDONLY);
	t0 = now_s();
	for (done = 0; fd >= 0 && done < len; done += RAW_IO)
		if (read(fd, mem + done, RAW_IO) != RAW_IO)
			break;
	if (fd >= 0 && done >= len)
		t = now_s() - t0;
	if (fd >= 0)
		close(fd);
	munmap(mem, len);
	return t;
}

/* ---- 1 and 2: save and restore ---- */

struct save_case {
	const char *name;
	unsigned int writers;
	bool direct;
	bool raw;		/* the raw write baseline, not a snapshot */
	double v[PERF_MAX_ROUNDS];
	unsigned int n;
	bool got_direct;
};

static double snap_once(struct bench *b, struct vm *vm, const struct snap_opts *o,
			struct snap_report *r)
{
	int ret = snapshot_save(vm->kv, o, r);

	if (ret) {
		fprintf(stderr, "snapshot_perf: snapshot failed: %s\n", r->error);
		return -1;
	}
	return r->total_s;
}

static void bench_save(struct bench *b)
{
	struct save_case cases[] = {
		{ "raw write, buffered", .raw = true },
		{ "snapshot, 1 channel", .writers = 1 },
		{ "snapshot, 4 channels", .writers = 4 },
		{ "raw write, O_DIRECT", .raw = true, .direct = true },
		{ "snapshot, 1 channel, O_DIRECT", .writers = 1, .direct = true },
		{ "snapshot, 4 channels, O_DIRECT", .writers = 4, .direct = true },
	};
	unsigned int nc = sizeof(cases) / sizeof(cases[0]), round, k, c;
	double restore[PERF_MAX_ROUNDS], rread[PERF_MAX_ROUNDS], base;
	unsigned int nrestore = 0, nread = 0;
	struct snap_report r;
	struct vm *vm, *restored;
	struct kvmmig_vm *kv;
	uint64_t data, raw_len;
	double t;

	vm = bench_guest(b->ram, WORKLOAD_IDLE);
	if (!vm) {
		fprintf(stderr, "snapshot_perf: cannot run a guest: %s\n", kvmmig_last_error());
		return;
	}
	data = fill_half(vm);
	/* The raw baselines move whole 1 MiB blocks. */
	raw_len = (data + RAW_IO - 1) / RAW_IO * RAW_IO;
	printf("1. save: %llu MiB guest, %llu MiB of data, to %s (%u rounds)\n",
	       (unsigned long long)(b->ram >> 20), (unsigned long long)(data >> 20), b->dir,
	       b->rounds);
	for (round = 0; round < b->rounds; round++) {
		/* Alternate the order: no contender always runs first or last. */
		for (k = 0; k < nc; k++) {
			struct snap_opts o = { .path = b->path };
			struct save_case *sc;

			c = round % 2 ? nc - 1 - k : k;
			sc = &cases[c];
			if (sc->raw) {
				t = raw_write(b->raw, raw_len, sc->direct);
			} else {
				o.writers = sc->writers;
				o.direct = sc->direct;
				t = snap_once(b, vm, &o, &r);
				sc->got_direct = r.direct;
			}
			if (t >= 0)
				sc->v[sc->n++] = t;
		}
		/* 2: the last file written is restored, against a raw read. */
		drop_cache(b->path);
		t = now_s();
		restored = NULL;
		if (!snapshot_load(b->path, vm_create_for_stream, vm_release_for_stream, &restored,
				   &kv))
			restore[nrestore++] = now_s() - t;
		vm_destroy(restored);
		t = raw_read(b->raw, raw_len);
		if (t >= 0)
			rread[nread++] = t;
	}
	vm_destroy(vm);
	for (c = 0; c < nc; c++) {
		base = perf_range(cases[c < 3 ? 0 : 3].v, cases[c < 3 ? 0 : 3].n).median;
		if (!cases[c].raw && cases[c].direct && !cases[c].got_direct)
			printf("  (the filesystem refused O_DIRECT: buffered)\n");
		print_row(b, "save", cases[c].name, perf_range(cases[c].v, cases[c].n), "s",
			  cases[c].raw ? 0 : base);
	}
	printf("2. restore of the file (page cache dropped)\n");
	base = perf_range(rread, nread).median;
	print_row(b, "restore", "raw read into fresh memory", perf_range(rread, nread), "s", 0);
	print_row(b, "restore", "snapshot_load", perf_range(restore, nrestore), "s", base);
}

/* ---- 3: the guest's writes during and after ---- */

static double write_rate(struct vm *vm, unsigned int ms)
{
	uint64_t a = guest_loops(vm);
	double t0 = now_s();

	usleep(ms * 1000);
	return (guest_loops(vm) - a) / (now_s() - t0);
}

static void bench_throughput(struct bench *b)
{
	double before[PERF_MAX_ROUNDS], during[PERF_MAX_ROUNDS], after[PERF_MAX_ROUNDS];
	struct snap_opts o = { .path = b->path, .writers = 4 };
	unsigned int round, n = 0;
	struct snap_report r;
	struct vm *vm;
	uint64_t a;
	double t0, base;

	vm = bench_guest(b->ram, WORKLOAD_RANDOM);
	if (!vm)
		return;
	/* Memory mostly written once before it counts. */
	write_rate(vm, 2000);
	for (round = 0; round < b->rounds; round++) {
		before[n] = write_rate(vm, THROUGHPUT_WINDOW_MS);
		a = guest_loops(vm);
		t0 = now_s();
		if (snapshot_save(vm->kv, &o, &r)) {
			fprintf(stderr, "snapshot_perf: snapshot failed: %s\n", r.error);
			continue;
		}
		during[n] = (guest_loops(vm) - a) / (now_s() - t0);
		after[n] = write_rate(vm, THROUGHPUT_WINDOW_MS);
		n++;
	}
	vm_destroy(vm);
	printf("3. a random guest's page writes per second, 4 channels (%u rounds)\n", n);
	base = perf_range(before, n).median;
	print_row(b, "guest_writes", "before the snapshot", perf_range(before, n), "w/s", 0);
	print_row(b, "guest_writes", "while it runs (goal 0.5x)", perf_range(during, n), "w/s",
		  base);
	print_row(b, "guest_writes", "in the second after (goal 1.0x)", perf_range(after, n),
		  "w/s", base);
}

/* ---- 4: untouched memory ---- */

static void bench_unpopulated(struct bench *b)
{
	double pause[2][PERF_MAX_ROUNDS], total[2][PERF_MAX_ROUNDS];
	static const char *const names[2] = { "WP_UNPOPULATED", "pre-faulted" };
	unsigned int round, k, n[2] = { 0, 0 };
	bool have_unpopulated = true;
	struct snap_report r;
	char what[64];

	for (round = 0; round < b->rounds; round++) {
		for (k = 0; k < 2; k++) {
			unsigned int m = round % 2 ? 1 - k : k;
			struct snap_opts o = { .path = b->path, .prefault = m == 1 };
			/* A new guest each time: its memory never touched. */
			struct vm *vm = bench_guest(b->ram, WORKLOAD_IDLE);

			if (!vm)
				return;
			if (!snapshot_save(vm->kv, &o, &r)) {
				pause[m][n[m]] = r.pause_ms;
				total[m][n[m]++] = r.total_s;
				if (!m && !r.wp_unpopulated)
					have_unpopulated = false;
			}
			vm_destroy(vm);
		}
	}
	printf("4. an untouched %llu MiB guest%s\n", (unsigned long long)(b->ram >> 20),
	       have_unpopulated ? "" : " (this kernel has no WP_UNPOPULATED: both pre-fault)");
	for (k = 0; k < 2; k++) {
		snprintf(what, sizeof(what), "pause, %s", names[k]);
		print_row(b, "untouched", what, perf_range(pause[k], n[k]), "ms",
			  k ? perf_range(pause[0], n[0]).median : 0);
		snprintf(what, sizeof(what), "total, %s", names[k]);
		print_row(b, "untouched", what, perf_range(total[k], n[k]), "s",
			  k ? perf_range(total[0], n[0]).median : 0);
	}
}

/* ---- 5: live increments, per tracker ---- */

#define INC_WSS_PAGES		256	/* per vCPU: 1 MiB */
#define INC_INTERVAL_MS		300
#define INC_CASES		(1 + 2 * NR_SNAP_TRACKERS)

/* A guest writing its working set, made for a series' dirty source; NULL on failure. */
static struct vm *inc_guest(struct bench *b, struct dirty_options *dopts)
{
	struct vm_config cfg = {
		.nr_vcpus = 2, .ram_bytes = b->ram, .nr_slots = 1,
		.guest.workload = WORKLOAD_RAND, .guest.wss_pages = INC_WSS_PAGES,
	};
	int backend = dirty_prepare_config(DIRTY_AUTO, &cfg);
	struct vm *vm;

	if (backend < 0 || vm_create(&cfg, &vm))
		return NULL;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return NULL;
	}
	dopts->backend = backend;
	return vm;
}

/*
 * Case 0: a full snapshot without a series (plain uffd-wp).  Case 1 + 2t:
 * tracker t's base (full, tracking starts at its pause), 2 + 2t: its
 * increment INC_INTERVAL_MS later.  Seconds into v[case], pauses into p.
 */
static int inc_round(struct bench *b, unsigned int tracker, double *v, double *p,
		     const char **fallback)
{
	struct dirty_options dopts = { 0 };
	struct snap_series *series = NULL;
	struct snap_opts o = { .path = b->path };
	struct snap_report r;
	char inc[280];
	struct vm *vm = inc_guest(b, &dopts);
	int ret = -1;

	if (!vm)
		return -1;
	usleep(INC_INTERVAL_MS * 1000);
	if (tracker == NR_SNAP_TRACKERS) {
		if (snap_once(b, vm, &o, &r) >= 0) {
			v[0] = r.total_s;
			p[0] = r.pause_ms;
			ret = 0;
		}
		goto out;
	}
	if (snap_series_new(vm->kv, tracker, &dopts, &series)) {
		fprintf(stderr, "snapshot_perf: no %s series: %s\n", snap_tracker_name(tracker),
			kvmmig_last_error());
		goto out;
	}
	if (snap_series_tracker(series) != tracker) {
		*fallback = snap_series_fallback(series);
		goto out;
	}
	o.series = series;
	if (snap_once(b, vm, &o, &r) < 0)
		goto out;
	v[1 + 2 * tracker] = r.total_s;
	p[1 + 2 * tracker] = r.pause_ms + r.handover_ms;
	usleep(INC_INTERVAL_MS * 1000);
	snprintf(inc, sizeof(inc), "%s.1", b->path);
	o.path = inc;
	if (snap_once(b, vm, &o, &r) >= 0 && r.incremental) {
		v[2 + 2 * tracker] = r.total_s;
		p[2 + 2 * tracker] = r.pause_ms + r.handover_ms;
		ret = 0;
	}
	unlink(inc);
out:
	snap_series_free(series);
	vm_destroy(vm);
	unlink(b->path);
	return ret;
}

static void bench_increments(struct bench *b)
{
	double v[INC_CASES][PERF_MAX_ROUNDS], p[INC_CASES][PERF_MAX_ROUNDS];
	double tv[INC_CASES], tp[INC_CASES];
	const char *fallback[NR_SNAP_TRACKERS] = { NULL };
	unsigned int n[INC_CASES] = { 0 }, round, k, t, c;
	char what[80];

	for (round = 0; round < b->rounds; round++) {
		for (k = 0; k <= NR_SNAP_TRACKERS; k++) {
			/* The plain snapshot and the trackers take turns going first. */
			t = (k + round) % (NR_SNAP_TRACKERS + 1);
			if (t < NR_SNAP_TRACKERS && fallback[t])
				continue;
			if (inc_round(b, t, tv, tp, &fallback[t < NR_SNAP_TRACKERS ? t : 0]))
				continue;
			for (c = 0; c < INC_CASES; c++) {
				if (t == NR_SNAP_TRACKERS ? c != 0 : c != 1 + 2 * t && c != 2 + 2 * t)
					continue;
				v[c][n[c]] = tv[c];
				p[c][n[c]++] = tp[c];
			}
		}
	}
	printf("5. live increments: a %llu MiB guest writing %u KiB per vCPU, %u ms apart\n",
	       (unsigned long long)(b->ram >> 20), INC_WSS_PAGES * 4, INC_INTERVAL_MS);
	if (!n[0])
		return;
	print_row(b, "increments", "full, plain uffd-wp", perf_range(v[0], n[0]), "s", 0);
	print_row(b, "increments", "  its pause", perf_range(p[0], n[0]), "ms", 0);
	for (t = 0; t < NR_SNAP_TRACKERS; t++) {
		if (fallback[t]) {
			printf("  %s tracker: not on this kernel (%s)\n", snap_tracker_name(t),
			       fallback[t]);
			continue;
		}
		for (c = 1 + 2 * t; c <= 2 + 2 * t; c++) {
			if (!n[c])
				continue;
			snprintf(what, sizeof(what), "%s, %s tracker", c % 2 ? "base" : "increment",
				 snap_tracker_name(t));
			print_row(b, "increments", what, perf_range(v[c], n[c]), "s",
				  perf_range(v[0], n[0]).median);
			snprintf(what, sizeof(what), "  its pauses");
			print_row(b, "increments", what, perf_range(p[c], n[c]), "ms",
				  perf_range(p[0], n[0]).median);
		}
	}
}

int main(int argc, char **argv)
{
	struct bench b = { .dir = "/var/tmp", .ram = BENCH_RAM, .rounds = ROUNDS };
	char dir[200];
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			b.ram = BENCH_QUICK_RAM;
			b.rounds = 2;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			b.dir = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			i++;
		} else {
			fprintf(stderr, "usage: snapshot_perf [--quick] [--dir DIR] [--json FILE]\n");
			return 2;
		}
	}
	if (perf_json_open(&b.json, argc, argv, "snapshot"))
		return 2;
	snprintf(dir, sizeof(dir), "%s/kvmmig-snapperf-XXXXXX", b.dir);
	if (!mkdtemp(dir)) {
		perror(dir);
		return 1;
	}
	snprintf(b.path, sizeof(b.path), "%s/guest.snap", dir);
	snprintf(b.raw, sizeof(b.raw), "%s/raw", dir);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	bench_save(&b);
	bench_throughput(&b);
	bench_unpopulated(&b);
	bench_increments(&b);
	unlink(b.path);
	unlink(b.raw);
	rmdir(dir);
	return perf_json_close(&b.json) ? 1 : 0;
}
