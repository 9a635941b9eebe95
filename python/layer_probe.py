"""Earlier layers' features under the logistic head, untrained MiniLM (a probe, not a
test). Each input is embedded as the normalised mean over its real tokens of one or more
hidden layers' states (0 the embeddings, 6 MiniLM's last), side by side, and the
library's head objective (scikit-learn's logistic regression, C = 1) is fitted on each
seed's 16 examples per class:

- `last`: layer 6 alone (the sentence-embedding method's embedding);
- `4+6`, `2+4+6`: earlier layers beside it;
- `mean 1-6`: the mean of the six layers' normalised embeddings.

It prints, per task, mean dev and test accuracy over the seeds, then the means over the
tasks.

    OMP_NUM_THREADS=1 .venv/bin/python python/layer_probe.py --data ../shared/data/lmbff/k-shot
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setfit_compare import default_model, read_split  # noqa: E402

VARIANTS = {"last": [6], "4+6": [4, 6], "2+4+6": [2, 4, 6], "mean 1-6": "mean"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    a = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model())
    model = AutoModel.from_pretrained(default_model()).eval()

    def embed(texts):
        """[n, layers + 1, H]: every layer's normalised mean-pooled states."""
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                b = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
                m = b["attention_mask"].unsqueeze(-1).float()
                pooled = [(h * m).sum(1) / m.sum(1) for h in model(**b, output_hidden_states=True).hidden_states]
                out.append(torch.stack([p / p.norm(dim=1, keepdim=True) for p in pooled], 1))
        return torch.cat(out).numpy()

    def pick(e, layers):
        return e[:, 1:].mean(1) if layers == "mean" else e[:, layers].reshape(len(e), -1)

    res = {}
    for task in a.tasks.split(","):
        tx, ty = read_split(a.data, task, 13, "test")  # the same for every seed
        et, ty = embed(tx), np.array(ty)
        for seed in (int(s) for s in a.seeds.split(",")):
            (xs, ys), (dx, dy) = (read_split(a.data, task, seed, s) for s in ("train", "dev"))
            el, ed, dy = embed(xs), embed(dx), np.array(dy)
            for name, layers in VARIANTS.items():
                h = LogisticRegression(max_iter=3000).fit(pick(el, layers), ys)
                res.setdefault(name, {}).setdefault(task, []).append(
                    (100 * float((h.predict(pick(ed, layers)) == dy).mean()), 100 * float((h.predict(pick(et, layers)) == ty).mean())))
        print(task + ": " + ", ".join(f"{n} {np.mean([d for d, _ in v[task]]):.1f}/{np.mean([t for _, t in v[task]]):.1f}"
                                      for n, v in res.items()), flush=True)
    tasks = a.tasks.split(",")
    print("\n| layers | " + " | ".join(tasks) + " | mean dev | mean test |")
    print("|---" * (len(tasks) + 3) + "|")
    for n, by in res.items():
        tests = [np.mean([t for _, t in by[k]]) for k in tasks]
        dev = np.mean([np.mean([d for d, _ in by[k]]) for k in tasks])
        print(f"| {n} | " + " | ".join(f"{t:.1f}" for t in tests) + f" | {dev:.1f} | {np.mean(tests):.1f} |")


if __name__ == "__main__":
    main()
