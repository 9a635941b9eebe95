"""Label anchors on the sentence-embedding method, with setfit 1.2.0 (which matches our
method split for split, docs/harness.md): a probe, not a test. It trains SetFit on one
LM-BFF split with each class's anchor text (the task's manual template with its label
word and no input: "It was great.") added `--repeats` times as an example of its class,
then compares classifier heads on the tuned embeddings, dev and test accuracy:

- lr: scikit-learn's objective (C = 1) on the registered examples alone (what lmbff
  ships, chosen on this probe's dev scores);
- anchor: the nearest anchor by cosine, no head at all;
- prior: lr with its weights' penalty centred on s * anchors, s fitted on the training
  labels through the anchors alone (least NLL over 0 and 2^(j/4), j = 0..32);
- joint: lr plus the anchor cosines as one unpenalised feature, its coefficient fitted
  with the weights;
- lr+a4 / lr+a16: lr with the anchors as training rows, 4 or 16 copies;
- poe: lr's logits plus the prior's anchor logits (s * cosines, s as for prior), a
  product of the two experts, each fitted alone.

    .venv/bin/python -m pip install setfit==1.2.0
    .venv/bin/python python/anchor_probe.py --data ../shared/data/lmbff/k-shot \\
        --tasks SST-2,sst-5,mr,cr,mpqa,subj,trec --seeds 13 --repeats 4

`--auto N` also anchors on the seed's first N of LM-BFF's automatic templates
(`--auto-file`: `sort.txt`, ranked by the search's dev score as the harness's
`prompt-auto-N` reads them, or `txt`, T5's order), each read with the manual label words
and added `--repeats` times; a class's anchor for the anchor heads is then the normalised
mean of its texts' embeddings.

`--zero-shot` only scores the untrained encoder by nearest anchor on each test set.
`--variants` scores other anchor texts the same way, on the train and dev splits of all
five seeds (never test): the manual template, the manual template plus the seed's first
4 of LM-BFF's automatic templates (`auto/auto_template`, beside the k-shot folder), those
4 alone, and the manual template with the seed's first k automatic label words added to
each class (`auto/auto_label_mapping`); a class's anchor is the mean of its texts.
With `--descriptions python/class_descriptions.json`, `--variants` also scores each
class's hand-written description alone and beside the manual template's text.
(--repeats 0 is SetFit as published; the heads that use anchors then see anchors the
encoder was not tuned on.) The measured run wrote TREC's anchors without the template's
colon ("Description"; lmbff renders "Description:"); training runs now render every
anchor as lmbff does.
"""

import argparse
import ast
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from setfit_compare import default_model, read_split  # noqa: E402

SENTIMENT = ["It was terrible.", "It was great."]
ANCHORS = {
    "SST-2": SENTIMENT, "mr": SENTIMENT, "cr": SENTIMENT, "mpqa": SENTIMENT,
    "sst-5": ["It was terrible.", "It was bad.", "It was okay.", "It was good.", "It was great."],
    "subj": ["This is subjective.", "This is objective."],
    "trec": ["Description", "Entity", "Expression", "Human", "Location", "Number"],
}
WORDS = {"SST-2": ["terrible", "great"], "mr": ["terrible", "great"], "cr": ["terrible", "great"],
         "mpqa": ["terrible", "great"], "sst-5": ["terrible", "bad", "okay", "good", "great"],
         "subj": ["subjective", "objective"],
         "trec": ["Description", "Entity", "Expression", "Human", "Location", "Number"]}
MANUAL = {"subj": "*cls**sent_0*_This_is*mask*.*sep+*", "trec": "*cls**mask*:*+sent_0**sep+*"}
MODEL = None  # --model: the encoder to train (default: the bundled MiniLM)
HEADS = ["lr", "anchor", "prior", "joint", "lr+a4", "lr+a16", "poe"]


def fit(x, y, k, offset=None, joint=None, c=1.0):
    """Multinomial logistic regression, 0.5 |W|^2 + C * sum CE(xW + b + offset (+ s joint))."""
    x, y = torch.tensor(x, dtype=torch.float64), torch.tensor(y)
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    s = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b] + ([s] if joint is not None else []), max_iter=1000,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        z = x @ w + b
        if offset is not None:
            z = z + torch.tensor(offset)
        if joint is not None:
            z = z + s * torch.tensor(joint)
        loss = c * torch.nn.functional.cross_entropy(z, y, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy(), float(s.detach())


def anchor_scale(sims, y):
    best = None
    for t in [0.0] + [2 ** (j / 4) for j in range(33)]:
        z = t * sims
        z = z - z.max(1, keepdims=True)
        nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
        if best is None or nll < best[0]:
            best = (nll, t)
    return best[1]


def auto_templates(data, task, seed, n, kind):
    """The seed's first `n` of LM-BFF's automatic templates (`kind`: "txt", T5's order, or
    "sort.txt", sorted by the search's dev score)."""
    path = data.parent / "auto" / "auto_template" / task / f"16-{seed}.{kind}"
    return [l.strip() for l in open(path) if l.strip()][:n]


def anchor_set(data, task, seed, auto, kind):
    """Each class's anchor texts: the manual template's, then those of `auto` automatic
    templates, as (class, text) pairs."""
    manual, words = MANUAL.get(task, "*cls**sent_0*_It_was*mask*.*sep+*"), WORDS[task]
    temps = [manual] + (auto_templates(data, task, seed, auto, kind) if auto else [])
    return [(c, render(t, w)) for t in temps for c, w in enumerate(words)]


def run(data, task, seed, repeats, body_lr, auto=0, kind="sort.txt", iterations=20):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    xs, ys = read_split(data, task, seed, "train")
    dx, dy = read_split(data, task, seed, "dev")
    tx, ty = read_split(data, task, seed, "test")
    pairs = anchor_set(data, task, seed, auto, kind)
    k = len(WORDS[task])
    tr_x = list(xs) + [t for _, t in pairs] * repeats
    tr_y = list(ys) + [c for c, _ in pairs] * repeats
    model = SetFitModel.from_pretrained(MODEL or default_model())
    scratch = tempfile.mkdtemp(prefix="setfit-")
    args = TrainingArguments(output_dir=scratch, save_strategy="no", batch_size=16, num_epochs=1, num_iterations=iterations,
                             body_learning_rate=body_lr, seed=seed, report_to="none", show_progress_bar=False)
    started = time.time()
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": tr_x, "label": tr_y})).train()
    shutil.rmtree(scratch, ignore_errors=True)

    def enc(texts):
        return model.model_body.encode(texts, batch_size=64, normalize_embeddings=True)

    xtr, xd, xt, every = enc(xs), enc(dx), enc(tx), enc([t for _, t in pairs])
    # A class's anchor is the normalised mean of its texts' embeddings.
    a = np.stack([every[[i for i, (c, _) in enumerate(pairs) if c == j]].mean(0) for j in range(k)])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    ytr, yd, yt = np.array(ys), np.array(dy), np.array(ty)

    def acc(z, y):
        return 100 * float((z.argmax(1) == y).mean())

    out = {}
    w, b, _ = fit(xtr, ytr, k)
    out["lr"] = (acc(xd @ w + b, yd), acc(xt @ w + b, yt))
    out["anchor"] = (acc(xd @ a.T, yd), acc(xt @ a.T, yt))
    t = anchor_scale(xtr @ a.T, ytr)
    w, b, _ = fit(xtr, ytr, k, offset=t * (xtr @ a.T))
    out["prior"] = (acc(xd @ w + b + t * xd @ a.T, yd), acc(xt @ w + b + t * xt @ a.T, yt))
    w, b, s = fit(xtr, ytr, k, joint=xtr @ a.T)
    out["joint"] = (acc(xd @ w + b + s * xd @ a.T, yd), acc(xt @ w + b + s * xt @ a.T, yt))
    w, b, _ = fit(xtr, ytr, k)
    out["poe"] = (acc(xd @ w + b + t * xd @ a.T, yd), acc(xt @ w + b + t * xt @ a.T, yt))
    for copies in (4, 16):
        w, b, _ = fit(np.concatenate([xtr] + [a] * copies), np.concatenate([ytr] + [np.arange(k)] * copies), k)
        out[f"lr+a{copies}"] = (acc(xd @ w + b, yd), acc(xt @ w + b, yt))
    print(f"{task} seed {seed} ({time.time() - started:.0f} s): "
          + " ".join(f"{h} {out[h][0]:.1f}/{out[h][1]:.1f}" for h in HEADS), flush=True)
    return out


def zero_shot(data, task, seed):
    """Nearest anchor by cosine on the untrained encoder: the prior the anchors carry."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(default_model(), device="cpu")
    tx, ty = read_split(data, task, seed, "test")
    e = model.encode(tx, batch_size=64, normalize_embeddings=True)
    a = model.encode(ANCHORS[task], normalize_embeddings=True)
    ty = np.array(ty)
    acc, majority = 100 * float(((e @ a.T).argmax(1) == ty).mean()), 100 * np.bincount(ty).max() / len(ty)
    print(f"| {task} | {len(ty)} | {acc:.1f} | {majority:.1f} |", flush=True)


def render(template, word):
    """An LM-BFF template's text with `word` at the mask and no input ("It's great.")."""
    t = re.sub(r"\*(cls|sep\+|\+?sent(l|u)?_[01])\*", "", template)
    t = t.replace("*mask*", f" {word} ").replace("_", " ")
    return re.sub(r"\s+", " ", re.sub(r"\s+([.?!,:])", r"\1", t)).strip()


def descriptions(path, task):
    """The task's class descriptions (`--descriptions`, python/class_descriptions.json):
    one hand-written line per class, in label order."""
    import json

    return json.load(open(path))[task]


def variants(data, tasks, desc_file=None):
    """Nearest-anchor accuracy of the untrained encoder for other anchor texts, on the
    train and dev splits of the five seeds."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(default_model(), device="cpu")
    auto = data.parent / "auto"
    names = ["manual", "manual + 4 auto templates", "4 auto templates"] + [f"manual + {k} auto label words" for k in (2, 4, 8)]
    if desc_file:
        names += ["class descriptions", "manual + class descriptions"]
    scores = {}
    for task in tasks:
        manual, words = MANUAL.get(task, "*cls**sent_0*_It_was*mask*.*sep+*"), WORDS[task]
        for seed in (13, 21, 42, 87, 100):
            temps = [l.strip() for l in open(auto / "auto_template" / task / f"16-{seed}.txt") if l.strip()][:4]
            maps = [{int(k): v for k, v in ast.literal_eval(l.strip()).items()}
                    for l in open(auto / "auto_label_mapping" / task / f"16-{seed}.txt") if l.strip()][:8]
            xs, ys = [], []
            for split in ("train", "dev"):
                x, y = read_split(data, task, seed, split)
                xs, ys = xs + list(x), ys + list(y)
            e, ys = model.encode(xs, batch_size=64, normalize_embeddings=True), np.array(ys)
            texts = [[[render(manual, w)] for w in words], [[render(t, w) for t in [manual] + temps] for w in words],
                     [[render(t, w) for t in temps] for w in words]]
            texts += [[[render(manual, w) for w in [words[c]] + [m[c] for m in maps[:k]]] for c in range(len(words))] for k in (2, 4, 8)]
            if desc_file:
                d = descriptions(desc_file, task)
                texts += [[[t] for t in d], [[render(manual, w), t] for w, t in zip(words, d)]]
            for name, per_class in zip(names, texts):
                a = np.stack([model.encode(t, normalize_embeddings=True).mean(0) for t in per_class])
                scores.setdefault(name, {}).setdefault(task, []).append(100 * float(((e @ a.T).argmax(1) == ys).mean()))
    print("| anchors | " + " | ".join(tasks) + " | mean |\n|---|" + "---|" * (len(tasks) + 1))
    for name in names:
        row = [float(np.mean(scores[name][t])) for t in tasks]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {np.mean(row):.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--auto", type=int, default=0, help="also anchor on the seed's first N automatic templates")
    ap.add_argument("--auto-file", default="sort.txt", choices=["txt", "sort.txt"],
                    help="which list of automatic templates: T5's order (txt) or the search's dev ranking (sort.txt)")
    ap.add_argument("--body-lr", type=float, default=2e-5, help="contrastive learning rate (SetFit's 2e-5)")
    ap.add_argument("--iterations", type=int, default=20, help="pair-generation rounds (SetFit's num_iterations, 20)")
    ap.add_argument("--zero-shot", action="store_true", help="only score the untrained encoder by nearest anchor")
    ap.add_argument("--variants", action="store_true", help="score other anchor texts on train and dev, untrained encoder")
    ap.add_argument("--descriptions", type=Path, default=None,
                    help="class descriptions (python/class_descriptions.json): also anchor on each class's line")
    ap.add_argument("--model", default=None, help="sentence-transformers or HF model folder (default: the bundled MiniLM)")
    a = ap.parse_args()
    global MODEL
    MODEL = a.model
    if a.variants:
        variants(a.data, a.tasks.split(","), a.descriptions)
        return
    if a.zero_shot:
        print("| task | test inputs | nearest anchor | majority |\n|---|---|---|---|")
        for t in a.tasks.split(","):
            zero_shot(a.data, t, int(a.seeds.split(",")[0]))
        return
    rows = [run(a.data, t, int(s), a.repeats, a.body_lr, a.auto, a.auto_file, a.iterations) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    print("\n| head | mean dev | mean test |\n|---|---|---|")
    for h in HEADS:
        print(f"| {h} | {np.mean([r[h][0] for r in rows]):.1f} | {np.mean([r[h][1] for r in rows]):.1f} |")


if __name__ == "__main__":
    main()
