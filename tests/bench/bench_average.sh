#!/usr/bin/env bash
# Read throughput and peak memory of `flowlm average` vs a plain sequential read of the same
# checkpoints (not a CTest test). Both read from the page cache: the files are read once first.
#   tests/bench/bench_average.sh [build dir, default build/release] [count, default 5] [n_layer, default 6]
#                                [n_embd, default 512]   (e.g. 5 18 1024: five files of 1.1 GB)
# FLOWLM_BENCH_OUT=DIR: write the averaged file under DIR (e.g. a RAM file system, to time the
# job apart from the disk's write speed; default: beside the inputs).
# FLOWLM_BENCH_COLD=1: drop the page cache before every timed reader instead (needs root), so
# both read from the disk.
# Needs a build with -DFLOWLM_BENCH=ON (bench_average) and the flowlm binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
count=${2:-5}
layers=${3:-6}
embd=${4:-512}
py=${FLOWLM_PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
work=$(mktemp -d "${TMPDIR:-/tmp}/flowlm-bench-average.XXXXXX")
out=$work/out
[ -n "${FLOWLM_BENCH_OUT:-}" ] && out=$(mktemp -d "$FLOWLM_BENCH_OUT/flowlm-bench-average.XXXXXX")
trap 'rm -rf "$work" "$out"' EXIT
cold=${FLOWLM_BENCH_COLD:-0}
if [ "$cold" = 1 ] && ! [ -w /proc/sys/vm/drop_caches ]; then
  echo "bench_average: FLOWLM_BENCH_COLD=1 needs a writable /proc/sys/vm/drop_caches (root)" >&2; exit 2
fi
# Before each timed reader: the written files on disk, and (cold) the page cache emptied.
settle() { sync; if [ "$cold" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }

made=$("$build/tests/bench_average" make "$work/run" --count "$count" --n-layer "$layers" --n-embd "$embd")
sync  # the inputs on disk: no write-back of them competes with the timed writes
[ "$cold" = 1 ] || cat "$work"/run/*.h5 > /dev/null  # warm the page cache for both readers
printf 'average of %s checkpoints, %s params each (%s MB per file)\n' "$count" "$(field "$made" params)" \
  "$(du -m "$work/run/step_00000100.h5" | cut -f1)"

echo "page cache: $([ "$cold" = 1 ] && echo "dropped before each reader" || echo warm); output: $out"
settle
seq=$(/usr/bin/time -f '%M' -o "$work/seq.rss" "$build/tests/bench_average" read "$work/run")
bytes=$(field "$seq" bytes)
printf '%-34s %10s %10s %12s %8s\n' "reader" "seconds" "MB/s" "peak MiB" "ratio"
printf '%-34s %10.3f %10.1f %12.1f %8s\n' "sequential read (1 process)" "$(field "$seq" seconds)" \
  "$(field "$seq" mb_per_s)" "$("$py" -c "print($(cat "$work/seq.rss") / 1024)")" "1.00"

settle
cs=$(date +%s.%N); cat "$work"/run/step_*.h5 > /dev/null; ce=$(date +%s.%N)
"$py" -c "import sys; s=$ce-$cs; print(f\"{'cat > /dev/null':<34} {s:10.3f} {$bytes/s/1e6:10.1f} {'-':>12} {$bytes/s/1e6/$(field "$seq" mb_per_s):8.2f}\")"

printf '[average]\nmode = "swa"\ninputs = ["%s"]\noutput_dir = "%s"\n' "$work/run" "$out/avg" > "$work/job.toml"
for np in 1 2; do
  rm -rf "$out/avg"
  settle
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/avg.rss" mpirun -n "$np" --oversubscribe "$build/flowlm" average "$work/job.toml" \
    > "$work/avg.log" 2>&1 || { cat "$work/avg.log"; exit 1; }
  end=$(date +%s.%N)
  inproc=$(grep -o 'read .* MB/s)' "$work/avg.log" | tail -1)
  inrate=$(grep -o 'in all ([0-9.]* MB/s)' "$work/avg.log" | tail -1 | grep -o '[0-9.]*' | head -1)
  echo "  np $np, in-process: $inproc; ratio $("$py" -c "print(f'{$inrate / $(field "$seq" mb_per_s):.2f}')")"
  "$py" - "$bytes" "$start" "$end" "$(field "$seq" mb_per_s)" "$(cat "$work/avg.rss")" "$np" <<'PY'
import sys
b, t0, t1, seq, rss, np_ = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
s = t1 - t0
# /usr/bin/time on mpirun reports the largest single process (a rank), in KiB.
print(f"{'flowlm average swa, np ' + np_ + ' (incl. start)':<34} {s:10.3f} {b / s / 1e6:10.1f} {rss / 1024:12.1f} {b / s / 1e6 / seq:8.2f}")
PY
done
echo "ratio = MB/s of the whole average job (process start, reads, float64 sums, parallel write, fsync) over the"
echo "sequential read; in-process: the reads alone (slowest rank) and the job without process start."
echo "peak MiB of average is the largest process under mpirun (a rank: one chunk per source and the"
echo "writer's chunk); the sequential reader holds the largest tensor (wte)."
