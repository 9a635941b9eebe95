"""Prompt-based fine-tuning for a sentence encoder: a probe, not a test.

LM-BFF scores a class by its label word at the mask, so the classifier starts from what
the pre-trained model knows about the word instead of a random head. A sentence encoder
has no mask, but it has the same prior in another form: the cosine between an input's
embedding and its class anchor ("It was great.", the task's template with the label word
and no input; docs/methods.md). This probe fine-tunes the whole encoder on

    logits_c = scale * cos(embed(x), embed(anchor_c))

with cross-entropy, the anchors embedded through the encoder at every step (no new
parameters, as in LM-BFF), at the grid's fine-tuning budget (200 steps of batch 8,
lr 5e-5, AdamW with linear decay, dev every 50 steps keeping the best weights; step 0 is
the untrained nearest anchor), the scale fixed (`--scale`, default 20: a temperature
of 0.05). Results: docs/harness.md, "LM-BFF's objective on the sentence encoder".

Prints dev and test accuracy per task and the mean; appends each result to `--out`
(jsonl; a re-run skips the (task, seed, settings) already there).

    .venv/bin/python python/anchor_ft_probe.py --data ../shared/data/lmbff/k-shot \\
        --tasks SST-2,sst-5,mr,cr,mpqa,subj,trec --seeds 13
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from anchor_probe import anchor_set  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402

class Encoder(torch.nn.Module):
    def __init__(self, model_dir, max_len):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.body = AutoModel.from_pretrained(model_dir)
        self.max_len = max_len

    def forward(self, texts):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_len,
                       return_tensors="pt")
        hidden = self.body(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class Model(torch.nn.Module):
    def __init__(self, model_dir, anchors, scale, max_len):
        super().__init__()
        self.enc = Encoder(model_dir, max_len)
        self.anchors, self.scale = anchors, scale

    def logits(self, texts):
        return self.scale * self.enc(texts) @ self.enc(self.anchors).T


@torch.no_grad()
def accuracy(model, xs, ys, batch=64):
    model.eval()
    right = 0
    a = model.enc(model.anchors)
    for i in range(0, len(xs), batch):
        logits = model.enc(xs[i:i + batch]) @ a.T
        right += (logits.argmax(-1).numpy() == np.array(ys[i:i + batch])).sum()
    model.train()
    return 100.0 * right / len(xs)


def run(args, task, seed, model_dir):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    xs, ys = read_split(args.data, task, seed, "train")
    dx, dy = read_split(args.data, task, seed, "dev")
    tx, ty = read_split(args.data, task, seed, "test")
    # The manual template's anchors, one per class in class order, rendered as lmbff does.
    anchors = [t for _, t in anchor_set(args.data, task, seed, 0, None)]
    model = Model(model_dir, anchors, args.scale, args.max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / args.steps)
    started = time.time()
    best_dev, best_step = accuracy(model, dx, dy), 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    curve = [(0, best_dev)]
    order = []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            idx = list(range(len(xs)))
            rng.shuffle(idx)
            order += idx
        batch, order = order[:args.batch], order[args.batch:]
        logits = model.logits([xs[i] for i in batch])
        loss = F.cross_entropy(logits, torch.tensor([ys[i] for i in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0:
            dev = accuracy(model, dx, dy)
            curve.append((step, dev))
            if dev > best_dev:
                best_dev, best_step = dev, step
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = accuracy(model, tx, ty)
    return {"task": task, "seed": seed, "scale": args.scale,
            "lr": args.lr, "steps": args.steps, "dev": best_dev, "best_step": best_step,
            "test": test, "curve": curve, "seconds": round(time.time() - started, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    p.add_argument("--seeds", default="13")
    p.add_argument("--scale", type=float, default=20.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--model", default=None)
    p.add_argument("--out", type=Path, default=Path("runs/anchor-ft/results.jsonl"))
    args = p.parse_args()
    model_dir = args.model or default_model()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    key = lambda r: (r["task"], r["seed"], r["scale"], r["lr"], r["steps"])  # noqa: E731
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done[key(r)] = r
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task in args.tasks.split(","):
            k = (task, seed, args.scale, args.lr, args.steps)
            r = done.get(k)
            if r is None:
                r = run(args, task, seed, model_dir)
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
            print(f"{task:6} {seed:4} dev {r['dev']:5.1f} (step {r['best_step']:3}) "
                  f"test {r['test']:5.1f}  curve {r['curve']}  {r['seconds']} s", flush=True)
            rows.append(r)
    print(f"mean dev {np.mean([r['dev'] for r in rows]):.1f} test {np.mean([r['test'] for r in rows]):.1f}")


if __name__ == "__main__":
    main()
