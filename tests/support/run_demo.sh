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
for want in "== flowlm demo" "standard FT" "FLOW FT" "FLOW - standard" "LAWA is lower at" "inherited" "random" \
            "[8/8] evaluate" "Forgetting table"; do
  grep -qF -- "$want" "$dir/out.txt" || fail "output lacks '$want'"
done
# The console is short: a header, one line per step, the table, where the files are.
lines=$(wc -l < "$dir/out.txt")
[ "$lines" -le 60 ] || fail "the console has $lines lines; the step logs belong in logs/"
for f in results.txt results.json logs/pretrain.log logs/eval.log; do
  [ -s "$dir/demo/$f" ] || fail "no $f"
done
for png in loss drift weights lawa; do
  [ -s "$dir/demo/plots/$png.png" ] || fail "no plots/$png.png"
done
# The demo's claims, checked on its own numbers (results.json): FLOW keeps more of the old
# tasks than standard fine-tuning by more than twice the standard error of the paired
# difference over its fine-tuning seeds; LAWA beats the raw checkpoints over the second half
# of the run; the inherited small model beats the random-init one.
"${FLOWLM_PYTHON:-python3}" - "$dir/demo/results.json" <<'PY' || fail "a claim of the demo does not hold"
import json, sys
r = json.load(open(sys.argv[1]))
d = r["flow_minus_standard_old"]
checks = {
    "FLOW retains more than standard FT (mean > 2 SE)": d["mean"] > 2 * d["se"] and d["mean"] > 0,
    "standard FT forgets": r["standard_forgets"]["mean"] > 2 * r["standard_forgets"]["se"],
    "LAWA below raw late in the run (mean + 2 SE < 0)":
        r["lawa_minus_raw_late"]["mean"] + 2 * r["lawa_minus_raw_late"]["se"] < 0,
    "Inheritune beats random init": r["inherited_answer_loss"] < r["random_answer_loss"],
}
# The forgetting table: every task for both methods, each with a paired standard error.
table = r.get("forgetting", {})
checks["the forgetting table covers every task for both methods"] = all(
    sorted(x["task"] for x in table.get(m, [])) == ["add", "copy", "multiply", "reverse", "sort"] and
    all(x["se"] is not None and x["se"] >= 0 for x in table[m]) for m in ("standard", "flow"))
for name, ok in checks.items():
    print("run_demo: {}: {}".format(name, "ok" if ok else "FAILED"))
sys.exit(0 if all(checks.values()) else 1)
PY
sed -n '/== flowlm demo/,$p' "$dir/out.txt"
echo "run_demo: ok (np $np)"
