#!/usr/bin/env bash
# Before/after in one run: GPT-2 training throughput of an older revision's bench_train against
# the current build's, on this machine, in interleaved rounds.
#   tests/bench/compare_builds.sh REV [--build DIR] [--steps N] [--rounds N] [--jobs N] [--min-ratio R]
#     REV          the "before" revision (anything git rev-parse takes: 9d41d02, HEAD~1, a tag)
#     --build      the "after" build dir (default build/release); its tests/bench_train is built
#                  first (nothing to do when up to date) and its configuration is copied
#     --steps      timed steps per run (default 5, after 2 warm-up steps)
#     --rounds     runs of each binary per vocab (default 3)
#     --jobs       build parallelism (default: nproc)
#     --min-ratio  exit 1 when a median new/old is below this (default 0.97, the issue's bar)
#
# REV is checked out as a git worktree in build/compare-<rev>/src and configured in
# build/compare-<rev>/build-<after dir's name> with the same preset (when the after dir is named
# after a preset of REV's CMakePresets.json, e.g. build/ci) and the same CMake options (generator,
# build type, compilers and flags, Kokkos_DIR, CMAKE_CUDA_ARCHITECTURES and every FLOWLM_ BOOL or
# STRING option of the after dir's CMakeCache.txt); only its bench_train target is built. Both
# are kept for the next call (clean up: git worktree remove --force build/compare-<rev>/src).
#
# Runs: GPT-2 6 layers, 6 heads, d=384, T=256, batch 8, V=256 and V=50257, all threads
# (OMP_NUM_THREADS=nproc; other OMP_ settings pass through). Each round runs old and new once
# per vocab, alternating which goes first. Flags the old bench_train does not know (per its
# --help) are dropped for it. Prints every run's tokens/s, then per vocab the median tokens/s of
# each and the ratio new/old.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
usage() { sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

rev="" build=$here/build/release steps=5 rounds=3 jobs=$(nproc) min_ratio=0.97
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --min-ratio) min_ratio=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "compare_builds.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$rev" ] || usage; rev=$1; shift ;;
  esac
done
[ -n "$rev" ] || usage
build=$(cd "$build" 2>/dev/null && pwd) || { echo "compare_builds.sh: no build dir $build" >&2; exit 2; }
cache=$build/CMakeCache.txt
[ -f "$cache" ] || { echo "compare_builds.sh: $build is not a configured CMake build dir" >&2; exit 2; }
old_rev=$(git -C "$here" rev-parse --short=9 "$rev^{commit}")
py=${FLOWLM_PYTHON:-/usr/bin/python3}
log() { echo "compare_builds.sh: $*" >&2; }

# ---- the "before" tree and build ------------------------------------------------------------
root=$here/build/compare-$old_rev
wt=$root/src
old_build=$root/build-$(basename "$build")  # one per after-build configuration
if [ -e "$wt" ]; then
  [ "$(git -C "$wt" rev-parse HEAD)" = "$(git -C "$here" rev-parse "$rev^{commit}")" ] ||
    { log "$wt exists but is not at $rev; remove it (git worktree remove --force $wt)"; exit 2; }
else
  mkdir -p "$root"
  git -C "$here" worktree add --detach "$wt" "$old_rev" >/dev/null 2>&1 ||
    { log "git worktree add $wt $old_rev failed"; exit 2; }
fi

# The after build's configuration: cache entries a user or preset sets (not found paths).
cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$cache" | head -n1; }
defs=()
for var in CMAKE_BUILD_TYPE CMAKE_CXX_COMPILER CMAKE_CXX_FLAGS CMAKE_CUDA_COMPILER CMAKE_CUDA_ARCHITECTURES \
  CMAKE_CUDA_FLAGS Kokkos_DIR Kokkos_ROOT; do
  grep -q "^$var:" "$cache" && defs+=("-D$var=$(cache_get "$var")")
done
while IFS= read -r line; do defs+=("-D$line"); done < <(sed -n 's/^\(FLOWLM_[A-Za-z0-9_]*\):\(BOOL\|STRING\)=/\1=/p' "$cache")
generator=$(cache_get CMAKE_GENERATOR)
preset=$(basename "$build")
use_preset=()
if [ -f "$wt/CMakePresets.json" ] &&
  "$py" -c "import json,sys; sys.exit(sys.argv[2] not in [p['name'] for p in json.load(open(sys.argv[1]))['configurePresets']])" \
    "$wt/CMakePresets.json" "$preset"; then
  use_preset=(--preset "$preset")
fi
log "configuring $old_rev in $old_build (${use_preset[*]:-no preset}; options of $build)"
(cd "$wt" && cmake "${use_preset[@]}" -S "$wt" -B "$old_build" -G "$generator" "${defs[@]}" \
  >"$old_build.configure.log" 2>&1) || { tail -30 "$old_build.configure.log" >&2; log "configure failed: $old_build.configure.log"; exit 1; }
log "building bench_train of $old_rev ($old_build) and of the current tree ($build)"
cmake --build "$old_build" --target bench_train -j "$jobs" >"$old_build.build.log" 2>&1 ||
  { tail -30 "$old_build.build.log" >&2; log "build of $old_rev failed: $old_build.build.log"; exit 1; }
cmake --build "$build" --target bench_train -j "$jobs" >"$old_build.build-new.log" 2>&1 ||
  { tail -30 "$old_build.build-new.log" >&2; log "build of $build failed: $old_build.build-new.log"; exit 1; }
old_bin=$old_build/tests/bench_train
new_bin=$build/tests/bench_train

# ---- interleaved runs -------------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
flags=(--arch gpt2 --n-layer 6 --n-head 6 --n-embd 384 --seq 256 --batch 8 --steps "$steps" --warmup 2)
# The flags (with their values) a binary's --help lists.
supported() {
  local help kept=() i=0
  help=$("$1" --help 2>&1 || true)
  while [ $i -lt ${#flags[@]} ]; do
    if grep -q -- "${flags[$i]}\b" <<<"$help"; then kept+=("${flags[$i]}" "${flags[$((i + 1))]}"); else
      log "$1 has no ${flags[$i]}; dropped for it"
    fi
    i=$((i + 2))
  done
  printf '%s\n' "${kept[@]}"
}
mapfile -t old_flags < <(supported "$old_bin")
mapfile -t new_flags < <(supported "$new_bin")
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
declare -A runs
printf '%-6s %-7s %-14s %10s\n' round vocab build tokens/s
for ((r = 1; r <= rounds; r++)); do
  for vocab in 256 50257; do
    order=(old new)
    [ $((r % 2)) -eq 0 ] && order=(new old)
    for which in "${order[@]}"; do
      if [ "$which" = old ]; then out=$("$old_bin" "${old_flags[@]}" --vocab "$vocab"); label="old $old_rev"; else
        out=$("$new_bin" "${new_flags[@]}" --vocab "$vocab"); label="new"
      fi
      tps=$(field "$out" tokens_per_s)
      runs[$which,$vocab]+="$tps "
      printf '%-6s %-7s %-14s %10.0f\n' "$r" "$vocab" "$label" "$tps"
    done
  done
done

echo
printf '%-28s %12s %12s %9s\n' "GPT-2 6/6/384 T=256 B=8" "old $old_rev" "new" "new/old"
status=0
for vocab in 256 50257; do
  verdict=$("$py" - "${runs[old,$vocab]}" "${runs[new,$vocab]}" "$min_ratio" "$vocab" <<'EOF'
import statistics, sys
old, new = (statistics.median(float(v) for v in s.split()) for s in sys.argv[1:3])
ratio = new / old
ok = ratio >= float(sys.argv[3])
print("{:<28} {:>12.0f} {:>12.0f} {:>8.3f}x{}".format(
    "median tokens/s V=" + sys.argv[4], old, new, ratio, "" if ok else "  below " + sys.argv[3] + "x"))
sys.exit(0 if ok else 1)
EOF
) || status=1
  echo "$verdict"
done
exit $status
