#!/usr/bin/env bash
# Training throughput: flowlm vs PyTorch CPU (Debian's python3-torch) on this machine, in one run.
# Config of the issue: 6 layers, 6 heads, d=384, T=256, batch 8, vocab 256 and 50257; then
# flowlm at np 1 (all threads) vs np 2 (one thread each). Each pair runs under the OpenMP
# runtime's default wait policy and under OMP_WAIT_POLICY=passive: Debian's PyTorch calls the
# pthreads OpenBLAS, whose threads compete with spinning OpenMP threads, so both are shown.
#   tests/bench/run_train_bench.sh [build dir, default build/release] [steps, default 10]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
steps=${2:-10}
threads=$(nproc)
py=${FLOWLM_PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--n-layer 6 --n-head 6 --n-embd 384 --seq 256 --batch 8 --steps "$steps" --warmup 2)
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
printf '%-36s %10s %10s %9s\n' "run ($threads threads unless noted)" "tokens/s" "peak MiB" "vs torch"
for policy in default passive; do
  envs=(OMP_NUM_THREADS="$threads")
  [ "$policy" = passive ] && envs+=(OMP_WAIT_POLICY=passive)
  for vocab in 256 50257; do
    torch=$(env "${envs[@]}" "$py" "$here/tests/bench/bench_train_torch.py" "${common[@]}" --vocab "$vocab" --threads "$threads")
    ours=$(env "${envs[@]}" "$build/tests/bench_train" "${common[@]}" --vocab "$vocab")
    t=$(field "$torch" tokens_per_s)
    o=$(field "$ours" tokens_per_s)
    printf '%-36s %10.0f %10.0f %9s\n' "pytorch V=$vocab wait=$policy" "$t" "$(field "$torch" peak_rss_mb)" "1.00x"
    printf '%-36s %10.0f %10.0f %9s\n' "flowlm  V=$vocab wait=$policy" "$o" "$(field "$ours" peak_rss_mb)" \
      "$("$py" -c "print(f'{$o/$t:.2f}x')")"
  done
done
np2=$(OMP_NUM_THREADS=1 mpirun -n 2 --oversubscribe "$build/tests/bench_train" "${common[@]}" --vocab 256)
printf '%-36s %10.0f %10.0f %9s\n' "flowlm  V=256 np 2 x 1 thread" "$(field "$np2" tokens_per_s)" \
  "$(field "$np2" peak_rss_mb)" "per rank"
