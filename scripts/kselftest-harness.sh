#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Extract the kselftest harness (kselftest_harness.h and kselftest.h) from
# Debian's linux-source-6.1 tarball into a build folder.  The harness is
# never committed: it comes from the distribution at build time, and the
# extraction is cached (it reads the whole 140 MB tarball once).
set -eu

out=${1:?usage: kselftest-harness.sh OUTDIR}
tarball=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -n 1)
[ -f "$out/kselftest_harness.h" ] && [ -f "$out/kselftest.h" ] && exit 0
if [ -z "$tarball" ]; then
	echo "kselftest-harness: /usr/src/linux-source-6.1.tar.* not found; run 'make deps'" >&2
	exit 1
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -C "$tmp" -xf "$tarball" --wildcards --strip-components=4 \
	'*/tools/testing/selftests/kselftest_harness.h' \
	'*/tools/testing/selftests/kselftest.h'
mv "$tmp/kselftest_harness.h" "$tmp/kselftest.h" "$out/"
