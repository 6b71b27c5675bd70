# SPDX-License-Identifier: GPL-2.0-only
#
# The module's home: Debian kernels 6.1 (bookworm) and 6.12 (backports)
# booted under QEMU TCG with nested SVM, since the host cannot load modules.
# `make vmcheck` (part of `make check`) builds kvmmig.ko for each kernel and
# runs VM_TEST_PROGS inside both with the module loaded; their TAP and one
# per-kernel TAP (boot, module, timeouts, clean kernel log) join the summary
# in $(O)/tap.  `make vmdemo` boots 6.1 with the module and runs
# `kvmmig demo` there, live.  selftests/vm/run.sh does the work; the kernels
# are cached in $(O)/kernels by scripts/fetch-kernels.sh.

VMCHECK_ENABLED	:= 1

# The programs that need the module, BPF function tracing or a KVM that
# runs guests on (emulated) SVM rather than the host's PVM: the module tests,
# the module fuzzer, the BPF tests (which SKIP those parts on the host),
# dirty_log_test, kvmmig converge with the module, and the tests of kvmmig
# beside Debian's QEMU (its migration made to converge by kvmmig converge).  The migration tests exercise user space only, and
# vm_test's 16 GiB guest does not fit the machine.
VM_TEST_PROGS	?= $(addprefix $(O)/selftests/,kvmmig_module_test kvmmig_fuzz_test \
			bpf_rates_test dirty_log_test converge_module_test \
			qemu_module_test qemu_migration_test qemu_converge_test)

VM_KERNELS	?= 6.1 6.12
# Extra files for the guest, relative or absolute paths: by default the
# kvmmig command (tests find it next to their folder), the tools tests may
# call as on the host (busybox provides the rest), and Debian's QEMU for
# the qemu_*_test programs: the binary (its libraries come with it), the one
# firmware file it loads for `-accel kvm -bios`, and the test's guest image.
VM_QEMU_FILES	:= /usr/bin/qemu-system-x86_64 /usr/share/qemu/kvmvapic.bin $(QEMU_BIOS)
VM_EXTRA_FILES	?= $(KVMMIG) $(wildcard /usr/sbin/bpftool /usr/sbin/ip /usr/sbin/tc) \
		   $(VM_QEMU_FILES)
# Seconds per program inside the guest before it counts as hung: a hang
# costs this much per kernel, so it is kept well below the host's 600.
VM_TIMEOUT	?= 300
VMDEMO_KERNEL	?= 6.1
# Source and destination each hold the whole guest inside the 2 GiB machine.
VMDEMO_ARGS	?= --ram 512M

VM_RUN		= O=$(O) TAPDIR=$(O)/tap VM_TIMEOUT=$(VM_TIMEOUT) selftests/vm/run.sh \
		  $(addprefix -x ,$(VM_EXTRA_FILES))

# Under `make check` the summary and exit status come from check's own
# tap-summary over every TAP file; alone, vmcheck prints its own.
ifneq ($(filter check,$(MAKECMDGOALS)),)
export VMCHECK_IN_CHECK := 1
endif

vmcheck: deps
	$(MAKE) $(VM_TEST_PROGS) $(KVMMIG) $(QEMU_BIOS)
	$(VM_RUN) $(addprefix -k ,$(VM_KERNELS)) $(VM_TEST_PROGS)
	$(if $(VMCHECK_IN_CHECK),,@scripts/tap-summary.sh $(O)/tap/vm-*.tap)

vmdemo: deps
	$(MAKE) $(KVMMIG)
	@$(VM_RUN) -k $(VMDEMO_KERNEL) -x $(KVMMIG) -c "$(strip $(KVMMIG) demo $(VMDEMO_ARGS))"
