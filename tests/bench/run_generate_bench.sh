#!/usr/bin/env bash
# Generation benchmarks on this machine, in one run:
#   tests/bench/run_generate_bench.sh [build dir, default build/release] [rounds, default 3]
# Needs the build dir's flowlm and tests/bench_generate, and a python3 with transformers (the test
# venv; FLOWLM_HF_PYTHON overrides, else python3 on PATH).
#
# 1. The sample-set exact-match eval of the issue's job (a 4-layer d=128 model, 500 prompt/answer
#    samples of the demo's tasks, micro-batch 16): the former eval (loss pass + greedy decoding that
#    reruns the whole sequence per token), the same with the KV cache, and today's one pass, in
#    interleaved rounds of one process; zero-shot and with 8 few-shot examples in front of each prompt.
# 2. Generated tokens/s of flowlm's generate vs transformers' generate (greedy, KV cache, no EOS stop) on
#    the same random model, exported: GPT-2 (6 layers, 6 heads, d=384) at V=256 and V=50257 and Llama
#    (2 kv heads, SwiGLU) at V=32000, prompts of 64 tokens, 64 new tokens, batches of 1 and 8. The
#    script fails when the two generate different tokens or count different parameters. Each side
#    runs twice, alternating, and the faster run of each is shown.
# Threads: all cores, OMP_WAIT_POLICY=passive for both (the default spin-wait collapses under
# oversubscription; PyTorch's pthreads OpenBLAS competes with spinning OpenMP threads).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
rounds=${2:-3}
threads=$(nproc)
py=${FLOWLM_HF_PYTHON:-python3}
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export TRANSFORMERS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
start=$SECONDS

echo "exact-match eval, $threads threads (seconds, median of $rounds interleaved rounds)"
printf '%-28s %10s %10s %10s %8s %8s\n' "job" "former" "kv cache" "one pass" "kv x" "1-pass x"
for shots in 0 8; do
  r=$("$build/tests/bench_generate" --mode exact-match --shots "$shots" --rounds "$rounds")
  printf '%-28s %10.2f %10.2f %10.2f %7.2fx %7.2fx\n' "500 samples, $shots-shot" "$(field "$r" old_eval_s)" \
    "$(field "$r" kv_cache_eval_s)" "$(field "$r" one_pass_eval_s)" "$(field "$r" kv_speedup)" \
    "$(field "$r" one_pass_speedup)"
done

echo
echo "generate, prompts 64 tokens + 64 new, greedy, $threads threads"
printf '%-34s %12s %12s %8s\n' "model" "flowlm tok/s" "torch tok/s" "flowlm x"
for model in gpt2:256 gpt2:50257 llama:32000; do
  arch=${model%:*} vocab=${model#*:}
  ckpt=$tmp/$arch-$vocab.h5
  "$build/tests/bench_generate" --mode generate --arch "$arch" --vocab "$vocab" --prompts 1 --new 1 --rounds 1 \
    --save "$ckpt" > /dev/null
  "$build/flowlm" export "$ckpt" "$tmp/hf-$arch-$vocab" > /dev/null 2>&1
  for batch in 1 8; do
    n=$((batch == 1 ? 4 : 8))
    args=(--prompts "$n" --prompt-len 64 --new 64 --batch "$batch" --rounds "$rounds")
    # Two alternating runs of each; the faster of each pair (a shared machine's load hits both alike).
    best() { "$py" -c "import json,sys; print(max(sys.argv[1:], key=lambda r: json.loads(r)['tokens_per_s']))" "$@"; }
    o1=$("$build/tests/bench_generate" --mode generate --arch "$arch" --vocab "$vocab" "${args[@]}")
    t1=$("$py" "$here/tests/bench/bench_generate_torch.py" "$tmp/hf-$arch-$vocab" "${args[@]}" --threads "$threads")
    o2=$("$build/tests/bench_generate" --mode generate --arch "$arch" --vocab "$vocab" "${args[@]}")
    t2=$("$py" "$here/tests/bench/bench_generate_torch.py" "$tmp/hf-$arch-$vocab" "${args[@]}" --threads "$threads")
    ours=$(best "$o1" "$o2")
    theirs=$(best "$t1" "$t2")
    if [ "$(field "$ours" params)" != "$(field "$theirs" params)" ]; then
      echo "run_generate_bench.sh: $arch V=$vocab: $(field "$ours" params) vs $(field "$theirs" params) parameters" >&2
      exit 1
    fi
    if [ "$(field "$ours" first_tokens)" != "$(field "$theirs" first_tokens)" ]; then
      echo "run_generate_bench.sh: $arch V=$vocab batch $batch: flowlm generated $(field "$ours" first_tokens)," \
        "transformers $(field "$theirs" first_tokens)" >&2
      exit 1
    fi
    o=$(field "$ours" tokens_per_s) t=$(field "$theirs" tokens_per_s)
    printf '%-34s %12.0f %12.0f %7.2fx\n' "$arch V=$vocab batch $batch ($(field "$ours" params) p)" "$o" "$t" \
      "$("$py" -c "print(f'{$o/$t:.2f}')")"
  done
done
echo "($((SECONDS - start)) s)"
