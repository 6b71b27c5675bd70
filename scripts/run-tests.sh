#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run each test program given, showing its TAP as it goes and saving it to
# TAPDIR/<name>.tap for scripts/tap-summary.sh.  A program is killed after
# TEST_TIMEOUT seconds (default 600) so a hung guest cannot hang CI.
set -u

tapdir=${TAPDIR:?TAPDIR must name the folder for TAP files}
mkdir -p "$tapdir"
for prog in "$@"; do
	name=$(basename "$prog")
	echo "# ---- $name"
	timeout -k 10 "${TEST_TIMEOUT:-600}" "$prog" 2>&1 | tee "$tapdir/$name.tap"
	rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ]; then
		echo "# $name exited with $rc"
		# A harness program exits non-zero when a test failed; its TAP
		# already says so.  A timeout or signal leaves a short TAP,
		# which tap-summary counts as a failure.
	fi
done
