#!/usr/bin/env bash
# Runs one libFuzzer target for CTest: every input of its corpus in the tree first (seeds and the
# regression inputs of past findings), then fuzzing for a bounded time. New inputs go to a scratch
# corpus in the build directory, never into the tree.
#
#   run_fuzz.sh <fuzz binary> <tree corpus dir> <work dir> <seconds> [max_len]
#
# seconds = 0 runs the corpus only.
# A finding stops the run with a non-zero status and leaves the input as <work dir>/crash-*
# (or leak-*, timeout-*, oom-*); reproduce it with `<fuzz binary> <that file>`, fix the source,
# and add the file to the tree corpus as the regression case.
set -euo pipefail
bin=$1 corpus=$2 work=$3 seconds=$4 max_len=${5:-4096}
rm -rf "$work"
mkdir -p "$work/new" "$work/tmp"
export TMPDIR="$work/tmp"
# Open MPI is linked in but never started by the targets. The fast unwinder keeps fuzzing fast
# (the test environment's slow one is for the MPI tests' leak suppressions).
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:abort_on_error=0:symbolize=1:fast_unwind_on_malloc=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:print_stacktrace=1:halt_on_error=1"
limit=(-max_total_time="$seconds")
[ "$seconds" = 0 ] && limit=(-runs=0)
exec "$bin" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/new" "$corpus"
