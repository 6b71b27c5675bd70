// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig run` and `kvmmig demo`: run a built-in guest under dirty tracking
 * and show, every interval, how fast each vCPU dirties memory: pages the
 * dirty source reported (per vCPU where the backend knows, as the ring and
 * the module do) next to the writes the guest itself counted.  On a
 * terminal the table is redrawn in place; otherwise, or with --json, one
 * record per interval.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cancel.h"
#include "commands.h"
#include "dirty.h"
#include "json.h"
#include "log.h"
#include "opts.h"

struct run_env {
	struct guest_opts guest;
	uint64_t seconds;
	uint64_t interval_ms;
	bool json;
	bool live;		/* redraw in place (stdout is a terminal) */
};

/*
 * SIGINT or SIGTERM ends the run.  volatile sig_atomic_t, the type C
 * lets a handler store to; accessed atomically (cancel.h) because the
 * handler may run on any thread of the process, not only the reader.
 */
static volatile sig_atomic_t run_interrupted;

static void run_on_sigint(int sig)
{
	kvmmig_cancel_set(&run_interrupted, 1);
}

static void print_header(const struct run_env *env, struct dirty_source *ds)
{
	const struct vm_config *c = &env->guest.cfg;

	if (env->json) {
		struct json_writer w;

		json_event_begin(&w, stdout, "start");
		json_key_str(&w, "workload", workload_name(c->guest.workload));
		json_key_u64(&w, "vcpus", c->nr_vcpus);
		json_key_u64(&w, "ram_bytes", c->ram_bytes);
		json_key_u64(&w, "slots", c->nr_slots);
		json_key_str(&w, "dirty_backend", ds->ops->name);
		json_line_end(&w);
		return;
	}
	printf("(per vCPU: pages it dirtied, counted again each time a page is dirtied after\n"
	       " being collected; guest ops: writes, or loop iterations for compute)\n");
	printf("guest: %u vCPUs, %llu MiB in %u slot(s), workload %s; dirty tracking: %s backend\n",
	       c->nr_vcpus, (unsigned long long)(c->ram_bytes >> 20), c->nr_slots,
	       workload_name(c->guest.workload), ds->ops->name);
}

/* Per-vCPU dirty rates are null when @set has none (the bitmap backends). */
static void print_interval_json(struct vm *vm, struct dirty_set *set, uint64_t dirty,
				const uint64_t *writes, double dt, double t)
{
	struct json_writer w;
	unsigned int i;

	json_event_begin(&w, stdout, "interval");
	json_key_double(&w, "t", t, 3);
	json_key_double(&w, "dirty_pages_per_sec", dirty / dt, 0);
	json_key(&w, "vcpus");
	json_array_begin(&w);
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		json_object_begin(&w);
		json_key_u64(&w, "vcpu", i);
		json_key(&w, "dirty_pages_per_sec");
		if (set)
			json_double(&w, set->vcpu_pages[i] / dt, 0);
		else
			json_null(&w);
		json_key_double(&w, "guest_writes_per_sec", writes[i] / dt, 0);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_line_end(&w);
}

/* One interval's table: per vCPU, dirty pages/s and MB/s, guest writes/s. */
static void print_interval(const struct run_env *env, struct vm *vm, struct dirty_set *set,
			   uint64_t dirty, const uint64_t *writes, double dt, double t,
			   bool per_vcpu, bool redraw)
{
	const char *eol = env->live ? "\033[K\n" : "\n";
	unsigned int i, n = vm->cfg.nr_vcpus;

	if (env->json) {
		print_interval_json(vm, per_vcpu ? set : NULL, dirty, writes, dt, t);
		return;
	}
	if (redraw)
		printf("\033[%uA", n + 2);
	printf("%6.1fs  distinct pages dirtied %10.0f/s %9.1f MB/s%s", t, dirty / dt,
	       dirty * GUEST_PAGE_SIZE / dt / 1e6, eol);
	printf("  vCPU  dirty pages/s    dirty MB/s    guest ops/s%s", eol);
	for (i = 0; i < n; i++) {
		if (per_vcpu)
			printf("  %4u %14.0f %13.1f %14.0f%s", i, set->vcpu_pages[i] / dt,
			       set->vcpu_pages[i] * GUEST_PAGE_SIZE / dt / 1e6, writes[i] / dt, eol);
		else
			printf("  %4u %14s %13s %14.0f%s", i, "-", "-", writes[i] / dt, eol);
	}
	fflush(stdout);
}

static int run_loop(const struct run_env *env, struct vm *vm, struct dirty_source *ds)
{
	uint64_t last[VM_MAX_VCPUS] = { 0 }, writes[VM_MAX_VCPUS];
	bool per_vcpu = ds->opts.backend == DIRTY_RING || ds->opts.backend == DIRTY_MODULE;
	double start = now_s(), prev = start, now;
	struct dirty_set set;
	unsigned int i, rounds = 0;
	int ret;

	ret = dirty_set_alloc(vm->kv, &set);
	if (ret)
		return ret;
	while (!kvmmig_cancelled(&run_interrupted) && (now = now_s()) - start < env->seconds) {
		usleep(env->interval_ms * 1000);
		dirty_set_clear(&set);
		ret = dirty_source_collect(ds, &set);
		if (ret < 0)
			break;
		now = now_s();
		for (i = 0; i < vm->cfg.nr_vcpus; i++) {
			uint64_t l = vm->vcpus[i].area->loops;

			writes[i] = l - last[i];
			last[i] = l;
		}
		print_interval(env, vm, &set, ret, writes, now - prev, now - start, per_vcpu,
			       env->live && rounds++);
		prev = now;
		if (vm_failure(vm)) {
			fprintf(stderr, "kvmmig: the guest failed: %s\n", vm_failure(vm));
			ret = -EIO;
			break;
		}
	}
	dirty_set_free(&set);
	return ret < 0 ? ret : 0;
}

static void print_summary(const struct run_env *env, struct dirty_source *ds, int ret)
{
	const struct dirty_stats *s = &ds->stats;

	if (env->json) {
		struct json_writer w;

		json_event_begin(&w, stdout, "end");
		json_key_str(&w, "status", ret ? "error" : "ok");
		json_key_u64(&w, "collections", s->collections);
		json_key_u64(&w, "pages", s->pages);
		json_key_u64(&w, "ring_full_exits", s->ring_full_exits);
		json_key_u64(&w, "overflows", s->overflows);
		json_line_end(&w);
		return;
	}
	printf("done: %llu collections, %llu dirty pages reported, %llu ring-full exits, %llu ring overflows recovered\n",
	       (unsigned long long)s->collections, (unsigned long long)s->pages,
	       (unsigned long long)s->ring_full_exits, (unsigned long long)s->overflows);
}

static int run_guest(struct run_env *env)
{
	struct dirty_options dopts = { .reap_interval_us = env->guest.reap_us };
	struct dirty_source *ds = NULL;
	struct vm *vm = NULL;
	int backend, ret;

	backend = dirty_prepare_config(env->guest.backend, &env->guest.cfg);
	if (backend < 0)
		return 1;
	dopts.backend = backend;
	ret = vm_create(&env->guest.cfg, &vm);
	if (ret)
		return 1;
	ret = dirty_source_open(vm->kv, &dopts, &ds);
	if (ret)
		goto out;
	signal(SIGINT, run_on_sigint);
	signal(SIGTERM, run_on_sigint);
	print_header(env, ds);
	ret = vm_start(vm);
	if (!ret)
		ret = run_loop(env, vm, ds);
	vm_stop(vm);
	print_summary(env, ds, ret);
out:
	dirty_source_close(ds);
	vm_destroy(vm);
	return ret ? 1 : 0;
}

static const struct option run_options[] = {
	GUEST_OPTS_LONG,
	{ "seconds", required_argument, NULL, 's' },
	{ "interval-ms", required_argument, NULL, 'i' },
	{ "reap-us", required_argument, NULL, 'r' },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void run_usage(const char *name, FILE *f)
{
	fprintf(f, "usage: kvmmig %s [OPTIONS]\n\n"
		"Run a built-in KVM guest under dirty tracking and show per-vCPU dirty rates.\n\n"
		GUEST_OPTS_HELP
		"  --seconds N          how long to run (default 5)\n"
		"  --interval-ms N      collection interval (default 1000)\n"
		"  --reap-us N          ring: how often the reaper harvests and resets the rings,\n"
		"                       100-1000000 us (default 500; a QEMU-like VMM: 1000000)\n"
		"  --json               one JSON record per interval\n"
		"  -v, --verbose        say which backends were chosen and why\n\n"
		"examples:\n"
		"  kvmmig %s --workload incr --ram 2G --vcpus 4 --dirty ring\n"
		"  kvmmig %s --workload rate --pages-per-sec 20000 --seconds 10 --json\n",
		name, name, name);
}

static int run_main(int argc, char **argv, struct run_env *env)
{
	uint64_t v;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", run_options, NULL)) != -1) {
		r = guest_opts_parse(&env->guest, c, optarg);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (c) {
		case 's':
			if (parse_uint("--seconds", optarg, 1, 86400, &env->seconds))
				return 2;
			break;
		case 'i':
			if (parse_uint("--interval-ms", optarg, 10, 60000, &v))
				return 2;
			env->interval_ms = v;
			break;
		case 'r':
			if (parse_uint("--reap-us", optarg, 100, 1000000, &v))
				return 2;
			env->guest.reap_us = v;
			break;
		case 'j':
			env->json = true;
			break;
		case 'v':
			kvmmig_set_log_level(KVMMIG_LOG_INFO);
			break;
		case 'h':
			run_usage(argv[0], stdout);
			return 0;
		default:
			run_usage(argv[0], stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmmig %s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return 2;
	}
	if (guest_opts_check(&env->guest))
		return 2;
	env->live = !env->json && isatty(STDOUT_FILENO);
	return run_guest(env);
}

static void run_env_init(struct run_env *env)
{
	memset(env, 0, sizeof(*env));
	guest_opts_init(&env->guest);
	env->seconds = 5;
	env->interval_ms = 1000;
}

int cmd_run(int argc, char **argv)
{
	struct run_env env;

	run_env_init(&env);
	return run_main(argc, argv, &env);
}
