#!/usr/bin/env bash
# LoRA vs full fine-tuning memory on the host, for a 1B-class Llama shape (TinyLlama 1.1B: 22
# layers, d 2048, 32 heads, 4 kv heads, SwiGLU 5632, vocab 32000), flowlm and PyTorch + PEFT in
# one run: peak RSS and tokens/s of a few steps (batch 1 x 128 tokens, LoRA r = 64 = alpha on every
# projection, as the FLOW reference fine-tunes Gemma 2).
#   tests/bench/run_lora_memory.sh [build dir, default build/release] [python with transformers+peft]
# Full fine-tuning holds weights, gradients and two AdamW moments (16 bytes per parameter, about
# 18 GiB here): the machine needs about 20 GiB free. SKIP_TORCH=1 runs flowlm only.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
py=${2:-${FLOWLM_HF_PYTHON:-/usr/bin/python3}}
shape=(--n-layer 22 --n-head 32 --n-kv-head 4 --n-embd 2048 --n-ff 5632 --vocab 32000 --seq 128 --batch 1
  --steps 2 --warmup 1)
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
printf '%-26s %14s %12s %10s %10s\n' "run" "trainable" "peak MiB" "tokens/s" "vs torch"
for r in 0 64; do
  name=$([ "$r" = 0 ] && echo "full fine-tuning" || echo "LoRA r=$r")
  ours=$("$build/tests/bench_train" --arch llama "${shape[@]}" --lora-r "$r")
  ratio="-"
  if [ "${SKIP_TORCH:-0}" != 1 ]; then
    theirs=$("$py" "$here/tests/bench/bench_lora_torch.py" "${shape[@]}" --lora-r "$r")
    [ "$(field "$ours" params)" = "$(field "$theirs" params)" ] ||
      { echo "parameter counts differ: $ours vs $theirs" >&2; exit 1; }
    printf '%-26s %14s %12s %10s %10s\n' "torch $name" "$(field "$theirs" trainable)" \
      "$(field "$theirs" peak_rss_mb)" "$(field "$theirs" tokens_per_s)" ""
    ratio=$("$py" -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}x RSS')" \
      "$(field "$ours" peak_rss_mb)" "$(field "$theirs" peak_rss_mb)")
  fi
  printf '%-26s %14s %12s %10s %10s\n' "flowlm $name" "$(field "$ours" trainable)" \
    "$(field "$ours" peak_rss_mb)" "$(field "$ours" tokens_per_s)" "$ratio"
done
