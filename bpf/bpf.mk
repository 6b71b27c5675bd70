# SPDX-License-Identifier: GPL-2.0-only
#
# BPF programs (bpf/*.bpf.c), built CO-RE against a vmlinux.h generated from
# the build machine's BTF, then turned into libbpf skeletons that user code
# includes as "bpf/<name>.skel.h":
#   $(O)/bpf/vmlinux.h -> $(O)/bpf/<name>.bpf.o -> $(O)/bpf/<name>.skel.h
# BPF_SKELS lists the skeletons; every user object and test depends on them.

BPF_CLANG	?= clang
LLVM_STRIP	?= llvm-strip
BPFTOOL		?= bpftool
VMLINUX_BTF	?= /sys/kernel/btf/vmlinux

BPF_SRCS	:= $(wildcard bpf/*.bpf.c)
BPF_HDRS	:= $(wildcard bpf/*.h)
BPF_OBJS	:= $(patsubst bpf/%.bpf.c,$(O)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_SKELS	:= $(patsubst bpf/%.bpf.c,$(O)/bpf/%.skel.h,$(BPF_SRCS))
BPF_VMLINUX	:= $(O)/bpf/vmlinux.h
# -mcpu=v3: atomic fetch-and-add with a result (kernel 5.12+).
BPF_CFLAGS	:= -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 $(WARN) \
		   -I$(O)/bpf -Ibpf

# user.mk named $(BPF_SKELS) before this file set it: add the edges here.
$(LIB_OBJS) $(CMD_OBJS): $(BPF_SKELS) $(BPF_HDRS)

$(BPF_VMLINUX): $(VMLINUX_BTF)
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $< format c > $@.tmp
	mv $@.tmp $@

$(O)/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BPF_VMLINUX)
	@mkdir -p $(dir $@)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@
	$(LLVM_STRIP) -g $@

$(O)/bpf/%.skel.h: $(O)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@.tmp
	mv $@.tmp $@

.SECONDARY: $(BPF_OBJS)
