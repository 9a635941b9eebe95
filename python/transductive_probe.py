"""Transductive probe (trains nothing; a benchmark, not a test): does smoothing a trained
model's predictions over the pool's own neighbourhood graph help? A labelling tool labels
a pool it holds whole, so each text's neighbours in that pool are evidence too.

For each split, the pool is the split's train, dev and test inputs. A harness run's
stored dev and test logits (`runs/<task>/<seed>-<method>.logits.json`) give each dev and
test input its class probabilities; each train input is its gold label (one-hot). The
inputs are embedded by a sentence encoder (mean-pooled, normalised MiniLM as shipped),
each is linked to its k nearest by cosine (symmetrised, D^-1/2 W D^-1/2), and label
spreading (Zhou et al. 2004) iterates F <- alpha S F + (1 - alpha) P, train rows
clamped to their labels. k and alpha are chosen on the mean dev accuracy over every
split (dev labels are never used in the spreading); test is reported for every setting.

`--label-shift` adds one more row: no graph, the class priors of the dev inputs and of
the test inputs re-estimated from the model's own probabilities by EM (Saerens et al.
2002; the training prior is uniform, K examples per class) and the probabilities
reweighted by them: what a pool whose classes are not balanced would ask for.

    .venv/bin/python python/transductive_probe.py --data ../shared/data/lmbff/k-shot \\
        --run runs/harness/sweep/words:sentence-embedding-words --tasks SST-2,mr --seeds 13
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setfit_compare import default_model, read_split  # noqa: E402


def label_shift(p, iters=100):
    """Saerens et al.'s EM: the test prior q and the posteriors reweighted by q / prior,
    the training prior uniform."""
    k = p.shape[1]
    q = np.full(k, 1.0 / k)
    w = p
    for _ in range(iters):
        w = p * (q * k)
        w = w / w.sum(axis=1, keepdims=True)
        q = w.mean(axis=0)
    return w


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def spread(emb, prior, clamp, k, alpha, iters=30):
    """Label spreading over the k-nearest-neighbour graph of `emb` (unit rows)."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argpartition(-sim, k, axis=1)[:, :k]
    n = len(emb)
    w = np.zeros((n, n))
    rows = np.repeat(np.arange(n), k)
    w[rows, idx.ravel()] = np.maximum(sim[rows, idx.ravel()], 0.0)
    w = np.maximum(w, w.T)
    d = w.sum(axis=1)
    d[d == 0] = 1.0
    s = w / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    f = prior.copy()
    for _ in range(iters):
        f = alpha * (s @ f) + (1 - alpha) * prior
        f[clamp] = prior[clamp]
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--run", required=True, help="FOLDER:METHOD of a harness run with stored logits")
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13")
    ap.add_argument("--model", default=None, help="sentence encoder (default: the shipped MiniLM)")
    ap.add_argument("--ks", default="5,10,20")
    ap.add_argument("--alphas", default="0.2,0.5,0.8")
    ap.add_argument("--label-shift", action="store_true", help="also the EM re-estimate of the class priors (no graph)")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(a.model or default_model(), device="cpu")
    folder, method = a.run.rsplit(":", 1)
    settings = [(0, 0.0)] + [(int(k), float(al)) for k in a.ks.split(",") for al in a.alphas.split(",")]
    if a.label_shift:
        settings.append((-1, 0.0))
    # (task, seed) -> setting -> (dev acc, test acc)
    results = {}
    cache = {}
    for task in a.tasks.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            f = Path(folder) / "runs" / task / f"{seed}-{method}.logits.json"
            if not f.exists():
                continue
            logits = json.loads(f.read_text())
            (tr, ytr), (dv, ydv), (te, yte) = (read_split(a.data, task, seed, s) for s in ("train", "dev", "test"))
            assert len(logits["test"]) == len(te) and len(logits["dev"]) == len(dv), f"{task} {seed}: logits and data differ"
            texts = tr + dv + te
            missing = [t for t in texts if t not in cache]
            if missing:
                for t, e in zip(missing, encoder.encode(missing, batch_size=64, normalize_embeddings=True)):
                    cache[t] = e
            emb = np.stack([cache[t] for t in texts])
            k_classes = len(logits["test"][0])
            prior = np.vstack([np.eye(k_classes)[ytr], softmax(logits["dev"]), softmax(logits["test"])])
            clamp = np.arange(len(tr))
            dev_rows = np.arange(len(tr), len(tr) + len(dv))
            test_rows = np.arange(len(tr) + len(dv), len(texts))
            results[(task, seed)] = {}
            for k, alpha in settings:
                if k == -1:
                    f_ = prior.copy()
                    f_[dev_rows], f_[test_rows] = label_shift(prior[dev_rows]), label_shift(prior[test_rows])
                else:
                    f_ = prior if k == 0 else spread(emb, prior, clamp, k, alpha)
                pred = f_.argmax(axis=1)
                dev_acc = 100 * float(np.mean(pred[dev_rows] == np.array(ydv)))
                test_acc = 100 * float(np.mean(pred[test_rows] == np.array(yte)))
                results[(task, seed)][(k, alpha)] = (dev_acc, test_acc)
            print(f"{task} s{seed}: " + ", ".join(f"k{k} a{al}: {d:.1f}/{t:.1f}" for (k, al), (d, t) in results[(task, seed)].items()), flush=True)
    splits = sorted(results)
    tasks = sorted({t for t, _ in splits}, key=a.tasks.split(",").index)
    print(f"\n{len(splits)} splits; dev / test accuracy, percent, mean over each task's seeds\n")
    print("| setting | " + " | ".join(tasks) + " | mean dev | mean test |")
    print("|---" * (len(tasks) + 3) + "|")
    best = None
    for st in settings:
        cells = []
        for t in tasks:
            rs = [results[s][st] for s in splits if s[0] == t]
            cells.append(f"{statistics.mean(r[0] for r in rs):.1f} / {statistics.mean(r[1] for r in rs):.1f}")
        per_task_dev = [statistics.mean(results[s][st][0] for s in splits if s[0] == t) for t in tasks]
        per_task_test = [statistics.mean(results[s][st][1] for s in splits if s[0] == t) for t in tasks]
        md, mt = statistics.mean(per_task_dev), statistics.mean(per_task_test)
        label = "as trained" if st[0] == 0 else "label shift (EM)" if st[0] == -1 else f"k {st[0]}, alpha {st[1]}"
        print(f"| {label} | " + " | ".join(cells) + f" | {md:.1f} | {mt:.1f} |")
        if best is None or md > best[1]:
            best = (label, md, mt)
    print(f"\nbest on dev: {best[0]} (dev {best[1]:.1f}, test {best[2]:.1f})")


if __name__ == "__main__":
    main()
