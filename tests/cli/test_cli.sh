#!/usr/bin/env bash
# The command line as a user meets it: help, version, dry-run, exit codes (0 ok, 1 failure,
# 2 usage), and bad input that names the file, key and value. Prints "N passed, N failed".
#   test_cli.sh FLOWLM_BIN SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
pass=0
failures=0
# expect NAME EXIT_CODE PATTERN -- COMMAND...: the command exits with EXIT_CODE and its
# combined output matches the extended regex PATTERN.
expect() {
  local name=$1 code=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL: $name: exit $rc (want $code), output:"
    sed 's/^/    /' <<<"$out" | head -15
    failures=$((failures + 1))
  else
    pass=$((pass + 1))
  fi
}

cat > job.toml <<'TOML'
[run]
dir = "run"
[model]
n_layer = 1
n_head = 2
n_embd = 8
block_size = 16
[train]
seq_len = 16
global_batch = 4
micro_batch = 2
max_steps = 3
[optim]
warmup_steps = 1
TOML

expect "help" 0 "Subcommands:.*" -- "$bin" --help
expect "help lists stages" 0 "score" -- "$bin" --help
expect "stage help" 0 "--dry-run" -- "$bin" train --help
expect "help lists import and export" 0 "import.*Hugging Face" -- "$bin" --help
expect "export help names the dtypes" 0 "--dtype.*f32 or bf16" -- "$bin" export --help
expect "import of a missing dir names it" 1 "no_such_hf_dir" -- "$bin" import no_such_hf_dir out.h5
expect "export of a missing checkpoint names it" 1 "nope.h5" -- "$bin" export nope.h5 out_hf
expect "version names the backends" 0 "host backend : Kokkos.*" -- "$bin" --version
expect "version names HDF5 mode" 0 "HDF5 .*(parallel|serial)" -- "$bin" --version
expect "version names MPI" 0 "MPI +: " -- "$bin" --version
expect "unknown stage is a usage error" 2 "" -- "$bin" frobnicate job.toml
expect "missing job file argument" 2 "job is required|required" -- "$bin" train
expect "dry-run prints the resolved job" 0 "^n_embd = 8" -- "$bin" train job.toml --dry-run
expect "dry-run shows defaults" 0 "^beta2 = 0.95" -- "$bin" train job.toml --dry-run
expect "--set overrides" 0 "^lr = 0.0003" -- "$bin" train job.toml --set optim.lr=3e-4 --dry-run
expect "reference lists every section" 0 "\[finetune\]" -- "$bin" reference
expect "missing job file" 1 "nope.toml" -- "$bin" train nope.toml
expect "unknown key with suggestion" 1 "optim.lrr.*did you mean 'optim.lr'" -- "$bin" train job.toml --set optim.lrr=1
expect "out of range names key and value" 1 "optim.lr = -1.*out of range" -- "$bin" train job.toml --set optim.lr=-1
expect "wrong type" 1 "train.max_steps must be an integer" -- "$bin" train job.toml --set train.max_steps=ten
printf '[model\nn_layer = 2\n' > broken.toml
expect "malformed TOML names file and line" 1 "broken.toml:1" -- "$bin" train broken.toml
expect "inconsistent keys" 1 "model.n_embd = 8 is not a multiple of model.n_head = 3" -- "$bin" train job.toml --set model.n_head=3
expect "train without data" 1 "data.train" -- "$bin" train job.toml
expect "inspect a missing file" 1 "missing.h5" -- "$bin" inspect missing.h5
echo "not hdf5" > fake.h5
expect "inspect a file that is not HDF5" 1 "fake.h5" -- "$bin" inspect fake.h5

# A real run, then the ways it can go wrong later.
printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 400) > corpus.txt
cat >> job.toml <<'TOML'
[prepare]
inputs = ["corpus.txt"]
output_dir = "data"
[data]
train = ["data/text_train_*.bin"]
val = ["data/text_val_*.bin"]
TOML
expect "prepare" 0 "prepare: 1 files" -- "$bin" prepare job.toml
expect "train prints progress with tok/s and ETA" 0 "step +3/3 \| loss .* tok/s \| ETA" -- "$bin" train job.toml
expect "inspect a checkpoint" 0 "transformer.h.0.attn.c_attn.weight +float32 +\[8, 24\]" -- "$bin" inspect run/step_00000003.h5
expect "vocab too small for the data" 1 "data.vocab_size = 256 must be <= model.vocab_size = 50" -- \
  "$bin" train job.toml --set model.vocab_size=50
expect "eval names a missing checkpoint and its key" 1 "eval.checkpoints: nothere.h5 does not exist" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["nothere.h5"]' --set 'eval.sets=["data/text_val_*.bin"]'
expect "average names an empty run directory and its key" 1 "average.inputs: directory data has no step_" -- \
  "$bin" average job.toml --set 'average.inputs=["data"]'
expect "eval of a run directory" 0 "step_00000003.h5 +text_val_\*.bin +[0-9.]+" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run"]' --set 'eval.sets=["data/text_val_*.bin"]'
# Each stage checks the keys it uses: eval takes the model from the checkpoint, prepare never
# trains, so a [train] section that the model's block_size contradicts holds back only train.
expect "eval ignores train.seq_len > model.block_size" 0 "step_00000003.h5 +text_val_\*.bin +[0-9.]+" -- \
  "$bin" eval job.toml --set model.block_size=8 --set 'eval.checkpoints=["run"]' --set 'eval.sets=["data/text_val_*.bin"]'
expect "prepare ignores the [model] and [train] relations" 0 "prepare: 1 files" -- \
  "$bin" prepare job.toml --set model.block_size=8 --set model.n_head=3
expect "train still checks them" 1 "train.seq_len = 16 must be <= model.block_size = 8" -- \
  "$bin" train job.toml --set model.block_size=8
expect "dry-run of train checks them too" 1 "model.block_size = 8" -- \
  "$bin" train job.toml --set model.block_size=8 --dry-run
# Benchmark tasks, the forgetting table and generation on the byte model.
for i in $(seq 12); do printf '{"context": "the quick %d", "choices": ["brown fox", "lazy", "dog"], "gold": %d}\n' "$i" "$((i % 3))"; done > mc.jsonl
for i in $(seq 8); do printf '{"context": "the quick", "target": "brown"}\n'; done > gen.jsonl
printf 'kind = "multiple_choice"\ndata = "mc.jsonl"\nnum_fewshot = 1\n' > mc.toml
printf 'kind = "generate"\ndata = "gen.jsonl"\n[generation]\nuntil = [" fox"]\nmax_new_tokens = 8\n' > gen.toml
printf 'kind = "multiple_choice"\ndata = "mc.jsonl"\nnum_fewshot = 1\nsampler = "first_n"\n' > badkey.toml
tasks=(--set 'eval.tasks=["mc.toml", "gen.toml"]')
expect "eval help documents --compare" 0 "--compare BASE TUNED" -- "$bin" eval --help
expect "eval of tasks reports acc with stderr" 0 "step_00000003.h5 +mc +acc +[0-9.]+ +[0-9.]+ +12" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run/step_00000003.h5"]' "${tasks[@]}"
expect "eval of tasks writes metrics and stderr rows" 0 '"stderr":\{"acc":' -- cat run/eval.jsonl
expect "eval --compare prints the forgetting table" 0 "mc +acc_norm +[0-9.]+ +[0-9.]+ +[-+][0-9.]+ " -- \
  "$bin" eval job.toml --compare run/step_00000003.h5 run/step_00000003.h5 "${tasks[@]}" --set 'eval.sets=["data/text_val_*.bin"]'
expect "a task file with an unknown key names it" 1 "badkey.toml:4:1: unknown key 'sampler'" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run"]' --set 'eval.tasks=["badkey.toml"]'
expect "a missing task file names the key" 1 "eval.tasks: nope.toml matches no task file" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run"]' --set 'eval.tasks=["nope.toml"]'
expect "eval needs sets or tasks" 1 "eval.sets and eval.tasks are both empty" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run"]'
expect "compare needs two checkpoints" 1 "eval.compare holds 1 entries" -- \
  "$bin" eval job.toml --set 'eval.compare=["run/step_00000003.h5"]' "${tasks[@]}"
expect "a bad eval.num_fewshot names the key" 1 "eval.num_fewshot = -2 is out of range" -- \
  "$bin" eval job.toml --set 'eval.checkpoints=["run"]' "${tasks[@]}" --set eval.num_fewshot=-2
expect "generate prints completions" 0 "=> " -- "$bin" generate job.toml \
  --set generate.checkpoint=run/step_00000003.h5 --set 'generate.prompts=["the quick", "lazy"]' --set generate.max_new_tokens=5
expect "generate samples with a seed" 0 "temperature 0.8, top_k 5, top_p 0.9, seed 3" -- "$bin" generate job.toml \
  --set generate.checkpoint=run/step_00000003.h5 --set 'generate.prompts=["the"]' --set generate.temperature=0.8 \
  --set generate.top_k=5 --set generate.top_p=0.9 --set generate.seed=3 --set generate.max_new_tokens=4
expect "generate names a missing checkpoint key" 1 "generate.checkpoint is empty" -- "$bin" generate job.toml \
  --set 'generate.prompts=["x"]'
expect "generate refuses top_p 0 by name" 1 "generate.top_p = 0.0 is out of range" -- "$bin" generate job.toml \
  --set generate.top_p=0
# Every family through the same stages: train, eval, inherit, average, train from the inherited.
for arch in llama gemma2; do
  fam=(--set model.arch=$arch --set model.n_kv_head=1 --set run.dir=run_$arch)
  expect "$arch: train" 0 "step +3/3 \| loss" -- "$bin" train job.toml "${fam[@]}" --set checkpoint.save_every=1
  expect "$arch: checkpoint records the family" 0 "arch.*$arch" -- "$bin" inspect run_$arch/step_00000003.h5
  expect "$arch: eval" 0 "step_00000003.h5 +text_val_\*.bin +[0-9.]+" -- \
    "$bin" eval job.toml "${fam[@]}" --set "eval.checkpoints=[\"run_$arch\"]" --set 'eval.sets=["data/text_val_*.bin"]'
  expect "$arch: average" 0 "average: wrote" -- \
    "$bin" average job.toml "${fam[@]}" --set "average.inputs=[\"run_$arch\"]" --set average.mode=swa \
    --set average.output_dir=avg_$arch
  expect "$arch: inherit" 0 "inherit: wrote" -- "$bin" inherit job.toml "${fam[@]}" \
    --set inherit.from=run_$arch/step_00000003.h5 --set inherit.output=small_$arch.h5 --set inherit.layers=1
  expect "$arch: train from the inherited model" 0 "initialized from small_$arch.h5" -- "$bin" train job.toml \
    "${fam[@]}" --set model.n_layer=1 --set model.init_from=small_$arch.h5 --set run.dir=run_small_$arch
  expect "$arch: a job of another shape is refused" 1 "model.n_ff = 64 but model.init_from = small_$arch.h5" -- "$bin" train job.toml \
    "${fam[@]}" --set model.n_layer=1 --set model.n_ff=64 --set model.init_from=small_$arch.h5 --set run.dir=run_x
done
# FLOW on a Llama-style model: prepare a sample set, score it, fine-tune with the weights.
for i in $(seq 40); do printf '{"prompt": "q%d=", "answer": "a%d"}\n' "$i" "$((i * 7))"; done > ft.jsonl
llama=(--set model.arch=llama --set model.n_kv_head=1)
expect "llama: prepare a sample set" 0 "prepare" -- "$bin" prepare job.toml --set prepare.format=jsonl \
  --set 'prepare.inputs=["ft.jsonl"]' --set prepare.output_dir=ft --set prepare.name=ft --set prepare.block_size=16
expect "llama: score" 0 "tau = " -- "$bin" score job.toml "${llama[@]}" --set score.checkpoint=run_llama/step_00000003.h5 \
  --set score.sample_set=ft/ft_train.h5 --set score.output=ft/scores.h5
expect "llama: FLOW fine-tune" 0 "FLOW weights from ft/scores.h5" -- "$bin" train job.toml "${llama[@]}" \
  --set model.init_from=run_llama/step_00000003.h5 --set finetune.method=flow --set finetune.train_set=ft/ft_train.h5 \
  --set finetune.scores=ft/scores.h5 --set run.dir=run_llama_flow
expect "an unknown backend names run.backend" 1 "run.backend" -- "$bin" train job.toml --set run.backend=cuda
head -c 2000 run/step_00000003.h5 > run/step_00000009.h5
expect "resume skips a corrupt newest checkpoint" 0 "resuming from run/step_00000003.h5" -- \
  "$bin" train job.toml --set train.resume=true --set train.max_steps=4
expect "mpirun: a one-rank run resumes on two" 0 "written by 1 ranks; continuing on 2" -- \
  mpiexec -n 2 --oversubscribe "$bin" train job.toml --set train.resume=true --set train.max_steps=6
expect "resume with another global batch is refused by name" 1 "train.global_batch = 4 and this job has 8" -- \
  "$bin" train job.toml --set train.resume=true --set train.max_steps=8 --set train.global_batch=8
expect "mpirun: a config error is reported once, exit 1" 1 "^flowlm: error: .*optim.lr" -- \
  mpiexec -n 2 --oversubscribe "$bin" train job.toml --set optim.lr=-1

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
