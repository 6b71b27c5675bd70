# SPDX-License-Identifier: GPL-2.0-only
#
# The libFuzzer targets: the migration stream parser (selftests/stream_fuzz.c),
# the receiver's connection and session handling over loopback
# (selftests/session_fuzz.c) and the snapshot file reader
# (selftests/snapshot_fuzz.c), built with clang straight from their sources
# under AddressSanitizer and UndefinedBehaviorSanitizer.  `make fuzz` runs
# the stream target for FUZZ_SECONDS (10 minutes), the session target for
# SESSION_FUZZ_SECONDS and the snapshot target for SNAPSHOT_FUZZ_SECONDS;
# `make fuzz-brief` runs them for FUZZ_BRIEF_SECONDS, SESSION_FUZZ_BRIEF_SECONDS
# and SNAPSHOT_FUZZ_BRIEF_SECONDS and writes one result each to
# $(O)/tap/<target>.tap for scripts/tap-summary.sh, so
# `make check` can count it like a test program (the recipe itself succeeds
# either way, as scripts/run-tests.sh does; the TAP says what happened).
# The seed corpora are written by the same files built with -DSTREAM_FUZZ_SEEDS
# and -DSNAPSHOT_FUZZ_SEEDS;
# what the fuzzer learns is kept in $(O)/fuzz/corpus and crash reproducers
# land in $(O)/fuzz/ (run `$(O)/fuzz/stream_fuzz FILE` to replay one).

FUZZ_ENABLED		:= 1
FUZZ_CC			?= clang
FUZZ_SECONDS		?= 600
FUZZ_BRIEF_SECONDS	?= 30
SESSION_FUZZ_SECONDS	?= 300
SESSION_FUZZ_BRIEF_SECONDS ?= 20
SNAPSHOT_FUZZ_SECONDS	?= 300
SNAPSHOT_FUZZ_BRIEF_SECONDS ?= 20
FUZZ_DIR		:= $(O)/fuzz
FUZZ_LIB_SRCS		:= user/lib/stream.c user/lib/ram_writer.c user/lib/csum.c user/lib/log.c
# The listener and the channels can be TLS: tls.c and GnuTLS come along.
SESSION_FUZZ_SRCS	:= user/lib/mig_listen.c user/lib/net.c user/lib/tls.c user/lib/tls_creds.c $(FUZZ_LIB_SRCS)
FUZZ_DEPS		:= selftests/stream_fuzz.c selftests/fuzz_util.h $(FUZZ_LIB_SRCS) \
			   $(wildcard user/lib/*.h include/uapi/linux/*.h)
# The reader and the header check, restoring into a fake VM (no KVM).
SNAPSHOT_FUZZ_SRCS	:= user/lib/snapshot_load.c user/lib/snapshot_read.c user/lib/snapshot_chain.c \
			   user/lib/snapshot_file.c \
			   user/lib/kvmmig_vm.c user/lib/gfn_ring.c user/lib/stream.c user/lib/csum.c \
			   user/lib/log.c user/lib/zero.c
SNAPSHOT_FUZZ_DEPS	:= selftests/snapshot_fuzz.c selftests/fuzz_util.h $(SNAPSHOT_FUZZ_SRCS) \
			   $(wildcard user/lib/*.h include/uapi/linux/*.h)
SESSION_FUZZ_DEPS	:= selftests/session_fuzz.c selftests/fuzz_util.h $(SESSION_FUZZ_SRCS) \
			   $(wildcard user/lib/*.h include/uapi/linux/*.h)
FUZZ_CFLAGS		:= -std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE \
			   -Wall -Wextra -Wno-unused-parameter \
			   -Wno-gnu-variable-sized-type-not-at-end -Iinclude/uapi -Iuser/lib
FUZZ_SANITIZE		:= -fsanitize=address,undefined -fno-sanitize-recover=undefined
# Page batches are up to 512 KiB; raw inputs that hold a few pages need room.
FUZZ_FLAGS		:= -max_len=65536 -artifact_prefix=$(FUZZ_DIR)/ -print_final_stats=1

.PHONY: fuzz fuzz-brief

$(FUZZ_DIR)/stream_fuzz: $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -fsanitize=fuzzer -o $@ \
		selftests/stream_fuzz.c $(FUZZ_LIB_SRCS) -pthread

$(FUZZ_DIR)/stream_seeds: $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -DSTREAM_FUZZ_SEEDS -o $@ \
		selftests/stream_fuzz.c $(FUZZ_LIB_SRCS) -pthread

# Rewritten whenever the stream format may have changed.
$(FUZZ_DIR)/seeds/.stamp: $(FUZZ_DIR)/stream_seeds
	$(Q)rm -rf $(dir $@) && mkdir -p $(dir $@) $(FUZZ_DIR)/corpus
	$(Q)$< $(dir $@) && touch $@

$(FUZZ_DIR)/session_fuzz: $(SESSION_FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -fsanitize=fuzzer -o $@ \
		selftests/session_fuzz.c $(SESSION_FUZZ_SRCS) -pthread $(shell pkg-config --libs gnutls)

$(FUZZ_DIR)/snapshot_fuzz: $(SNAPSHOT_FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -fsanitize=fuzzer -o $@ \
		selftests/snapshot_fuzz.c $(SNAPSHOT_FUZZ_SRCS) -pthread

$(FUZZ_DIR)/snapshot_seeds: $(SNAPSHOT_FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -DSNAPSHOT_FUZZ_SEEDS -o $@ \
		selftests/snapshot_fuzz.c $(SNAPSHOT_FUZZ_SRCS) -pthread

# Rewritten whenever the snapshot file format may have changed.
$(FUZZ_DIR)/snapshot_seeds_dir/.stamp: $(FUZZ_DIR)/snapshot_seeds
	$(Q)rm -rf $(dir $@) && mkdir -p $(dir $@) $(FUZZ_DIR)/snapshot_corpus
	$(Q)$< $(dir $@) && touch $@

# $(call fuzz_tap,TARGET,SECONDS,CORPORA): a brief run of TARGET as one TAP result.
define fuzz_tap
	@mkdir -p $(O)/tap $(3)
	@echo "# ---- $(1) ($(2) s)"
	@log=$(FUZZ_DIR)/$(1)_brief.log; \
	$(FUZZ_DIR)/$(1) $(FUZZ_FLAGS) -max_total_time=$(2) $(3) >$$log 2>&1; rc=$$?; \
	runs=$$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' $$log); \
	{ echo "1..1"; \
	  if [ $$rc -eq 0 ] && [ -n "$$runs" ]; then \
		echo "ok 1 $(1): $$runs runs, no crash"; \
	  else \
		echo "not ok 1 $(1): exit $$rc, see $$log"; \
		grep -E '^(SUMMARY|$(1):|==[0-9]+==ERROR)|runtime error|Test unit written' $$log | \
			sed 's/^/# /'; \
	  fi; } | tee $(O)/tap/$(1).tap
endef

SNAPSHOT_FUZZ_CORPORA	:= $(FUZZ_DIR)/snapshot_corpus $(FUZZ_DIR)/snapshot_seeds_dir

fuzz: deps $(FUZZ_DIR)/stream_fuzz $(FUZZ_DIR)/seeds/.stamp $(FUZZ_DIR)/session_fuzz \
		$(FUZZ_DIR)/snapshot_fuzz $(FUZZ_DIR)/snapshot_seeds_dir/.stamp
	$(FUZZ_DIR)/stream_fuzz $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
		$(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	@mkdir -p $(FUZZ_DIR)/session_fuzz_corpus
	$(FUZZ_DIR)/session_fuzz $(FUZZ_FLAGS) -max_total_time=$(SESSION_FUZZ_SECONDS) \
		$(FUZZ_DIR)/session_fuzz_corpus
	$(FUZZ_DIR)/snapshot_fuzz $(FUZZ_FLAGS) -max_total_time=$(SNAPSHOT_FUZZ_SECONDS) \
		$(SNAPSHOT_FUZZ_CORPORA)

fuzz-brief: $(FUZZ_DIR)/stream_fuzz $(FUZZ_DIR)/seeds/.stamp $(FUZZ_DIR)/session_fuzz \
		$(FUZZ_DIR)/snapshot_fuzz $(FUZZ_DIR)/snapshot_seeds_dir/.stamp
	$(call fuzz_tap,stream_fuzz,$(FUZZ_BRIEF_SECONDS),$(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds)
	$(call fuzz_tap,session_fuzz,$(SESSION_FUZZ_BRIEF_SECONDS),$(FUZZ_DIR)/session_fuzz_corpus)
	$(call fuzz_tap,snapshot_fuzz,$(SNAPSHOT_FUZZ_BRIEF_SECONDS),$(SNAPSHOT_FUZZ_CORPORA))
