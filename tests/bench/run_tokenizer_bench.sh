#!/usr/bin/env bash
# Tokenization throughput, flowlm vs the Hugging Face `tokenizers` library (and `sentencepiece` for
# tokenizer.model), one thread each, on the same text and machine (not a CTest test).
#   tests/bench/run_tokenizer_bench.sh [build dir, default build/release] [text file]
# The tokenizers are trained first on the shipped corpus (tests/hf/tokenizers/build_tokenizers.py).
# The text (default: the corpus, README and the C++ sources, ~1.5 MB: prose in many languages
# and code) is measured two ways:
#   lines: every line encoded on its own. flowlm: encode() per line; tokenizers: the faster of
#          encode_batch and encode_batch_fast (no offsets) of the lines, add_special_tokens=False,
#          with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1, i.e. on one thread;
#          sentencepiece: encode(lines, num_threads=1).
#   doc:   the whole text in one encode call.
# Each side builds a fresh tokenizer per repeat (cold word caches), times the encode calls only,
# best of 3; the ids are checked equal. Needs FLOWLM_HF_PYTHON (the venv of .ci/setup).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
py=${FLOWLM_HF_PYTHON:-$(ls -d "${FLOWLM_CACHE:-$HOME/.cache/flowlm}"/venv-*/bin/python3 2>/dev/null | head -1)}
[ -x "$py" ] || { echo "set FLOWLM_HF_PYTHON to the python3 of the venv .ci/setup makes" >&2; exit 2; }
bench="$build/tests/bench_tokenizer"
[ -x "$bench" ] || { echo "$bench not found (build the bench_tokenizer target)" >&2; exit 2; }
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 TRANSFORMERS_VERBOSITY=error
work=$(mktemp -d "${TMPDIR:-/tmp}/flowlm-bench-tokenizer.XXXXXX")
trap 'rm -rf "$work"' EXIT

text=${2:-}
if [ -z "$text" ]; then
  text="$work/text.txt"
  cat "$here/tests/data/tokenizer_corpus.txt" "$here/README.md" "$here"/src/*/*.cpp "$here"/src/*/*.hpp > "$text"
fi
"$py" "$here/tests/hf/tokenizers/build_tokenizers.py" "$work/tok" gpt2json llama3json qwen2json llama2json \
  gemmajson llama2model > "$work/kinds.txt"
printf 'text: %s (%s bytes, %s lines), one thread each, best of 3, cold caches\n' "$text" \
  "$(wc -c < "$text")" "$(wc -l < "$text")"
printf '%-13s %-6s %12s %12s %8s\n' "tokenizer" "mode" "flowlm MB/s" "library MB/s" "ratio"
while read -r kind path; do
  for mode in lines doc; do
    ours=$("$bench" "$path" "$text" --mode "$mode")
    "$py" - "$kind" "$path" "$text" "$mode" "$ours" <<'PY'
import json, sys, time
kind, path, text_file, mode, ours = sys.argv[1:6]
ours = json.loads(ours)
text = open(text_file, encoding="utf-8", errors="replace", newline="").read()
parts = text.split("\n") if mode == "lines" else [text]
if parts and parts[-1] == "" and mode == "lines":
    parts.pop()
best, n = 1e300, 0
for _ in range(3):
    if path.endswith(".model"):
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=path)
        t0 = time.perf_counter()
        ids = sp.encode(parts, num_threads=1)
        best = min(best, time.perf_counter() - t0)
    else:
        from tokenizers import Tokenizer
        for call in ("encode_batch", "encode_batch_fast"):  # _fast skips the offsets: the library's best
            tok = Tokenizer.from_file(path + "/tokenizer.json")
            t0 = time.perf_counter()
            ids = [e.ids for e in getattr(tok, call)(parts, add_special_tokens=False)]
            best = min(best, time.perf_counter() - t0)
    n = sum(map(len, ids))
assert n == ours["tokens"], f"{kind} {mode}: flowlm made {ours['tokens']} tokens, the library {n}"
lib = len(text.encode()) / best / 1e6
print(f"{kind:<13} {mode:<6} {ours['mb_per_s']:12.2f} {lib:12.2f} {ours['mb_per_s'] / lib:8.2f}")
PY
  done
done < "$work/kinds.txt"
