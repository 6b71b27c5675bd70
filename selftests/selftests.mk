# SPDX-License-Identifier: GPL-2.0-only
#
# kselftest-harness tests (selftests/*_test.c, one program each) and
# benchmarks (selftests/*_perf.c, run by `make bench`).  The harness headers
# are extracted from Debian's linux-source-6.1 into $(O)/kselftest.

KSFT_DIR	:= $(O)/kselftest
KSFT_HDR	:= $(KSFT_DIR)/kselftest_harness.h
TEST_SRCS	:= $(wildcard selftests/*_test.c)
PERF_SRCS	:= $(wildcard selftests/*_perf.c)
TEST_PROGS	:= $(patsubst selftests/%.c,$(O)/selftests/%,$(TEST_SRCS))
PERF_PROGS	:= $(patsubst selftests/%.c,$(O)/selftests/%,$(PERF_SRCS))
# QEMU guest firmware (selftests/*_bios.S), next to the programs that load
# it: qemu_perf's halting guest, qemu_module_test's dirtying one.
QEMU_BIOS	:= $(patsubst selftests/%.S,$(O)/selftests/%.bin,$(wildcard selftests/*_bios.S))
TEST_CFLAGS	:= $(VMM_CFLAGS) -I$(KSFT_DIR) -Iselftests

all: $(TEST_PROGS) $(PERF_PROGS) $(QEMU_BIOS)

$(KSFT_HDR):
	scripts/kselftest-harness.sh $(KSFT_DIR)

$(O)/selftests/%: selftests/%.c $(wildcard selftests/*.h) $(LIBVMM) $(LIBKVMMIG) $(KSFT_HDR) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	$(quiet) CCLD $@
	$(Q)$(CC) $(TEST_CFLAGS) $(LDFLAGS_COMMON) -o $@ $< $(LIBVMM) $(LIBKVMMIG) $(LIBS)

$(O)/selftests/%_bios.bin: selftests/%_bios.S selftests/qemu_guest.h
	@mkdir -p $(dir $@)
	$(quiet) AS $@
	$(Q)$(CC) -Iselftests -c -o $(@:.bin=.o) $<
	$(Q)objcopy -O binary -j .text $(@:.bin=.o) $@

# Host tests first, then (when selftests/vm/vm.mk provides it) the module
# and BPF tests inside Debian kernels under QEMU; one summary for all.
check: deps
	@$(MAKE) --no-print-directory all
	@rm -rf $(O)/tap
	@TAPDIR=$(O)/tap scripts/run-tests.sh $(TEST_PROGS)
	$(if $(FUZZ_ENABLED),@$(MAKE) --no-print-directory fuzz-brief)
	$(if $(VMCHECK_ENABLED),@$(MAKE) --no-print-directory vmcheck)
	@scripts/tap-summary.sh $(O)/tap/*.tap

bench: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(O)/bench
	@# Every benchmark runs; one that cannot (say QEMU without KVM) is named at the end.
	@failed=; for p in $(PERF_PROGS); do echo "# ---- $$p"; \
		$$p --json $(O)/bench/$$(basename $$p).json || failed="$$failed $$(basename $$p)"; \
	done; if [ -n "$$failed" ]; then echo "# failed:$$failed"; exit 1; fi
