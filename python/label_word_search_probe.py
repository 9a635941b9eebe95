"""Label words searched on the training split, for the word anchors (a probe, not a test).

LM-BFF (section 5.1) searches each class's label word automatically: it keeps the
vocabulary words the pre-trained model scores highest at the mask on that class's
training examples, then picks among them. The sentence-embedding method reads label
words through its word anchors (src/train/embed.rs `word_anchor_features`: each input
token's cosine with the word's state in its anchor text, "It was great."), and the
manual words of subj and trec ("subjective", "Description") are weak there. This probe
transposes the search to that reading, with the untrained MiniLM:

1. candidates: every MiniLM vocabulary token that is a whole alphabetic word and occurs
   at least --min-count times in the task's unlabeled text (glue_pretrain train.json,
   labels unused);
2. each candidate's state in the task's anchor text with it in the label word's place;
3. on the split's 16 training examples per class, each candidate's feature (the mean of
   the input tokens' 3 highest cosines with it) standardised over the split's training
   inputs; a candidate's score for class c is its mean on c's examples minus its mean
   on the others'; each class keeps its K best (a word serves one class).

It prints, per split, dev and test accuracy of

- `manual zs` / `searched zs` / `both zs`: zero-shot on those standardised features (the
  class whose words' mean feature is highest), manual words, searched words, both;
- with --train, the default head (logistic regression on the tuned embedding and the
  word anchors' features x3; setfit 1.2.0 with the label anchors, as
  word_anchor_probe.py) with the manual words (`manual head`), and with the searched
  words' features beside them (`+ searched head`), their states read by the tuned
  encoder.

    OMP_NUM_THREADS=1 .venv/bin/python python/label_word_search_probe.py --data ../shared/data/lmbff \\
        --tasks subj,trec --seeds 13,21,42,87,100 --k 3
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from anchor_probe import WORDS  # noqa: E402
from setfit_compare import read_split  # noqa: E402
import word_anchor_probe as wap  # noqa: E402

TASKS = ["SST-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec"]


def anchor_text(task, word):
    if task == "trec":
        return f"{word}:"
    return f"This is {word}." if task == "subj" else f"It was {word}."


def candidates(data, task, tok, min_count):
    records = json.loads((data / "glue_pretrain" / task / "train.json").read_text()).values()
    counts = Counter()
    for r in records:
        counts.update(tok.tokenize(r["text_a"]))
    return sorted(w for w, n in counts.items() if n >= min_count and w.isalpha() and len(w) > 1)


def word_states(body, task, words):
    """[V, H]: each word's normalised state in its anchor text (the token before the
    final "." or ":"; words are single tokens)."""
    out = []
    for i in range(0, len(words), 256):
        hs = wap.states(body, [anchor_text(task, w) for w in words[i:i + 256]])
        out += [h[-3] / h[-3].norm() for h in hs]
    return torch.stack(out)


def top3(body, texts, words):
    """[n, V]: per input, the mean of its own tokens' 3 highest cosines with each word."""
    rows = []
    for h in wap.states(body, texts):
        own = h[1:-1] if len(h) > 2 else h
        s = (own / own.norm(dim=1, keepdim=True)) @ words.T
        rows.append(s.topk(min(3, len(s)), 0).values.mean(0))
    return torch.stack(rows).numpy()


def search(f_train, ys, k, classes):
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    z = (f_train - mu) / sd
    score = np.stack([z[ys == c].mean(0) - z[ys != c].mean(0) for c in range(classes)])  # [C, V]
    # A word serves the class it scores best for.
    best = score.argmax(0)
    picks = []
    for c in range(classes):
        order = [int(v) for v in np.argsort(-score[c]) if best[v] == c]
        picks.append(order[:k])
    return picks


def zs_accuracy(f, mu, sd, sets, ys):
    z = (f - mu) / sd
    s = np.stack([z[:, ws].mean(1) for ws in sets], 1)
    return 100 * float((s.argmax(1) == ys).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="the lmbff data folder (k-shot/ and glue_pretrain/)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--train", action="store_true")
    a = ap.parse_args()
    base = wap.train("SST-2", 13, [], [], True)
    tok = base.tokenizer
    totals = {}
    for task in a.tasks.split(","):
        t0 = time.time()
        vocab = candidates(a.data, task, tok, a.min_count)
        manual = [w.lower() for w in WORDS[task]]
        vocab = sorted(set(vocab) | set(manual))
        index = {w: i for i, w in enumerate(vocab)}
        states = word_states(base, task, vocab)
        tx, ty = read_split(a.data / "k-shot", task, 13, "test")
        ft = top3(base, tx, states)
        print(f"{task}: {len(vocab)} candidates, {time.time() - t0:.0f} s", flush=True)
        for seed in map(int, a.seeds.split(",")):
            xs, ys = read_split(a.data / "k-shot", task, seed, "train")
            dx, dy = read_split(a.data / "k-shot", task, seed, "dev")
            ys, dy, ty_ = np.array(ys), np.array(dy), np.array(ty)
            fl, fd = top3(base, xs, states), top3(base, dx, states)
            picks = search(fl, ys, a.k, len(manual))
            man = [[index[w]] for w in manual]
            mu, sd = fl.mean(0), fl.std(0) + 1e-6
            out = {}
            for name, sets in (("manual zs", man), ("searched zs", picks),
                               ("both zs", [m + p for m, p in zip(man, picks)])):
                out[name] = (zs_accuracy(fd, mu, sd, sets, dy), zs_accuracy(ft, mu, sd, sets, ty_))
            if a.train:
                out.update(trained(task, seed, xs, ys, dx, dy, tx, ty_, [[vocab[v] for v in p] for p in picks]))
            words = " | ".join(",".join(vocab[v] for v in p) for p in picks)
            print(f"{task} seed {seed}: " + " ".join(f"{n} {d:.1f}/{t:.1f}" for n, (d, t) in out.items())
                  + f"  [{words}]", flush=True)
            for n, v in out.items():
                totals.setdefault(n, {}).setdefault(task, []).append(v)
    tasks = list(totals[next(iter(totals))])
    print("\n| reading | " + " | ".join(tasks) + " | mean dev | mean test |")
    print("|---" * (len(tasks) + 3) + "|")
    for n, by in totals.items():
        cells = [np.mean([t for _, t in v]) for v in by.values()]
        dev = np.mean([np.mean([d for d, _ in v]) for v in by.values()])
        print(f"| {n} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {dev:.1f} | {np.mean(cells):.1f} |")


def trained(task, seed, xs, ys, dx, dy, tx, ty, searched):
    from sklearn.linear_model import LogisticRegression

    def head(body, word_sets):
        ws = [wap.label_words(body, task)] + [word_states(body, task, list(s)) for s in word_sets]
        feats = []
        for x in (xs, dx, tx):
            parts = [wap.features(body, x, w) for w in ws]
            feats.append(np.hstack([parts[0][0]] + [3 * p[1] for p in parts]))
        h = LogisticRegression(max_iter=3000).fit(feats[0], ys)
        return 100 * float((h.predict(feats[1]) == dy).mean()), 100 * float((h.predict(feats[2]) == ty).mean())

    # word sets by rank: the r-th searched word of every class
    ranks = [[s[r] for s in searched] for r in range(min(len(s) for s in searched))]
    body = wap.train(task, seed, xs, list(ys), False)
    return {"manual head": head(body, []), "+ searched head": head(body, ranks)}


if __name__ == "__main__":
    main()
