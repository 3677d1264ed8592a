"""flowlm's benchmark tasks against lm-evaluation-harness itself.

A small byte-level BPE tokenizer is trained (tokenizers library) on a synthetic corpus, a flowlm
model (GPT-2 and Llama families) is trained on the same corpus for a few dozen steps from random
init, and `flowlm export` writes it as a Hugging Face model directory. lm-eval 0.4.5's HF backend
(HFLM + simple_evaluate) then runs locally defined tasks (YAML over JSONL files written here, no
downloads) of each kind on that directory, and `flowlm eval` runs the equivalent task files on the
flowlm checkpoint. Both must build the same prompts and report the same per-item log-likelihoods
(float tolerance), the same accuracies with lm-eval's standard errors, the same generated text and
exact matches, and the same perplexities. Run by CTest as hf.eval_harness with the pinned venv.
"""

import json
import math
import os
import random
import subprocess
from pathlib import Path

import pytest

FLOWLM = os.environ.get("FLOWLM_BIN")
pytestmark = pytest.mark.skipif(not FLOWLM, reason="FLOWLM_BIN not set (run via ctest)")

BLOCK = 64
NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace"]
VERBS = ["likes", "sees", "finds", "paints", "buys"]
THINGS = ["apples", "the red house", "a small dog", "green tea", "old books", "the river", "café crème",
          "naïve art"]


def sentence(rng):
    # Who does what follows a rule the model can pick up: the thing depends on the name and the verb.
    n, v = rng.randrange(len(NAMES)), rng.randrange(len(VERBS))
    t = (3 * n + v + (rng.random() < 0.2)) % len(THINGS)
    return f"{NAMES[n]} {VERBS[v]} {THINGS[t]}."


def run(*args, check=True, cwd=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def make_fixtures(d: Path):
    rng = random.Random(7)
    mc, seen = [], set()
    while len(mc) < 48:
        n, v = rng.choice(NAMES), rng.choice(VERBS)
        choices = rng.sample(THINGS, 4)
        # Some contexts end in a space: lm-eval moves it into the continuation before encoding.
        ctx = f"{n} {v}" + (" " if len(mc) % 5 == 0 else "")
        key = (ctx, tuple(choices))
        if key in seen:
            continue
        seen.add(key)
        mc.append({"context": ctx, "choices": choices, "gold": rng.randrange(4)})
    gen, seen = [], set()
    while len(gen) < 30:
        n, v = rng.choice(NAMES), rng.choice(VERBS)
        t = THINGS[(3 * NAMES.index(n) + VERBS.index(v)) % len(THINGS)]
        if (n, v) in seen:
            continue
        seen.add((n, v))
        gen.append({"context": f"{n} {v}", "target": t})
    roll = [{"text": " ".join(sentence(rng) for _ in range(rng.randint(1, 40)))} for _ in range(16)]
    write_jsonl(d / "mc.jsonl", mc)
    write_jsonl(d / "gen.jsonl", gen)
    write_jsonl(d / "roll.jsonl", roll)

    # flowlm task files
    (d / "mc_fewshot.toml").write_text(
        'kind = "multiple_choice"\ndata = "mc.jsonl"\nnum_fewshot = 2\nfewshot_sampler = "first_n"\n')
    (d / "mc_template.toml").write_text(
        'kind = "multiple_choice"\ndata = "mc.jsonl"\ntemplate = "Question: {prompt}\\nAnswer:"\n')
    (d / "gen.toml").write_text(r'''kind = "generate"
data = "gen.jsonl"
num_fewshot = 1
fewshot_sampler = "first_n"
fewshot_delimiter = "\n"
[generation]
until = ["."]
max_new_tokens = 12
[[filter]]
name = "none"
[[filter]]
name = "last-word"
regex = "(\\w+)\\s*$"
group_select = -1
[exact_match]
ignore_case = true
regexes_to_ignore = ["^\\s+", "\\.$"]
''')
    (d / "roll.toml").write_text('kind = "loglikelihood_rolling"\ndata = "roll.jsonl"\n')

    # the same tasks as lm-eval YAML
    def yaml_task(name, body):
        (d / "lm" / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {d / body.pop('file')}\n"
            f"test_split: test\nfewshot_split: test\n" + body.pop("rest"))
    (d / "lm").mkdir()
    yaml_task("mc_fewshot", {"file": "mc.jsonl", "rest": (
        "output_type: multiple_choice\ndoc_to_text: context\ndoc_to_choice: choices\ndoc_to_target: gold\n"
        "num_fewshot: 2\nfewshot_config:\n  sampler: first_n\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")})
    yaml_task("mc_template", {"file": "mc.jsonl", "rest": (
        "output_type: multiple_choice\ndoc_to_text: \"Question: {{context}}\\nAnswer:\"\n"
        "doc_to_choice: choices\ndoc_to_target: gold\nnum_fewshot: 0\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")})
    yaml_task("gen", {"file": "gen.jsonl", "rest": (
        "output_type: generate_until\ndoc_to_text: context\ndoc_to_target: target\nnum_fewshot: 1\n"
        "fewshot_delimiter: \"\\n\"\nfewshot_config:\n  sampler: first_n\n"
        "generation_kwargs:\n  until: [\".\"]\n  max_gen_toks: 12\n  do_sample: false\n"
        "filter_list:\n  - name: none\n    filter:\n      - function: take_first\n"
        "  - name: last-word\n    filter:\n      - function: regex\n        regex_pattern: \"(\\\\w+)\\\\s*$\"\n"
        "        group_select: -1\n      - function: take_first\n"
        "metric_list:\n  - metric: exact_match\n    ignore_case: true\n"
        "    regexes_to_ignore: [\"^\\\\s+\", \"\\\\.$\"]\n")})
    yaml_task("roll", {"file": "roll.jsonl", "rest": (
        "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: text\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n")})


def train_tokenizer(d: Path, corpus: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(corpus)], trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    out = d / "tokenizer"
    hf.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request, tmp_path_factory):
    family = request.param
    d = tmp_path_factory.mktemp(f"harness_{family}")
    os.environ["HF_DATASETS_CACHE"] = str(d / "hf_datasets")
    rng = random.Random(1)
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(" ".join(sentence(rng) for _ in range(12)) for _ in range(400)) + "\n",
                      encoding="utf-8")
    tok = train_tokenizer(d, corpus)
    make_fixtures(d)
    arch = {"gpt2": 'arch = "gpt2"\n', "llama": 'arch = "llama"\nn_kv_head = 2\n'}[family]
    (d / "job.toml").write_text(f"""
[run]
dir = "{d / 'run'}"
seed = 3
[model]
{arch}n_layer = 2
n_head = 4
n_embd = 64
vocab_size = 512
block_size = {BLOCK}
[prepare]
inputs = ["{corpus}"]
output_dir = "{d / 'data'}"
tokenizer = "{tok}"
val_fraction = 0.05
[data]
train = ["{d / 'data'}/text_train_*.bin"]
vocab_size = 512
[train]
seq_len = {BLOCK}
global_batch = 16
micro_batch = 16
max_steps = 60
log_every = 1000
val_every = 0
[optim]
lr = 3e-3
warmup_steps = 5
[eval]
checkpoints = ["{d / 'run' / 'step_00000060.h5'}"]
tasks = ["{d}/mc_fewshot.toml", "{d}/mc_template.toml", "{d}/gen.toml", "{d}/roll.toml"]
tokenizer = "{tok}"
micro_batch = 8
samples_dir = "{d / 'samples'}"
output = "{d / 'eval.jsonl'}"
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for stage in ("prepare", "train", "eval"):
        p = subprocess.run([FLOWLM, stage, d / "job.toml"], capture_output=True, text=True, env=env)
        assert p.returncode == 0, f"flowlm {stage}:\n{p.stdout}\n{p.stderr}"
    hf_dir = d / "hf"
    run(FLOWLM, "export", d / "run" / "step_00000060.h5", hf_dir, "--tokenizer", tok)

    import torch
    import transformers.generation.utils as gen_utils
    # transformers' generate() asks whether the model is FSDP-managed by importing torch.distributed.fsdp,
    # which Debian's torch 1.13 cannot import under Python 3.11 (a dataclass default it rejects). Nothing
    # here is FSDP-managed: answer for it.
    gen_utils.is_fsdp_managed_module = lambda module: False
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    torch.manual_seed(0)
    lm = HFLM(pretrained=str(hf_dir), batch_size=1, device="cpu", dtype="float32")
    tm = TaskManager(include_path=str(d / "lm"))
    # bootstrap_iters > 0 turns standard errors on; acc and exact_match get the closed form (mean_stderr),
    # the perplexities none ("N/A"), so nothing is resampled.
    out = evaluator.simple_evaluate(model=lm, tasks=["mc_fewshot", "mc_template", "gen", "roll"], task_manager=tm,
                                    log_samples=True, bootstrap_iters=2, random_seed=0, numpy_random_seed=0,
                                    torch_random_seed=0, fewshot_random_seed=1234)
    ours = {}
    for line in (d / "eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        ours[row["task"]] = row
    records = {t: [json.loads(l) for l in (d / "samples" / f"step_00000060_{t}.jsonl").read_text().splitlines()]
               for t in ours}
    return dict(dir=d, family=family, lm=out, ours=ours, records=records)


def close(a, b, what):
    assert abs(a - b) <= 2e-4 + 2e-5 * abs(b), f"{what}: flowlm {a} vs lm-eval {b}"


@pytest.mark.parametrize("task", ["mc_fewshot", "mc_template"])
def test_multiple_choice_matches_lm_eval(setup, task):
    lm_samples = sorted(setup["lm"]["samples"][task], key=lambda s: s["doc_id"])
    recs = setup["records"][task]
    assert len(recs) == len(lm_samples) == 48
    ties = 0
    spread = 0.0
    for r, s in zip(recs, lm_samples):
        assert r["doc_id"] == s["doc_id"]
        # Same prompt, then the same log-likelihood of every choice.
        assert r["context"] == s["arguments"][0][0], f"item {r['doc_id']}: prompts differ"
        lls = [float(x[0]) for x in s["filtered_resps"]]
        for i, (a, b) in enumerate(zip(r["loglikelihoods"], lls)):
            close(a, b, f"{task} item {r['doc_id']} choice {i}")
        assert r["greedy"] == [bool(x[1]) for x in s["filtered_resps"]]
        spread = max(spread, max(lls) - min(lls))
        top = sorted(lls, reverse=True)
        if top[0] - top[1] < 1e-3:
            ties += 1
            continue
        assert r["acc"] == s["acc"] and r["acc_norm"] == s["acc_norm"], f"item {r['doc_id']}"
    assert spread > 0.5, "degenerate model: choices barely differ"
    assert ties <= 2, f"{ties} near-ties: the comparison would be weak"
    res = setup["lm"]["results"][task]
    ours = setup["ours"][task]
    n = len(recs)
    for m in ("acc", "acc_norm"):
        assert abs(ours["metrics"][m] - res[f"{m},none"]) <= ties / n + 1e-12, m
        if ties == 0:
            assert math.isclose(ours["stderr"][m], res[f"{m}_stderr,none"], rel_tol=1e-9, abs_tol=1e-12), m
    # acc_norm divides by the choice's length in characters (lm-eval's len(str)); some choices are
    # longer in bytes, so bytes would rank differently somewhere in this set.
    assert any(len(c) != len(c.encode()) for c in THINGS)


def test_generation_matches_lm_eval(setup):
    recs = setup["records"]["gen"]
    # lm-eval logs the documents once per filter, in filter_list order.
    by_filter = {}
    samples = setup["lm"]["samples"]["gen"]
    assert len(samples) == 2 * len(recs)
    for k, s in enumerate(samples):
        by_filter.setdefault(["none", "last-word"][k // len(recs)], {})[s["doc_id"]] = s
    hits = 0
    for r in recs:
        s = by_filter["none"][r["doc_id"]]
        assert r["context"] == s["arguments"][0][0], f"item {r['doc_id']}: prompts differ"
        assert r["response"] == s["resps"][0][0], f"item {r['doc_id']}: generated text differs"
        for f in ("none", "last-word"):
            t = by_filter[f][r["doc_id"]]
            assert r["filtered"][f] == t["filtered_resps"][0], f"item {r['doc_id']} filter {f}"
            assert r["exact_match"][f] == t["exact_match"], f"item {r['doc_id']} filter {f}"
        hits += r["exact_match"]["none"]
        assert r["generated_tokens"] > 0
    res, ours = setup["lm"]["results"]["gen"], setup["ours"]["gen"]
    assert math.isclose(ours["metrics"]["exact_match"], res["exact_match,none"], abs_tol=1e-12)
    assert math.isclose(ours["metrics"]["exact_match,last-word"], res["exact_match,last-word"], abs_tol=1e-12)
    assert math.isclose(ours["stderr"]["exact_match"], res["exact_match_stderr,none"], rel_tol=1e-9, abs_tol=1e-12)
    assert 0 < hits < len(recs), "the trained model should get some answers right and some wrong"


def test_rolling_perplexities_match_lm_eval(setup):
    recs = setup["records"]["roll"]
    lm_samples = sorted(setup["lm"]["samples"]["roll"], key=lambda s: s["doc_id"])
    long_docs = 0
    for r, s in zip(recs, lm_samples):
        close(r["loglikelihood"], float(s["resps"][0][0]), f"document {r['doc_id']}")
        ll, words = s["word_perplexity"]
        assert r["words"] == words
        long_docs += r["tokens"] > BLOCK
    assert long_docs >= 3, "some documents must span several windows"
    res, ours = setup["lm"]["results"]["roll"], setup["ours"]["roll"]
    for m in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert math.isclose(ours["metrics"][m], res[f"{m},none"], rel_tol=1e-5), m
        assert ours["stderr"][m] is not None and ours["stderr"][m] > 0, m  # delta method, not lm-eval's bootstrap


def test_results_do_not_depend_on_the_rank_count(setup):
    d = setup["dir"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    out2 = d / "eval_np2.jsonl"
    p = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", FLOWLM, "eval", d / "job.toml", "--set",
                        f"eval.output={out2}", "--set", f"eval.samples_dir={d / 'samples_np2'}"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    one = [json.loads(l) for l in (d / "eval.jsonl").read_text().splitlines()]
    two = [json.loads(l) for l in out2.read_text().splitlines()]
    assert [r["metrics"] for r in one] == [r["metrics"] for r in two]
    assert [r["stderr"] for r in one] == [r["stderr"] for r in two]
    for t in setup["records"]:
        a = (d / "samples" / f"step_00000060_{t}.jsonl").read_text()
        b = (d / "samples_np2" / f"step_00000060_{t}.jsonl").read_text()
        assert a == b, f"{t}: per-item records differ at 2 ranks"


def hf_greedy(model_dir, prompts, max_new, tokenizer_dir=None):
    """transformers' own greedy generate (with its KV cache), prompt by prompt; EOS dropped."""
    import torch
    import transformers
    import transformers.generation.utils as gen_utils
    gen_utils.is_fsdp_managed_module = lambda module: False  # see setup()
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    out = []
    for p in prompts:
        ids = torch.tensor([tok(p).input_ids])
        with torch.no_grad():
            g = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        new = g[0, ids.shape[1]:].tolist()
        out.append(new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new)
    return out


def flowlm_generate(job, prompts, max_new, out, *extra):
    p = run(FLOWLM, "generate", job, "--set", f"generate.prompts={json.dumps(prompts)}", "--set",
            f"generate.max_new_tokens={max_new}", "--set", f"generate.output={out}", *extra)
    return [json.loads(l)["tokens"] for l in Path(out).read_text().splitlines()], p.stdout


def test_generate_stage_equals_transformers_greedy(setup):
    d = setup["dir"]
    prompts = ["Alice likes", "Bob", "Grace paints the", "Eve finds a small dog. Frank", "The"]
    ours, log = flowlm_generate(d / "job.toml", prompts, 20, d / "gen_out.jsonl", "--set",
                                f"generate.checkpoint={d / 'run' / 'step_00000060.h5'}", "--set",
                                f"generate.tokenizer={d / 'tokenizer'}", "--set", "generate.batch=2")
    want = hf_greedy(d / "hf", prompts, 20)
    assert ours == want
    assert sum(len(t) for t in ours) > 30 and "tokens/s" in log


def test_generate_on_an_imported_gemma2_equals_transformers(tmp_path):
    """Gemma-2's sliding window, soft-caps and query scale through the cache: a random transformers
    model (prompts longer than the window), imported, generates what transformers generates."""
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.Gemma2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                    max_position_embeddings=64, query_pre_attn_scalar=12,
                                    attn_logit_softcapping=5.0, final_logit_softcapping=3.0, sliding_window=6,
                                    rms_norm_eps=1e-6, eos_token_id=0, bos_token_id=0, pad_token_id=0)
    cfg._attn_implementation = "eager"
    model = transformers.Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() > 1:
                p.mul_(8.0)  # logits that differ clearly between tokens
    src = tmp_path / "hf"
    model.save_pretrained(src, safe_serialization=True)
    ckpt = tmp_path / "gemma.h5"
    run(FLOWLM, "import", src, ckpt)
    rng = random.Random(3)
    prompts = [[rng.randrange(32, 127) for _ in range(n)] for n in (3, 9, 14, 1)]  # printable ASCII: one byte each
    want = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            # use_cache=False: Gemma-2's HybridCache needs torch 2 (torch._dynamo); transformers then
            # reruns its forward per token, which is the reference we want anyway.
            g = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=16,
                               eos_token_id=0, pad_token_id=0, use_cache=False)
        new = g[0, len(p):].tolist()
        want.append(new[:new.index(0)] if 0 in new else new)
    # The byte tokenizer maps the prompt bytes to these ids; 0 is its end-of-text.
    job = tmp_path / "job.toml"
    job.write_text(f'[generate]\ncheckpoint = "{ckpt}"\ntokenizer = "byte"\n')
    texts = [bytes(p).decode("ascii") for p in prompts]
    got, _ = flowlm_generate(job, texts, 16, tmp_path / "out.jsonl", "--set", "generate.batch=4")
    assert got == want
    assert sum(len(t) for t in got) > 20
