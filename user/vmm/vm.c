// SPDX-License-Identifier: GPL-2.0-only
/*
 * Creating and destroying a built-in VM: check the configuration (and say
 * what is wrong with it), open /dev/kvm, enable the dirty-logging
 * capabilities the chosen dirty source needs (they must come before any
 * vCPU exists), lay out memory, load guest code, create the vCPUs and
 * hand the VM to libkvmmig (vm_kvmmig.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "log.h"
#include "vm.h"
#include "vm_internal.h"

static const char *const workload_names[NR_WORKLOADS] = {
	[WORKLOAD_IDLE] = "idle",
	[WORKLOAD_INCR] = "incr",
	[WORKLOAD_RANDOM] = "random",
	[WORKLOAD_RATE] = "rate",
	[WORKLOAD_COMPUTE] = "compute",
	[WORKLOAD_SEQ] = "seq",
	[WORKLOAD_RAND] = "rand",
	[WORKLOAD_ASSERT] = "assert",
};

const char *workload_name(enum guest_workload w)
{
	return w < NR_WORKLOADS ? workload_names[w] : "?";
}

int workload_parse(const char *name)
{
	int i;

	for (i = 0; i < NR_WORKLOADS; i++)
		if (!strcmp(name, workload_names[i]))
			return i;
	return -EINVAL;
}

uint64_t vm_host_ram_bytes(void)
{
	struct sysinfo si;

	if (sysinfo(&si))
		return 0;
	return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
}

static int vm_check_config(const struct vm_config *cfg)
{
	uint64_t pages = cfg->ram_bytes / GUEST_PAGE_SIZE, host = vm_host_ram_bytes();

	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS) {
		kvmmig_err("%u vCPUs requested: expected 1 to %u", cfg->nr_vcpus, VM_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->ram_bytes < VM_MIN_RAM || cfg->ram_bytes % GUEST_PAGE_SIZE) {
		kvmmig_err("guest RAM of %llu bytes: expected a multiple of 4 KiB, at least 1 MiB",
			   (unsigned long long)cfg->ram_bytes);
		return -EINVAL;
	}
	if (host && cfg->ram_bytes > host) {
		kvmmig_err("guest RAM of %llu MiB is more than this host has (%llu MiB of RAM and swap)",
			   (unsigned long long)(cfg->ram_bytes >> 20),
			   (unsigned long long)(host >> 20));
		return -E2BIG;
	}
	if (cfg->nr_slots < 1 || cfg->nr_slots > VM_MAX_SLOTS - 1 || cfg->nr_slots > pages) {
		kvmmig_err("%u RAM memslots requested: expected 1 to %u (and no more than pages)",
			   cfg->nr_slots, VM_MAX_SLOTS - 1);
		return -EINVAL;
	}
	if (cfg->guest.workload >= NR_WORKLOADS) {
		kvmmig_err("unknown workload %llu", (unsigned long long)cfg->guest.workload);
		return -EINVAL;
	}
	if (kvmmig_check_ring_entries(cfg->ring_entries))
		return -EINVAL;
	if (cfg->guest.mem_pages && cfg->guest.mem_pages < cfg->nr_vcpus) {
		kvmmig_err("workload range of %llu pages is smaller than one page per vCPU",
			   (unsigned long long)cfg->guest.mem_pages);
		return -EINVAL;
	}
	return 0;
}

static int vm_enable_cap(struct vm *vm, uint32_t cap, uint64_t arg, const char *what)
{
	struct kvm_enable_cap ec = { .cap = cap, .args[0] = arg };

	if (ioctl(vm->fd, KVM_ENABLE_CAP, &ec) < 0) {
		int err = errno;

		kvmmig_err("KVM_ENABLE_CAP(%s) failed: %s (errno %d)", what, strerror(err), err);
		return -err;
	}
	return 0;
}

static int vm_enable_dirty_caps(struct vm *vm)
{
	const struct vm_config *cfg = &vm->cfg;
	int ret;

	if (cfg->manual_protect) {
		uint64_t flags = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

		if (cfg->initially_set)
			flags |= KVM_DIRTY_LOG_INITIALLY_SET;
		ret = vm_enable_cap(vm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags,
				    "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		if (ret)
			return ret;
	}
	if (cfg->ring_entries) {
		uint64_t bytes = cfg->ring_entries * sizeof(struct kvm_dirty_gfn);
		int max;

		/* The acquire/release flavour is what userspace must use when KVM has it. */
		max = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
		if (max > 0)
			return vm_enable_cap(vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, bytes,
					     "KVM_CAP_DIRTY_LOG_RING_ACQ_REL");
		max = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
		if (max <= 0) {
			kvmmig_err("this KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING)");
			return -EOPNOTSUPP;
		}
		if (bytes > (uint64_t)max) {
			kvmmig_err("dirty ring of %u entries is larger than KVM allows (%llu entries)",
				   cfg->ring_entries,
				   (unsigned long long)(max / sizeof(struct kvm_dirty_gfn)));
			return -E2BIG;
		}
		return vm_enable_cap(vm, KVM_CAP_DIRTY_LOG_RING, bytes, "KVM_CAP_DIRTY_LOG_RING");
	}
	return 0;
}

static void vm_init_shared(struct vm *vm)
{
	struct guest_shared *g = vm->shared;

	*g = vm->cfg.guest;
	g->nr_vcpus = vm->cfg.nr_vcpus;
	if (!g->mem_pages) {
		g->mem_gpa = GUEST_RAM_GPA;
		g->mem_pages = vm->cfg.ram_bytes / GUEST_PAGE_SIZE;
	}
	g->tsc_khz = vm->tsc_khz;
	g->stop = 0;
}

int dirty_prepare_config(enum dirty_backend backend, struct vm_config *cfg)
{
	struct dirty_vm_caps caps = {
		.ring_entries = cfg->ring_entries,
		.manual_protect = cfg->manual_protect,
	};
	int ret = dirty_prepare_caps(backend, &caps);

	cfg->ring_entries = caps.ring_entries;
	cfg->manual_protect = caps.manual_protect;
	return ret;
}

int vm_alloc(const struct vm_config *cfg, struct vm **out)
{
	struct vm *vm;
	unsigned int i;
	int ret;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	vm->fd = -1;
	vm->kvm_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->cb_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	for (i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		kvmmig_err("cannot open /dev/kvm: %s", strerror(errno));
		vm_destroy(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
	uint64_t sys_size;
	struct vm *vm;
	unsigned int i;
	int ret;

	ret = vm_check_config(cfg);
	if (!ret)
		ret = vm_alloc(cfg, &vm);
	if (ret)
		return ret;
	vm->fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		ret = kvmmig_ioctl_err("KVM_CREATE_VM", errno);
		goto err;
	}
	ret = vm_enable_dirty_caps(vm);
	if (ret)
		goto err;

	sys_size = ALIGN_UP(vm_vcpu_area_gpa(vm, cfg->nr_vcpus), 2ULL << 20);
	ret = vm_mem_setup(vm, sys_size);
	if (ret)
		goto err;
	ret = vm_load_image(vm);
	if (ret)
		goto err;
	ret = vm_x86_setup_memory(vm);
	if (ret)
		goto err;
	vm->shared = vm_gpa_to_hva(vm, GUEST_SHARED_GPA, sizeof(*vm->shared));
	vm->entry_rip = (uint64_t)(uintptr_t)guest_main;

	for (i = 0; i < cfg->nr_vcpus; i++) {
		ret = vcpu_create(vm, i);
		if (ret)
			goto err;
	}
	ret = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	if (ret <= 0) {
		ret = kvmmig_ioctl_err("KVM_GET_TSC_KHZ", ret < 0 ? errno : EINVAL);
		goto err;
	}
	vm->tsc_khz = ret;
	vm_init_shared(vm);
	ret = vm_kvmmig_wrap(vm);
	if (ret)
		goto err;
	*out = vm;
	return 0;
err:
	vm_destroy(vm);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].thread_started) {
			vm_stop(vm);
			break;
		}
	vm_throttle_stop(vm);
	kvmmig_vm_free(vm->kv);
	for (i = 0; i < VM_MAX_VCPUS; i++)
		if (vm->vcpus[i].vm)
			vcpu_destroy(&vm->vcpus[i]);
	if (vm->fd >= 0)
		close(vm->fd);
	vm_mem_teardown(vm);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->cb_lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}
