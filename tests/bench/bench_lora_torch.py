"""The PyTorch peer of bench_train --arch llama [--lora-r R]: a transformers Llama of the same
shape (untied head, SwiGLU, RoPE), full fine-tuning or PEFT LoRA (alpha = r, every projection),
AdamW on a fixed random batch. Prints one JSON line like bench_train (peak_rss_mb from getrusage).
Run with the test environment's python (transformers and peft pinned there)."""
import argparse
import json
import resource
import time

import torch
import transformers

p = argparse.ArgumentParser()
for k, v in dict(n_layer=22, n_head=32, n_kv_head=4, n_embd=2048, n_ff=5632, vocab=32000, seq=128, batch=1,
                 steps=2, warmup=1, lora_r=0).items():
    p.add_argument("--" + k.replace("_", "-"), type=int, default=v)
a = p.parse_args()
torch.manual_seed(0)
cfg = transformers.LlamaConfig(vocab_size=a.vocab, hidden_size=a.n_embd, intermediate_size=a.n_ff,
                               num_hidden_layers=a.n_layer, num_attention_heads=a.n_head,
                               num_key_value_heads=a.n_kv_head, max_position_embeddings=max(a.seq, 2048),
                               tie_word_embeddings=False)
cfg._attn_implementation = "eager"
model = transformers.LlamaForCausalLM(cfg)
params = sum(x.numel() for x in model.parameters())
if a.lora_r > 0:
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=a.lora_r, lora_alpha=a.lora_r, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
trainable = [x for x in model.parameters() if x.requires_grad]
opt = torch.optim.AdamW(trainable, lr=3e-4)
x = torch.randint(0, a.vocab, (a.batch, a.seq))
y = torch.randint(0, a.vocab, (a.batch, a.seq))
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    logits = model(input_ids=x, use_cache=False).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    if i >= a.warmup:
        times.append(time.perf_counter() - t0)
step = sorted(times)[len(times) // 2]
print(json.dumps({"impl": "torch", "params": params, "trainable": sum(x.numel() for x in trainable),
                  "lora_r": a.lora_r, "tokens_per_s": round(a.batch * a.seq / step, 1),
                  "step_ms": round(step * 1e3, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "final_loss": round(loss.item(), 4)}))
