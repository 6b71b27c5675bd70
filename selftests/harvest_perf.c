// SPDX-License-Identifier: GPL-2.0-only
/*
 * Harvest benchmark: for each userspace dirty source, guest RAM of 1, 4 and
 * 16 GiB and a guest that dirties 0.1%, 1%, 10% or 100% of it once, the
 * time spent collecting the dirty pages and write-protecting them again,
 * as ns per dirty page and ms per GiB of guest RAM.  The bitmap source
 * (KVM_GET_DIRTY_LOG) is the baseline measured in the same run; the other
 * rows carry their ratio to it.  For the ring the time includes every
 * reaper round while the guest ran, since that is when a ring is harvested.
 * The module source (KVMMIG_HARVEST, every ring in one call) gets its rows
 * when /dev/kvmmig exists: inside the QEMU-hosted kernels, e.g.
 * `selftests/vm/run.sh -k 6.1 -x build/selftests/harvest_perf -c
 * 'build/selftests/harvest_perf --ram-mib 256 --dirty-pct 1'` (under TCG
 * the guest dirties slowly, and the ring's reaper rounds add up).
 *
 *   harvest_perf [--quick] [--ram-mib N] [--dirty-pct 0.1|1|10|100] [--json FILE]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirty.h"
#include "module_client.h"
#include "perf_util.h"
#include "test_util.h"

struct harvest_result {
	double ms;		/* collect + re-protect, in total */
	uint64_t pages;		/* dirty pages reported */
	double dirty_s;		/* how long the guest took to dirty them */
};

static int harvest_run(enum dirty_backend backend, uint64_t ram, double fraction,
		       struct harvest_result *r)
{
	struct vm_config cfg = {
		.nr_vcpus = 2,
		.ram_bytes = ram,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_INCR,
		.guest.max_passes = 1,
		.guest.mem_gpa = GUEST_RAM_GPA,
	};
	struct dirty_options opts = { .backend = backend };
	struct dirty_source *ds = NULL;
	struct dirty_set set;
	struct vm *vm = NULL;
	uint64_t t0;
	int ret;

	cfg.guest.mem_pages = ram / GUEST_PAGE_SIZE * fraction;
	if (cfg.guest.mem_pages < cfg.nr_vcpus)
		cfg.guest.mem_pages = cfg.nr_vcpus;
	ret = dirty_prepare_config(backend, &cfg);
	if (ret < 0)
		return ret;
	ret = vm_create(&cfg, &vm);
	if (!ret)
		ret = dirty_source_open(vm->kv, &opts, &ds);
	if (!ret)
		ret = dirty_set_alloc(vm->kv, &set);
	if (ret)
		goto out;
	/* Whatever setup dirtied (the binary, page tables) is not measured. */
	ret = dirty_source_collect(ds, &set);
	dirty_set_clear(&set);
	ds->stats.harvest_ns = 0;
	t0 = now_ns();
	ret = vm_start(vm);
	if (!ret)
		ret = vm_wait_done(vm, 600000);
	r->dirty_s = (now_ns() - t0) / 1e9;
	if (!ret && vm_failure(vm))
		ret = -EIO;
	if (!ret)
		ret = dirty_source_collect(ds, &set);
	if (ret >= 0) {
		r->pages = dirty_set_count(&set);
		r->ms = ds->stats.harvest_ns / 1e6;
		ret = 0;
	}
	dirty_set_free(&set);
out:
	if (vm)
		vm_stop(vm);
	dirty_source_close(ds);
	vm_destroy(vm);
	return ret;
}

int main(int argc, char **argv)
{
	static const enum dirty_backend backends[] = {
		DIRTY_BITMAP, DIRTY_BITMAP_MANUAL, DIRTY_RING, DIRTY_MODULE,
	};
	static const double fractions[] = { 0.001, 0.01, 0.1, 1.0 };
	uint64_t rams[] = { 1ULL << 30, 4ULL << 30, 16ULL << 30 };
	unsigned int nr_rams = 3, b, m, f, nr_fractions = 4, first_fraction = 0;
	struct harvest_result base[3][4];
	struct perf_json json;
	const char *no_module = NULL;
	bool quick = false;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--ram-mib") && i + 1 < argc) {
			/* One small size, for the emulated machines the module runs in. */
			rams[0] = strtoull(argv[++i], NULL, 0) << 20;
			nr_rams = 1;
		} else if (!strcmp(argv[i], "--dirty-pct") && i + 1 < argc) {
			double pct = atof(argv[++i]);

			for (f = 0; f < 4; f++)
				if (fractions[f] * 100 - pct < 1e-9 && pct - fractions[f] * 100 < 1e-9)
					break;
			if (f == 4) {
				fprintf(stderr, "harvest_perf: --dirty-pct %s: expected 0.1, 1, 10 or 100\n",
					argv[i]);
				return 2;
			}
			first_fraction = f;
			nr_fractions = 1;
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			i++;
		} else {
			fprintf(stderr, "usage: harvest_perf [--quick] [--ram-mib N] [--dirty-pct 0.1|1|10|100] [--json FILE]\n");
			return 2;
		}
	}
	if (quick)
		nr_rams = 1;
	kmod_present(&no_module);
	if (perf_json_open(&json, argc, argv, "harvest"))
		return 2;
	printf("Harvest cost: collect + re-protect after the guest dirtied a fraction of its RAM once\n");
	printf("(baseline: the bitmap source, KVM_GET_DIRTY_LOG, in this run; published\n"
	       " dirty_log_perf_test runs: get-dirty-log ~10 us/GiB, clear-dirty-log 8-12 ms/GiB)\n\n");
	printf("%-14s %6s %8s %10s %10s %10s %10s %9s\n", "source", "RAM", "dirty", "pages",
	       "total ms", "ns/page", "ms/GiB", "vs bitmap");
	for (b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		if (backends[b] == DIRTY_MODULE && no_module) {
			printf("%-14s  skipped: %s\n", "module", no_module);
			continue;
		}
		for (m = 0; m < nr_rams; m++) {
			for (f = first_fraction; f < first_fraction + nr_fractions; f++) {
				struct harvest_result r = { 0 };
				double ns_page, ms_gib, ratio;
				char ram[16], frac[16];
				int ret;

				ret = harvest_run(backends[b], rams[m], fractions[f], &r);
				snprintf(ram, sizeof(ram), "%lluM", (unsigned long long)(rams[m] >> 20));
				snprintf(frac, sizeof(frac), "%g%%", fractions[f] * 100);
				if (ret) {
					printf("%-14s %6s %8s  failed: %s\n", dirty_backend_name(backends[b]),
					       ram, frac, strerror(-ret));
					return 1;
				}
				if (b == 0)
					base[m][f] = r;
				ns_page = r.ms * 1e6 / (r.pages ? r.pages : 1);
				ms_gib = r.ms / ((double)rams[m] / (1 << 30));
				ratio = base[m][f].ms > 0 ? r.ms / base[m][f].ms : 0;
				printf("%-14s %6s %8s %10llu %10.3f %10.1f %10.3f %8.2fx\n",
				       dirty_backend_name(backends[b]), ram, frac,
				       (unsigned long long)r.pages, r.ms, ns_page, ms_gib, ratio);
				fflush(stdout);
				perf_json_begin(&json);
				perf_json_str(&json, "source", dirty_backend_name(backends[b]));
				perf_json_num(&json, "ram_gib", (double)rams[m] / (1 << 30));
				perf_json_num(&json, "dirty_fraction", fractions[f]);
				perf_json_num(&json, "dirty_pages", r.pages);
				perf_json_num(&json, "harvest_ms", r.ms);
				perf_json_num(&json, "ns_per_dirty_page", ns_page);
				perf_json_num(&json, "ms_per_gib", ms_gib);
				perf_json_num(&json, "ratio_vs_bitmap", ratio);
				perf_json_num(&json, "guest_dirty_seconds", r.dirty_s);
				perf_json_end(&json);
			}
		}
	}
	return perf_json_close(&json) ? 1 : 0;
}
