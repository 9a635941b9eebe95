"""Zero-shot by consistency on the untrained sentence encoder: a probe, not a test.
Each test input is joined with each class's label anchor ("<text> It was great.";
TREC's anchor goes first, "Human: <text>", as its template reads), and takes the class
whose joined text's embedding stays closest to the input's own (the way a masked LM
scores a label word in context). Printed beside it: the anchor text's cosine to the
joined text, the input's plain cosine to each anchor text (the label anchors' reading),
and the difference of the two. Test accuracy, percent (the test set is the same for
every seed).

    OMP_NUM_THREADS=1 .venv/bin/python python/consistency_probe.py --data ../shared/data/lmbff/k-shot --tasks SST-2,trec
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from anchor_probe import ANCHORS  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="LM-BFF's k-shot folder")
    ap.add_argument("--tasks", default="SST-2,trec", help="comma-separated")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(default_model(), device="cpu")

    def embed(texts):
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    print("| task | test | joined vs input | joined vs anchor | input vs anchor | difference |\n|---|---|---|---|---|---|")
    rows = []
    for task in a.tasks.split(","):
        x, y = read_split(a.data, task, 13, "test")
        y, anchors = np.array(y), ANCHORS[task]
        e, ea = embed(x), embed(anchors)
        joined = np.stack([embed([f"{c}: {t}" if task == "trec" else f"{t} {c}" for t in x]) for c in anchors], 1)
        by_input = (joined * e[:, None]).sum(-1)
        by_anchor = (joined * ea[None]).sum(-1)
        plain = e @ ea.T
        acc = [100 * float((s.argmax(1) == y).mean()) for s in (by_input, by_anchor, plain, by_anchor - plain)]
        rows.append(acc)
        print(f"| {task} | {len(y)} | " + " | ".join(f"{v:.1f}" for v in acc) + " |", flush=True)
    print("| mean | | " + " | ".join(f"{v:.1f}" for v in np.mean(rows, 0)) + " |")


if __name__ == "__main__":
    main()
