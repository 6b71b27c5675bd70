/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Everything in kvmmig.ko that differs between the kernels it is built for
 * (Debian 6.1 and 6.12), in one place, so that the rest of the module is
 * written against one API.
 */
#ifndef KVMMIG_COMPAT_H
#define KVMMIG_COMPAT_H

#include <linux/version.h>
#include <linux/kvm_host.h>
#include <net/genetlink.h>

/* 6.8 renamed KVM_ADDRESS_SPACE_NUM to KVM_MAX_NR_ADDRESS_SPACES ... */
#ifdef KVM_MAX_NR_ADDRESS_SPACES
#define KVMMIG_MAX_AS			KVM_MAX_NR_ADDRESS_SPACES
#else
#define KVMMIG_MAX_AS			KVM_ADDRESS_SPACE_NUM
#endif

/* ... and made the number of memslot address spaces a per-VM property. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
#define kvmmig_nr_as_ids(kvm)		kvm_arch_nr_memslot_as_ids(kvm)
#else
#define kvmmig_nr_as_ids(kvm)		KVM_ADDRESS_SPACE_NUM
#endif

/* 6.7 moved a dump's parsed attributes into a struct genl_info. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
#define kvmmig_dump_attrs(cb)		(genl_info_dump(cb)->attrs)
#else
#define kvmmig_dump_attrs(cb)		(genl_dumpit_info(cb)->attrs)
#endif

/*
 * kvm_entry gained a "force_immediate_exit" argument in 6.9 and Debian's
 * 6.1 (6.1.0-56) carries the backport, so both kernels call the probe with
 * it.  The probe never reads it: on an older 6.1 without the backport the
 * unused trailing register argument is harmless on x86-64.
 */
#define KVMMIG_PROBE_ENTRY_ARGS		struct kvm_vcpu *vcpu, bool force_immediate_exit

/*
 * Before 6.2, x86 checked a dirty ring's soft limit on guest entry only
 * when some request was pending, so a soft-full ring exited late, at the
 * next timer or IPI (hundreds of entries late under emulation, and then the
 * ring can overflow).  6.2 made the push raise KVM_REQ_DIRTY_RING_SOFT_FULL;
 * on older kernels the push probe raises KVM_REQ_EVENT, which only makes
 * the vCPU re-evaluate pending interrupts, so that the check runs.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
#define KVMMIG_RING_SOFT_FULL_NUDGE	KVM_REQ_EVENT
#endif

/*
 * Bitmap-mode dirtying has no tracepoint: every page KVM makes writable in
 * a logging memslot, and every write KVM does itself, goes through the
 * exported mark_page_dirty_in_slot(kvm, memslot, gfn), called as a real
 * function from the x86 MMU (make_spte, fast_page_fault) in both kernels.
 * A kprobe on its entry (ftrace-based with KPROBES_ON_FTRACE, which both
 * Debian kernels have; 6.1 has no fprobe) sees its arguments in registers.
 * 6.1 drops a mark made without a running vCPU (with a WARN); 6.12 sets
 * the bit anyway when the architecture allows it: such marks belong to no
 * vCPU and are not counted on either kernel.
 */
#define KVMMIG_MARK_DIRTY_SYMBOL	"mark_page_dirty_in_slot"
#define kvmmig_probe_arg(regs, n)	regs_get_kernel_argument(regs, n)

/*
 * Where the last reference on a VM but the session's is dropped: the VM
 * file's release calls the exported kvm_put_kvm(), and so do device,
 * debugfs and (6.12) guest_memfd files; the vCPU, vCPU-stats and VM-stats
 * files' release functions have kvm_put_kvm() inlined (checked in the
 * Debian 6.1 and 6.12 kvm.ko), so they are probed themselves.  The first
 * takes the VM, the others (inode, file) with the vCPU or the VM as the
 * file's private_data.
 */
#define KVMMIG_PUT_KVM_SYMBOL		"kvm_put_kvm"
#define KVMMIG_VCPU_RELEASE_SYMBOL	"kvm_vcpu_release"
#define KVMMIG_VCPU_STATS_RELEASE_SYMBOL "kvm_vcpu_stats_release"
#define KVMMIG_VM_STATS_RELEASE_SYMBOL	"kvm_vm_stats_release"

#endif /* KVMMIG_COMPAT_H */
