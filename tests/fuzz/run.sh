#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run every fuzz target of a libFuzzer build for a fixed time each, on the
# seed corpus the build generated, and fail if any finds a crash, a leak,
# a broken invariant or a timeout.
#
#   tests/fuzz/run.sh BUILD_DIR [TARGET...]
#
# BUILD_DIR is a clang build configured with -DSHMFS_FUZZ=ON (see
# docs/fuzzing.md).  Environment:
#
#   FUZZ_TIME     seconds per target (default 60)
#   FUZZ_TIMEOUT  seconds one input may take before it counts as a hang (10)
#   FUZZ_RSS_MB   memory limit of a target (2048)
#   FUZZ_WORK     where corpora grow and reproducers land
#                 (default BUILD_DIR/tests/fuzz/work; kept between runs)
#   FUZZ_SEED     libFuzzer's -seed (default: random)
#
# One process per target, one after the other (-jobs is never used).  A
# reproducer is a file: run BUILD_DIR/bin/fuzz_TARGET FILE to replay it.
set -uo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [TARGET...]" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(super log records fsck)
time_each=${FUZZ_TIME:-60}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
work=${FUZZ_WORK:-$build/tests/fuzz/work}
corpus=$build/tests/fuzz/corpus

# The image targets read the region's first pages: most of what matters is
# in the first 64 KiB, but fsck also bridges seals (128 KiB on).
max_len_of() {
	case $1 in
	super) echo 65536 ;;
	fsck) echo 262144 ;;
	*) echo 0 ;;
	esac
}

corpus_of() {
	case $1 in
	super|fsck) echo image ;;
	*) echo "$1" ;;
	esac
}

# A libFuzzer binary answers -help=1 with its flags; driver.c does not.
for t in "${targets[@]}"; do
	bin=$build/bin/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "$0: $bin is missing (build $build first)" >&2
		exit 2
	fi
	help=$("$bin" -help=1 2>&1)
	if [[ $help != *max_total_time* ]]; then
		echo "$0: $bin is not a libFuzzer binary: configure with CC=clang -DSHMFS_FUZZ=ON" >&2
		exit 2
	fi
done
if [ ! -d "$corpus" ]; then
	echo "$0: no seed corpus in $corpus (build the fuzz-corpus target)" >&2
	exit 2
fi

failed=()
for t in "${targets[@]}"; do
	dir=$work/$t
	mkdir -p "$dir/corpus" "$dir/artifacts"
	log=$dir/fuzz.log
	seed=()
	[ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
	echo "== fuzz_$t: ${time_each}s on $corpus/$(corpus_of "$t") (log: $log)"
	# stdout and stderr of the target are closed (fsck talks); libFuzzer
	# and the sanitizers still report on a copy of stderr.
	"$build/bin/fuzz_$t" -max_total_time="$time_each" -timeout="$timeout" -max_len="$(max_len_of "$t")" \
		-rss_limit_mb="$rss" -close_fd_mask=3 -print_final_stats=1 "${seed[@]}" \
		-artifact_prefix="$dir/artifacts/" "$dir/corpus" "$corpus/$(corpus_of "$t")" \
		>"$log" 2>&1
	rc=$?
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
		sed "s/^/   fuzz_$t /"
	found=$(grep -oE "(Test unit|artifact) written to [^ ]+" "$log" | awk '{print $NF}' | sort -u)
	if [ $rc -ne 0 ] || [ -n "$found" ]; then
		echo "FAIL fuzz_$t (exit $rc):"
		grep -E "^(==[0-9]+==ERROR|SUMMARY|FUZZ FAILURE|ERROR: libFuzzer)" "$log" | head -5 |
			sed 's/^/   /'
		for f in $found; do
			echo "   reproducer: $f"
			echo "   replay:     $build/bin/fuzz_$t $f"
		done
		failed+=("$t")
	else
		echo "ok   fuzz_$t"
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzzing found problems in: ${failed[*]}" >&2
	exit 1
fi
echo "fuzzing: no problems found (${time_each}s per target)"
