#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run test programs inside Debian kernels under QEMU TCG with nested SVM, with
# kvmmig.ko loaded (`make vmcheck`), or run one command there live
# (`make vmdemo`).  Per kernel series: fetch and cache the kernel
# (scripts/fetch-kernels.sh), build the module for it in a private copy of the
# module sources ($O/kmod-<release>, so the in-tree `make module` build is
# left alone), pack an initramfs (scripts/mkinitramfs.sh), boot it and read
# the guest's first serial port while it runs.  Each program's TAP lands in
# $TAPDIR/vm-<series>-<program>.tap, and $TAPDIR/vm-<series>-kernel.tap holds
# what the programs cannot report themselves: the kernel booted with
# /dev/kvm, the module built warning-free with W=1 and loaded, every program
# finished in time, the guest powered off, and the kernel log is clean (no
# WARN, BUG, Oops, refcount, KASAN/UBSAN... message).  A program that never
# ran or was cut short leaves a short TAP file, which scripts/tap-summary.sh
# counts as a failure.  Exits non-zero only when it could not do its job;
# test failures are in the TAP.
#
# usage: run.sh [-k SERIES]... [-x FILE]... [PROG]...          (tests)
#        run.sh [-k SERIES] [-x FILE]... -c COMMAND            (live command)
#   -k  kernel series, 6.1 or 6.12 (default: both; -c uses the first)
#   -x  extra file for the initramfs (see scripts/mkinitramfs.sh)
#   -c  shell command run in the guest's /kvmmig with output shown live
# Environment: O (build folder, default build), TAPDIR (default $O/tap),
# VM_TIMEOUT (seconds per program, default 300), VM_MEM (2G), VM_SMP (2),
# VM_KMOD_SRC (the folder holding Kbuild, default the source tree).
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
O=${O:-build}
TAPDIR=${TAPDIR:-$O/tap}
VM_TIMEOUT=${VM_TIMEOUT:-300}
VM_MEM=${VM_MEM:-2G}
VM_SMP=${VM_SMP:-2}
VM_KMOD_SRC=${VM_KMOD_SRC:-$top}

# Kernel messages that fail the "kernel log clean" test.
BAD_LOG='WARNING:|\[ cut here \]|BUG:|kernel BUG|Oops|[Rr]efcount|general protection|'\
'list_(add|del) corruption|KASAN|UBSAN|Call Trace:|soft lockup|hard LOCKUP|'\
'rcu.*(stall|self-detected)|blocked for more than|Kernel panic|'\
'sleeping function called from invalid context|scheduling while atomic|'\
'kernel tried to execute'

die() { echo "vm: $*" >&2; exit 1; }

kernels=() extras=() command=""
while getopts "k:x:c:h" opt; do
	case $opt in
	k)	kernels+=("$OPTARG") ;;
	x)	extras+=(-x "$OPTARG") ;;
	c)	command=$OPTARG ;;
	*)	sed -n 's/^# \{0,1\}//; /^usage:/,/^Environment/p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
progs=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
[ -z "$command" ] || kernels=("${kernels[0]}")
for p in "${progs[@]}"; do
	[ -x "$p" ] || die "$p: no such program (run 'make' first)"
done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing; run 'make deps'"

# Results of the per-kernel TAP file, in order.
ktap=()
result() {	# result PASSED DESCRIPTION [DIAGNOSTIC-FILE]
	local n=$((${#ktap[@]} + 1)) word="ok"

	[ "$1" = 1 ] || word="not ok"
	ktap+=("$word $n $2")
	if [ $# -ge 3 ] && [ -s "$3" ]; then
		while IFS= read -r l; do
			ktap[n - 1]+=$'\n'"# $l"
		done < <(head -n 40 "$3")
	fi
}

write_ktap() {	# write_ktap SERIES
	local f=$TAPDIR/vm-$1-kernel.tap

	{
		echo "TAP version 13"
		echo "1..${#ktap[@]}"
		printf '%s\n' "${ktap[@]}"
	} >"$f"
	echo "# ---- vm-$1-kernel"
	cat "$f"
}

# Copy the module sources (only sources: an in-tree build's objects and .cmd
# files belong to another kernel) and build them for one kernel.
build_module() {	# build_module KDIR DEST LOG
	local kdir=$1 dst log=$3 f

	[ -f "$VM_KMOD_SRC/Kbuild" ] || { echo "no $VM_KMOD_SRC/Kbuild" >"$log"; return 1; }
	mkdir -p "$2"
	dst=$(cd "$2" && pwd)
	(cd "$VM_KMOD_SRC" && cp -p Kbuild "$dst/" &&
	 { [ ! -f dkms.conf ] || cp -p dkms.conf "$dst/"; } &&
	 find kmod include -type f \( -name '*.[chS]' -o -name Kbuild -o -name Makefile \) \
		-exec cp -p --parents {} "$dst/" \; 2>/dev/null) || true
	(cd "$dst" && find kmod include -type f \( -name '*.[chS]' -o -name Kbuild \
		-o -name Makefile \) 2>/dev/null) | while read -r f; do
		[ -e "$VM_KMOD_SRC/$f" ] || rm -f "$dst/$f"
	done
	# Kbuild reads O as its output folder: ours (from the environment or
	# the calling make's MAKEFLAGS) must not reach it.
	env -u O -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		make -j"$(nproc)" -C "$(readlink -f "$kdir/build")" M="$dst" W=1 modules \
		>"$log" 2>&1 && [ -n "$(find "$dst" -name kvmmig.ko)" ]
}

# Show a line of program output live and keep it in the program's TAP file;
# with a live command, show what /init said besides its reports.
emit() {
	if [ -n "$cur" ]; then
		printf '%s\n' "$1" >>"$cur"
		printf '%s\n' "$1"
	elif [ -n "$command" ]; then
		printf '%s\n' "$1"
	fi
}

# Act on one marker from the guest's /init.
on_marker() {	# on_marker WHAT
	local name rc rest secs

	case $1 in
	status)		block=status; : >"$wd/status" ;;
	status-end)
		block=""
		[ -n "$command" ] || echo "# vm $series: $(tr '\n' ' ' <"$wd/status")" ;;
	dmesg)		block=dmesg; : >"$wd/dmesg.log" ;;
	dmesg-end)	block="" ;;
	poweroff)	touch "$wd/poweroff" ;;
	begin:*)
		[ -z "$command" ] || return 0
		name=${1#begin:}
		cur=$TAPDIR/vm-$series-$name.tap
		: >"$cur"
		echo "# ---- vm-$series-$name" ;;
	end:*)	# end:NAME:STATUS:SECONDS
		secs=${1##*:}
		rest=${1%:*}
		rc=${rest##*:}
		name=${rest#end:}
		name=${name%:*}
		echo "$name $rc $secs" >>"$wd/finished"
		[ -n "$command" ] || echo "# vm-$series-$name: exit $rc after ${secs}s"
		cur="" ;;
	end-command:*)	echo "${1#end-command:}" >"$wd/command-rc" ;;
	esac
}

# Read the guest's first serial port from FIFO until QEMU closes it: copy it
# to console.log, split out the status block, each program's TAP and dmesg,
# and show progress live.  Stops QEMU (pid QPID) when the guest stays silent
# for IDLE seconds: its own per-program watchdog would have spoken by then.
read_console() {	# read_console FIFO QPID IDLE
	local fifo=$1 qpid=$2 idle=$3 m="<<<kvmmig:$nonce:" line rest st sig=TERM
	local cur="" block=""

	while true; do
		IFS= read -r -t "$idle" line
		st=$?
		if [ $st -gt 128 ]; then
			echo "no output from the guest for ${idle}s: stopped" >>"$wd/stalled"
			echo "# vm $series: no output from the guest for ${idle}s, stopping it"
			kill -"$sig" "$qpid" 2>/dev/null
			idle=30 sig=KILL
			continue
		fi
		[ $st -eq 0 ] || [ -n "$line" ] || break
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$wd/console.log"
		if [[ $line == *"$m"*">>>" ]]; then
			rest=${line#*"$m"}
			line=${line%%"$m"*}
			# Output without a final newline runs into the marker.
			[ -z "$line" ] || emit "$line"
			on_marker "${rest%>>>}"
			continue
		fi
		case $block in
		status)	printf '%s\n' "$line" >>"$wd/status" ;;
		dmesg)	printf '%s\n' "$line" >>"$wd/dmesg.log" ;;
		*)	emit "$line" ;;
		esac
	done <"$fifo"
}

# Boot one kernel with its initramfs; returns QEMU's exit status.  Tests:
# the first serial port is read line by line as it comes.  A live command:
# the first port goes straight to our output (a terminal gets the command's
# \r progress lines as they are drawn), /init's reports come on a third port
# and are read afterwards.
boot() {	# boot KDIR NPROGS
	local kdir=$1 nprogs=$2 limit rc
	local -a qemu

	# A wedged guest is stopped by the silence check long before this.
	limit=$((300 + (nprogs + 1) * (VM_TIMEOUT + 30)))
	qemu=(timeout --foreground -k 10 "$limit" qemu-system-x86_64 -accel tcg,thread=single -cpu max
	      -m "$VM_MEM" -smp "$VM_SMP" -nographic -no-reboot -monitor none -nic none
	      -fw_cfg name=etc/sercon-port,string=0
	      -serial stdio -serial "file:$wd/kernel.log"
	      -kernel "$kdir/vmlinuz" -initrd "$wd/initramfs.cpio"
	      -append "console=ttyS1 panic=-1 edd=off kvmmig_nonce=$nonce kvmmig_timeout=$VM_TIMEOUT")
	if [ -n "$command" ]; then
		"${qemu[@]}" -serial "file:$wd/control.log" </dev/null 2>"$wd/qemu.log" |
			tee "$wd/output.log"
		rc=${PIPESTATUS[0]}
		read_console "$wd/control.log" "" 1
	else
		mkfifo "$wd/serial0"
		"${qemu[@]}" </dev/null >"$wd/serial0" 2>"$wd/qemu.log" &
		qpid=$!
		read_console "$wd/serial0" "$qpid" $((VM_TIMEOUT + 120))
		wait "$qpid"
		rc=$?
		qpid=""
		rm -f "$wd/serial0"
	fi
	# The option that keeps SeaBIOS off the serial port (it would reset
	# the terminal) draws a naming warning; keep qemu.log for real news.
	sed -i '/sercon-port/d' "$wd/qemu.log"
	return $rc
}

# Kernel log lines that fail the "kernel log clean" test, each with the
# program that was running.
bad_log_lines() {	# bad_log_lines WD
	cat "$1/kernel.log" "$1/dmesg.log" 2>/dev/null | tr -d '\r' |
		sed 's/^\[ *[0-9.]*\] //' | BAD=$BAD_LOG awk '
		/^kvmmig-vm: running / { prog = substr($0, 20); next }
		/^kvmmig-vm: / { next }
		$0 ~ ENVIRON["BAD"] && !seen[$0]++ { print (prog ? prog : "before the programs") ": " $0 }'
}

# Everything for one kernel series; leaves its results in ktap and, unless
# a command runs live, in the kernel's TAP file.
run_kernel() {	# run_kernel SERIES
	local kdir rel p name rc secs mod="" t0=$SECONDS started

	series=$1
	wd=$O/vm/$series

	ktap=()
	rm -rf "$wd"
	mkdir -p "$wd" "$TAPDIR"
	if [ -z "$command" ]; then
		rm -f "$TAPDIR/vm-$series-"*.tap
		# Each program starts with an empty TAP: one that never runs fails.
		for p in "${progs[@]}"; do : >"$TAPDIR/vm-$series-$(basename "$p").tap"; done
	fi

	echo "# vm $series: preparing the kernel"
	if ! kdir=$(KERNELS_DIR=$O/kernels scripts/fetch-kernels.sh "$series" 2>"$wd/fetch.log"); then
		cat "$wd/fetch.log"
		result 0 "kernel $series fetched" "$wd/fetch.log"
		[ -n "$command" ] || write_ktap "$series"
		return 1
	fi
	rel=$(cat "$kdir/release")
	echo "# vm $series: building kvmmig.ko for $rel"
	if build_module "$kdir" "$O/kmod-$rel" "$wd/kmod-build.log"; then
		mod=$(find "$O/kmod-$rel" -name kvmmig.ko | head -n 1)
		result 1 "kvmmig.ko builds for $rel with W=1"
		grep -iE 'warning:' "$wd/kmod-build.log" >"$wd/kmod-warnings"
		result "$([ -s "$wd/kmod-warnings" ] && echo 0 || echo 1)" \
			"kvmmig.ko builds without warnings" "$wd/kmod-warnings"
	else
		tail -n 40 "$wd/kmod-build.log"
		result 0 "kvmmig.ko builds for $rel with W=1" "$wd/kmod-build.log"
	fi

	if ! scripts/mkinitramfs.sh -k "$kdir" -o "$wd/initramfs.cpio" ${mod:+-m "$mod"} \
			${command:+-c "$command"} "${extras[@]}" "${progs[@]}" 2>"$wd/mkinitramfs.log"; then
		cat "$wd/mkinitramfs.log"
		result 0 "initramfs built" "$wd/mkinitramfs.log"
		[ -n "$command" ] || write_ktap "$series"
		return 1
	fi

	nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	echo "# vm $series: booting $rel under QEMU TCG"
	started=$SECONDS
	boot "$kdir" ${#progs[@]}
	rc=$?
	echo "# vm $series: guest ran $((SECONDS - started))s (QEMU exit $rc)"

	if grep -qx 'dev_kvm=yes' "$wd/status" 2>/dev/null; then
		result 1 "kernel $rel boots and kvm_amd provides /dev/kvm"
	else
		tail -n 30 "$wd/kernel.log" "$wd/qemu.log" 2>/dev/null >"$wd/boot-failure"
		result 0 "kernel $rel boots and kvm_amd provides /dev/kvm" "$wd/boot-failure"
	fi
	if [ -n "$mod" ]; then
		result "$(grep -qx 'dev_kvmmig=yes' "$wd/status" 2>/dev/null && echo 1 || echo 0)" \
			"kvmmig.ko loads and provides /dev/kvmmig"
	fi
	for p in "${progs[@]}"; do
		name=$(basename "$p")
		read -r rc secs < <(awk -v n="$name" '$1 == n { rc = $2; s = $3 }
			END { print rc, s }' "$wd/finished" 2>/dev/null)
		case $rc in
		"")		result 0 "$name finished (it never ended)" ;;
		timeout)	result 0 "$name finished (killed after ${VM_TIMEOUT}s)" ;;
		*)		result "$([ "$rc" -lt 128 ] && echo 1 || echo 0)" \
					"$name finished (exit $rc, ${secs}s)" ;;
		esac
	done
	if [ -e "$wd/poweroff" ] && [ ! -e "$wd/stalled" ]; then
		result 1 "guest powered off by itself"
	else
		result 0 "guest powered off by itself" "$wd/stalled"
	fi
	bad_log_lines "$wd" >"$wd/bad-log"
	if [ ! -s "$wd/kernel.log" ] && [ ! -s "$wd/dmesg.log" ]; then
		echo "no kernel log captured" >"$wd/bad-log"
	fi
	result "$([ -s "$wd/bad-log" ] && echo 0 || echo 1)" "kernel log clean" "$wd/bad-log"
	[ -n "$command" ] || write_ktap "$series"
	echo "# vm $series: done in $((SECONDS - t0))s; logs in $wd"
}

# Stop the guest if we are stopped (a background QEMU ignores SIGINT).
qpid=""
trap '[ -z "$qpid" ] || kill "$qpid" 2>/dev/null; exit 130' INT TERM

# One run at a time per build folder: runs share $O/vm, $O/kmod-* and the TAP.
mkdir -p "$O/vm"
exec 8>"$O/vm/.lock"
if ! flock -n 8; then
	echo "# vm: waiting for another run using $O/vm to finish"
	flock 8
fi

# A live command (make vmdemo): its output was shown as it ran; add what
# kvmmig said about backends and whatever went wrong, kernel log included.
if [ -n "$command" ]; then
	[ ${#progs[@]} -eq 0 ] || die "-c runs no test programs"
	run_kernel "${kernels[0]}"
	rc=$(cat "$wd/command-rc" 2>/dev/null || echo "none (it never ended)")
	echo "vmdemo: exit status of '$command': $rc"
	tr '\r' '\n' <"$wd/output.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' |
		grep -v '^vmdemo:' | grep -i 'backend' >"$wd/backends"
	if [ -s "$wd/backends" ]; then
		echo "vmdemo: backends reported:"
		sed 's/^/vmdemo:   /' "$wd/backends"
	fi
	failed=0
	for r in "${ktap[@]}"; do
		[[ $r == "not ok"* ]] || continue
		failed=1
		sed '1s/^/vmdemo: /; 2,$s/^# /vmdemo:   /' <<<"$r"
	done
	[ $failed = 1 ] || echo "vmdemo: kernel log clean ($wd/kernel.log)"
	[ $failed = 0 ] && [ "$rc" = 0 ]
	exit
fi

# Fetch every kernel first: a download problem shows at once, and the 6.12
# headers' absolute paths exist before any build needs them.  Each run_kernel
# fetches again (instantly) and records a failure there.
echo "# vm: preparing kernels ${kernels[*]}"
KERNELS_DIR=$O/kernels scripts/fetch-kernels.sh "${kernels[@]}" >/dev/null
for series in "${kernels[@]}"; do
	run_kernel "$series"
done
exit 0
