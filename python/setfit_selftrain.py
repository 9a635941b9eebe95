"""Self-training probe: does the unlabeled in-domain text lift the sentence-embedding
method? A benchmark probe (prints lines, asserts nothing), run with the `setfit` package
(which matches our method split for split, docs/harness.md) on the default MiniLM:

    .venv/bin/python -m pip install setfit==1.2.0
    .venv/bin/python python/setfit_selftrain.py --data ../shared/data/lmbff --task SST-2 --seed 13

1. SetFit on the seed's 16-per-class train split (20 iterations, batch 16, lr 2e-5).
2. The pool: N texts of glue_pretrain/<task>/train.json, after dropping every text of
   the test and train splits (the data README lists the overlaps), drawn by the seed.
3. The model labels the pool; for M in 16, 64, 256 it keeps the M most confident texts
   per predicted class (their accuracy against glue_pretrain's labels is printed, as an
   analysis: no choice reads it) and
   - head-only: refits the logistic head on the train embeddings plus theirs;
   - retrain (M = 16, 64): SetFit from the base encoder on train plus them, with the
     iterations scaled so the pair count stays that of step 1.
Test accuracy of each is printed. Nothing is chosen on test: this measures, it selects
nothing.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from setfit_compare import default_model, read_split  # noqa: E402


def fit(xs, ys, iterations, seed, model_dir):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(model_dir)
    scratch = tempfile.mkdtemp(prefix="setfit-")
    args = TrainingArguments(output_dir=scratch, save_strategy="no", batch_size=16, num_epochs=1, num_iterations=iterations,
                             body_learning_rate=2e-5, seed=seed, report_to="none", show_progress_bar=False)
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": xs, "label": ys})).train()
    shutil.rmtree(scratch, ignore_errors=True)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the lmbff data folder (k-shot/ and glue_pretrain/ inside)")
    ap.add_argument("--task", required=True)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--pool", type=int, default=2000, help="unlabeled texts drawn (N)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(a.threads)
    model_dir = default_model()
    kshot = a.data / "k-shot"
    xs, ys = read_split(kshot, a.task, a.seed, "train")
    tx, ty = read_split(kshot, a.task, a.seed, "test")
    ty = np.array(ty)
    records = json.loads((a.data / "glue_pretrain" / a.task / "train.json").read_text()).values()
    seen = {t.strip() for t in tx} | {t.strip() for t in xs}
    pool = [(r["text_a"], int(r["label"])) for r in records if r["text_a"].strip() not in seen]
    random.Random(a.seed).shuffle(pool)
    pool = pool[: a.pool]
    px, py = [p[0] for p in pool], np.array([p[1] for p in pool])

    started = time.time()
    model = fit(xs, ys, 20, a.seed, model_dir)
    fitted = time.time()
    emb = model.model_body.encode
    et, ep, el = emb(tx, batch_size=64), emb(px, batch_size=64), emb(xs, batch_size=64)
    embedded = time.time()
    probs = model.model_head.predict_proba(ep)
    pseudo, conf = probs.argmax(1), probs.max(1)
    base = (model.model_head.predict(et) == ty).mean()
    print(f"{a.task} seed {a.seed}: base {100 * base:.1f}; fit {fitted - started:.0f} s, embedding {embedded - fitted:.0f} s; "
          f"pool of {len(px)}, pseudo-label accuracy {100 * (pseudo == py).mean():.1f}", flush=True)
    classes = sorted(set(ys))
    for m in (16, 64, 256):
        keep = []
        for c in classes:
            idx = np.where(pseudo == c)[0]
            keep += list(idx[np.argsort(-conf[idx])][:m])
        keep = np.array(keep, dtype=int)
        head = LogisticRegression(C=1.0, max_iter=2000).fit(np.vstack([el, ep[keep]]), np.concatenate([ys, pseudo[keep]]))
        line = f"  M={m}: kept {len(keep)}, their accuracy {100 * (pseudo[keep] == py[keep]).mean():.1f}; head-only {100 * (head.predict(et) == ty).mean():.1f}"
        if m <= 64:
            xs2 = list(xs) + [px[i] for i in keep]
            ys2 = list(ys) + [int(pseudo[i]) for i in keep]
            it = max(1, round(20 * len(xs) / len(xs2)))
            t0 = time.time()
            m2 = fit(xs2, ys2, it, a.seed, model_dir)
            acc = (np.array(m2.predict(tx, batch_size=64)) == ty).mean()
            line += f"; retrain ({it} iterations) {100 * acc:.1f} ({time.time() - t0:.0f} s)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
