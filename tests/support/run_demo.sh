#!/usr/bin/env bash
# End-to-end test of `flowlm demo`: runs it (at the rank count given) into a scratch dir and
# checks the table, the per-model numbers, the results file and the plots.
#   run_demo.sh FLOWLM_BIN [NP]
set -euo pipefail
bin=$1
np=${2:-1}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if [ "$np" -gt 1 ]; then
  mpiexec -n "$np" --oversubscribe "$bin" demo --dir "$dir/demo" > "$dir/out.txt" 2>&1
else
  "$bin" demo --dir "$dir/demo" > "$dir/out.txt" 2>&1
fi
fail() { echo "run_demo: $*"; tail -40 "$dir/out.txt"; exit 1; }
for want in "== flowlm demo" "standard FT" "FLOW FT" "LAWA is lower at" "inherited" "random"; do
  grep -q -- "$want" "$dir/out.txt" || fail "output lacks '$want'"
done
[ -s "$dir/demo/results.txt" ] || fail "no results.txt"
for png in loss drift weights lawa; do
  [ -s "$dir/demo/plots/$png.png" ] || fail "no plots/$png.png"
done
# The demo's claims, checked on its own numbers: FLOW keeps more of the old tasks than
# standard fine-tuning, and the inherited small model beats the random-init one.
awk '/^  standard FT/ {s=$4} /^  FLOW FT/ {f=$4} END {exit !(f+0 > s+0)}' "$dir/out.txt" ||
  fail "FLOW did not retain more than standard fine-tuning"
awk '/^  inherited/ {i=$2} /^  random/ {r=$2} END {exit !(i+0 < r+0)}' "$dir/out.txt" ||
  fail "Inheritune did not beat random init"
sed -n '/== flowlm demo/,$p' "$dir/out.txt" | grep -v '^\[flowlm\]'
echo "run_demo: ok (np $np)"
