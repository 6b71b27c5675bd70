# SPDX-License-Identifier: GPL-2.0-only
#
# kvmmig top-level Makefile.  `make` builds the user side (libkvmmig, the
# kvmmig command, the BPF skeletons and the selftests); `make module` builds
# kvmmig.ko with Kbuild; `make check`, `make demo` and `make bench` first run
# `make deps`, which installs whatever Debian packages are missing.  Each
# part keeps its rules in its own fragment (user/user.mk, bpf/bpf.mk,
# selftests/selftests.mk, selftests/vm/vm.mk); this file holds what they
# share.

O		?= build
# Kernel-style quiet build; `make V=1` shows the commands.
ifeq ($(V),1)
Q		:=
quiet		= @true
else
Q		:= @
quiet		= @printf '  %-7s %s\n'
endif
CC		?= gcc
# Debian's headers for the running kernel if present, else the installed ones.
KDIR		?= $(firstword $(wildcard /lib/modules/$(shell uname -r)/build) \
			$(wildcard /usr/src/linux-headers-*-amd64))

WARN		:= -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS_COMMON	:= -std=gnu11 -g -O2 $(WARN) -D_GNU_SOURCE \
		   -Iinclude/uapi -Iuser/lib -I$(O)
# Guest code runs in the guest from the same binary, at the addresses the host
# linked it at: no PIE.  libkvmmig is static for the same reason.
LDFLAGS_COMMON	:= -no-pie -pthread
LIBS		:= -lmnl -lbpf -lelf -lz -ljson-c $(shell pkg-config --libs gnutls)

.PHONY: all deps module module-clean check demo bench fuzz clean vmcheck vmdemo
all:

deps:
	@scripts/deps.sh

include user/user.mk
-include bpf/bpf.mk
include selftests/selftests.mk
-include selftests/vm/vm.mk
-include selftests/fuzz.mk

# A few GiB, as a migration worth watching; `make demo DEMO_ARGS=` for kvmmig's 1 GiB.
DEMO_ARGS ?= --ram 4G

demo: deps
	@$(MAKE) --no-print-directory all
	$(KVMMIG) demo $(DEMO_ARGS)

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) W=1 modules

module-clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean

clean:
	rm -rf $(O)
