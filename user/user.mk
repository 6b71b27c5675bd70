# SPDX-License-Identifier: GPL-2.0-only
#
# libkvmmig (user/lib), the built-in VMM (user/vmm, a library of its own
# that uses libkvmmig like any VMM would: only the VMM and its users see
# user/vmm's headers) and the kvmmig command.  Guest code (user/vmm/guest)
# is compiled freestanding with general registers only: on a PVM host KVM
# runs guests through its instruction emulator, which cannot execute SSE or
# AVX, and the guest has no libc.

LIB_SRCS	:= $(wildcard user/lib/*.c)
VMM_SRCS	:= $(wildcard user/vmm/*.c)
GUEST_SRCS	:= $(wildcard user/vmm/guest/*.c)
CMD_SRCS	:= $(wildcard user/*.c)

LIB_OBJS	:= $(patsubst %.c,$(O)/%.o,$(LIB_SRCS))
VMM_OBJS	:= $(patsubst %.c,$(O)/%.o,$(VMM_SRCS))
GUEST_OBJS	:= $(patsubst %.c,$(O)/%.o,$(GUEST_SRCS))
CMD_OBJS	:= $(patsubst %.c,$(O)/%.o,$(CMD_SRCS))
LIBKVMMIG	:= $(O)/libkvmmig.a
LIBVMM		:= $(O)/libkvmmig-vmm.a
KVMMIG		:= $(O)/kvmmig
VMM_CFLAGS	:= $(CFLAGS_COMMON) -Iuser/vmm

GUEST_CFLAGS	:= -std=gnu11 -O2 -g $(WARN) -Iuser/vmm -ffreestanding \
		   -fno-builtin -fno-tree-loop-distribute-patterns \
		   -mgeneral-regs-only -mno-red-zone -fno-stack-protector \
		   -fno-pic -fno-pie -fcf-protection=none \
		   -fno-asynchronous-unwind-tables -fno-omit-frame-pointer

all: $(LIBKVMMIG) $(LIBVMM) $(KVMMIG)

$(O)/user/vmm/guest/%.o: user/vmm/guest/%.c $(wildcard user/vmm/*.h user/vmm/guest/*.h)
	@mkdir -p $(dir $@)
	$(quiet) GUESTCC $@
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

# The engine is compiled without user/vmm on its include path.
$(O)/user/lib/%.o: user/lib/%.c $(wildcard user/lib/*.h include/uapi/linux/*.h) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	$(quiet) CC $@
	$(Q)$(CC) $(CFLAGS_COMMON) -c -o $@ $<

$(O)/user/%.o: user/%.c $(wildcard user/lib/*.h user/vmm/*.h user/*.h include/uapi/linux/*.h) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	$(quiet) CC $@
	$(Q)$(CC) $(VMM_CFLAGS) -c -o $@ $<

$(LIBKVMMIG): $(LIB_OBJS)
	$(quiet) AR $@
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(LIBVMM): $(VMM_OBJS) $(GUEST_OBJS)
	$(quiet) AR $@
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(KVMMIG): $(CMD_OBJS) $(LIBVMM) $(LIBKVMMIG)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS_COMMON) -o $@ $(CMD_OBJS) $(LIBVMM) $(LIBKVMMIG) $(LIBS)
