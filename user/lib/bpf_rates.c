// SPDX-License-Identifier: GPL-2.0-only
/*
 * The loader of the dirtyrate BPF programs (bpf/dirtyrate.bpf.c): probe
 * which sources this kernel allows, load and attach those, pin the maps for
 * bpftool, and turn the maps' cumulative per-vCPU counts into rates.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../../bpf/dirtyrate.h"
#include "bpf/dirtyrate.skel.h"
#include "bpf_rates.h"
#include "clock.h"
#include "log.h"

_Static_assert(BPF_RATES_HIST_SLOTS == DIRTYRATE_HIST_SLOTS, "histogram size");

#define MAX_ALT_PROGS	2
#define BPFFS_ROOT	"/sys/fs/bpf"

/* One way of attaching a source: its programs, all or none. */
struct source_alt {
	const char *via;
	const char *progs[MAX_ALT_PROGS];
};

struct source_desc {
	const char *name;
	const char *lost;		/* what is missing without it */
	struct source_alt alt[2];
};

static const struct source_desc sources[NR_BPF_RATES_SOURCES] = {
	[BPF_RATES_RING] = {
		"ring", "dirty-ring VMs are not counted",
		{ { "tp_btf/kvm_dirty_ring_push+reset", { "ring_push_btf", "ring_reset_btf" } },
		  { "raw_tp/kvm_dirty_ring_push+reset", { "ring_push_raw", "ring_reset_raw" } } },
	},
	[BPF_RATES_BITMAP] = {
		"bitmap", "dirty-bitmap VMs are not counted",
		{ { "fentry/mark_page_dirty_in_slot", { "mark_dirty" } } },
	},
	[BPF_RATES_RUN] = {
		"run", "no time inside KVM_RUN (run %)",
		{ { "tp_btf/sys_enter+sys_exit", { "sys_enter_btf", "sys_exit_btf" } },
		  { "raw_tp/sys_enter+sys_exit", { "sys_enter_raw", "sys_exit_raw" } } },
	},
	[BPF_RATES_GUEST] = {
		"guest", "no time in guest mode (guest %)",
		{ { "tp_btf/kvm_entry+kvm_exit", { "kvm_entry_btf", "kvm_exit_btf" } },
		  { "raw_tp/kvm_entry+kvm_exit", { "kvm_entry_raw", "kvm_exit_raw" } } },
	},
};

struct bpf_rates {
	struct dirtyrate_bpf *skel;
	struct bpf_rates_opts opts;
	struct bpf_rates_source_info src[NR_BPF_RATES_SOURCES];
	const struct source_alt *chosen[NR_BPF_RATES_SOURCES];
	struct bpf_link *links[NR_BPF_RATES_SOURCES][MAX_ALT_PROGS];
	char pin_dir[128];
	bool pinned;
	int lock_fd;			/* the pin folder, flock()ed while pinned */
	unsigned int stale_pins;	/* pins of a dead loader replaced at open */
	uint64_t prev_ns, now_ns;
	struct bpf_rates_vcpu *cur, *prev;
	size_t nr_cur, nr_prev;
};

/*
 * libbpf reports through one global callback: keep its last warning (the
 * reason a probe failed) and print everything only with opts.verbose.
 */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static char print_last[160];
static bool print_verbose;

static int rates_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	va_list copy;
	size_t len;

	/* The first warning is the specific one; later ones say "failed". */
	if (level != LIBBPF_DEBUG && !print_last[0]) {
		va_copy(copy, ap);
		vsnprintf(print_last, sizeof(print_last), fmt, copy);
		va_end(copy);
		if (!strncmp(print_last, "libbpf: ", 8))
			memmove(print_last, print_last + 8, strlen(print_last + 8) + 1);
		len = strlen(print_last);
		while (len && print_last[len - 1] == '\n')
			print_last[--len] = '\0';
	}
	return print_verbose ? vfprintf(stderr, fmt, ap) : 0;
}

static const char *errno_hint(const char *via, int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return strncmp(via, "fentry", 6) ? "this kernel does not permit it" :
		       "this kernel forbids BPF function tracing";
	case ENOENT:
	case ESRCH:
		return "not in this kernel (no such tracepoint or function in its BTF)";
	case EINVAL:
		return "rejected by the verifier or the kernel";
	case EOPNOTSUPP:
	case 524:	/* ENOTSUPP */
		return "not supported by this kernel";
	default:
		return "failed";
	}
}

static bool alt_has(const struct source_alt *alt, const char *prog)
{
	int i;

	for (i = 0; i < MAX_ALT_PROGS; i++)
		if (alt->progs[i] && !strcmp(alt->progs[i], prog))
			return true;
	return false;
}

/* Open the skeleton with only the programs of the given alternatives. */
static struct dirtyrate_bpf *skel_open(const struct source_alt *const *alts, int nr_alts,
				       uint32_t max_entries)
{
	struct dirtyrate_bpf *skel;
	struct bpf_program *prog;
	struct bpf_map *map;
	bool on;
	int i;

	skel = dirtyrate_bpf__open();
	if (!skel)
		return NULL;
	bpf_object__for_each_program(prog, skel->obj) {
		on = false;
		for (i = 0; i < nr_alts; i++)
			on |= alts[i] && alt_has(alts[i], bpf_program__name(prog));
		bpf_program__set_autoload(prog, on);
	}
	if (max_entries)
		bpf_object__for_each_map(map, skel->obj)
			if (bpf_map__type(map) == BPF_MAP_TYPE_HASH ||
			    bpf_map__type(map) == BPF_MAP_TYPE_LRU_HASH)
				bpf_map__set_max_entries(map, max_entries);
	return skel;
}

static int alt_attach(struct dirtyrate_bpf *skel, const struct source_alt *alt,
		      struct bpf_link **links)
{
	struct bpf_program *prog;
	int i, err;

	for (i = 0; i < MAX_ALT_PROGS && alt->progs[i]; i++) {
		prog = bpf_object__find_program_by_name(skel->obj, alt->progs[i]);
		if (!prog)
			return -ENOENT;
		links[i] = bpf_program__attach(prog);
		if (!links[i]) {
			err = -errno;
			links[i] = NULL;
			return err ? err : -EINVAL;
		}
	}
	return 0;
}

static void links_destroy(struct bpf_link **links, int nr)
{
	int i;

	for (i = 0; i < nr; i++) {
		bpf_link__destroy(links[i]);
		links[i] = NULL;
	}
}

/*
 * Does this kernel allow one alternative?  tp_btf and fentry programs name
 * their target at load, so loading answers; a raw_tp finds its tracepoint
 * only when attached.  Attaching fentry patches a function KVM may be
 * running on every CPU: done once, for real, not for a probe.
 */
static int alt_probe(const struct source_alt *alt)
{
	struct bpf_link *links[MAX_ALT_PROGS] = {};
	struct dirtyrate_bpf *skel;
	int err;

	print_last[0] = '\0';
	skel = skel_open(&alt, 1, 1);
	if (!skel)
		return -errno;
	err = dirtyrate_bpf__load(skel);
	if (!err && !strncmp(alt->via, "raw_tp/", 7))
		err = alt_attach(skel, alt, links);
	links_destroy(links, MAX_ALT_PROGS);
	dirtyrate_bpf__destroy(skel);
	return err;
}

static void source_probe(struct bpf_rates *br, enum bpf_rates_source s)
{
	const struct source_desc *desc = &sources[s];
	struct bpf_rates_source_info *info = &br->src[s];
	size_t len = 0;
	int i, err;

	info->name = desc->name;
	if (br->opts.skip & (1U << s)) {
		info->err = -ECANCELED;
		snprintf(info->why, sizeof(info->why), "not requested; %s", desc->lost);
		return;
	}
	for (i = 0; i < 2 && desc->alt[i].via; i++) {
		const char *via = desc->alt[i].via;

		err = alt_probe(&desc->alt[i]);
		if (!err) {
			br->chosen[s] = &desc->alt[i];
			info->attached = via;
			info->err = 0;
			info->why[0] = '\0';
			return;
		}
		info->err = err;
		len += snprintf(info->why + len, sizeof(info->why) - len, "%s: %s, %s%s%s; ",
				via, strerror(-err), errno_hint(via, -err),
				print_last[0] ? ": " : "", print_last);
		if (len >= sizeof(info->why))
			len = sizeof(info->why) - 1;
	}
	snprintf(info->why + len, sizeof(info->why) - len, "%s", desc->lost);
	kvmmig_dbg("bpf: %s source unavailable: %s", desc->name, info->why);
}

static int map_id_of(int fd, uint32_t *id)
{
	struct bpf_map_info info = {};
	uint32_t len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	*id = info.id;
	return 0;
}

/* Called with the pin folder locked: a pin found there is a dead loader's. */
static int pin_map(struct bpf_rates *br, struct bpf_map *map)
{
	char path[256];
	int fd, err;

	snprintf(path, sizeof(path), "%s/%s", br->pin_dir, bpf_map__name(map));
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		close(fd);
		kvmmig_dbg("bpf: replacing stale pin %s", path);
		if (unlink(path) && errno != ENOENT)
			return kvmmig_ioctl_err("unlink of a stale BPF pin", errno);
		br->stale_pins++;
	} else if (errno != ENOENT) {
		err = errno;
		kvmmig_err("%s exists but is not a usable BPF object: %s", path, strerror(err));
		return -err;
	}
	err = bpf_map__pin(map, path);
	if (err) {
		kvmmig_err("pinning BPF map at %s failed: %s (is bpffs mounted at /sys/fs/bpf?)",
			   path, strerror(-err));
		return err;
	}
	return 0;
}

/* The folder goes before the lock, so a waiting loader finds it gone. */
static void unpin_maps(struct bpf_rates *br)
{
	if (br->pinned) {
		bpf_map__unpin(br->skel->maps.vcpu_stats, NULL);
		bpf_map__unpin(br->skel->maps.dirty_hist, NULL);
		if (rmdir(br->pin_dir) && errno != ENOTEMPTY && errno != ENOENT)
			kvmmig_dbg("bpf: rmdir %s: %s", br->pin_dir, strerror(errno));
		br->pinned = false;
	}
	if (br->lock_fd >= 0)
		close(br->lock_fd);
	br->lock_fd = -1;
}

/* Pins need bpffs at /sys/fs/bpf; mount it there if nothing is (as bpftool does). */
static void bpffs_mount(const char *pin_dir)
{
	struct statfs st;

	if (strncmp(pin_dir, BPFFS_ROOT "/", sizeof(BPFFS_ROOT)))
		return;
	if (statfs(BPFFS_ROOT, &st) || st.f_type == BPF_FS_MAGIC)
		return;
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700"))
		kvmmig_dbg("bpf: mounting bpffs at %s failed: %s", BPFFS_ROOT, strerror(errno));
	else
		kvmmig_info("bpf: mounted bpffs at %s", BPFFS_ROOT);
}

static int pin_dir_open(const char *dir)
{
	int fd, err;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		err = errno;
		kvmmig_err("cannot create %s: %s (mount bpffs: mount -t bpf bpf /sys/fs/bpf)",
			   dir, strerror(err));
		return -err;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* ENOENT: its last user removed it just now; the caller tries again. */
	if (fd < 0 && errno != ENOENT) {
		err = errno;
		kvmmig_err("cannot open %s: %s", dir, strerror(err));
		return -err;
	}
	return fd < 0 ? -ENOENT : fd;
}

/*
 * One pinned loader at a time: each holds an flock() on the pin folder for
 * as long as it lives.  The kernel drops the lock when the holder dies,
 * however it dies (SIGKILL included) and before its parent can reap it, so
 * a free lock proves that the pins in the folder are stale.  Asking instead
 * whether a loaded program still uses the pinned map (as this loader did)
 * races with the kernel, which frees a dead loader's programs only after
 * an RCU grace period: a `kvmmig top` started right after a killed one was
 * refused every time.  Looking for the map's id in /proc/PID/fdinfo misses
 * loaders in other pid namespaces and counts a passing `bpftool map dump`
 * as a loader; a pinned link would keep the programs running after their
 * loader died.  bpffs holds no regular files, so the lock is on the folder.
 */
static int pin_dir_lock(struct bpf_rates *br)
{
	struct stat held, now;
	int tries, fd, err;

	for (tries = 0; tries < 8; tries++) {
		fd = pin_dir_open(br->pin_dir);
		if (fd == -ENOENT)
			continue;
		if (fd < 0)
			return fd;
		err = flock(fd, LOCK_EX | LOCK_NB) ? errno : 0;
		/*
		 * The holder removes the folder before it lets go: a removed
		 * one is retried, and only the one at the path is ours.
		 */
		if (!err && !fstat(fd, &held) && !stat(br->pin_dir, &now) &&
		    now.st_ino == held.st_ino && now.st_dev == held.st_dev) {
			br->lock_fd = fd;
			return 0;
		}
		if (err == EWOULDBLOCK && !fstat(fd, &held) && held.st_nlink) {
			close(fd);
			kvmmig_err("%s is in use by another running kvmmig top or dirty-rate loader (it holds the folder's lock); stop it first",
				   br->pin_dir);
			return -EBUSY;
		}
		close(fd);
		if (err && err != EWOULDBLOCK) {
			kvmmig_err("cannot lock %s: %s", br->pin_dir, strerror(err));
			return -err;
		}
	}
	kvmmig_err("%s keeps being removed and created by other loaders: gave up after %d tries",
		   br->pin_dir, tries);
	return -EBUSY;
}

static int pin_maps(struct bpf_rates *br)
{
	int err;

	if (!br->pin_dir[0])
		return 0;
	bpffs_mount(br->pin_dir);
	err = pin_dir_lock(br);
	if (err)
		return err;
	br->pinned = true;
	err = pin_map(br, br->skel->maps.vcpu_stats);
	if (!err)
		err = pin_map(br, br->skel->maps.dirty_hist);
	if (err)
		unpin_maps(br);
	return err;
}

/* A source that loaded but will not attach is left out, with the reason. */
static void source_attach(struct bpf_rates *br, enum bpf_rates_source s)
{
	const struct source_alt *alt = br->chosen[s];
	struct bpf_rates_source_info *info = &br->src[s];
	int err;

	print_last[0] = '\0';
	err = alt_attach(br->skel, alt, br->links[s]);
	if (!err)
		return;
	links_destroy(br->links[s], MAX_ALT_PROGS);
	br->chosen[s] = NULL;
	info->attached = NULL;
	info->err = err;
	snprintf(info->why, sizeof(info->why), "%s: attach: %s, %s%s%s; %s", alt->via,
		 strerror(-err), errno_hint(alt->via, -err), print_last[0] ? ": " : "",
		 print_last, sources[s].lost);
	kvmmig_dbg("bpf: %s source unavailable: %s", sources[s].name, info->why);
}

static int rates_load(struct bpf_rates *br)
{
	const struct source_alt *alts[NR_BPF_RATES_SOURCES];
	int s, err;

	for (s = 0; s < NR_BPF_RATES_SOURCES; s++)
		alts[s] = br->chosen[s];
	print_last[0] = '\0';
	br->skel = skel_open(alts, NR_BPF_RATES_SOURCES, 0);
	if (!br->skel) {
		err = -errno;
		kvmmig_err("opening the dirtyrate BPF object failed: %s", strerror(-err));
		return err;
	}
	br->skel->rodata->targ_tgid = br->opts.pid;
	br->skel->rodata->hist_interval_ns = br->opts.hist_interval_ms ?
		br->opts.hist_interval_ms * 1000000ULL : DIRTYRATE_HIST_NS;
	err = dirtyrate_bpf__load(br->skel);
	if (err) {
		kvmmig_err("loading the dirtyrate BPF programs failed: %s (%s)", strerror(-err),
			   print_last);
		return err;
	}
	err = pin_maps(br);
	if (err)
		return err;
	for (s = 0; s < NR_BPF_RATES_SOURCES; s++) {
		if (br->chosen[s])
			source_attach(br, s);
	}
	if (!br->chosen[BPF_RATES_RING] && !br->chosen[BPF_RATES_BITMAP]) {
		kvmmig_err("no dirty-page source could be attached: %s; %s",
			   br->src[BPF_RATES_RING].why, br->src[BPF_RATES_BITMAP].why);
		return -ENODEV;
	}
	return 0;
}

int bpf_rates_open(const struct bpf_rates_opts *opts, struct bpf_rates **out)
{
	static const struct bpf_rates_opts defaults;
	libbpf_print_fn_t old_print;
	struct bpf_rates *br;
	int s, err;

	br = calloc(1, sizeof(*br));
	if (br) {
		br->cur = calloc(DIRTYRATE_MAX_VCPUS, sizeof(*br->cur));
		br->prev = calloc(DIRTYRATE_MAX_VCPUS, sizeof(*br->prev));
	}
	if (!br || !br->cur || !br->prev) {
		bpf_rates_close(br);
		return -ENOMEM;
	}
	br->lock_fd = -1;
	br->opts = opts ? *opts : defaults;
	snprintf(br->pin_dir, sizeof(br->pin_dir), "%s",
		 br->opts.pin_dir ? br->opts.pin_dir : DIRTYRATE_PIN_DIR);

	pthread_mutex_lock(&print_lock);
	print_verbose = br->opts.verbose;
	old_print = libbpf_set_print(rates_print);
	for (s = 0; s < NR_BPF_RATES_SOURCES; s++)
		source_probe(br, s);
	if (!br->chosen[BPF_RATES_RING] && !br->chosen[BPF_RATES_BITMAP]) {
		kvmmig_err("no dirty-page source can be attached on this kernel: %s; %s",
			   br->src[BPF_RATES_RING].why, br->src[BPF_RATES_BITMAP].why);
		err = -ENODEV;
	} else {
		err = rates_load(br);
	}
	libbpf_set_print(old_print);
	pthread_mutex_unlock(&print_lock);
	if (err) {
		bpf_rates_close(br);
		return err;
	}
	/*
	 * The counters run from the attach, which loading and pinning follow:
	 * read them once now, so the first interval counts its own events
	 * only (`kvmmig top --once` reported 12% over a guest's own rate in
	 * the Debian kernels under QEMU TCG, where pinning is slow).
	 */
	br->now_ns = now_ns();
	bpf_rates_update(br);
	*out = br;
	return 0;
}

void bpf_rates_close(struct bpf_rates *br)
{
	int s;

	if (!br)
		return;
	for (s = 0; s < NR_BPF_RATES_SOURCES; s++)
		links_destroy(br->links[s], MAX_ALT_PROGS);
	if (br->skel)
		unpin_maps(br);
	dirtyrate_bpf__destroy(br->skel);
	free(br->cur);
	free(br->prev);
	free(br);
}

const struct bpf_rates_source_info *bpf_rates_source(const struct bpf_rates *br,
						     enum bpf_rates_source src)
{
	return src < NR_BPF_RATES_SOURCES ? &br->src[src] : NULL;
}

const char *bpf_rates_pin_dir(const struct bpf_rates *br)
{
	return br->pinned ? br->pin_dir : "";
}

unsigned int bpf_rates_stale_pins(const struct bpf_rates *br)
{
	return br->stale_pins;
}

static int key_cmp(const void *a, const void *b)
{
	const struct bpf_rates_vcpu *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->vm_fd != y->vm_fd)
		return x->vm_fd < y->vm_fd ? -1 : 1;
	if (x->vcpu != y->vcpu)
		return x->vcpu < y->vcpu ? -1 : 1;
	return 0;
}

static const struct bpf_rates_vcpu *find(const struct bpf_rates_vcpu *arr, size_t n,
					 uint32_t pid, int32_t vm_fd, uint32_t vcpu)
{
	struct bpf_rates_vcpu k = { .pid = pid, .vm_fd = vm_fd, .vcpu = vcpu };

	return bsearch(&k, arr, n, sizeof(*arr), key_cmp);
}

static double pct(uint64_t part, uint64_t whole)
{
	double p = whole ? 100.0 * part / whole : 0;

	return p > 100 ? 100 : p;
}

static void vcpu_fill(struct bpf_rates_vcpu *v,
		      const struct dirtyrate_key *k, const struct dirtyrate_vcpu *s, uint64_t t)
{
	v->pid = k->pid;
	v->vm_fd = k->vm_fd;
	v->vcpu = k->vcpu;
	v->tid = s->tid;
	v->ring_pages = s->ring_pages;
	v->bitmap_pages = s->bitmap_pages;
	v->dirty_pages = s->ring_pages + s->bitmap_pages;
	v->dirty_events = s->ring_pushes + s->bitmap_marks;
	v->run_ns = s->run_ns;
	if (s->run_since_ns && s->run_since_ns < t)
		v->run_ns += t - s->run_since_ns;
	v->guest_ns = s->guest_ns;
	v->exits = s->exits;
}

static void vcpu_rates(struct bpf_rates *br, struct bpf_rates_vcpu *v)
{
	static const struct bpf_rates_vcpu none;
	const struct bpf_rates_vcpu *p;
	uint64_t dt = br->now_ns - br->prev_ns;
	double secs = dt / 1e9;

	p = find(br->prev, br->nr_prev, v->pid, v->vm_fd, v->vcpu);
	if (!p)
		p = &none;
	if (!secs)
		return;
	v->pages_per_sec = (v->dirty_pages - p->dirty_pages) / secs;
	v->exits_per_sec = (v->exits - p->exits) / secs;
	v->run_pct = pct(v->run_ns - p->run_ns, dt);
	v->guest_pct = br->chosen[BPF_RATES_GUEST] && v->exits ?
		       pct(v->guest_ns - p->guest_ns, dt) : -1;
}

static bool pid_gone(uint32_t pid)
{
	return kill(pid, 0) && errno == ESRCH;
}

int bpf_rates_update(struct bpf_rates *br)
{
	int fd = bpf_map__fd(br->skel->maps.vcpu_stats);
	int hist_fd = bpf_map__fd(br->skel->maps.dirty_hist);
	struct dirtyrate_key key, next, *kp = NULL;
	struct bpf_rates_vcpu *tmp;
	struct dirtyrate_vcpu s;
	size_t n = 0, i;

	tmp = br->prev;
	br->prev = br->cur;
	br->nr_prev = br->nr_cur;
	br->cur = tmp;
	br->prev_ns = br->now_ns;
	br->now_ns = now_ns();

	while (n < DIRTYRATE_MAX_VCPUS && !bpf_map_get_next_key(fd, kp, &next)) {
		key = next;
		kp = &key;
		if (pid_gone(key.pid)) {
			bpf_map_delete_elem(fd, &key);
			bpf_map_delete_elem(hist_fd, &key);
			continue;
		}
		if (bpf_map_lookup_elem(fd, &key, &s))
			continue;
		vcpu_fill(&br->cur[n++], &key, &s, now_ns());
	}
	qsort(br->cur, n, sizeof(*br->cur), key_cmp);
	br->nr_cur = n;
	for (i = 0; i < n; i++)
		vcpu_rates(br, &br->cur[i]);
	return 0;
}

uint64_t bpf_rates_interval_end_ns(const struct bpf_rates *br)
{
	return br->now_ns;
}

double bpf_rates_interval(const struct bpf_rates *br)
{
	return (br->now_ns - br->prev_ns) / 1e9;
}

size_t bpf_rates_count(const struct bpf_rates *br)
{
	return br->nr_cur;
}

const struct bpf_rates_vcpu *bpf_rates_get(const struct bpf_rates *br, size_t i)
{
	return i < br->nr_cur ? &br->cur[i] : NULL;
}

int bpf_rates_vm(const struct bpf_rates *br, pid_t pid, int vm_fd,
		 struct bpf_rates_vcpu *out, unsigned int nr)
{
	const struct bpf_rates_vcpu *v;
	unsigned int i;
	int found = 0;

	for (i = 0; i < nr; i++) {
		v = find(br->cur, br->nr_cur, pid, vm_fd, i);
		if (v) {
			out[i] = *v;
			found++;
		} else {
			memset(&out[i], 0, sizeof(out[i]));
			out[i].guest_pct = -1;
		}
	}
	return found;
}

int bpf_rates_vm_pages(const struct bpf_rates *br, pid_t pid, int vm_fd, uint64_t *pages,
		       unsigned int nr)
{
	struct dirtyrate_key key = { .pid = pid, .vm_fd = vm_fd };
	int fd = bpf_map__fd(br->skel->maps.vcpu_stats);
	struct dirtyrate_vcpu s;
	int found = 0;

	for (key.vcpu = 0; key.vcpu < nr; key.vcpu++) {
		pages[key.vcpu] = 0;
		if (bpf_map_lookup_elem(fd, &key, &s))
			continue;
		pages[key.vcpu] = s.ring_pages + s.bitmap_pages;
		found++;
	}
	return found;
}

int bpf_rates_hist(const struct bpf_rates *br, pid_t pid, int vm_fd, unsigned int vcpu,
		   struct bpf_rates_hist *out)
{
	struct dirtyrate_key key = { .pid = pid, .vm_fd = vm_fd, .vcpu = vcpu };
	struct dirtyrate_hist h = { .interval_ns = br->skel->rodata->hist_interval_ns };
	struct dirtyrate_vcpu s;

	if (bpf_map_lookup_elem(bpf_map__fd(br->skel->maps.vcpu_stats), &key, &s))
		return -errno;
	/* No interval closed yet: an empty histogram. */
	bpf_map_lookup_elem(bpf_map__fd(br->skel->maps.dirty_hist), &key, &h);
	out->interval_ns = h.interval_ns;
	out->intervals = h.intervals;
	out->window_pages = s.hist_window_pages;
	memcpy(out->slots, h.slots, sizeof(out->slots));
	return 0;
}

uint64_t bpf_rates_dropped(const struct bpf_rates *br)
{
	return br->skel->bss->dropped;
}

uint64_t bpf_rates_unattributed(const struct bpf_rates *br)
{
	return br->skel->bss->unattributed;
}

uint64_t bpf_rates_misses(const struct bpf_rates *br)
{
	struct bpf_prog_info info;
	struct bpf_program *prog;
	uint64_t n = 0;
	uint32_t len;

	bpf_object__for_each_program(prog, br->skel->obj) {
		if (!bpf_program__autoload(prog))
			continue;
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			n += info.recursion_misses;
	}
	return n;
}

int bpf_rates_ids(const struct bpf_rates *br, uint32_t *map_ids, unsigned int nr_maps,
		  uint32_t *prog_ids, unsigned int nr_progs, unsigned int *nr_map_out,
		  unsigned int *nr_prog_out)
{
	struct bpf_prog_info info;
	struct bpf_program *prog;
	struct bpf_map *map;
	unsigned int nm = 0, np = 0;
	uint32_t len;
	int err;

	bpf_object__for_each_map(map, br->skel->obj) {
		if (nm == nr_maps)
			return -ENOSPC;
		err = map_id_of(bpf_map__fd(map), &map_ids[nm]);
		if (err)
			return err;
		nm++;
	}
	bpf_object__for_each_program(prog, br->skel->obj) {
		if (!bpf_program__autoload(prog))
			continue;
		if (np == nr_progs)
			return -ENOSPC;
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			return -errno;
		prog_ids[np++] = info.id;
	}
	*nr_map_out = nm;
	*nr_prog_out = np;
	return 0;
}
