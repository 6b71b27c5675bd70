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

#endif /* KVMMIG_COMPAT_H */
