#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Count the results of every TAP file given (one per test program, from the
# host run and from the kernels booted under QEMU) and print the one closing
# line CI reads: "N passed, N failed, N skipped".  A program that crashed or
# stopped early (fewer results than its plan, or no plan at all) counts as a
# failure, so a dying test can never pass silently.  Exits 1 on any failure.
set -u

passed=0 failed=0 skipped=0
for f in "$@"; do
	[ -f "$f" ] || continue
	planned=0 seen=0
	while IFS= read -r line; do
		case "$line" in
		"1.."*)
			n=${line#1..}; n=${n%% *}
			[ -n "${n//[0-9]/}" ] || planned=$((planned + n)) ;;
		"ok "*"# SKIP"* | "ok "*"# skip"*)
			skipped=$((skipped + 1)); seen=$((seen + 1)) ;;
		"ok "*)
			passed=$((passed + 1)); seen=$((seen + 1)) ;;
		"not ok "*"# SKIP"* | "not ok "*"# skip"*)
			skipped=$((skipped + 1)); seen=$((seen + 1)) ;;
		"not ok "*)
			failed=$((failed + 1)); seen=$((seen + 1))
			echo "FAILED: $(basename "$f" .tap): $line" ;;
		esac
	done < <(grep -E '^(1\.\.[0-9]+|(not )?ok [0-9]+)' "$f")
	if [ "$seen" -lt "$planned" ] || [ "$planned" -eq 0 ]; then
		echo "FAILED: $(basename "$f" .tap): $seen of $planned results (crashed or cut short)"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
