"""Unsupervised in-domain adaptation of the sentence encoder (SimCSE), a probe: does
contrastive training on the task's unlabeled text lift the sentence-embedding method,
where masked-LM adaptation pulled the embeddings apart (docs/harness.md)?

    .venv/bin/python python/simcse_adapt.py --data ../shared/data/lmbff --task mr \
        --out runs/adapt/simcse-mr-del30

Each unlabeled text is encoded twice with dropout on; the two embeddings (mean pooling,
as the sentence-embedding method reads them) are each other's positive and the rest of
the batch the negatives (unsupervised SimCSE, Gao, Yao & Chen 2021), cross-entropy on
cosines over a temperature. The texts are glue_pretrain/<task>/train.json after dropping
every text of the task's test split and of every seed's train and dev splits (the data
README lists the overlaps); their labels are never read. The adapted model is written as
an HF model folder (the source folder's tokenizer and pooling files copied beside it)
that python/anchor_probe.py reads with --model.

Dropout alone gives MiniLM nothing to learn: it already tells every in-domain sentence
from the rest of its batch, and the loss of the first 50 steps on SST-2 averaged under
5e-5. `--delete 0.3` (the default) makes the second view the text with each word dropped
with probability 0.3, which leaves a loss of about 0.02 to train on: the setting the
probe measured, with the default 100 steps (docs/harness.md, "Contrastive adaptation on
the unlabeled text").
"""

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from anchor_ft_probe import Encoder  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402

SEEDS = (13, 21, 42, 87, 100)


def unlabeled(data: Path, task: str) -> list:
    kshot = data / "k-shot"
    seen = {t.strip() for t in read_split(kshot, task, 13, "test")[0]}
    for seed in SEEDS:
        for split in ("train", "dev"):
            seen |= {t.strip() for t in read_split(kshot, task, seed, split)[0]}
    records = json.loads((data / "glue_pretrain" / task / "train.json").read_text()).values()
    texts = {r["text_a"].strip() for r in records} - seen
    return sorted(t for t in texts if t)


def corrupt(text: str, p: float, rng: random.Random) -> str:
    """The text with each word dropped with probability p (at least one word kept)."""
    words = text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the lmbff data folder (k-shot/ and glue_pretrain/ inside)")
    ap.add_argument("--task", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default=None, help="HF model folder (default: the bundled MiniLM)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delete", type=float, default=0.3,
                    help="probability of dropping each word from the second view (0: dropout alone, as SimCSE)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model_dir = a.model or default_model()
    texts = unlabeled(a.data, a.task)
    random.Random(a.seed).shuffle(texts)
    enc = Encoder(model_dir, a.max_len)
    enc.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / a.steps))
    started, pos, losses, rng = time.time(), 0, [], random.Random(a.seed)
    for step in range(1, a.steps + 1):
        if pos + a.batch_size > len(texts):
            random.Random(a.seed + step).shuffle(texts)
            pos = 0
        batch = texts[pos: pos + a.batch_size]
        pos += a.batch_size
        z1, z2 = enc(batch), enc([corrupt(t, a.delete, rng) for t in batch])
        loss = F.cross_entropy(z1 @ z2.T / a.temperature, torch.arange(len(batch)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == a.steps:
            print(f"{a.task} step {step}/{a.steps}: loss {sum(losses) / len(losses):.4f} ({time.time() - started:.0f} s)", flush=True)
            losses = []
    a.out.mkdir(parents=True, exist_ok=True)
    enc.body.save_pretrained(a.out, safe_serialization=True)
    # Everything else of the source folder (tokenizer, sentence-transformers' pooling
    # modules), so both lmbff and sentence-transformers read it as they read the source.
    for path in Path(model_dir).iterdir():
        if not (a.out / path.name).exists():
            (shutil.copytree if path.is_dir() else shutil.copy)(path, a.out / path.name)
    print(f"{a.task}: {len(texts)} unlabeled texts, {a.steps} steps of {a.batch_size}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
