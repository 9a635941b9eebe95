"""Plain [CLS] fine-tuning of any HF encoder, at the harness's budget: a probe, not a test.

The library's own `plain` method loads BERT and RoBERTa checkpoints; this probe runs the
same recipe through transformers' `AutoModelForSequenceClassification`, so encoders the
library does not load (MPNet: all-mpnet-base-v2) can be compared with the
sentence-embedding method on the same splits (`python/anchor_probe.py --model`).
The budget is the grid's: 200 steps of batch 8 at 5e-5, AdamW (no weight decay) with
linear decay to 0, max length 128, dev every 50 steps keeping the best weights.
Results: docs/harness.md, "A larger sentence encoder".

Prints dev and test accuracy per run and appends each result to `--out` (jsonl; a re-run
skips the (model, task, seed) already there).

    .venv/bin/python python/plain_ft_probe.py --data ../shared/data/lmbff/k-shot \\
        --tasks SST-2,mr,cr --seeds 13,21 --model PATH
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

from anchor_probe import WORDS  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402


@torch.no_grad()
def accuracy(model, tok, xs, ys, max_len, batch=64):
    model.eval()
    right = 0
    for i in range(0, len(xs), batch):
        enc = tok(xs[i:i + batch], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        right += (model(**enc).logits.argmax(-1).numpy() == np.array(ys[i:i + batch])).sum()
    model.train()
    return 100.0 * right / len(xs)


def run(args, task, seed, model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    xs, ys = read_split(args.data, task, seed, "train")
    dx, dy = read_split(args.data, task, seed, "dev")
    tx, ty = read_split(args.data, task, seed, "test")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(WORDS[task]))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / args.steps)
    started = time.time()
    best_dev, best_step, best_state = -1.0, 0, None
    order = []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            idx = list(range(len(xs)))
            rng.shuffle(idx)
            order += idx
        batch, order = order[:args.batch], order[args.batch:]
        enc = tok([xs[i] for i in batch], padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
        loss = F.cross_entropy(model(**enc).logits, torch.tensor([ys[i] for i in batch]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.eval_every == 0:
            dev = accuracy(model, tok, dx, dy, args.max_len)
            if dev > best_dev:
                best_dev, best_step = dev, step
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = accuracy(model, tok, tx, ty, args.max_len)
    return {"model": model_dir, "task": task, "seed": seed, "dev": best_dev, "best_step": best_step,
            "test": test, "seconds": round(time.time() - started, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--tasks", default="SST-2,mr,cr")
    p.add_argument("--seeds", default="13")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--model", default=None, help="HF model folder (default: the bundled MiniLM)")
    p.add_argument("--out", type=Path, default=Path("runs/plain-ft/results.jsonl"))
    args = p.parse_args()
    model_dir = str(Path(args.model).resolve()) if args.model else default_model()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {(r["model"], r["task"], r["seed"]) for r in map(json.loads, args.out.read_text().splitlines())}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task in args.tasks.split(","):
            if (model_dir, task, seed) in done:
                continue
            r = run(args, task, seed, model_dir)
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{task} seed {seed} ({r['seconds']:.0f} s): dev {r['dev']:.1f} test {r['test']:.1f} "
                  f"(best step {r['best_step']})", flush=True)


if __name__ == "__main__":
    main()
