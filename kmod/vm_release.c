// SPDX-License-Identifier: GPL-2.0-only
/*
 * Noticing at once that a session holds the last reference on its VM.
 * KVM has no release notifier for modules, so kretprobes watch the places
 * where a reference on a VM is dropped (compat.h names them): the exported
 * kvm_put_kvm() and the release functions of vCPU, vCPU-stats and VM-stats
 * files, which inline it.  The entry handler remembers the VM; the return
 * handler, after the reference is gone, asks session.c whether only a
 * session's is left (kvmmig_vm_put_seen()).  A probe that cannot be placed
 * (a kernel that renamed or inlined its function) only costs promptness:
 * the session still notices within one statistics window.
 */
#include <linux/fs.h>
#include <linux/kprobes.h>

#include "kvmmig.h"

/* kvm_put_kvm(struct kvm *kvm) */
static int kvmmig_put_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!kvmmig_sessions_attached())
		return 1;	/* no return handler needed */
	*(struct kvm **)ri->data = (struct kvm *)kvmmig_probe_arg(regs, 0);
	return 0;
}

/* kvm_vcpu_release() and kvm_vcpu_stats_release(): (inode, file of a vCPU) */
static int kvmmig_vcpu_file_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)kvmmig_probe_arg(regs, 1);
	struct kvm_vcpu *vcpu = file->private_data;

	if (!kvmmig_sessions_attached())
		return 1;
	*(struct kvm **)ri->data = vcpu->kvm;
	return 0;
}

/* kvm_vm_stats_release(): (inode, file of the VM) */
static int kvmmig_vm_file_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)kvmmig_probe_arg(regs, 1);

	if (!kvmmig_sessions_attached())
		return 1;
	*(struct kvm **)ri->data = file->private_data;
	return 0;
}

/*
 * The VM may be freed by now (the reference dropped was the last): its
 * address is only a key here, dereferenced by kvmmig_vm_put_seen() only if
 * an attached session, which holds a reference, has it.
 */
static int kvmmig_put_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	kvmmig_vm_put_seen(*(struct kvm **)ri->data);
	return 0;
}

/* Releases that run at once; kvm_put_kvm() may sleep destroying a VM. */
#define KVMMIG_RELEASE_MAXACTIVE	32

#define KVMMIG_RELEASE_PROBE(sym, entry) {				\
	.kp.symbol_name	= sym,						\
	.entry_handler	= entry,					\
	.handler	= kvmmig_put_return,				\
	.data_size	= sizeof(struct kvm *),				\
	.maxactive	= KVMMIG_RELEASE_MAXACTIVE,			\
}

static struct kretprobe kvmmig_release_probes[] = {
	KVMMIG_RELEASE_PROBE(KVMMIG_PUT_KVM_SYMBOL, kvmmig_put_entry),
	KVMMIG_RELEASE_PROBE(KVMMIG_VCPU_RELEASE_SYMBOL, kvmmig_vcpu_file_entry),
	KVMMIG_RELEASE_PROBE(KVMMIG_VCPU_STATS_RELEASE_SYMBOL, kvmmig_vcpu_file_entry),
	KVMMIG_RELEASE_PROBE(KVMMIG_VM_STATS_RELEASE_SYMBOL, kvmmig_vm_file_entry),
};

static bool kvmmig_release_on[ARRAY_SIZE(kvmmig_release_probes)];

/* Each probe on its own: one that fails only costs promptness. */
void kvmmig_release_probes_register(void)
{
	unsigned int i;
	int r;

	for (i = 0; i < ARRAY_SIZE(kvmmig_release_probes); i++) {
		r = register_kretprobe(&kvmmig_release_probes[i]);
		if (r)
			pr_warn("kvmmig: cannot probe %s (%d): a VM let go by its VMM is released within a stats window, not at once\n",
				kvmmig_release_probes[i].kp.symbol_name, r);
		kvmmig_release_on[i] = !r;
	}
}

/* Whether every release is watched (KVMMIG_CAP_PROMPT_RELEASE). */
bool kvmmig_release_probes_attached(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(kvmmig_release_probes); i++)
		if (!kvmmig_release_on[i])
			return false;
	return true;
}

/* No handler runs, or will run, once this returns. */
void kvmmig_release_probes_unregister(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(kvmmig_release_probes); i++) {
		if (kvmmig_release_on[i])
			unregister_kretprobe(&kvmmig_release_probes[i]);
		kvmmig_release_on[i] = false;
	}
}
