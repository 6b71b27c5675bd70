// SPDX-License-Identifier: GPL-2.0-only
/*
 * The dirtyrate BPF programs and their loader against the built-in VMM's
 * `rate` guest, which writes a known number of fresh pages per second per
 * vCPU and counts every write.  Per vCPU, the BPF count over a window must
 * be within 10% of the guest's own count over the same window (in ring
 * mode from kvm_dirty_ring_push, in bitmap mode from fentry on
 * mark_page_dirty_in_slot where the kernel allows function tracing); two
 * VMs at once, and a VMM in another process, are kept apart; the pinned
 * maps carry BTF and bpftool prints their field names; closing detaches
 * every program, frees every map and removes the pins.  Only what a kernel
 * lacks is skipped, with the loader's reason.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "bpf_rates.h"
#include "cli_util.h"
#include "dirty.h"
#include "kselftest_harness.h"
#include "log.h"
#include "test_util.h"

#define PIN_DIR			"/sys/fs/bpf/kvmmig"
/*
 * Harvest period.  Each ring reset or bitmap get write-protects the guest's
 * counter and stack pages again: real dirty pages the guest does not count
 * (~4 per harvest), kept near 1% of even a slow (TCG) guest's writes.
 */
#define COLLECT_US		200000
/* Writes per vCPU in a measuring window: ~1-5 s of guest time. */
#define WINDOW_WRITES		10000
/*
 * Each vCPU's slice of guest RAM (256 MiB, touched only as written): large
 * enough that no vCPU comes back to a page during a test.  A page written
 * twice between two harvests is one dirty page, as KVM reports it, but
 * two guest writes: the counts would differ for good reason.
 */
#define SLICE_PAGES		65536ULL
#define WAIT_MS			120000ULL
#define BUSY_WAIT_MS		300000U
#define TOLERANCE_PCT		10

static void quiet_log(int level, const char *msg)
{
}

/* The 6.1 harness runs the test body even after a SKIP in the setup. */
#define RETURN_IF_SKIPPED()	do { if (_metadata->skip) return; } while (0)

struct rate_vm {
	struct vm *vm;
	struct dirty_source *ds;
	struct dirty_set set;
};

static const char *backend_missing(enum dirty_backend b)
{
	if (b == DIRTY_RING && kvm_cap(KVM_CAP_DIRTY_LOG_RING) <= 0 &&
	    kvm_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <= 0)
		return "KVM_CAP_DIRTY_LOG_RING missing";
	return NULL;
}

/* A running `rate` guest under dirty tracking with the given backend. */
static int rate_vm_start(struct rate_vm *rv, enum dirty_backend backend,
			 unsigned int nr_vcpus, uint64_t pages_per_sec)
{
	struct vm_config cfg = {
		.nr_vcpus = nr_vcpus,
		.ram_bytes = nr_vcpus * SLICE_PAGES * GUEST_PAGE_SIZE,
		.nr_slots = 1,
		.guest.workload = WORKLOAD_RATE,
		.guest.pages_per_sec = pages_per_sec,
	};
	/* Harvest only in rate_vm_collect(), every COLLECT_US. */
	struct dirty_options opts = { .backend = backend, .no_reaper = true };
	int err;

	memset(rv, 0, sizeof(*rv));
	err = dirty_prepare_config(backend, &cfg);
	if (err < 0)
		return err;
	err = vm_create(&cfg, &rv->vm);
	if (!err)
		err = dirty_source_open(rv->vm->kv, &opts, &rv->ds);
	if (!err)
		err = dirty_set_alloc(rv->vm->kv, &rv->set);
	if (!err)
		err = vm_start(rv->vm);
	return err;
}

static void rate_vm_stop(struct rate_vm *rv)
{
	if (rv->vm)
		vm_stop(rv->vm);
	dirty_source_close(rv->ds);
	dirty_set_free(&rv->set);
	vm_destroy(rv->vm);
	memset(rv, 0, sizeof(*rv));
}

/* Collect as a migration would: bitmap pages must be write-protected again. */
static int rate_vm_collect(struct rate_vm *rv)
{
	dirty_set_clear(&rv->set);
	return dirty_source_collect(rv->ds, &rv->set);
}

static uint64_t min_writes_since(struct vm *vm, const uint64_t *start)
{
	uint64_t min = ~0ULL, d;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		d = vm->vcpus[i].area->loops - start[i];
		if (d < min)
			min = d;
	}
	return min;
}

static void loops_read(struct vm *vm, uint64_t *out)
{
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		out[i] = vm->vcpus[i].area->loops;
}

struct window {
	uint64_t loops0[VM_MAX_VCPUS], loops1[VM_MAX_VCPUS];
	struct bpf_rates_vcpu v0[VM_MAX_VCPUS], v1[VM_MAX_VCPUS];
};

/*
 * The guests' counts and the BPF counts at one instant: the guests stand
 * still (out of KVM_RUN) while both are read.  Read one after the other
 * while they ran, a test thread that waited for a core in between (a
 * loaded host: 0.2-0.3 s) saw the guests' writes of that time in one
 * count and not the other, 10% and more of a window.
 */
static void snapshot(struct __test_metadata *_metadata, struct bpf_rates *br,
		     struct rate_vm *rvs, unsigned int nr_vms, uint64_t *const loops[],
		     struct bpf_rates_vcpu *const v[])
{
	unsigned int k;

	for (k = 0; k < nr_vms; k++)
		ASSERT_EQ(vm_pause(rvs[k].vm), 0);
	for (k = 0; k < nr_vms; k++)
		loops_read(rvs[k].vm, loops[k]);
	ASSERT_EQ(bpf_rates_update(br), 0);
	for (k = 0; k < nr_vms; k++) {
		bpf_rates_vm(br, getpid(), rvs[k].vm->fd, v[k], rvs[k].vm->cfg.nr_vcpus);
		ASSERT_EQ(vm_resume(rvs[k].vm), 0);
	}
}

/* Measure until every vCPU of every VM has done WINDOW_WRITES writes. */
static void measure(struct __test_metadata *_metadata, struct bpf_rates *br,
		    struct rate_vm *rvs, struct window *w, unsigned int nr_vms)
{
	uint64_t *loops0[2], *loops1[2];
	struct bpf_rates_vcpu *v0[2], *v1[2];
	uint64_t waited = 0;
	unsigned int k;
	bool done;

	ASSERT_LE(nr_vms, 2U);
	for (k = 0; k < nr_vms; k++) {
		loops0[k] = w[k].loops0;
		loops1[k] = w[k].loops1;
		v0[k] = w[k].v0;
		v1[k] = w[k].v1;
	}
	snapshot(_metadata, br, rvs, nr_vms, loops0, v0);
	do {
		usleep(COLLECT_US);
		waited += COLLECT_US / 1000;
		done = true;
		for (k = 0; k < nr_vms; k++) {
			ASSERT_GE(rate_vm_collect(&rvs[k]), 0);
			ASSERT_EQ(vm_failure(rvs[k].vm), NULL);
			done &= min_writes_since(rvs[k].vm, w[k].loops0) >= WINDOW_WRITES;
		}
		ASSERT_LT(waited, WAIT_MS) {
			TH_LOG("the guests did not make %d writes per vCPU", WINDOW_WRITES);
		}
	} while (!done);
	snapshot(_metadata, br, rvs, nr_vms, loops1, v1);
}

/* Per vCPU: BPF count and rate within TOLERANCE_PCT of the guest's. */
static void check_accuracy(struct __test_metadata *_metadata, struct bpf_rates *br,
			   const char *what, struct vm *vm, const struct window *w)
{
	double secs = bpf_rates_interval(br), guest_rate, err_pct;
	uint64_t guest, seen;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		guest = w->loops1[i] - w->loops0[i];
		seen = w->v1[i].dirty_pages - w->v0[i].dirty_pages;
		guest_rate = guest / secs;
		err_pct = 100.0 * ((double)seen - guest) / guest;
		TH_LOG("%s vCPU %u: guest %lu writes (%.0f/s), BPF %lu pages (%.0f/s, %lu events): %+.2f%%",
		       what, i, guest, guest_rate, seen, w->v1[i].pages_per_sec,
		       w->v1[i].dirty_events - w->v0[i].dirty_events, err_pct);
		ASSERT_GT(guest, 0ULL);
		ASSERT_EQ(vm->vcpus[i].area->passes, 0ULL) {
			TH_LOG("vCPU %u went round its slice: raise SLICE_PAGES", i);
		}
		if (i == 0)
			TH_LOG("%s: %lu marks outside known vCPU threads, %lu events missed by the kernel",
			       what, bpf_rates_unattributed(br), bpf_rates_misses(br));
		ASSERT_LE(seen * 100, guest * (100 + TOLERANCE_PCT));
		ASSERT_GE(seen * 100, guest * (100 - TOLERANCE_PCT));
		ASSERT_LE(w->v1[i].pages_per_sec, guest_rate * (100 + TOLERANCE_PCT) / 100);
		ASSERT_GE(w->v1[i].pages_per_sec, guest_rate * (100 - TOLERANCE_PCT) / 100);
	}
}

/*
 * Wait while another pinned loader (a `kvmmig top`, this test run by
 * someone else) holds /sys/fs/bpf/kvmmig: one pinned loader at a time.
 */
static bool pins_free(void)
{
	struct stat st;
	unsigned int waited = 0;

	while (!stat(PIN_DIR, &st)) {
		if (!waited)
			fprintf(stderr, "# %s exists: waiting for the other loader to exit\n",
				PIN_DIR);
		usleep(200000);
		waited += 200;
		if (waited >= BUSY_WAIT_MS)
			return false;
	}
	return true;
}

static int rates_open(struct bpf_rates **br, pid_t pid, const char *pin_dir)
{
	struct bpf_rates_opts opts = { .pid = pid, .pin_dir = pin_dir };
	unsigned int tries = BUSY_WAIT_MS / 200;
	int ret;

	do {
		ret = bpf_rates_open(&opts, br);
	} while (ret == -EBUSY && --tries && pins_free());
	return ret;
}

static void log_sources(struct __test_metadata *_metadata, struct bpf_rates *br)
{
	const struct bpf_rates_source_info *s;
	int i;

	for (i = 0; i < NR_BPF_RATES_SOURCES; i++) {
		s = bpf_rates_source(br, i);
		TH_LOG("source %-6s %s%s", s->name, s->attached ? s->attached : "unavailable: ",
		       s->attached ? "" : s->why);
	}
}

FIXTURE(rates) {
	struct bpf_rates *br;
	struct rate_vm rv;
};

FIXTURE_VARIANT(rates) {
	enum dirty_backend backend;
	enum bpf_rates_source source;
	unsigned int nr_vcpus;
	uint64_t pages_per_sec;
};

FIXTURE_VARIANT_ADD(rates, ring) { DIRTY_RING, BPF_RATES_RING, 2, 20000 };
FIXTURE_VARIANT_ADD(rates, bitmap) { DIRTY_BITMAP, BPF_RATES_BITMAP, 2, 20000 };

FIXTURE_SETUP(rates)
{
	const struct bpf_rates_source_info *src;
	const char *why = backend_missing(variant->backend);

	if (why)
		SKIP(return, "%s", why);
	ASSERT_EQ(rates_open(&self->br, getpid(), NULL), 0) {
		TH_LOG("bpf_rates_open: %s", kvmmig_last_error());
	}
	log_sources(_metadata, self->br);
	/* Every kernel with a dirty ring has its tracepoint. */
	src = bpf_rates_source(self->br, BPF_RATES_RING);
	ASSERT_NE(src->attached, NULL) {
		TH_LOG("ring source: %s", src->why);
	}
	src = bpf_rates_source(self->br, variant->source);
	if (!src->attached)
		SKIP(return, "%s source unavailable on this kernel: %s", src->name, src->why);
	ASSERT_EQ(rate_vm_start(&self->rv, variant->backend, variant->nr_vcpus,
				variant->pages_per_sec), 0) {
		TH_LOG("rate VM: %s", kvmmig_last_error());
	}
}

FIXTURE_TEARDOWN(rates)
{
	rate_vm_stop(&self->rv);
	bpf_rates_close(self->br);
}

TEST_F(rates, per_vcpu_accuracy)
{
	const struct bpf_rates_source_info *guest_src;
	uint64_t pages[VM_MAX_VCPUS];
	struct window w;
	unsigned int i;

	RETURN_IF_SKIPPED();

	memset(&w, 0, sizeof(w));
	measure(_metadata, self->br, &self->rv, &w, 1);
	check_accuracy(_metadata, self->br, variant->source == BPF_RATES_RING ? "ring" : "bitmap",
		       self->rv.vm, &w);
	/* The engine's view: cumulative pages, read directly, never behind. */
	ASSERT_EQ(bpf_rates_vm_pages(self->br, getpid(), self->rv.vm->fd, pages,
				     variant->nr_vcpus), (int)variant->nr_vcpus);
	for (i = 0; i < variant->nr_vcpus; i++)
		ASSERT_GE(pages[i], w.v1[i].dirty_pages);

	guest_src = bpf_rates_source(self->br, BPF_RATES_GUEST);
	for (i = 0; i < variant->nr_vcpus; i++) {
		const struct bpf_rates_vcpu *v = &w.v1[i];

		if (bpf_rates_source(self->br, BPF_RATES_RUN)->attached) {
			/* The VM started after attach: every KVM_RUN is seen. */
			ASSERT_GT(v->run_ns, 0ULL);
			ASSERT_GT(v->run_pct, 0);
		}
		ASSERT_NE(v->tid, 0U);
		if (!guest_src->attached || !v->exits) {
			TH_LOG("vCPU %u: no guest-mode time: %s", i, guest_src->attached ?
			       "kvm_entry/kvm_exit attached but never fired (KVM emulates this guest)" :
			       guest_src->why);
			continue;
		}
		ASSERT_GT(v->guest_ns, 0ULL);
		ASSERT_LE(v->guest_ns, v->run_ns);
	}
}

TEST_F(rates, histogram)
{
	struct bpf_rates_hist h;
	uint64_t sum, waited = 0;
	unsigned int i, s;

	RETURN_IF_SKIPPED();

	for (i = 0; i < variant->nr_vcpus; i++) {
		/* Wait for a few closed 100 ms intervals. */
		for (;;) {
			ASSERT_GE(rate_vm_collect(&self->rv), 0);
			ASSERT_EQ(vm_failure(self->rv.vm), NULL);
			if (!bpf_rates_hist(self->br, getpid(), self->rv.vm->fd, i, &h) &&
			    h.intervals >= 5)
				break;
			usleep(COLLECT_US);
			waited += COLLECT_US / 1000;
			ASSERT_LT(waited, WAIT_MS);
		}
		ASSERT_EQ(h.interval_ns, 100000000ULL);
		for (sum = 0, s = 0; s < BPF_RATES_HIST_SLOTS; s++)
			sum += h.slots[s];
		ASSERT_EQ(sum, h.intervals);
		/* The guest never stops writing: some interval saw pages. */
		ASSERT_GT(h.intervals, h.slots[0]);
	}
}

/* Two VMs in this process at different rates, measured together. */
FIXTURE(two_vms) {
	struct bpf_rates *br;
	struct rate_vm rv[2];
};

FIXTURE_VARIANT(two_vms) {
	enum dirty_backend backend;
	enum bpf_rates_source source;
};

FIXTURE_VARIANT_ADD(two_vms, ring) { DIRTY_RING, BPF_RATES_RING };
FIXTURE_VARIANT_ADD(two_vms, bitmap) { DIRTY_BITMAP, BPF_RATES_BITMAP };

FIXTURE_SETUP(two_vms)
{
	const struct bpf_rates_source_info *src;
	const char *why = backend_missing(variant->backend);

	if (why)
		SKIP(return, "%s", why);
	ASSERT_EQ(rates_open(&self->br, getpid(), NULL), 0);
	src = bpf_rates_source(self->br, variant->source);
	if (!src->attached)
		SKIP(return, "%s source unavailable on this kernel: %s", src->name, src->why);
	ASSERT_EQ(rate_vm_start(&self->rv[0], variant->backend, 2, 10000), 0);
	ASSERT_EQ(rate_vm_start(&self->rv[1], variant->backend, 1, 25000), 0);
}

FIXTURE_TEARDOWN(two_vms)
{
	rate_vm_stop(&self->rv[0]);
	rate_vm_stop(&self->rv[1]);
	bpf_rates_close(self->br);
}

TEST_F(two_vms, kept_apart)
{
	const struct bpf_rates_vcpu *v;
	struct window w[2];
	unsigned int mine = 0;
	size_t i;

	RETURN_IF_SKIPPED();

	memset(w, 0, sizeof(w));
	ASSERT_NE(self->rv[0].vm->fd, self->rv[1].vm->fd);
	measure(_metadata, self->br, self->rv, w, 2);
	check_accuracy(_metadata, self->br, "VM A", self->rv[0].vm, &w[0]);
	check_accuracy(_metadata, self->br, "VM B", self->rv[1].vm, &w[1]);
	/* Exactly A's two vCPUs and B's one, nothing else of ours. */
	for (i = 0; i < bpf_rates_count(self->br); i++) {
		v = bpf_rates_get(self->br, i);
		if (v->pid != (uint32_t)getpid())
			continue;
		mine++;
		ASSERT_TRUE((v->vm_fd == self->rv[0].vm->fd && v->vcpu < 2) ||
			    (v->vm_fd == self->rv[1].vm->fd && v->vcpu == 0)) {
			TH_LOG("unexpected key vm_fd %d vcpu %u", v->vm_fd, v->vcpu);
		}
	}
	ASSERT_EQ(mine, 3U);
}

/*
 * A VMM in another process: seen by an unfiltered loader (unpinned, so it
 * can run beside the pinned one), invisible to the one filtered by our pid.
 */
TEST(pid_filter)
{
	struct bpf_rates *mine = NULL, *all = NULL;
	struct bpf_rates_vcpu child_v;
	struct rate_vm rv;
	bool child_seen = false, child_in_mine = false;
	const char *why = backend_missing(DIRTY_RING);
	int pipefd[2], status, child_fd = -1;
	uint64_t start[1];
	pid_t child;
	size_t i;

	if (why)
		SKIP(return, "%s", why);
	ASSERT_EQ(rates_open(&mine, getpid(), NULL), 0);
	ASSERT_EQ(rates_open(&all, 0, ""), 0);
	ASSERT_STREQ(bpf_rates_pin_dir(all), "");
	ASSERT_EQ(pipe(pipefd), 0);
	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		/* Run a guest until it made WINDOW_WRITES writes; report its fd. */
		close(pipefd[0]);
		if (rate_vm_start(&rv, DIRTY_RING, 1, 20000))
			_exit(1);
		loops_read(rv.vm, start);
		while (min_writes_since(rv.vm, start) < WINDOW_WRITES && !vm_failure(rv.vm)) {
			usleep(COLLECT_US);
			rate_vm_collect(&rv);
		}
		if (write(pipefd[1], &rv.vm->fd, sizeof(int)) != sizeof(int))
			_exit(1);
		/* Stay alive so the parent can read the maps (dead pids are pruned). */
		usleep(1000000);
		_exit(vm_failure(rv.vm) ? 1 : 0);
	}
	close(pipefd[1]);
	ASSERT_EQ(read(pipefd[0], &child_fd, sizeof(int)), (ssize_t)sizeof(int));
	close(pipefd[0]);
	ASSERT_EQ(bpf_rates_update(all), 0);
	ASSERT_EQ(bpf_rates_update(mine), 0);
	ASSERT_EQ(bpf_rates_vm(all, child, child_fd, &child_v, 1), 1);
	child_seen = child_v.dirty_pages >= WINDOW_WRITES * (100 - TOLERANCE_PCT) / 100;
	for (i = 0; i < bpf_rates_count(mine); i++)
		child_in_mine |= bpf_rates_get(mine, i)->pid == (uint32_t)child;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	bpf_rates_close(mine);
	bpf_rates_close(all);
	TH_LOG("child pid %d vm fd %d: %lu pages seen unfiltered", child, child_fd,
	       child_v.dirty_pages);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_TRUE(child_seen);
	ASSERT_FALSE(child_in_mine);
}

static bool btf_has_members(const struct btf *btf, uint32_t type_id, const char *name,
			    const char *const *members)
{
	const struct btf_type *t = btf__type_by_id(btf, type_id);
	const struct btf_member *m;
	const char *const *want;
	bool found;
	int i;

	if (!t || !btf_is_struct(t) || strcmp(btf__name_by_offset(btf, t->name_off), name))
		return false;
	for (want = members; *want; want++) {
		found = false;
		m = btf_members(t);
		for (i = 0; i < btf_vlen(t); i++, m++)
			found |= !strcmp(btf__name_by_offset(btf, m->name_off), *want);
		if (!found)
			return false;
	}
	return true;
}

static const char *const key_fields[] = { "pid", "vm_fd", "vcpu", NULL };
static const char *const vcpu_fields[] = {
	"ring_pages", "ring_pushes", "bitmap_pages", "run_ns", "guest_ns", "exits", "tid", NULL,
};
static const char *const hist_fields[] = { "interval_ns", "intervals", "slots", NULL };

/* A pinned map as a fresh process sees it: BTF key and value, by name. */
static void check_pinned_btf(struct __test_metadata *_metadata, const char *path,
			     const char *value_name, const char *const *value_fields)
{
	struct bpf_map_info info = {};
	uint32_t len = sizeof(info);
	struct btf *btf;
	int fd;

	fd = bpf_obj_get(path);
	ASSERT_GE(fd, 0) {
		TH_LOG("%s: %s", path, strerror(errno));
	}
	ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	ASSERT_NE(info.btf_id, 0U);
	btf = btf__load_from_kernel_by_id(info.btf_id);
	ASSERT_NE(btf, NULL);
	EXPECT_TRUE(btf_has_members(btf, info.btf_key_type_id, "dirtyrate_key", key_fields));
	EXPECT_TRUE(btf_has_members(btf, info.btf_value_type_id, value_name, value_fields));
	btf__free(btf);
}

FIXTURE(pinned) {
	struct bpf_rates *br;
	struct rate_vm rv;
};

static bool hist_closed(struct bpf_rates *br, struct vm *vm)
{
	struct bpf_rates_hist h;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (bpf_rates_hist(br, getpid(), vm->fd, i, &h) || !h.intervals)
			return false;
	return true;
}

FIXTURE_SETUP(pinned)
{
	const char *why = backend_missing(DIRTY_RING);
	uint64_t start[2], waited = 0;

	if (why)
		SKIP(return, "%s", why);
	ASSERT_EQ(rates_open(&self->br, getpid(), NULL), 0);
	ASSERT_STREQ(bpf_rates_pin_dir(self->br), PIN_DIR);
	ASSERT_EQ(rate_vm_start(&self->rv, DIRTY_RING, 2, 20000), 0);
	loops_read(self->rv.vm, start);
	/* Until each vCPU wrote and closed a histogram interval. */
	while (min_writes_since(self->rv.vm, start) < 1000 || !hist_closed(self->br, self->rv.vm)) {
		ASSERT_EQ(vm_failure(self->rv.vm), NULL);
		ASSERT_GE(rate_vm_collect(&self->rv), 0);
		usleep(COLLECT_US);
		waited += COLLECT_US / 1000;
		ASSERT_LT(waited, WAIT_MS);
	}
}

FIXTURE_TEARDOWN(pinned)
{
	rate_vm_stop(&self->rv);
	bpf_rates_close(self->br);
}

TEST_F(pinned, btf_names)
{
	RETURN_IF_SKIPPED();
	check_pinned_btf(_metadata, PIN_DIR "/vcpu_stats", "dirtyrate_vcpu", vcpu_fields);
	check_pinned_btf(_metadata, PIN_DIR "/dirty_hist", "dirtyrate_hist", hist_fields);
}

static char *run_capture(const char *cmd)
{
	size_t len = 0, cap = 1 << 16, n;
	char *out = malloc(cap);
	FILE *p;

	p = popen(cmd, "r");
	if (!p || !out) {
		free(out);
		if (p)
			pclose(p);
		return NULL;
	}
	while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 2) {
			char *bigger = realloc(out, cap * 2);

			if (!bigger)
				break;
			out = bigger;
			cap *= 2;
		}
	}
	out[len] = '\0';
	if (pclose(p)) {
		free(out);
		return NULL;
	}
	return out;
}

TEST_F(pinned, bpftool_dump)
{
	char cmd[256], want[128], *out;
	const char *const *f;
	unsigned int i;

	RETURN_IF_SKIPPED();

	if (system("command -v bpftool >/dev/null 2>&1"))
		SKIP(return, "bpftool is not installed here (Debian package bpftool)");
	snprintf(cmd, sizeof(cmd), "bpftool -j map dump pinned %s/vcpu_stats", PIN_DIR);
	out = run_capture(cmd);
	ASSERT_NE(out, NULL) {
		TH_LOG("%s failed", cmd);
	}
	for (i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "\"key\":{\"pid\":%d,\"vm_fd\":%d,\"vcpu\":%u,",
			 getpid(), self->rv.vm->fd, i);
		EXPECT_NE(strstr(out, want), NULL) {
			TH_LOG("no %s in: %.400s", want, out);
		}
	}
	for (f = vcpu_fields; *f; f++) {
		snprintf(want, sizeof(want), "\"%s\":", *f);
		EXPECT_NE(strstr(out, want), NULL) {
			TH_LOG("no field %s in: %.400s", *f, out);
		}
	}
	free(out);
	snprintf(cmd, sizeof(cmd), "bpftool map dump pinned %s/dirty_hist", PIN_DIR);
	out = run_capture(cmd);
	ASSERT_NE(out, NULL);
	EXPECT_NE(strstr(out, "\"slots\": ["), NULL) {
		TH_LOG("no slots array in: %.400s", out);
	}
	free(out);
}

static bool obj_gone(int (*get_fd)(uint32_t), const uint32_t *ids, unsigned int n)
{
	unsigned int i;
	int fd;

	for (i = 0; i < n; i++) {
		fd = get_fd(ids[i]);
		if (fd >= 0) {
			close(fd);
			return false;
		}
	}
	return true;
}

static int prog_fd_by_id(uint32_t id)
{
	return bpf_prog_get_fd_by_id(id);
}

static int map_fd_by_id(uint32_t id)
{
	return bpf_map_get_fd_by_id(id);
}

/* Close while a guest runs: no pin, program or map survives (freeing may
 * wait for an RCU grace period, so poll). */
TEST(detach_unpin)
{
	uint32_t map_ids[16], prog_ids[16];
	unsigned int nm, np, waited = 0;
	struct bpf_rates *br;
	struct rate_vm rv;
	struct stat st;
	uint64_t pages;

	if (backend_missing(DIRTY_RING))
		SKIP(return, "%s", backend_missing(DIRTY_RING));
	ASSERT_EQ(rates_open(&br, getpid(), NULL), 0);
	ASSERT_EQ(bpf_rates_ids(br, map_ids, 16, prog_ids, 16, &nm, &np), 0);
	TH_LOG("%u maps, %u programs attached", nm, np);
	ASSERT_GE(np, 1U);
	ASSERT_EQ(stat(PIN_DIR "/vcpu_stats", &st), 0);
	ASSERT_EQ(stat(PIN_DIR "/dirty_hist", &st), 0);
	ASSERT_EQ(rate_vm_start(&rv, DIRTY_RING, 1, 20000), 0);
	usleep(200000);
	ASSERT_EQ(bpf_rates_update(br), 0);
	pages = bpf_rates_count(br) ? bpf_rates_get(br, 0)->dirty_pages : 0;
	TH_LOG("%lu pages counted before close", pages);
	bpf_rates_close(br);

	EXPECT_EQ(stat(PIN_DIR, &st), -1);
	EXPECT_EQ(errno, ENOENT);
	while (!obj_gone(prog_fd_by_id, prog_ids, np) || !obj_gone(map_fd_by_id, map_ids, nm)) {
		usleep(10000);
		waited += 10;
		ASSERT_LT(waited, 30000U) {
			TH_LOG("BPF programs or maps still alive 30 s after close");
		}
	}
	/* The guest goes on undisturbed. */
	usleep(100000);
	ASSERT_EQ(rate_vm_collect(&rv) >= 0, true);
	ASSERT_EQ(vm_failure(rv.vm), NULL);
	rate_vm_stop(&rv);
}

/* A second pinned loader is refused while one runs, and works after. */
TEST(second_loader_busy)
{
	struct bpf_rates *a, *b = NULL;

	ASSERT_EQ(rates_open(&a, getpid(), NULL), 0);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	EXPECT_EQ(bpf_rates_open(&(struct bpf_rates_opts){ .pid = getpid() }, &b), -EBUSY);
	TH_LOG("refused: %s", kvmmig_last_error());
	bpf_rates_close(a);
	ASSERT_EQ(rates_open(&b, getpid(), NULL), 0);
	bpf_rates_close(b);
}

/* Pins left by a loader that was killed are replaced, not an error. */
TEST(stale_pin_replaced)
{
	struct bpf_rates *br;
	struct stat st;
	int fd;

	ASSERT_TRUE(pins_free());
	mkdir(PIN_DIR, 0700);
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, "vcpu_stats", 4, 4, 1, NULL);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(bpf_obj_pin(fd, PIN_DIR "/vcpu_stats"), 0);
	close(fd);
	ASSERT_EQ(rates_open(&br, getpid(), NULL), 0);
	bpf_rates_close(br);
	EXPECT_EQ(stat(PIN_DIR, &st), -1);
}

/* Wait (up to WAIT_MS) until @path exists or @c has ended. */
static bool pin_appears(struct cli_child *c, const char *path)
{
	unsigned int waited;
	struct stat st;

	for (waited = 0; waited < WAIT_MS; waited += 50) {
		if (!stat(path, &st))
			return true;
		if (!cli_wait(c, 50))
			return false;
	}
	return false;
}

/*
 * `kvmmig top` killed with SIGKILL leaves its pins behind; the next one
 * starts, replaces them and says so.  A live one is still refused.
 */
TEST(top_killed_then_restarted)
{
	static const char *const top[] = { "top", "-d", "0.2", NULL };
	static const char *const once[] = { "top", "--once", "-d", "0.1", NULL };
	struct cli_child live;
	char err[4096];
	struct stat st;

	ASSERT_TRUE(pins_free());
	ASSERT_EQ(cli_start(&live, top), 0);
	ASSERT_TRUE(pin_appears(&live, PIN_DIR "/vcpu_stats")) {
		cli_wait(&live, 0);
		TH_LOG("top did not pin its maps: %s", cli_output(live.err, err, sizeof(err)));
		cli_end(&live);
	}

	/* A second top while the first runs: refused, and says why. */
	EXPECT_EQ(cli_run(once, WAIT_MS, err, sizeof(err)), 1);
	EXPECT_NE(strstr(err, "in use by another running kvmmig top"), NULL)
		TH_LOG("second top said: %s", err);

	ASSERT_EQ(kill(live.pid, SIGKILL), 0);
	ASSERT_EQ(cli_wait(&live, WAIT_MS), 0);
	ASSERT_TRUE(WIFSIGNALED(live.status));
	cli_end(&live);
	/* What the killed top left: the case under test. */
	ASSERT_EQ(stat(PIN_DIR "/vcpu_stats", &st), 0);

	EXPECT_EQ(cli_run(once, WAIT_MS, err, sizeof(err)), 0)
		TH_LOG("top after a killed one said: %s", err);
	EXPECT_NE(strstr(err, "replaced stale pins in " PIN_DIR), NULL)
		TH_LOG("top after a killed one said: %s", err);
	EXPECT_EQ(stat(PIN_DIR, &st), -1);
}

TEST_HARNESS_MAIN
