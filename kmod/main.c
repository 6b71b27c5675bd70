// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvmmig.ko: live-migration helpers for stock KVM.  This file holds the
 * module parameters, the /dev/kvmmig misc device (API version,
 * CHECK_EXTENSION, ATTACH) and module init/exit.  Open session fds,
 * queued throttle sleeps and queued "VM gone" checks hold module
 * references, so the module cannot be unloaded while any exists; on unload
 * the probes are unregistered and synchronised before the code goes away.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

#include "kvmmig.h"

unsigned int kvmmig_window_ms = 1000;
module_param_named(stats_window_ms, kvmmig_window_ms, uint, 0444);
MODULE_PARM_DESC(stats_window_ms, "Window of per-vCPU dirty rates, ms (10-60000, default 1000)");

unsigned int kvmmig_event_interval_ms = 1000;
module_param_named(event_interval_ms, kvmmig_event_interval_ms, uint, 0444);
MODULE_PARM_DESC(event_interval_ms, "Least time between two over-limit events of one vCPU, ms (default 1000)");

unsigned int kvmmig_max_sleep_ms = 1000;
module_param_named(max_sleep_ms, kvmmig_max_sleep_ms, uint, 0444);
MODULE_PARM_DESC(max_sleep_ms, "Longest single throttle sleep, ms (1-10000, default 1000)");

static long kvmmig_check_extension(unsigned long ext)
{
	switch (ext) {
	case KVMMIG_CAP_HARVEST:
	case KVMMIG_CAP_VCPU_STATS:
	case KVMMIG_CAP_RING_QUOTA:
	case KVMMIG_CAP_DETACH:
		return 1;
	case KVMMIG_CAP_CPU_THROTTLE:
	case KVMMIG_CAP_RUN_TIME:
		return kvmmig_probe_attached(KVMMIG_PROBE_ENTRY) &&
		       kvmmig_probe_attached(KVMMIG_PROBE_EXIT);
	case KVMMIG_CAP_DIRTY_LIMIT:
		return kvmmig_probe_attached(KVMMIG_PROBE_EXIT) &&
		       kvmmig_probe_attached(KVMMIG_PROBE_PUSH);
	case KVMMIG_CAP_DIRTY_COUNT:
		return kvmmig_probe_attached(KVMMIG_PROBE_PUSH);
	case KVMMIG_CAP_BITMAP_DIRTY:
		return kvmmig_probe_attached(KVMMIG_PROBE_EXIT) &&
		       kvmmig_probe_attached(KVMMIG_PROBE_MARK_DIRTY);
	case KVMMIG_CAP_PROMPT_RELEASE:
		return kvmmig_release_probes_attached();
	case KVMMIG_CAP_RING_FULL_COUNT:
		return kvmmig_probe_attached(KVMMIG_PROBE_RING_EXIT);
	case KVMMIG_CAP_NETLINK:
		return KVMMIG_GENL_VERSION;
	case KVMMIG_CAP_MAX_SESSIONS:
		return KVMMIG_MAX_SESSIONS;
	default:
		return 0;
	}
}

static long kvmmig_dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case KVMMIG_GET_API_VERSION:
		return arg ? -EINVAL : KVMMIG_API_VERSION;
	case KVMMIG_CHECK_EXTENSION:
		return kvmmig_check_extension(arg);
	case KVMMIG_ATTACH:
		return kvmmig_attach((struct kvmmig_attach __user *)arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations kvmmig_dev_fops = {
	.owner		= THIS_MODULE,
	.open		= nonseekable_open,
	.unlocked_ioctl	= kvmmig_dev_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice kvmmig_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "kvmmig",
	.fops	= &kvmmig_dev_fops,
	.mode	= 0600,
};

static void kvmmig_abi_checks(void)
{
	BUILD_BUG_ON(sizeof(struct kvmmig_attach) != 32);
	BUILD_BUG_ON(sizeof(struct kvmmig_memslot) != 40);
	BUILD_BUG_ON(sizeof(struct kvmmig_info) != 80);
	BUILD_BUG_ON(sizeof(struct kvmmig_slot_bitmap) != 56);
	BUILD_BUG_ON(sizeof(struct kvmmig_harvest_vcpu) != 24);
	BUILD_BUG_ON(sizeof(struct kvmmig_harvest) != 80);
	BUILD_BUG_ON(sizeof(struct kvmmig_vcpu_stats) != 120);
	BUILD_BUG_ON(sizeof(struct kvmmig_stats) != 72);
	BUILD_BUG_ON(sizeof(struct kvmmig_throttle) != 64);
}

static int kvmmig_params_check(void)
{
	if (kvmmig_window_ms < 10 || kvmmig_window_ms > 60000 ||
	    !kvmmig_max_sleep_ms || kvmmig_max_sleep_ms > 10000) {
		pr_err("kvmmig: stats_window_ms must be 10-60000 and max_sleep_ms 1-10000\n");
		return -EINVAL;
	}
	return 0;
}

static int __init kvmmig_init(void)
{
	int r;

	kvmmig_abi_checks();
	r = kvmmig_params_check();
	if (r)
		return r;
	r = kvmmig_probes_register();
	if (r)
		return r;
	kvmmig_release_probes_register();
	r = kvmmig_nl_register();
	if (r)
		goto err_probes;
	r = misc_register(&kvmmig_dev);
	if (r)
		goto err_nl;
	pr_info("kvmmig: version " KVMMIG_VERSION ", API %d, dirty counts %s, without a ring %s\n",
		KVMMIG_API_VERSION,
		kvmmig_probe_attached(KVMMIG_PROBE_PUSH) ? "on" : "off",
		kvmmig_probe_attached(KVMMIG_PROBE_MARK_DIRTY) ? "on" : "off");
	return 0;

err_nl:
	kvmmig_nl_unregister();
err_probes:
	kvmmig_release_probes_unregister();
	kvmmig_probes_unregister();
	return r;
}

static void __exit kvmmig_exit(void)
{
	misc_deregister(&kvmmig_dev);
	kvmmig_nl_unregister();
	kvmmig_release_probes_unregister();
	kvmmig_probes_unregister();
}

module_init(kvmmig_init);
module_exit(kvmmig_exit);

MODULE_DESCRIPTION("kvmmig: dirty ring harvesting, per-vCPU dirty accounting and throttling for stock KVM");
MODULE_AUTHOR("kvmmig developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(KVMMIG_VERSION);
MODULE_SOFTDEP("pre: kvm");
