/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Types shared by the dirtyrate BPF programs (bpf/dirtyrate.bpf.c) and their
 * loader (user/lib/bpf_rates.c): the key and values of the maps pinned under
 * DIRTYRATE_PIN_DIR.  Their BTF travels with the maps, so
 * `bpftool map dump pinned /sys/fs/bpf/kvmmig/vcpu_stats` prints these
 * field names.  The includer provides __u32/__u64 (vmlinux.h in BPF code,
 * <linux/types.h> in user space).
 */
#ifndef KVMMIG_BPF_DIRTYRATE_H
#define KVMMIG_BPF_DIRTYRATE_H

#define DIRTYRATE_PIN_DIR	"/sys/fs/bpf/kvmmig"
#define DIRTYRATE_MAX_VCPUS	1024
#define DIRTYRATE_HIST_SLOTS	32
#define DIRTYRATE_HIST_NS	100000000ULL	/* default histogram interval */

/*
 * One vCPU of one VM.  vm_fd is the VM's file descriptor in the VMM
 * process, read from the name KVM gives the VM's debugfs folder
 * ("<pid>-<fd>"); when that name is unavailable it is a negative id
 * unique among the VMs seen.  vcpu is KVM's vcpu_idx (creation order).
 */
struct dirtyrate_key {
	__u32 pid;
	__s32 vm_fd;
	__u32 vcpu;
	__u32 pad;
};

/*
 * Cumulative counts since the programs were attached.  *_pages count a page
 * once per harvest: KVM's instruction emulator (all a PVM host runs guests
 * with) pushes a page again on every emulated write, hardware paths only
 * when a write-protected page is first written.  Each entry is
 * written only by the thread running that vCPU, so plain adds suffice.
 * run_since_ns is bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the start of
 * the current KVM_RUN, 0 when outside.
 */
struct dirtyrate_vcpu {
	__u64 ring_pages;	/* pages pushed to the dirty ring, once per reset */
	__u64 ring_pushes;	/* kvm_dirty_ring_push events, repeats included */
	__u64 ring_resets;	/* KVM_RESET_DIRTY_RINGS rounds over this ring */
	__u64 bitmap_pages;	/* pages newly set in a dirty bitmap */
	__u64 bitmap_marks;	/* mark_page_dirty_in_slot calls, repeats included */
	__u64 run_ns;		/* time inside ioctl(KVM_RUN) */
	__u64 runs;		/* KVM_RUN calls that returned */
	__u64 run_since_ns;
	__u64 guest_ns;		/* kvm_entry .. kvm_exit (up to 10 ms late) */
	__u64 exits;		/* kvm_exit events (idem) */
	__u64 last_dirty_ns;
	__u64 hist_window_ns;	/* start of the open histogram interval */
	__u64 hist_window_pages;	/* pages in it so far */
	__u32 tid;		/* the vCPU thread last seen */
	__u32 pad;
};

/*
 * Log2 histogram of dirty pages per interval_ns: slots[0] counts intervals
 * with no dirty page, slots[i] those with [2^(i-1), 2^i) pages.  The open
 * interval is in struct dirtyrate_vcpu (hist_window_*), so that a dirty
 * page touches this map only when an interval closes.
 */
struct dirtyrate_hist {
	__u64 interval_ns;
	__u64 intervals;	/* closed intervals, i.e. sum of slots[] */
	__u64 slots[DIRTYRATE_HIST_SLOTS];
};

#endif /* KVMMIG_BPF_DIRTYRATE_H */
