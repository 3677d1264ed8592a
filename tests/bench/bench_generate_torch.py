"""Generated tokens/s of transformers' generate (greedy, its KV cache) on the model bench_generate saved
and `flowlm export` wrote: the same prompts as bench_generate (token t of prompt i is
(i * 31 + t * 7) % (V - 1) + 1), no end-of-text stop, batches of --batch prompts (equal lengths, so no
padding), median of --rounds runs after one warm-up. Prints one JSON line like bench_generate's.

    bench_generate_torch.py HF_DIR [--prompts 8 --prompt-len 64 --new 64 --batch 8 --rounds 3 --threads N]
"""
import argparse
import json
import statistics
import time

import torch
import transformers
import transformers.generation.utils as gen_utils

# generate() asks whether the model is FSDP-managed by importing torch.distributed.fsdp, which Debian's
# torch 1.13 cannot import under Python 3.11; nothing here is.
gen_utils.is_fsdp_managed_module = lambda module: False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.hf_dir, attn_implementation="eager").eval()
    V = model.config.vocab_size
    prompts = torch.tensor([[(i * 31 + t * 7) % (V - 1) + 1 for t in range(a.prompt_len)] for i in range(a.prompts)])
    out = None

    def run():
        nonlocal out
        res = []
        for s in range(0, a.prompts, a.batch):
            x = prompts[s:s + a.batch]
            with torch.no_grad():
                g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=a.new,
                                   min_new_tokens=a.new, eos_token_id=None, pad_token_id=0, use_cache=True)
            res.extend(g[:, a.prompt_len:].tolist())
        out = res

    run()
    times = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    n = sum(len(o) for o in out)
    print(json.dumps({"impl": "transformers", "params": sum(p.numel() for p in model.parameters()), "vocab": V,
                      "threads": torch.get_num_threads(), "prompts": a.prompts, "batch": a.batch,
                      "prompt_len": a.prompt_len, "new": a.new, "seconds": round(t, 4),
                      "tokens_per_s": round(n / t, 1), "first_tokens": out[0][:8]}))


if __name__ == "__main__":
    main()
