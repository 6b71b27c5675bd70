#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the busybox initramfs that runs kvmmig inside a Debian kernel under
# QEMU.  Its /init mounts proc, sys, devtmpfs, debugfs, tracefs and bpffs,
# loads kvm_amd with its dependencies, tls.ko and AES-GCM where the kernel
# has them, and then kvmmig.ko, reports what it found, runs each test
# program with a time limit and frames its TAP output by markers on the
# first serial port, runs an optional command live (for `make vmdemo`; the
# first port then carries only the command's output and the reports move to
# the third), dumps dmesg (framed) and powers off.  The
# kernel's own console is the second serial port, so kernel messages never
# land inside a program's TAP; selftests/vm/run.sh reads both.  Programs are
# copied with their shared libraries and the dynamic loader (found with
# ldd), relative paths under /kvmmig, which is the working directory, so
# `build/kvmmig demo` works there as in the source tree; absolute paths stay
# as they are.
#
# usage: mkinitramfs.sh -k KERNEL_DIR -o OUT.cpio [-m MODULE.ko] [-c COMMAND]
#                       [-x FILE]... [PROG]...
#   KERNEL_DIR  a folder made by scripts/fetch-kernels.sh
#   -m          the kvmmig.ko built for that kernel
#   -c          a shell command run after the programs, output shown live
#   -x          an extra file (a tool such as /usr/sbin/ip, or build/kvmmig)
#               with its libraries, placed like a program but not run
# Kernel command line knobs read by /init: kvmmig_nonce=STRING (part of every
# marker), kvmmig_timeout=SECONDS (per program and for the command).
set -euo pipefail
trap 'echo "mkinitramfs: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

usage() { sed -n 's/^# \{0,1\}//; /^usage:/,/^Kernel command/p' "$0" | head -n -1 >&2; exit 2; }
die() { echo "mkinitramfs: $*" >&2; exit 1; }

kdir="" out="" module="" command="" extras=()
while getopts "k:o:m:c:x:h" opt; do
	case $opt in
	k)	kdir=$OPTARG ;;
	o)	out=$OPTARG ;;
	m)	module=$OPTARG ;;
	c)	command=$OPTARG ;;
	x)	extras+=("$OPTARG") ;;
	*)	usage ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$kdir" ] && [ -n "$out" ] || usage
[ -f "$kdir/release" ] || die "$kdir is not a kernel folder from fetch-kernels.sh"
[ -z "$module" ] || [ -f "$module" ] || die "$module: no such module"

rel=$(cat "$kdir/release")
mods=$kdir/modules
busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 ||
	die "no static $busybox; run 'make deps' (busybox-static)"

root=$(mktemp -d "${TMPDIR:-/tmp}/kvmmig-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,modules,kvmmig}
cp "$busybox" "$root/bin/busybox"
mkdir -p "$root/etc" "$root/root"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost\n' >"$root/etc/hosts"

# Copy a host file to the same path in the initramfs, with its libraries.
copy_with_libs() {
	local src=$1 dst=$2 lib

	mkdir -p "$(dirname "$root$dst")"
	cp -L "$src" "$root$dst"
	# ldd fails on static programs and scripts: they need no libraries.
	{ ldd "$src" 2>/dev/null || true; } |
		sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' |
	while read -r lib; do
		[ -e "$root$lib" ] && continue
		mkdir -p "$(dirname "$root$lib")"
		cp -L "$lib" "$root$lib"
	done
}

# Module file of MOD (name as in modules.dep) and, before it, every module
# it needs, in load order; modules.dep lists a module's needs deepest last.
module_chain() {
	local name=$1 line deps d i

	line=$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$mods/modules.dep" | head -n 1)
	[ -n "$line" ] || die "$name not found in $mods/modules.dep"
	read -r -a deps <<<"${line#*:}"
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
		d=${deps[i]}
		echo "$d"
	done
	echo "${line%%:*}"
}

# Copy one module, decompressed (busybox insmod cannot read .ko.xz).
add_module() {
	local path=$1 base

	base=$(basename "$path")
	base=${base%.xz}
	base=${base%.zst}
	base=${base%.gz}
	grep -qx "$base" "$root/kvmmig/modules" 2>/dev/null && return 0
	case $path in
	*.xz)	xz -dc "$mods/$path" >"$root/modules/$base" ;;
	*.zst)	zstd -qdc "$mods/$path" >"$root/modules/$base" ;;
	*.gz)	gzip -dc "$mods/$path" >"$root/modules/$base" ;;
	*)	cp "$mods/$path" "$root/modules/$base" ;;
	esac
	echo "$base" >>"$root/kvmmig/modules"
}

# /bin/sh is dash as on the host: busybox's shell runs its own applets
# first, so system("ip netns ...") would not reach iproute2.  /init itself
# runs under busybox.
copy_with_libs /bin/dash /bin/sh

: >"$root/kvmmig/modules"
chain=$(module_chain kvm-amd)
if [ -n "$module" ]; then
	for dep in $(modinfo -F depends "$module" | tr ',' ' '); do
		chain+=" $(module_chain "$dep")"
	done
fi
# Kernel TLS for the migration channels (tls_perf, tls_test): Debian builds
# it as a module, and the AES-GCM it asks the crypto API for too (the kernel
# would modprobe them, which this initramfs cannot); a kernel without them
# just lacks kTLS.
for m in tls ctr ghash-generic gcm aesni-intel ghash-clmulni-intel; do
	grep -qE "(^|/)${m}\.ko(\.[a-z]+)?:" "$mods/modules.dep" && chain+=" $(module_chain "$m")"
done
for m in $chain; do
	add_module "$m"
done
if [ -n "$module" ]; then
	cp "$module" "$root/modules/kvmmig.ko"
	echo kvmmig.ko >"$root/kvmmig/module"
fi

# Where a host file goes: relative paths under /kvmmig, absolute ones as is.
dest_of() {
	case $1 in
	/*)	echo "$1" ;;
	*)	echo "/kvmmig/${1#./}" ;;
	esac
}

: >"$root/kvmmig/progs"
for prog in "$@"; do
	[ -x "$prog" ] || die "$prog: not an executable"
	dst=$(dest_of "$prog")
	copy_with_libs "$prog" "$dst"
	echo "${dst#/kvmmig/}" >>"$root/kvmmig/progs"
done
for f in "${extras[@]}"; do
	[ -e "$f" ] || die "$f: no such file"
	copy_with_libs "$f" "$(dest_of "$f")"
done
[ -z "$command" ] || printf '%s\n' "$command" >"$root/kvmmig/command"
echo "$rel" >"$root/kvmmig/release"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# /init of the kvmmig test initramfs (generated by scripts/mkinitramfs.sh).
# No `set -e`: init must reach poweroff whatever fails, since an exit here
# panics the kernel.
/bin/busybox --install -s
# Host tools copied into /usr (iproute2, bpftool) come before busybox applets.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
# The kernel console is ttyS1; results go to ttyS0.  With a live command,
# ttyS0 carries only what the command prints and reports go to ttyS2.
out=/dev/ttyS0
if [ -s /kvmmig/command ] && (: >/dev/ttyS2) 2>/dev/null; then
	exec </dev/null >/dev/ttyS2 2>&1
else
	exec </dev/null >$out 2>&1
fi

nonce=none
timeout=300
for arg in $(cat /proc/cmdline); do
	case $arg in
	kvmmig_nonce=*)		nonce=${arg#*=} ;;
	kvmmig_timeout=*)	timeout=${arg#*=} ;;
	esac
done
mark() { echo "<<<kvmmig:$nonce:$*>>>"; }
klog() { echo "kvmmig-vm: $*" >/dev/kmsg; }

# Run "$@" in its own session; after $timeout seconds kill the whole session
# (a harness's forked children too) and leave /tmp/timed-out behind.
run_limited() {
	rm -f /tmp/timed-out
	setsid "$@" &
	pid=$!
	setsid sh -c "sleep $timeout; touch /tmp/timed-out; kill -KILL -$pid" &
	wd=$!
	wait $pid
	rc=$?
	kill -KILL -$wd 2>/dev/null
	wait $wd 2>/dev/null
	[ -e /tmp/timed-out ] && rc=timeout
	return 0
}

kvm_amd=loaded kvmmig=absent
for m in $(cat /kvmmig/modules); do
	insmod /modules/$m || kvm_amd="failed ($m)"
done
if [ -s /kvmmig/module ]; then
	if insmod /modules/kvmmig.ko; then kvmmig=loaded; else kvmmig=failed; fi
	# The load/unload test reloads the module from here.
	export KVMMIG_MODULE=/modules/kvmmig.ko
fi
yn() { if [ -e "$1" ]; then echo yes; else echo no; fi; }
# devtmpfs creates the device nodes asynchronously: give them 5 s.
for i in $(seq 50); do
	[ "$kvm_amd" != loaded ] || [ -e /dev/kvm ] || { sleep 0.1; continue; }
	[ "$kvmmig" != loaded ] || [ -e /dev/kvmmig ] || { sleep 0.1; continue; }
	break
done

mark status
echo "kernel=$(uname -r)"
echo "kvm_amd=$kvm_amd"
echo "dev_kvm=$(yn /dev/kvm)"
echo "kvmmig=$kvmmig"
echo "dev_kvmmig=$(yn /dev/kvmmig)"
echo "btf=$(yn /sys/kernel/btf/vmlinux)"
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
mark status-end

cd /kvmmig
for prog in $(cat /kvmmig/progs); do
	name=${prog##*/}
	klog "running $name"
	case $prog in
	/*)	path=$prog ;;
	*)	path=./$prog ;;
	esac
	mark "begin:$name"
	t0=$(date +%s)
	run_limited "$path"
	secs=$(($(date +%s) - t0))
	# A program's last line may lack its newline: the end marker then
	# follows on the same line, and run.sh splits it off.
	mark "end:$name:$rc:$secs"
	klog "$name finished: $rc after ${secs}s"
done

if [ -s /kvmmig/command ]; then
	cmd=$(cat /kvmmig/command)
	echo "vmdemo: kernel $(uname -r), kvm_amd $kvm_amd, /dev/kvm $(yn /dev/kvm)," \
		"kvmmig.ko $kvmmig, /dev/kvmmig $(yn /dev/kvmmig)," \
		"BTF $(yn /sys/kernel/btf/vmlinux)" >$out
	echo "vmdemo: \$ $cmd" >$out
	klog "running command: $cmd"
	mark "begin-command"
	run_limited /bin/sh -c "$cmd" >$out 2>&1
	mark "end-command:$rc"
	echo "vmdemo: exit status $rc" >$out
fi

mark dmesg
dmesg
mark dmesg-end
mark poweroff
sync
poweroff -f
echo o >/proc/sysrq-trigger
EOF
chmod +x "$root/init"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --owner=0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
