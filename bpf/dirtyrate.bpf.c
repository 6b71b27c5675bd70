// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Per-vCPU dirty-page and run-time accounting for KVM guests, keyed by
 * (VMM pid, VM fd, vCPU) and kept in maps the loader pins for bpftool.
 * Kernels differ in what BPF may see, so every source is a separate
 * program the loader enables only where it loads and attaches:
 * dirty-ring pushes (tp_btf, raw_tp fallback; every kernel), bitmap-mode
 * dirtying (fentry on mark_page_dirty_in_slot, where function tracing is
 * allowed), time inside KVM_RUN (raw_syscalls sys_enter/sys_exit) and time
 * in guest mode (kvm_entry/kvm_exit, where KVM fires them).  CO-RE: the KVM
 * types below are local flavours matched against vmlinux or kvm.ko BTF.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "dirtyrate.h"

#define NR_IOCTL		16		/* x86-64 */
#define KVM_RUN_CMD		0xae80		/* _IO(KVMIO, 0x80) */
#define KVM_MEM_LOG_DIRTY_PAGES	1
#define MAX_ERRNO		4095

const volatile __u32 targ_tgid = 0;
const volatile __u64 hist_interval_ns = DIRTYRATE_HIST_NS;

__u64 unattributed;	/* bitmap marks outside a known vCPU thread */
__u64 dropped;		/* events lost to a full map */
__u64 anon_vms;		/* VMs whose debugfs name was unreadable */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DIRTYRATE_MAX_VCPUS);
	__type(key, struct dirtyrate_key);
	__type(value, struct dirtyrate_vcpu);
} vcpu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DIRTYRATE_MAX_VCPUS);
	__type(key, struct dirtyrate_key);
	__type(value, struct dirtyrate_hist);
} dirty_hist SEC(".maps");

/* struct kvm address -> identity, checked against pid and dentry on use */
struct vm_ident {
	__u64 dentry;
	__u32 pid;
	__s32 vm_fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct vm_ident);
} vm_idents SEC(".maps");

/* vCPU thread id -> the vCPU it runs (for bitmap attribution, KVM_RUN end) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DIRTYRATE_MAX_VCPUS);
	__type(key, __u32);
	__type(value, struct dirtyrate_key);
} vcpu_threads SEC(".maps");

/*
 * What each CPU keeps about the vCPU it ran last, so that KVM's hot events
 * (ring push, kvm_entry, kvm_exit) need no hash lookup for it: its key
 * (valid while the vCPU, its VM and the VM's debugfs dentry are the same
 * objects and the process too), guest-mode time and exits not yet added to
 * vcpu_stats (flushed every FLUSH_NS, at each dirty page and when another
 * vCPU runs here), and the pages its ring got since the ring's last reset,
 * direct-mapped: a page found there (same tag, same epoch) is a repeat.  A
 * collision or a move to another CPU only forgets pages, which may then
 * count twice; a page is never missed.
 */
#define PUSH_CACHE	128
#define FLUSH_NS	10000000ULL

struct cpu_vcpu {
	__u64 vcpu;
	__u64 kvm;
	__u64 dentry;
	__u32 tgid;
	__u32 epoch;			/* of the push tags */
	struct dirtyrate_key key;
	__u64 guest_since_ns;
	__u64 guest_ns;
	__u64 exits;
	__u64 flushed_ns;
	__u64 resets_seen;		/* the vCPU's ring_resets for this epoch */
	__u64 tag[PUSH_CACHE];
	__u32 tag_epoch[PUSH_CACHE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_vcpu);
} cpu_vcpus SEC(".maps");

static const struct dirtyrate_hist zero_hist;

/* Local flavours of the kernel types read here: only these fields matter. */
struct qstr___dr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry___dr {
	struct qstr___dr d_name;
} __attribute__((preserve_access_index));

struct path___dr {
	struct dentry___dr *dentry;
} __attribute__((preserve_access_index));

struct file___dr {
	void *private_data;
	struct path___dr f_path;
} __attribute__((preserve_access_index));

struct kvm___dr {
	struct dentry___dr *debugfs_dentry;
	__u32 dirty_ring_size;
} __attribute__((preserve_access_index));

struct kvm_dirty_ring___dr {
	int index;
} __attribute__((preserve_access_index));

struct kvm_vcpu___dr {
	struct kvm___dr *kvm;
	int vcpu_idx;
	struct kvm_dirty_ring___dr dirty_ring;
} __attribute__((preserve_access_index));

struct kvm_memory_slot___dr {
	__u64 base_gfn;
	unsigned long *dirty_bitmap;
	__u32 flags;
} __attribute__((preserve_access_index));

static __always_inline bool tgid_filtered(__u32 tgid)
{
	return targ_tgid && tgid != targ_tgid;
}

static __always_inline bool is_err_or_null(const void *p)
{
	return !p || (unsigned long)p >= (unsigned long)-MAX_ERRNO;
}

/* KVM names a VM's debugfs folder "<pid>-<fd>"; return the fd, or -1. */
static __always_inline int debugfs_vm_fd(struct dentry___dr *d)
{
	const unsigned char *p;
	char name[24];
	int fd = -1;
	unsigned int i;
	bool dash = false;

	if (is_err_or_null(d))
		return -1;
	p = BPF_CORE_READ(d, d_name.name);
	if (bpf_probe_read_kernel_str(name, sizeof(name), p) < 0)
		return -1;
	for (i = 0; i < sizeof(name); i++) {
		char c = name[i];

		if (!c)
			break;
		if (c == '-') {
			dash = true;
			fd = 0;
		} else if (dash && c >= '0' && c <= '9' && fd < 100000000) {
			fd = fd * 10 + (c - '0');
		} else if (dash) {
			return -1;
		}
	}
	return dash ? fd : -1;
}

static __always_inline __u64 kvm_dentry(struct kvm___dr *kvm)
{
	if (bpf_core_field_exists(kvm->debugfs_dentry))
		return (__u64)BPF_CORE_READ(kvm, debugfs_dentry);
	return 0;
}

static __always_inline int vm_key(struct kvm___dr *kvm, __u32 tgid, __u32 vcpu,
				  struct dirtyrate_key *key)
{
	__u64 addr = (__u64)kvm;
	struct vm_ident *id, new = {};

	new.dentry = kvm_dentry(kvm);
	id = bpf_map_lookup_elem(&vm_idents, &addr);
	if (!id || id->dentry != new.dentry || id->pid != tgid) {
		new.pid = tgid;
		new.vm_fd = debugfs_vm_fd((struct dentry___dr *)new.dentry);
		if (new.vm_fd < 0)
			new.vm_fd = -(int)__sync_fetch_and_add(&anon_vms, 1) - 1;
		bpf_map_update_elem(&vm_idents, &addr, &new, BPF_ANY);
		id = &new;
	}
	key->pid = tgid;
	key->vm_fd = id->vm_fd;
	key->vcpu = vcpu;
	key->pad = 0;
	return 0;
}

static __always_inline void vcpu_key(struct kvm_vcpu___dr *vcpu, __u32 tgid,
				     struct dirtyrate_key *key)
{
	vm_key(BPF_CORE_READ(vcpu, kvm), tgid, BPF_CORE_READ(vcpu, vcpu_idx), key);
}

static __always_inline struct dirtyrate_vcpu *stats_get(struct dirtyrate_key *key,
							__u32 tid)
{
	struct dirtyrate_vcpu *s, zero = {};

	s = bpf_map_lookup_elem(&vcpu_stats, key);
	if (s)
		return s;
	zero.tid = tid;
	bpf_map_update_elem(&vcpu_stats, key, &zero, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&vcpu_stats, key);
	if (!s)
		__sync_fetch_and_add(&dropped, 1);
	return s;
}

/*
 * An event that only happens inside KVM_RUN: if the ioctl began before the
 * programs were attached, count the run from now on.
 */
static __always_inline void note_in_run(struct dirtyrate_vcpu *s,
					struct dirtyrate_key *key, __u32 tid,
					__u64 now)
{
	if (s->run_since_ns && s->tid == tid)
		return;
	s->run_since_ns = now;
	s->tid = tid;
	bpf_map_update_elem(&vcpu_threads, &tid, key, BPF_ANY);
}

/* Add what this CPU holds for its vCPU to the vCPU's counters. */
static __always_inline void cpu_flush(struct cpu_vcpu *c, struct dirtyrate_vcpu *s, __u64 now)
{
	s->guest_ns += c->guest_ns;
	s->exits += c->exits;
	c->guest_ns = 0;
	c->exits = 0;
	c->flushed_ns = now;
}

/*
 * This CPU's entry, made @vcpu's (of the current process) if another vCPU
 * ran here last; that one's pending counts are flushed first.
 */
static __always_inline struct cpu_vcpu *cpu_vcpu_get(struct kvm_vcpu___dr *vcpu, __u32 tgid,
						     __u64 now)
{
	struct kvm___dr *kvm = BPF_CORE_READ(vcpu, kvm);
	__u64 dentry = kvm_dentry(kvm);
	struct dirtyrate_vcpu *s;
	struct cpu_vcpu *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&cpu_vcpus, &zero);
	if (!c)
		return NULL;
	if (c->vcpu == (__u64)vcpu && c->kvm == (__u64)kvm && c->dentry == dentry &&
	    c->tgid == tgid)
		return c;
	if (c->guest_ns || c->exits) {
		s = bpf_map_lookup_elem(&vcpu_stats, &c->key);
		if (s)
			cpu_flush(c, s, now);
	}
	vm_key(kvm, tgid, BPF_CORE_READ(vcpu, vcpu_idx), &c->key);
	c->vcpu = (__u64)vcpu;
	c->kvm = (__u64)kvm;
	c->dentry = dentry;
	c->tgid = tgid;
	c->guest_since_ns = 0;
	c->guest_ns = 0;
	c->exits = 0;
	c->flushed_ns = 0;	/* flush (and note the run) at the first exit */
	c->epoch++;		/* forget the previous vCPU's pages */
	return c;
}

static __always_inline __u32 log2_32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 hist_slot(__u64 pages)
{
	__u32 hi = pages >> 32, slot;

	if (!pages)
		return 0;
	slot = (hi ? log2_32(hi) + 32 : log2_32(pages)) + 1;
	return slot < DIRTYRATE_HIST_SLOTS ? slot : DIRTYRATE_HIST_SLOTS - 1;
}

/* Close the intervals that ended before now, then count one page. */
static __always_inline void hist_account(struct dirtyrate_key *key, struct dirtyrate_vcpu *s,
					 __u64 now)
{
	__u64 interval = hist_interval_ns, n;
	struct dirtyrate_hist *h;
	__u32 slot;

	if (!s->hist_window_ns) {
		s->hist_window_ns = now;
	} else if (now - s->hist_window_ns >= interval) {
		n = (now - s->hist_window_ns) / interval;
		h = bpf_map_lookup_elem(&dirty_hist, key);
		if (!h) {
			bpf_map_update_elem(&dirty_hist, key, &zero_hist, BPF_NOEXIST);
			h = bpf_map_lookup_elem(&dirty_hist, key);
		}
		if (h) {
			slot = hist_slot(s->hist_window_pages);
			h->interval_ns = interval;
			h->slots[slot]++;
			h->slots[0] += n - 1;
			h->intervals += n;
		}
		s->hist_window_ns += n * interval;
		s->hist_window_pages = 0;
	}
	s->hist_window_pages++;
}

static __always_inline struct kvm_vcpu___dr *ring_vcpu(struct kvm_dirty_ring___dr *ring)
{
	/* The ring is embedded in its vCPU: container_of() by CO-RE offset. */
	return (void *)((__u64)ring - bpf_core_field_offset(struct kvm_vcpu___dr, dirty_ring));
}

/* Was this page pushed already since the ring's last reset?  Records it. */
static __always_inline bool push_seen(struct cpu_vcpu *c, struct dirtyrate_vcpu *s,
				      __u32 slot, __u64 offset)
{
	__u64 tag = offset ^ ((__u64)slot << 48);
	__u32 i = (offset ^ ((__u64)slot << 5)) & (PUSH_CACHE - 1);

	if (c->resets_seen != s->ring_resets) {
		c->resets_seen = s->ring_resets;
		c->epoch++;
	}
	if (c->tag[i] == tag && c->tag_epoch[i] == c->epoch)
		return true;
	c->tag[i] = tag;
	c->tag_epoch[i] = c->epoch;
	return false;
}

static __always_inline int on_ring_push(struct kvm_dirty_ring___dr *ring, __u32 slot,
					__u64 offset)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	__u32 tgid = id >> 32, tid = id;
	struct dirtyrate_vcpu *s;
	struct cpu_vcpu *c;

	if (tgid_filtered(tgid))
		return 0;
	now = bpf_ktime_get_ns();
	c = cpu_vcpu_get(ring_vcpu(ring), tgid, now);
	if (!c)
		return 0;
	s = stats_get(&c->key, tid);
	if (!s)
		return 0;
	s->ring_pushes++;
	note_in_run(s, &c->key, tid, now);
	if (c->guest_ns || c->exits)
		cpu_flush(c, s, now);
	if (push_seen(c, s, slot, offset))
		return 0;
	s->ring_pages++;
	s->last_dirty_ns = now;
	hist_account(&c->key, s, now);
	return 0;
}

/* KVM_RESET_DIRTY_RINGS write-protected the harvested pages again. */
static __always_inline int on_ring_reset(struct kvm_dirty_ring___dr *ring)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dirtyrate_vcpu *s;
	struct dirtyrate_key key;

	if (tgid_filtered(tgid))
		return 0;
	/* Runs in the VMM's harvesting thread: not this CPU's vCPU. */
	vcpu_key(ring_vcpu(ring), tgid, &key);
	s = bpf_map_lookup_elem(&vcpu_stats, &key);
	if (s)
		__sync_fetch_and_add(&s->ring_resets, 1);
	return 0;
}

SEC("tp_btf/kvm_dirty_ring_push")
int BPF_PROG(ring_push_btf, struct kvm_dirty_ring___dr *ring, __u32 slot, __u64 offset)
{
	return on_ring_push(ring, slot, offset);
}

SEC("raw_tp/kvm_dirty_ring_push")
int BPF_PROG(ring_push_raw, struct kvm_dirty_ring___dr *ring, __u32 slot, __u64 offset)
{
	return on_ring_push(ring, slot, offset);
}

SEC("tp_btf/kvm_dirty_ring_reset")
int BPF_PROG(ring_reset_btf, struct kvm_dirty_ring___dr *ring)
{
	return on_ring_reset(ring);
}

SEC("raw_tp/kvm_dirty_ring_reset")
int BPF_PROG(ring_reset_raw, struct kvm_dirty_ring___dr *ring)
{
	return on_ring_reset(ring);
}

/*
 * Bitmap mode: KVM calls mark_page_dirty_in_slot() for every page it makes
 * writable in a logging memslot, and its emulator for every write.  A page
 * whose bit is already set was counted since the last KVM_GET_DIRTY_LOG
 * (or CLEAR).  Ring VMs are counted by the ring push.
 */
static __always_inline bool bitmap_seen(const struct kvm_memory_slot___dr *memslot, __u64 gfn)
{
	unsigned long *bitmap = BPF_CORE_READ(memslot, dirty_bitmap), word;
	__u64 rel = gfn - BPF_CORE_READ(memslot, base_gfn);

	if (!bitmap || bpf_probe_read_kernel(&word, sizeof(word), &bitmap[rel / 64]))
		return false;
	return word & (1UL << (rel % 64));
}

SEC("fentry/mark_page_dirty_in_slot")
int BPF_PROG(mark_dirty, struct kvm___dr *kvm, const struct kvm_memory_slot___dr *memslot,
	     __u64 gfn)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	__u32 tgid = id >> 32, tid = id;
	struct dirtyrate_key *thread_key, key;
	struct dirtyrate_vcpu *s;
	struct cpu_vcpu *c;
	__u32 zero = 0;

	if (tgid_filtered(tgid) || is_err_or_null(memslot))
		return 0;
	if (!(BPF_CORE_READ(memslot, flags) & KVM_MEM_LOG_DIRTY_PAGES) ||
	    BPF_CORE_READ(kvm, dirty_ring_size))
		return 0;
	thread_key = bpf_map_lookup_elem(&vcpu_threads, &tid);
	if (!thread_key) {
		__sync_fetch_and_add(&unattributed, 1);
		return 0;
	}
	/* Most often the vCPU this CPU runs (see cpu_vcpu_get()): no VM lookup. */
	c = bpf_map_lookup_elem(&cpu_vcpus, &zero);
	if (c && c->kvm == (__u64)kvm && c->tgid == tgid && c->dentry == kvm_dentry(kvm) &&
	    c->key.vcpu == thread_key->vcpu) {
		key = c->key;
	} else {
		vm_key(kvm, tgid, thread_key->vcpu, &key);
		if (key.vm_fd != thread_key->vm_fd) {
			__sync_fetch_and_add(&unattributed, 1);
			return 0;
		}
	}
	s = stats_get(&key, tid);
	if (!s)
		return 0;
	s->bitmap_marks++;
	if (bitmap_seen(memslot, gfn))
		return 0;
	now = bpf_ktime_get_ns();
	s->bitmap_pages++;
	s->last_dirty_ns = now;
	hist_account(&key, s, now);
	return 0;
}

/* The vCPU behind an fd of the current task, or NULL if not a vCPU fd. */
static __always_inline struct kvm_vcpu___dr *fd_to_vcpu(unsigned long fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	static const char prefix[] = "kvm-vcpu:";
	struct file___dr *file, **fds;
	const unsigned char *name;
	char buf[sizeof(prefix)];
	unsigned int i;

	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return NULL;
	fds = (void *)BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel(buf, sizeof(buf) - 1, name))
		return NULL;
	for (i = 0; i < sizeof(prefix) - 1; i++)
		if (buf[i] != prefix[i])
			return NULL;
	return BPF_CORE_READ(file, private_data);
}

static __always_inline int on_sys_enter(long nr, unsigned long fd, unsigned long cmd)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = id;
	struct kvm_vcpu___dr *vcpu;
	struct dirtyrate_vcpu *s;
	struct dirtyrate_key key;

	if (cmd != KVM_RUN_CMD || tgid_filtered(tgid))
		return 0;
	vcpu = fd_to_vcpu(fd);
	if (!vcpu)
		return 0;
	vcpu_key(vcpu, tgid, &key);
	s = stats_get(&key, tid);
	if (!s)
		return 0;
	s->run_since_ns = bpf_ktime_get_ns();
	s->tid = tid;
	bpf_map_update_elem(&vcpu_threads, &tid, &key, BPF_ANY);
	return 0;
}

static __always_inline int on_sys_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = id;
	struct dirtyrate_key *key;
	struct dirtyrate_vcpu *s;

	if (tgid_filtered(tgid))
		return 0;
	key = bpf_map_lookup_elem(&vcpu_threads, &tid);
	if (!key)
		return 0;
	s = bpf_map_lookup_elem(&vcpu_stats, key);
	if (!s || !s->run_since_ns)
		return 0;
	s->run_ns += bpf_ktime_get_ns() - s->run_since_ns;
	s->run_since_ns = 0;
	s->runs++;
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long nr)
{
	if (nr != NR_IOCTL)
		return 0;
	return on_sys_enter(nr, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si));
}

SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs *regs, long nr)
{
	if (nr != NR_IOCTL)
		return 0;
	return on_sys_enter(nr, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si));
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret)
{
	/* A BTF pointer: a direct load, no helper call on every syscall. */
	if (regs->orig_ax != NR_IOCTL)
		return 0;
	return on_sys_exit();
}

SEC("raw_tp/sys_exit")
int BPF_PROG(sys_exit_raw, struct pt_regs *regs, long ret)
{
	if (BPF_CORE_READ(regs, orig_ax) != NR_IOCTL)
		return 0;
	return on_sys_exit();
}

static __always_inline int on_kvm_entry(struct kvm_vcpu___dr *vcpu)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	struct cpu_vcpu *c;

	if (tgid_filtered(id >> 32))
		return 0;
	now = bpf_ktime_get_ns();
	c = cpu_vcpu_get(vcpu, id >> 32, now);
	if (c)
		c->guest_since_ns = now;
	return 0;
}

static __always_inline int on_kvm_exit(struct kvm_vcpu___dr *vcpu)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	__u32 tgid = id >> 32, tid = id;
	struct dirtyrate_vcpu *s;
	struct cpu_vcpu *c;

	if (tgid_filtered(tgid))
		return 0;
	now = bpf_ktime_get_ns();
	c = cpu_vcpu_get(vcpu, tgid, now);
	if (!c)
		return 0;
	if (c->guest_since_ns) {
		c->guest_ns += now - c->guest_since_ns;
		c->guest_since_ns = 0;
	}
	c->exits++;
	if (now - c->flushed_ns < FLUSH_NS)
		return 0;
	s = stats_get(&c->key, tid);
	if (!s)
		return 0;
	cpu_flush(c, s, now);
	note_in_run(s, &c->key, tid, now);
	return 0;
}

SEC("tp_btf/kvm_entry")
int BPF_PROG(kvm_entry_btf, struct kvm_vcpu___dr *vcpu)
{
	return on_kvm_entry(vcpu);
}

SEC("raw_tp/kvm_entry")
int BPF_PROG(kvm_entry_raw, struct kvm_vcpu___dr *vcpu)
{
	return on_kvm_entry(vcpu);
}

SEC("tp_btf/kvm_exit")
int BPF_PROG(kvm_exit_btf, struct kvm_vcpu___dr *vcpu)
{
	return on_kvm_exit(vcpu);
}

SEC("raw_tp/kvm_exit")
int BPF_PROG(kvm_exit_raw, struct kvm_vcpu___dr *vcpu)
{
	return on_kvm_exit(vcpu);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
