"""Trains small tokenizers of every kind flowlm reads, with the real libraries, on the shipped corpus.

Nothing is downloaded. Each builder writes a directory laid out as Hugging Face ships it:
  gpt2json     byte-level BPE, GPT-2's ByteLevel pre-tokenizer (its regex)        tokenizer.json
  gpt2files    the same model as GPT-2's encoder.json + vocab.bpe
  llama3json   Split(Llama 3 regex) + ByteLevel, ignore_merges, <|begin_of_text|> template
  qwen2json    NFC + Split(Qwen2 regex) + ByteLevel
  llama2json   SentencePiece BPE with byte fallback -> transformers' LlamaTokenizerFast (legacy:
               Prepend/Replace normalizer), also keeps tokenizer.model  (llama2model)
  mistraljson  the same through LlamaTokenizerFast(legacy=False): Metaspace prepend_scheme "first"
  gemmajson    SentencePiece BPE (Gemma's ids, no dummy prefix) -> GemmaTokenizerFast  (gemmamodel)
Used by check_tokenizers.py and tests/bench/run_tokenizer_bench.sh.
"""
import json
import os
import pathlib
import sys

CORPUS = pathlib.Path(__file__).resolve().parents[2] / "data" / "tokenizer_corpus.txt"

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

KINDS = ["gpt2json", "gpt2files", "llama3json", "qwen2json", "llama2json", "llama2model", "mistraljson",
         "gemmajson", "gemmamodel"]


def corpus_lines():
    return CORPUS.read_text(encoding="utf-8").splitlines()


def _byte_level_bpe(pre_tokenizer, specials, vocab_size, normalizer=None, ignore_merges=False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(CORPUS)], trainer)
    return tok


def build_gpt2(out: pathlib.Path):
    from tokenizers import pre_tokenizers, processors
    tok = _byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"], 1000)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


def build_gpt2_files(out: pathlib.Path, gpt2_json: pathlib.Path):
    """GPT-2's original pair from the same model: encoder.json (the vocabulary) and vocab.bpe."""
    model = json.loads(gpt2_json.read_text(encoding="utf-8"))["model"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build_llama3(out: pathlib.Path):
    from tokenizers import Regex, pre_tokenizers, processors
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok = _byte_level_bpe(pre, specials, 1500, ignore_merges=True)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


def build_qwen2(out: pathlib.Path):
    from tokenizers import Regex, normalizers, pre_tokenizers, processors
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok = _byte_level_bpe(pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 1200, normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


def _train_spm(prefix: pathlib.Path, gemma: bool):
    import sentencepiece as spm
    # Gemma's layout: <pad> 0, <eos> 1, <bos> 2, <unk> 3; Llama's: <unk> 0, <s> 1, </s> 2, no pad.
    ids = (dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, bos_piece="<bos>", eos_piece="<eos>") if gemma else
           dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    spm.SentencePieceTrainer.train(
        input=str(CORPUS), model_prefix=str(prefix), vocab_size=1200, model_type="bpe", byte_fallback=True,
        character_coverage=0.995, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=not gemma,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"] if gemma else [], minloglevel=2,
        num_threads=1, **ids)
    return prefix.with_suffix(".model")


def build_llama2(out: pathlib.Path, legacy: bool):
    from transformers import LlamaTokenizerFast
    out.mkdir(parents=True, exist_ok=True)
    model = _train_spm(out / "spm", gemma=False)
    # add_prefix_space=True: the normalizer Prepend("▁") + Replace (legacy, as Llama 2 and Mistral v0.1
    # ship) or Metaspace(prepend_scheme="first") (legacy=False), and the decoder's Strip.
    tok = LlamaTokenizerFast(vocab_file=str(model), legacy=legacy, from_slow=True, add_bos_token=True,
                             add_prefix_space=True)
    tok.save_pretrained(str(out))
    model.unlink()
    model.with_suffix(".vocab").unlink()
    return tok


def build_gemma(out: pathlib.Path):
    from transformers import GemmaTokenizerFast
    out.mkdir(parents=True, exist_ok=True)
    model = _train_spm(out / "spm", gemma=True)
    tok = GemmaTokenizerFast(vocab_file=str(model), from_slow=True)
    tok.save_pretrained(str(out))
    model.unlink()
    model.with_suffix(".vocab").unlink()
    return tok


def build(kind: str, root: pathlib.Path) -> pathlib.Path:
    """Builds `kind` (and what it derives from) under root; returns the path flowlm is given."""
    d = root / kind
    if kind == "gpt2json":
        if not (d / "tokenizer.json").exists():
            build_gpt2(d)
        return d
    if kind == "gpt2files":
        src = build("gpt2json", root)
        if not (d / "vocab.bpe").exists():
            build_gpt2_files(d, src / "tokenizer.json")
        return d
    if kind == "llama3json":
        if not (d / "tokenizer.json").exists():
            build_llama3(d)
        return d
    if kind == "qwen2json":
        if not (d / "tokenizer.json").exists():
            build_qwen2(d)
        return d
    if kind in ("llama2json", "llama2model"):
        d = root / "llama2json"
        if not (d / "tokenizer.json").exists():
            build_llama2(d, legacy=True)
        return d if kind == "llama2json" else d / "tokenizer.model"
    if kind == "mistraljson":
        if not (d / "tokenizer.json").exists():
            build_llama2(d, legacy=False)
        return d
    if kind in ("gemmajson", "gemmamodel"):
        d = root / "gemmajson"
        if not (d / "tokenizer.json").exists():
            build_gemma(d)
        return d if kind == "gemmajson" else d / "tokenizer.model"
    raise ValueError(f"unknown tokenizer kind {kind}")


if __name__ == "__main__":
    # build_tokenizers.py OUT_DIR [KIND ...]: build the kinds (default: all) and print their paths.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = pathlib.Path(sys.argv[1])
    for k in sys.argv[2:] or KINDS:
        print(k, build(k, root))
