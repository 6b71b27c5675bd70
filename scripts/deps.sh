#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Install the Debian packages kvmmig needs to build and test, and nothing
# else.  Idempotent: when every package is already present it only runs
# one dpkg-query and exits quietly, so every make target may depend on it.
# Must run as root on a fresh Debian 12 machine (apt-get update included).
set -eu

pkgs=(
	build-essential make gcc pkg-config
	clang llvm libclang-rt-14-dev
	libelf-dev zlib1g-dev libmnl-dev libbpf-dev bpftool
	linux-source-6.1 xz-utils
	linux-image-amd64 linux-headers-amd64 dwarves
	qemu-system-x86 busybox-static cpio
	iproute2 kmod
	libgnutls28-dev gnutls-bin
	libjson-c-dev
)

missing=()
for p in "${pkgs[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run 'make deps' as root" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
