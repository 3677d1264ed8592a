#!/usr/bin/env bash
# Training throughput: flowlm vs PyTorch CPU (Debian's python3-torch) on this machine, in one run.
# Config of the issue: 6 layers, 6 heads, d=384, T=256, batch 8, vocab 256 and 50257; then
# flowlm at np 1 (all threads) vs np 2 (one thread each).
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
printf '%-28s %12s %12s %10s\n' "run" "tokens/s" "peak MiB" "vs torch"
for vocab in 256 50257; do
  torch=$(OMP_NUM_THREADS=$threads "$py" "$here/tests/bench/bench_train_torch.py" "${common[@]}" --vocab "$vocab" --threads "$threads")
  ours=$(OMP_NUM_THREADS=$threads "$build/tests/bench_train" "${common[@]}" --vocab "$vocab")
  t=$(field "$torch" tokens_per_s); o=$(field "$ours" tokens_per_s)
  printf '%-28s %12.0f %12.0f %10s\n' "pytorch V=$vocab ($threads thr)" "$t" "$(field "$torch" peak_rss_mb)" "1.00x"
  printf '%-28s %12.0f %12.0f %10s\n' "flowlm  V=$vocab ($threads thr)" "$o" "$(field "$ours" peak_rss_mb)" \
    "$("$py" -c "print(f'{$o/$t:.2f}x')")"
done
np2=$(OMP_NUM_THREADS=1 mpirun -n 2 --oversubscribe "$build/tests/bench_train" "${common[@]}" --vocab 256)
printf '%-28s %12.0f %12.0f %10s\n' "flowlm  V=256 np2 x 1 thr" "$(field "$np2" tokens_per_s)" "$(field "$np2" peak_rss_mb)" "(per rank)"
