"""HF transformers predicting LM-BFF prompt classes, for the prediction benchmark in scripts/bench.

Each text becomes `sentence + " It was " + mask + "."`, tokenized by the model's own HF
tokenizer (special tokens added, padded per batch, truncated to 128). Timed end to end,
strings to label-word probabilities, over the first --n sentences in consecutive batches
(after one untimed warm-up batch), for two ways of running the model:
  hf-full       AutoModelForMaskedLM forward: full-vocabulary logits at every position
                (as a fill-mask pipeline runs), then the mask rows' label-word logits.
  hf-mask-head  the encoder, then the MLM head on the mask position's hidden state only
                (LM-BFF's way), then the label-word logits.
Softmax over the label words in both. Prints one JSON line per (variant, batch size).

Usage:
    python bench_predict_hf.py --model HF_MODEL_DIR --texts TSV_FILE --n 1000 \
        --batch-sizes 1,8,64,256 --threads 2 --label-words terrible,great \
        [--repeat 1] [--probs-out FILE]
HF_MODEL_DIR holds config.json (bert or roberta), model.safetensors and tokenizer.json;
a checkpoint without an MLM head gets a random one (fine for timing). TSV_FILE has a
header with `sentence` and `label` columns. --probs-out writes the hf-mask-head
probabilities of all n texts (a JSON list of lists) for a parity check.
"""
import argparse
import csv
import json
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", required=True)
p.add_argument("--texts", required=True)
p.add_argument("--n", type=int, default=1000)
p.add_argument("--batch-sizes", default="1,8,64,256")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--label-words", default="terrible,great")
p.add_argument("--repeat", type=int, default=1)
p.add_argument("--probs-out")
a = p.parse_args()

# Before torch and tokenizers start their thread pools: the tokenizer's (rayon) pool
# gets the same thread budget as torch, and nothing reaches for the network.
os.environ["RAYON_NUM_THREADS"] = str(a.threads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer  # noqa: E402

transformers.logging.set_verbosity_error()  # no "newly initialized weights" noise
transformers.logging.disable_progress_bar()
torch.set_num_threads(a.threads)

with open(a.texts, encoding="utf-8", newline="") as f:
    texts = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][: a.n]
if not texts:
    sys.exit(f"no sentences in {a.texts}")

cfg = AutoConfig.from_pretrained(a.model)
if cfg.model_type not in ("bert", "roberta"):
    sys.exit(f"model_type {cfg.model_type!r} is neither bert nor roberta")
roberta = cfg.model_type == "roberta"
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForMaskedLM.from_pretrained(a.model).eval()
encoder, head = (model.roberta, model.lm_head) if roberta else (model.bert, model.cls)

vocab = tok.get_vocab()
label_ids = []
for word in a.label_words.split(","):
    form = "\u0120" + word if roberta else word  # byte-level BPE marks a leading space with Ġ
    if form not in vocab:
        sys.exit(f"label word {word!r} ({form!r}) is not a single token of this vocabulary")
    label_ids.append(vocab[form])
label_ids = torch.tensor(label_ids)
prompts = [t + " It was " + tok.mask_token + "." for t in texts]


def mask_positions(ids):
    """The (last) mask position of each row."""
    is_mask = ids == tok.mask_token_id
    if not bool(is_mask.any(1).all()):
        raise SystemExit("a prompt lost its mask to truncation")
    return (is_mask * torch.arange(ids.shape[1])).max(1).indices


def predict_full(batch):
    enc = tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
    logits = model(**enc).logits  # [batch, seq, vocab]
    rows = torch.arange(len(batch))
    return logits[rows, mask_positions(enc["input_ids"])][:, label_ids].softmax(-1)


def predict_mask_head(batch):
    enc = tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
    hidden = encoder(**enc).last_hidden_state  # [batch, seq, hidden]
    rows = torch.arange(len(batch))
    at_mask = hidden[rows, mask_positions(enc["input_ids"])]  # [batch, hidden]
    return head(at_mask)[:, label_ids].softmax(-1)


def run(predict, bs):
    """Times predict over all texts; returns (examples/s, per-batch latencies in s, probs)."""
    predict(prompts[:bs])  # warm-up
    latencies, probs = [], []
    for _ in range(a.repeat):
        probs = []
        for i in range(0, len(prompts), bs):
            t0 = time.perf_counter()
            probs.append(predict(prompts[i : i + bs]))
            latencies.append(time.perf_counter() - t0)
    return a.repeat * len(prompts) / sum(latencies), latencies, torch.cat(probs)


variants = {"hf-full": predict_full, "hf-mask-head": predict_mask_head}
saved = {}
with torch.inference_mode():
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        for name, predict in variants.items():
            eps, lat, probs = run(predict, bs)
            saved.setdefault(name, probs)
            print(json.dumps({"impl": name, "batch": bs, "threads": a.threads, "examples_per_sec": round(eps, 2),
                              "n": len(prompts), "p50_ms": round(1000 * statistics.median(lat), 3)}), flush=True)

diff = (saved["hf-full"] - saved["hf-mask-head"]).abs().max().item()
print(f"max |hf-full - hf-mask-head| probability difference: {diff:.2e}", file=sys.stderr)
if a.probs_out:
    with open(a.probs_out, "w") as f:
        json.dump(saved["hf-mask-head"].tolist(), f)
