# SPDX-License-Identifier: GPL-2.0-only
#
# libkvmmig (user/lib) and the kvmmig command.  Guest code (user/lib/guest)
# is compiled freestanding with general registers only: on a PVM host KVM
# runs guests through its instruction emulator, which cannot execute SSE or
# AVX, and the guest has no libc.

LIB_SRCS	:= $(wildcard user/lib/*.c)
GUEST_SRCS	:= $(wildcard user/lib/guest/*.c)
CMD_SRCS	:= $(wildcard user/*.c)

LIB_OBJS	:= $(patsubst %.c,$(O)/%.o,$(LIB_SRCS))
GUEST_OBJS	:= $(patsubst %.c,$(O)/%.o,$(GUEST_SRCS))
CMD_OBJS	:= $(patsubst %.c,$(O)/%.o,$(CMD_SRCS))
LIBKVMMIG	:= $(O)/libkvmmig.a
KVMMIG		:= $(O)/kvmmig

GUEST_CFLAGS	:= -std=gnu11 -O2 -g $(WARN) -Iuser/lib -ffreestanding \
		   -fno-builtin -fno-tree-loop-distribute-patterns \
		   -mgeneral-regs-only -mno-red-zone -fno-stack-protector \
		   -fno-pic -fno-pie -fcf-protection=none \
		   -fno-asynchronous-unwind-tables -fno-omit-frame-pointer

all: $(LIBKVMMIG) $(KVMMIG)

$(O)/user/lib/guest/%.o: user/lib/guest/%.c $(wildcard user/lib/*.h user/lib/guest/*.h)
	@mkdir -p $(dir $@)
	$(quiet) GUESTCC $@
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(O)/user/%.o: user/%.c $(wildcard user/lib/*.h user/*.h include/uapi/linux/*.h) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	$(quiet) CC $@
	$(Q)$(CC) $(CFLAGS_COMMON) -c -o $@ $<

$(LIBKVMMIG): $(LIB_OBJS) $(GUEST_OBJS)
	$(quiet) AR $@
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(KVMMIG): $(CMD_OBJS) $(LIBKVMMIG)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS_COMMON) -o $@ $(CMD_OBJS) $(LIBKVMMIG) $(LIBS)
