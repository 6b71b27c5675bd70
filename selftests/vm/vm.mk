# SPDX-License-Identifier: GPL-2.0-only
#
# The module's home: Debian kernels 6.1 (bookworm) and 6.12 (backports)
# booted under QEMU TCG with nested SVM, since the host cannot load modules.
# `make vmcheck` (part of `make check`) builds kvmmig.ko for each kernel and
# runs VM_TEST_PROGS inside both with the module loaded; their TAP and one
# per-kernel TAP (boot, module, timeouts, clean kernel log) join the summary
# in $(O)/tap.  `make vmdemo` boots 6.1 with the module and runs
# `kvmmig demo` there, live, then `kvmmig converge` making a QEMU guest's
# migration converge (selftests/qemu_converge_demo.c).  selftests/vm/run.sh
# does the work; the kernels are cached in $(O)/kernels by
# scripts/fetch-kernels.sh.

VMCHECK_ENABLED	:= 1

# The programs that need the module, BPF function tracing or a KVM that
# runs guests on (emulated) SVM rather than the host's PVM: the module tests,
# the module fuzzer, the BPF tests (which SKIP those parts on the host),
# dirty_log_test, kvmmig converge with the module, and the tests of kvmmig
# beside Debian's QEMU (its migration made to converge by kvmmig converge).
# The migration tests exercise user space only, and vm_test's 16 GiB guest
# does not fit the machine.
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
# The QEMU part of the demo: QEMU's own migration of a dirtying guest, made
# to converge by `kvmmig converge` (VMDEMO_QEMU=0 leaves it out).
VMDEMO_QEMU	?= 1
QEMU_DEMO	:= $(O)/selftests/qemu_converge_demo
# Both parts in one boot: kvmmig demo takes up to a few minutes there.
VMDEMO_TIMEOUT	?= 900

VM_RUN_TIMEOUT	= $(VM_TIMEOUT)
VM_RUN		= O=$(O) TAPDIR=$(O)/tap VM_TIMEOUT=$(VM_RUN_TIMEOUT) selftests/vm/run.sh \
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

# The command's status is the first failure's: the QEMU part runs anyway.
# (\$$: a $ for the guest's shell, not the host's, which sees it in "...").
VMDEMO_CMD	= $(strip $(KVMMIG) demo $(VMDEMO_ARGS))$(if $(filter 1,$(VMDEMO_QEMU)),; \
		  a=\$$?; $(QEMU_DEMO); b=\$$?; [ \$$a -ne 0 ] && exit \$$a; exit \$$b)

vmdemo: VM_RUN_TIMEOUT = $(VMDEMO_TIMEOUT)
vmdemo: deps
	$(MAKE) $(KVMMIG) $(if $(filter 1,$(VMDEMO_QEMU)),$(QEMU_DEMO) $(QEMU_BIOS))
	@$(VM_RUN) -k $(VMDEMO_KERNEL) -x $(KVMMIG) \
		$(if $(filter 1,$(VMDEMO_QEMU)),-x $(QEMU_DEMO)) -c "$(VMDEMO_CMD)"
