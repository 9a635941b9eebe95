"""HF transformers doing LM-BFF's training step, for scripts/bench.

The step of LM-BFF's reference code (models.py, BertForPromptFinetuning): the encoder,
the masked-LM head applied at the mask position only (full vocabulary there), the label
words' logits picked out, cross-entropy, backward, AdamW. Same random batch shape as
`lmbff bench-step`. Prints one JSON line.
"""
import argparse
import json
import time

import torch
from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM, RobertaForMaskedLM

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch-size", type=int, default=8)
p.add_argument("--seq-len", type=int, default=128)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=None)
p.add_argument("--device", default="cpu")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

cfg = AutoConfig.from_pretrained(a.model)
cls = RobertaForMaskedLM if cfg.model_type == "roberta" else BertForMaskedLM
model = cls.from_pretrained(a.model, attn_implementation="sdpa").to(a.device).train()
tok = AutoTokenizer.from_pretrained(a.model)
encoder = model.roberta if cfg.model_type == "roberta" else model.bert
head = model.lm_head if cfg.model_type == "roberta" else model.cls
label_ids = torch.tensor([tok.convert_tokens_to_ids(w) for w in (["Ġterrible", "Ġgreat"] if cfg.model_type == "roberta" else ["terrible", "great"])], device=a.device)

b, s = a.batch_size, a.seq_len
low = min(1000, cfg.vocab_size // 2)
ids = torch.tensor([[low + ((r * 7919 + c * 104729) % (cfg.vocab_size - low)) for c in range(s)] for r in range(b)], device=a.device)
ids[:, 0], ids[:, -1], ids[:, s // 2] = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id
mask = torch.ones_like(ids)
mask_pos = torch.full((b,), s // 2, device=a.device)
target = torch.arange(b, device=a.device) % 2
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=a.device != "cpu")


def step():
    h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = head(h[torch.arange(b, device=a.device), mask_pos])[:, label_ids]
    loss = torch.nn.functional.cross_entropy(logits, target)
    opt.zero_grad()
    loss.backward()
    opt.step()


def run(n):
    t = time.perf_counter()
    for _ in range(n):
        step()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


run(a.warmup)
secs = run(a.steps)
print(json.dumps({"impl": "HF transformers", "batch": b, "seq_len": s, "threads": torch.get_num_threads(),
                  "device": a.device, "steps": a.steps, "steps_per_sec": a.steps / secs}))
