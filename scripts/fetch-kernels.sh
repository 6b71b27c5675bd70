#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Prepare the Debian kernels the module is tested in, each in its own cache
# folder $KERNELS_DIR/<release>/ (default build/kernels) holding three links:
# vmlinuz (the kernel QEMU boots), modules (its /lib/modules/<release>) and
# build (the headers to build kvmmig.ko against).  Series 6.1 is bookworm's
# installed linux-image-amd64 with its headers.  Series 6.12 comes from
# bookworm-backports: the image, headers and kbuild packages are downloaded
# and unpacked with dpkg -x, never installed (their kbuild package depends on
# a pahole package bookworm lacks, which would leave apt broken), and the two
# absolute paths the unpacked headers use are linked to the unpacked copies.
# Prints one kernel folder per series asked for (default: 6.1 6.12).  Once a
# series is cached nothing is downloaded again and the run takes well under a
# second; KVMMIG_KERNEL_REFRESH=1 looks for a newer 6.12 ABI,
# KVMMIG_612_ABI=6.12.N+deb12 asks for one ABI version.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
kernels=${KERNELS_DIR:-$top/build/kernels}
backports_list=/etc/apt/sources.list.d/kvmmig-backports.list

log() { echo "fetch-kernels: $*" >&2; }
die() { log "$*"; exit 1; }

# Give a cache folder its three uniform links and mark it complete.
finish_dir() {
	local dir=$1 rel=$2 vmlinuz=$3 modules=$4 headers=$5

	[ -f "$vmlinuz" ] || die "$vmlinuz missing"
	[ -f "$modules/modules.dep" ] || die "$modules/modules.dep missing"
	[ -f "$headers/Makefile" ] || die "$headers missing; run 'make deps'"
	ln -sfn "$vmlinuz" "$dir/vmlinuz"
	ln -sfn "$modules" "$dir/modules"
	ln -sfn "$headers" "$dir/build"
	echo "$rel" >"$dir/release"
	touch "$dir/.done"
}

# 6.1: the kernel linux-image-amd64 depends on, as installed by deps.sh.
prepare_61() {
	local rel dir

	rel=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null |
	      grep -o 'linux-image-6\.1\.[^ ,|]*-amd64' | head -n 1 || true)
	rel=${rel#linux-image-}
	if [ -z "$rel" ]; then
		rel=$(ls /boot 2>/dev/null | sed -n 's/^vmlinuz-\(6\.1\.[^-]*-[0-9]*-amd64\)$/\1/p' |
		      sort -V | tail -n 1)
	fi
	[ -n "$rel" ] || die "no Debian 6.1 kernel installed; run 'make deps'"
	dir=$kernels/$rel
	mkdir -p "$dir"
	finish_dir "$dir" "$rel" "/boot/vmlinuz-$rel" "/lib/modules/$rel" \
		"/usr/src/linux-headers-$rel"
	echo "$dir"
}

# Make sure some apt sources file names bookworm-backports, then refresh.
enable_backports() {
	local mirror

	if ! grep -rqsw --include='*.list' --include='*.sources' bookworm-backports \
			/etc/apt/sources.list /etc/apt/sources.list.d/; then
		mirror=$(apt-cache policy 2>/dev/null |
			 awk '$3 == "bookworm/main" { print $2; exit }')
		mirror=${mirror:-http://deb.debian.org/debian}
		log "adding $backports_list ($mirror)"
		echo "deb $mirror bookworm-backports main" >"$backports_list"
	fi
	log "apt-get update"
	# A failing unrelated source must not stop us: a missing backports
	# index shows up below as "no 6.12 kernel found".
	apt-get update -qq >&2 || log "apt-get update reported errors"
}

# The 6.12 ABI the backports linux-image-amd64 depends on ("6.12.95+deb12").
find_612_abi() {
	local abi

	abi=$(apt-cache show linux-image-amd64/bookworm-backports 2>/dev/null |
	      sed -n 's/^Depends: .*linux-image-\(6\.12\.[^ ,]*\)-amd64 .*/\1/p' |
	      head -n 1)
	if [ -z "$abi" ]; then
		abi=$(apt-cache search --names-only '^linux-headers-6\.12\.[0-9]+\+deb12-amd64$' |
		      sed -n 's/^linux-headers-\(6\.12\.[^ ]*\)-amd64 .*/\1/p' | sort -V | tail -n 1)
	fi
	echo "$abi"
}

# Point an absolute path the unpacked headers expect at the unpacked copy,
# unless it already leads somewhere: to the installed package, or to the
# same ABI unpacked by another cache (another O=).  Relinking a working link
# could pull it from under a build that is using it.
link_abs() {
	local path=$1 root=$2

	[ -e "$root$path" ] || die "$root$path missing in the unpacked packages"
	[ ! -e "$path" ] || return 0
	mkdir -p "$(dirname "$path")"
	ln -sfn "$root$path" "$path"
}

# The headers' Makefile includes the common headers by absolute path, and
# the common headers' scripts link leads to the kbuild package: both paths
# must reach the unpacked packages.
link_612_paths() {
	local root=$1 rel=$2 hdr common kbuild

	hdr=$root/usr/src/linux-headers-$rel
	common=$(sed -n 's/^include \(\/usr\/src\/[^ ]*\)\/Makefile$/\1/p' "$hdr/Makefile")
	[ -n "$common" ] || die "$hdr/Makefile does not include the common headers"
	kbuild=$(readlink "$root$common/scripts" || readlink "$hdr/scripts")
	kbuild=$(realpath -m -s "$common/$kbuild/..")
	link_abs "$common" "$root"
	link_abs "$kbuild" "$root"
}

# Download and unpack one 6.12 ABI into the cache.
fetch_612() {
	local abi=$1 rel=$1-amd64 dir=$kernels/$1-amd64 dl image p

	dl=$kernels/.download
	rm -rf "$dl" "$dir"
	mkdir -p "$dl" "$dir/root"
	image=linux-image-$rel-unsigned
	apt-cache show "$image" >/dev/null 2>&1 || image=linux-image-$rel
	log "downloading $image linux-headers-$rel linux-headers-$abi-common linux-kbuild-$abi"
	(cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$image" \
		"linux-headers-$rel" "linux-headers-$abi-common" "linux-kbuild-$abi" >&2) ||
		die "apt-get download failed"
	for p in "$dl"/*.deb; do
		log "unpacking $(basename "$p")"
		dpkg -x "$p" "$dir/root"
	done
	rm -rf "$dl"
	# modules.dep is made at install time, not shipped.
	log "depmod $rel"
	depmod -b "$dir/root" "$rel"
	echo "$dir"
}

# 6.12: the cached ABI if there is one, else the current backports ABI.
prepare_612() {
	local abi=${KVMMIG_612_ABI:-} dir="" root rel mods old

	if [ -z "$abi" ] && [ -z "${KVMMIG_KERNEL_REFRESH:-}" ]; then
		dir=$(ls -d "$kernels"/6.12.*/.done 2>/dev/null | sort -V | tail -n 1 || true)
		dir=${dir%/.done}
	elif [ -n "$abi" ] && [ -f "$kernels/$abi-amd64/.done" ]; then
		dir=$kernels/$abi-amd64
	fi
	if [ -z "$dir" ]; then
		enable_backports
		[ -n "$abi" ] || abi=$(find_612_abi)
		[ -n "$abi" ] || die "no 6.12 kernel found in bookworm-backports"
		if [ -f "$kernels/$abi-amd64/.done" ]; then
			dir=$kernels/$abi-amd64
		else
			dir=$(fetch_612 "$abi")
		fi
	fi
	root=$dir/root
	rel=$(basename "$dir")
	mods=$root/lib/modules/$rel
	[ -d "$mods" ] || mods=$root/usr/lib/modules/$rel
	link_612_paths "$root" "$rel"
	finish_dir "$dir" "$rel" "$root/boot/vmlinuz-$rel" "$mods" \
		"$root/usr/src/linux-headers-$rel"
	# Only one 6.12 ABI is kept.
	for old in "$kernels"/6.12.*; do
		[ "$old" = "$dir" ] || [ ! -d "$old" ] || rm -rf "$old"
	done
	echo "$dir"
}

command -v pahole >/dev/null || die "pahole (package dwarves) missing; run 'make deps'"
mkdir -p "$kernels"
# Every link made below must be absolute: a relative one would resolve
# against the folder holding it.
kernels=$(cd "$kernels" && pwd)
exec 9>"$kernels/.lock"
flock 9

[ $# -gt 0 ] || set -- 6.1 6.12
for series in "$@"; do
	case $series in
	6.1)	prepare_61 ;;
	6.12)	prepare_612 ;;
	*)	die "unknown kernel series '$series' (6.1 or 6.12)" ;;
	esac
done
