"""Word anchors on the sentence-embedding method, with setfit 1.2.0 (which matches our
method split for split, docs/harness.md): a probe, not a test. It trains SetFit with the
label anchors (each class's anchor text, "It was great.", 4 times among the pairs) on
one LM-BFF split, then fits the logistic head (C = 1) on

- `embedding`: the mean-pooled embedding alone (what lmbff shipped before word anchors);
- `words x S`: the embedding followed by the word anchors' features times S, the
  features lmbff computes (src/train/embed.rs `word_anchor_features`): each of the
  input's own tokens (not [CLS], not [SEP]) compared by cosine with each class's label
  word as the tuned encoder reads it in its anchor text; per class the highest cosine,
  the mean of the 3 highest, and the highest and lowest margin over the classes' mean;
- `max`, `max+margins` (no top-3 mean), `max+high` (max and highest margin): subsets of
  those groups at the same scales;
- with `--mask`, instead of the subsets: `mask x S`, the embedding followed by the state
  at the mask of the input rendered through the task's template ("<text> It was
  [MASK].") by cosine with each class's word and its margin over the classes' mean,
  times S, and `words x3 + mask x S`, both,

and prints dev and test accuracy of each (scikit-learn's logistic regression, the
objective lmbff's head minimises). `--layer L` adds heads that also read the mean-pooled
states of hidden layer L (`+ layer L` with the word features, `emb + layer L` without).
`--pool N` adds heads refitted with the M = 16 and 64 pool texts (N drawn from the task's
unlabeled text, less the split's) the default head is most confident of per class,
labelled by it (`self-train head M=...`); `--ordinal` adds Frank and Hall's ordinal head
on the default features (sst-5's classes are ordered). `--losses pairs,supcon,batch-hard`
trains one encoder per contrastive loss on the same split (SetFit's pairs; supervised
contrastive, with the probe's own `SupCon`; the batch-hard soft-margin triplet loss) and
scores the default head on each. `--wise 0.25,0.5,1` interpolates the tuned encoder's
weights with the untrained one's (WiSE-FT) and scores the default head at each alpha.
`--heads` scores heads on one tuned encoder: the default, with the label anchors' texts
as training rows, and with the max-pooled or [CLS] states beside the mean. `--e2e 10,30`
runs SetFit's second phase end to end after the contrastive training: the encoder and a
linear layer on the default head's input (embedding and word-anchor features x3, the
label words recomputed every step), started from the fitted head, trained together by
cross-entropy, scored (the layer, and the default head refitted) at each epoch count.
`--spread` spreads the default head's probabilities over the split's train, dev and
test inputs (label spreading, as `transductive_probe.py`), linked by the untrained and
by the tuned encoder's neighbours. `--selftrain 32` self-trains the default on the pool:
it labels 2,000 pool texts, keeps the M it is most confident of per class (with
`--threshold P`, only those at probability P or more), trains the anchored encoder
again from the untrained one on the examples and them (pair rounds scaled to keep the
pair count) and scores the default head refitted on both and on the examples alone.
`--descriptions python/class_descriptions.json` trains the default twice on each split,
as it is and with each class's hand-written description (one line, written from the
datasets' class definitions) as a second label anchor of its class, as many copies as
the first, and scores the default head on each.
`--frozen` skips the contrastive training (the
untrained encoder: the prior the words carry before any tuning). `--untrained-too` scores,
beside `words x3`, heads that also read the untrained encoder's features of the same
inputs: its embedding (`+ untrained emb`), or its embedding and word features x3
(`+ untrained emb+words`), the general-purpose reading the 32 examples' tuning may have
bent. `--zero-shot` trains
nothing and fits no head: the untrained encoder's test accuracy when each input takes the
class whose word is nearest, by the mask state or by the word anchors' features.

    .venv/bin/python -m pip install setfit==1.2.0
    OMP_NUM_THREADS=1 .venv/bin/python python/word_anchor_probe.py --data ../shared/data/lmbff/k-shot \\
        --tasks SST-2,mr,cr,mpqa --seeds 13,21
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from anchor_probe import ANCHORS  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402

SCALES = (1, 3, 10)
# The task's manual template with the input in it and the mask where the label word goes.
TEMPLATES = {"subj": "{text} This is [MASK].", "trec": "[MASK]: {text}"}


def anchor_texts(task):
    # lmbff renders TREC's anchors with the template's colon ("Description:").
    return [a + ":" if task == "trec" else a for a in ANCHORS[task]]


# Contrastive losses for --losses: SetFit's default (cosine similarity on sampled pairs)
# and two that read whole batches of labelled texts instead of pairs.
LOSSES = ("pairs", "supcon", "batch-hard")
ROUNDS = 20  # SetFit's pair rounds (num_iterations), the library's default
ANCHOR_COPIES = 4  # each label anchor's copies among the labelled texts
STEPS = 100  # the pairs loss's optimizer steps at 20 rounds; the batch losses get as many


class SupCon(torch.nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020) over a batch of labelled texts:
    each text's log-softmax, over the batch's other texts, of its cosine to each text of
    its class, at temperature T. Texts with no other of their class in the batch are left
    out (setfit 1.2.0's own SupConLoss divides by zero on them and trains on NaN)."""

    def __init__(self, model, temperature=0.07):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, sentence_features, labels):
        f = torch.nn.functional.normalize(self.model(sentence_features[0])["sentence_embedding"], dim=1)
        self_ = torch.eye(len(f), dtype=torch.bool, device=f.device)
        logits = (f @ f.T / self.temperature).masked_fill(self_, float("-inf"))
        log_prob = logits - logits.logsumexp(1, keepdim=True)
        pos = (labels[:, None] == labels[None, :]) & ~self_
        has = pos.any(1)
        if not has.any():
            return (f * 0).sum()
        return -(log_prob.masked_fill(~pos, 0).sum(1)[has] / pos.sum(1)[has]).mean()


def train(task, seed, xs, ys, frozen, loss="pairs", iterations=ROUNDS, extra=()):
    from datasets import Dataset
    from sentence_transformers import losses
    from setfit import SetFitModel, Trainer, TrainingArguments, trainer

    # setfit picks a batch loss's dataset and sampler by its class: ours stands in for its own.
    trainer.SupConLoss = SupCon
    model = SetFitModel.from_pretrained(default_model())
    if not frozen:
        anchors = anchor_texts(task)
        tr_x = list(xs) + (anchors + [t for _, t in extra]) * ANCHOR_COPIES
        tr_y = list(ys) + (list(range(len(anchors))) + [c for c, _ in extra]) * ANCHOR_COPIES
        scratch = tempfile.mkdtemp(prefix="setfit-")
        kind = {"pairs": {}, "supcon": {"loss": SupCon},
                "batch-hard": {"loss": losses.BatchHardSoftMarginTripletLoss}}[loss]
        # A batch loss sees each text once an epoch (16 a step): as many steps as the pairs.
        epochs = 1 if loss == "pairs" else -(-STEPS * 16 // len(tr_x))
        args = TrainingArguments(output_dir=scratch, save_strategy="no", batch_size=16, num_epochs=epochs, num_iterations=iterations,
                                 body_learning_rate=2e-5, seed=seed, report_to="none", show_progress_bar=False, **kind)
        Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": tr_x, "label": tr_y})).train()
        shutil.rmtree(scratch, ignore_errors=True)
    return model.model_body


def states(body, texts):
    """The last hidden states of each text's real tokens."""
    tok, enc = body.tokenizer, body[0].auto_model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            b = tok(list(texts[i:i + 64]), padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = enc(**b).last_hidden_state
            out += [h[j][b["attention_mask"][j].bool()] for j in range(len(h))]
    return out


def label_words(body, task):
    """[C, H]: each class's word, the normalised state of the label word (the token
    before "." or ":" and [SEP]; every label word here is one MiniLM token) in its
    anchor text."""
    return torch.stack([h[-3] / h[-3].norm() for h in states(body, anchor_texts(task))])


def features(body, texts, words):
    """[n, H] embeddings and [n, 4C] word-anchor features (groups: max, top-3 mean,
    margin max, margin min)."""
    emb, feats = [], []
    for h in states(body, texts):
        mean = h.mean(0)
        emb.append((mean / mean.norm()).numpy())
        own = h[1:-1] if len(h) > 2 else h
        s = (own / own.norm(dim=1, keepdim=True)) @ words.T
        m = s - s.mean(1, keepdim=True)
        top = s.topk(min(3, len(s)), 0).values.mean(0)
        feats.append(torch.cat([s.max(0).values, top, m.max(0).values, m.min(0).values]).numpy())
    return np.stack(emb), np.stack(feats)


def mask_features(body, task, texts, words):
    """[n, 2C]: the state at the mask of each input rendered through the template, by
    cosine with each class's word, and its margin over the classes' mean."""
    template = TEMPLATES.get(task, "{text} It was [MASK].")
    mask_id = body.tokenizer.mask_token_id
    tok, enc = body.tokenizer, body[0].auto_model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            # Truncate the input, never the template.
            chunk = [tok.convert_tokens_to_string(tok.tokenize(t)[:100]) for t in texts[i:i + 64]]
            b = tok([template.format(text=t) for t in chunk], padding=True, return_tensors="pt")
            h = enc(**b).last_hidden_state[b["input_ids"] == mask_id]
            s = (h / h.norm(dim=1, keepdim=True)) @ words.T
            out.append(torch.cat([s, s - s.mean(1, keepdim=True)], 1).numpy())
    return np.concatenate(out)


def layer_embeddings(body, texts, layer):
    """[n, H]: the normalised mean over each text's real tokens of hidden layer `layer`
    (0 the embeddings, 6 the last of MiniLM's)."""
    tok, enc = body.tokenizer, body[0].auto_model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            b = tok(list(texts[i:i + 64]), padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = enc(**b, output_hidden_states=True).hidden_states[layer]
            m = b["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1)
            out.append((e / e.norm(dim=1, keepdim=True)).numpy())
    return np.concatenate(out)


def ordinal_probs(xl, ys, x, k):
    """Frank and Hall's ordinal classifier: a logistic regression per threshold j for
    P(y > j), the class probabilities their differences (clipped at 0)."""
    from sklearn.linear_model import LogisticRegression

    above = np.stack([LogisticRegression(max_iter=3000).fit(xl, (ys > j).astype(int)).predict_proba(x)[:, 1]
                      for j in range(k - 1)], 1)
    cum = np.hstack([np.ones((len(x), 1)), above, np.zeros((len(x), 1))])
    return np.clip(cum[:, :-1] - cum[:, 1:], 0, None)


def read_splits(data, task, seed):
    """The split's train, dev and test, each as (texts, labels)."""
    return tuple(read_split(data, task, seed, part) for part in ("train", "dev", "test"))


def pretrain_labels(data, task):
    """glue_pretrain/<task>/train.json, the task's unlabeled text: {text: its label}."""
    import json

    path = Path(data).parent / "glue_pretrain" / task / "train.json"
    return {r["text_a"]: r["label"] for r in json.loads(path.read_text()).values()}


def pool_texts(data, task, seed, drop, n):
    """`n` texts of glue_pretrain/<task>/train.json drawn by `seed`, less every text
    in `drop` (the split's train, dev and test)."""
    import random

    texts = sorted(set(pretrain_labels(data, task)) - set(drop))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def run_losses(data, task, seed, names):
    """One encoder per contrastive loss on the same split, each with the default head
    (embedding and word-anchor features x3); dev and test accuracy of each."""
    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    for name in names:
        out[f"{name} words x3"] = default_head(train(task, seed, xs, ys, False, name), task, (xs, ys), (dx, dy), (tx, ty))
    return report(task, seed, started, out)


def head_input(body, texts, words):
    """The default head's input: [n, H + 4C], the embedding and the word-anchor features x3."""
    e, f = features(body, texts, words)
    return np.hstack([e, 3 * f])


def fit_default(body, task, xs, ys):
    """The default head (logistic regression on `head_input`) fitted on (xs, ys) with
    `body`, and the label words it reads."""
    from sklearn.linear_model import LogisticRegression

    words = label_words(body, task)
    return LogisticRegression(max_iter=3000).fit(head_input(body, xs, words), ys), words


def accuracies(head, body, words, *splits):
    """Accuracy in percent of a default head on each (texts, labels) split."""
    return tuple(100 * float((head.predict(head_input(body, x, words)) == np.array(y)).mean()) for x, y in splits)


def default_head(body, task, train_split, dev_split, test_split):
    """Dev and test accuracy of the default head (embedding and word-anchor features x3,
    logistic regression) fitted on the training split with `body`."""
    head, words = fit_default(body, task, *train_split)
    return accuracies(head, body, words, dev_split, test_split)


def report(task, seed, started, out):
    print(f"{task} seed {seed} ({time.time() - started:.0f} s): "
          + " ".join(f"{n} {d:.1f}/{t:.1f}" for n, (d, t) in out.items()), flush=True)
    return out


def run_descriptions(data, task, seed, desc_file):
    """The default on one split, and the same with each class's description
    (`--descriptions`, one hand-written line per class) as a second label anchor of its
    class, as many copies as the first, among the pairs; the default head on each."""
    import json

    splits = read_splits(data, task, seed)
    started = time.time()
    extra = list(enumerate(json.load(open(desc_file))[task]))
    out = {}
    for name, more in (("default", ()), ("+ descriptions", extra)):
        body = train(task, seed, *splits[0], False, extra=more)
        out[name] = default_head(body, task, *splits)
    return report(task, seed, started, out)


def run_wise(data, task, seed, alphas):
    """WiSE-FT (Wortsman et al. 2022): the tuned encoder's weights interpolated with the
    untrained encoder's, alpha * tuned + (1 - alpha) * untrained, the label words and the
    default head (embedding and word-anchor features x3) refitted at each alpha; dev and
    test accuracy of each (alpha 1 is the default method)."""
    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    base = {k: v.clone() for k, v in train(task, seed, xs, ys, True).state_dict().items()}
    body = train(task, seed, xs, ys, False)
    tuned = {k: v.clone() for k, v in body.state_dict().items()}
    for a in alphas:
        body.load_state_dict({k: (a * v + (1 - a) * base[k]) if v.is_floating_point() else v for k, v in tuned.items()})
        out[f"alpha {a:g}"] = default_head(body, task, (xs, ys), (dx, dy), (tx, ty))
    return report(task, seed, started, out)


def batch_features(body, texts, words):
    """The default head's input for a batch, differentiable: [n, H + 4C], the embedding and
    the word-anchor features x3, as `features` computes them one text at a time."""
    tok, enc = body.tokenizer, body[0].auto_model
    b = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    h = enc(**b).last_hidden_state
    m = b["attention_mask"].bool()
    n = m.sum(1)
    mean = (h * m[..., None]).sum(1) / n[:, None]
    emb = mean / mean.norm(dim=1, keepdim=True)
    own = m.clone()
    own[:, 0] = False
    own[torch.arange(len(h)), n - 1] = False
    own = torch.where((n > 2)[:, None], own, m)
    s = (h / h.norm(dim=2, keepdim=True)) @ words.T
    k = torch.clamp(own.sum(1), max=3)
    neg = torch.finfo(s.dtype).min

    def over_tokens(v, largest=True):
        return v.masked_fill(~own[..., None], neg if largest else -neg)

    top = over_tokens(s).topk(min(3, s.shape[1]), 1).values
    top = (top * (torch.arange(top.shape[1])[None, :, None] < k[:, None, None])).sum(1) / k[:, None]
    mg = s - s.mean(2, keepdim=True)
    f = torch.cat([over_tokens(s).max(1).values, top, over_tokens(mg).max(1).values,
                   -over_tokens(-mg).max(1).values], 1)
    return torch.cat([emb, 3 * f], 1)


def diff_label_words(body, task):
    """`label_words` with gradients: [C, H]."""
    tok, enc = body.tokenizer, body[0].auto_model
    b = tok(anchor_texts(task), padding=True, return_tensors="pt")
    h = enc(**b).last_hidden_state
    w = h[torch.arange(len(h)), b["attention_mask"].sum(1) - 3]
    return w / w.norm(dim=1, keepdim=True)


def run_e2e(data, task, seed, epochs, body_lr=1e-5, head_lr=1e-3):
    """SetFit's second phase done end to end through the default head: after the
    contrastive training, a linear layer on the default head's input (embedding and
    word-anchor features x3, the label words recomputed from the anchor texts every step),
    started from the fitted logistic head, is trained with the encoder by cross-entropy
    on the labelled examples (AdamW, batches of 16, weight decay 0.01). At each epoch
    count in `epochs`: dev and test of that layer (`e2e N`) and of the default head
    refitted on the encoder as it is then (`e2e N refit`); `words x3` is the default
    method, before the phase."""
    from sklearn.linear_model import LogisticRegression

    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    body = train(task, seed, xs, ys, False)
    enc = body[0].auto_model
    words = label_words(body, task)
    e, f = features(body, xs, words)
    xl = np.hstack([e, 3 * f])
    with torch.no_grad():  # the batched, differentiable features are the default head's
        wd = diff_label_words(body, task)
        assert torch.allclose(wd, words, atol=1e-5)
        assert np.allclose(batch_features(body, xs, wd).numpy(), xl, atol=1e-4)
    lr = LogisticRegression(max_iter=3000).fit(xl, ys)
    out["words x3"] = default_head(body, task, (xs, ys), (dx, dy), (tx, ty))
    c = len(anchor_texts(task))
    w, b0 = torch.tensor(lr.coef_, dtype=torch.float32), torch.tensor(lr.intercept_, dtype=torch.float32)
    if c == 2:  # sklearn's binary head: one row, the logit of class 1 against class 0
        w, b0 = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b0), b0])
    head = torch.nn.Linear(w.shape[1], c)
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b0)
    opt = torch.optim.AdamW([{"params": enc.parameters(), "lr": body_lr}, {"params": head.parameters(), "lr": head_lr}],
                            weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    yt = torch.tensor(ys)

    def accuracy(texts, gold):
        enc.eval()
        with torch.no_grad():
            wd = diff_label_words(body, task)
            pred = torch.cat([head(batch_features(body, texts[i:i + 64], wd)).argmax(1)
                              for i in range(0, len(texts), 64)])
        return 100 * float((pred.numpy() == np.array(gold)).mean())

    for epoch in range(1, max(epochs) + 1):
        enc.train()
        order = torch.randperm(len(xs), generator=g)
        for i in range(0, len(xs), 16):
            idx = order[i:i + 16]
            logits = head(batch_features(body, [xs[j] for j in idx], diff_label_words(body, task)))
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in epochs:
            out[f"e2e {epoch}"] = (accuracy(dx, dy), accuracy(tx, ty))
            out[f"e2e {epoch} refit"] = default_head(body, task, (xs, ys), (dx, dy), (tx, ty))
    enc.eval()
    return report(task, seed, started, out)


def run_selftrain(data, task, seed, ms, threshold=0.0, pool_n=2000):
    """Self-training with the encoder retrained, on the anchored method: the default
    (label anchors, word-anchor head) labels `pool_n` pool texts (glue_pretrain, less the
    split's train, dev and test texts); for each M in `ms` the M texts it is most confident
    of per predicted class join the 16 per class, and the anchored method is trained again
    from the untrained encoder on them, with SetFit's pair rounds scaled so the pair count
    (and the cost) stays the default's. Scored: the default head fitted on the examples
    and the pseudo-labelled texts (`retrain M`), and on the examples alone (`... head on
    train`). With `threshold`, a text is kept only if the head gives its class at least
    that probability (M is then a cap). The kept texts' accuracy against glue_pretrain's
    own labels is printed as an analysis; nothing reads it."""
    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    body = train(task, seed, xs, ys, False)
    head, words = fit_default(body, task, xs, ys)
    k = len(words)
    out["words x3"] = accuracies(head, body, words, (dx, dy), (tx, ty))
    texts = pool_texts(data, task, seed, list(xs) + list(dx) + list(tx), pool_n)
    probs = head.predict_proba(head_input(body, texts, words))
    gold = pretrain_labels(data, task)
    n_default = len(xs) + ANCHOR_COPIES * k
    for m in ms:
        keep = [i for c in range(k) for i in np.argsort(-probs[:, c])[:m]
                if probs[i].argmax() == c and probs[i, c] >= threshold]
        px, py = [texts[i] for i in keep], [int(probs[i].argmax()) for i in keep]
        right = np.mean([int(gold[t]) == y for t, y in zip(px, py)]) if keep else float("nan")
        print(f"{task} seed {seed}: M={m} keeps {len(keep)}, pseudo-label accuracy {100 * right:.1f}", flush=True)
        if not keep:
            out[f"retrain M={m}"] = out[f"retrain M={m} head on train"] = out["words x3"]
            continue
        rounds = max(1, round(ROUNDS * n_default / (n_default + len(px))))
        tuned = train(task, seed, list(xs) + px, list(ys) + py, False, iterations=rounds)
        out[f"retrain M={m}"] = default_head(tuned, task, (list(xs) + px, list(ys) + py), (dx, dy), (tx, ty))
        out[f"retrain M={m} head on train"] = default_head(tuned, task, (xs, ys), (dx, dy), (tx, ty))
    return report(task, seed, started, out)


def pooled(body, texts):
    """[n, 2H]: each text's normalised max-pooled last states and normalised [CLS] state."""
    out = []
    for h in states(body, texts):
        mx, cls = h.max(0).values, h[0]
        out.append(torch.cat([mx / mx.norm(), cls / cls.norm()]).numpy())
    return np.stack(out)


def run_heads(data, task, seed):
    """Heads on one tuned encoder: the default (embedding and word anchors x3); the same
    with the label anchors' texts as training rows of the head (each anchor once, with
    its class); with the max-pooled states and with the [CLS] state beside the mean."""
    from sklearn.linear_model import LogisticRegression

    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    body = train(task, seed, xs, ys, False)
    words = label_words(body, task)
    anchors = anchor_texts(task)
    splits = (xs, dx, tx, anchors)
    base = [head_input(body, x, words) for x in splits]
    more = [pooled(body, x) for x in splits]
    h = body[0].auto_model.config.hidden_size
    ya = np.arange(len(anchors))

    def score(name, xl, xd, xt, extra=None):
        fit_x, fit_y = (xl, ys) if extra is None else (np.vstack([xl, extra]), np.concatenate([ys, ya]))
        m = LogisticRegression(max_iter=3000).fit(fit_x, fit_y)
        out[name] = (100 * float((m.predict(xd) == np.array(dy)).mean()), 100 * float((m.predict(xt) == np.array(ty)).mean()))

    score("words x3", *base[:3])
    score("+ anchor rows", *base[:3], extra=base[3])
    score("+ max pool", *(np.hstack([b, m[:, :h]]) for b, m in zip(base[:3], more[:3])))
    score("+ cls", *(np.hstack([b, m[:, h:]]) for b, m in zip(base[:3], more[:3])))
    return report(task, seed, started, out)


def run_spread(data, task, seed, ks=(5, 10), alphas=(0.2, 0.5)):
    """Label spreading (transductive_probe.py's) of the default head's probabilities over
    the split's train, dev and test inputs, linked by the untrained MiniLM's cosine (what
    that probe did) and by the tuned encoder's own (the embedding the head reads); train
    rows clamped to their labels, dev labels unused. Dev and test accuracy per graph and
    setting, beside the head as trained."""
    from sklearn.linear_model import LogisticRegression
    from transductive_probe import spread

    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started, out = time.time(), {}
    untrained = train(task, seed, xs, ys, True)
    base_emb = np.vstack([features(untrained, x, label_words(untrained, task))[0] for x in (xs, dx, tx)])
    body = train(task, seed, xs, ys, False)
    words = label_words(body, task)
    feats = [features(body, x, words) for x in (xs, dx, tx)]
    xl, xd, xt = (np.hstack([e, 3 * f]) for e, f in feats)
    h = LogisticRegression(max_iter=3000).fit(xl, ys)
    k_classes = len(h.classes_)
    prior = np.vstack([np.eye(k_classes)[ys], h.predict_proba(xd), h.predict_proba(xt)])
    clamp = np.arange(len(prior)) < len(xs)
    nd = len(dx)

    def acc(f):
        pred = f.argmax(1)
        return (100 * float((pred[len(xs):len(xs) + nd] == np.array(dy)).mean()),
                100 * float((pred[len(xs) + nd:] == np.array(ty)).mean()))

    out["as trained"] = acc(prior)
    tuned_emb = np.vstack([e for e, _ in feats])
    for graph, emb in (("untrained", base_emb), ("tuned", tuned_emb)):
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        for k in ks:
            for al in alphas:
                out[f"{graph} k{k} a{al:g}"] = acc(spread(emb, prior, clamp, k, al))
    return report(task, seed, started, out)


def run(data, task, seed, frozen, mask, bodies=1, untrained_too=False, layer=None, pool=0, ordinal=False):
    (xs, ys), (dx, dy), (tx, ty) = read_splits(data, task, seed)
    started = time.time()
    body = train(task, seed, xs, ys, frozen)
    words = label_words(body, task)
    k = len(words)
    (el, fl), (ed, fd), (et, ft) = (features(body, x, words) for x in (xs, dx, tx))
    ys, dy, ty = map(np.array, (ys, dy, ty))
    groups = {"words": list(range(4 * k)), "max+margins": list(range(k)) + list(range(2 * k, 4 * k)), "max": list(range(k)),
              "max+high": list(range(k)) + list(range(2 * k, 3 * k))}
    out = {}

    def score(name, xl, xd, xt):
        from sklearn.linear_model import LogisticRegression

        h = LogisticRegression(max_iter=3000).fit(xl, ys)
        out[name] = (100 * float((h.predict(xd) == dy).mean()), 100 * float((h.predict(xt) == ty).mean()))

    score("embedding", el, ed, et)
    if bodies > 1:
        from sklearn.linear_model import LogisticRegression

        # The same split, encoders trained from further pair-sampling seeds; each gets its
        # own words x3 head and the heads' probabilities are averaged.
        probs = []
        for b in range(bodies):
            if b:
                body = train(task, seed + 1000 * b, xs, ys, frozen)
                words = label_words(body, task)
                (el, fl), (ed, fd), (et, ft) = (features(body, x, words) for x in (xs, dx, tx))
            h = LogisticRegression(max_iter=3000).fit(np.hstack([el, 3 * fl]), ys)
            probs.append((h.predict_proba(np.hstack([ed, 3 * fd])), h.predict_proba(np.hstack([et, 3 * ft]))))
            pd_, pt_ = (np.mean([p[i] for p in probs], 0) for i in (0, 1))
            out[f"words x3, {b + 1} encoders"] = (100 * float((pd_.argmax(1) == dy).mean()),
                                                  100 * float((pt_.argmax(1) == ty).mean()))
        groups = {}
    if untrained_too:
        base = train(task, seed, xs, ys, True)
        bw = label_words(base, task)
        (ul, gl), (ud, gd), (ut, gt) = (features(base, x, bw) for x in (xs, dx, tx))
        score("words x3", *(np.hstack([e, 3 * f]) for e, f in ((el, fl), (ed, fd), (et, ft))))
        score("+ untrained emb", *(np.hstack([e, 3 * f, u]) for e, f, u in ((el, fl, ul), (ed, fd, ud), (et, ft, ut))))
        score("+ untrained emb+words", *(np.hstack([e, 3 * f, u, 3 * g]) for e, f, u, g in ((el, fl, ul, gl), (ed, fd, ud, gd), (et, ft, ut, gt))))
        groups = {}
    if pool or ordinal:
        from sklearn.linear_model import LogisticRegression

        xl, xd, xt = (np.hstack([e, 3 * f]) for e, f in ((el, fl), (ed, fd), (et, ft)))
        score("words x3", xl, xd, xt)
        if ordinal:
            pd_, pt_ = (ordinal_probs(xl, ys, x, k) for x in (xd, xt))
            out["ordinal words x3"] = (100 * float((pd_.argmax(1) == dy).mean()), 100 * float((pt_.argmax(1) == ty).mean()))
        if pool:
            texts = pool_texts(data, task, seed, list(xs) + list(dx) + list(tx), pool)
            xp = head_input(body, texts, words)
            probs = LogisticRegression(max_iter=3000).fit(xl, ys).predict_proba(xp)
            for m in (16, 64):
                keep = [i for c in range(k) for i in np.argsort(-probs[:, c])[:m] if probs[i].argmax() == c]
                h = LogisticRegression(max_iter=3000).fit(np.vstack([xl, xp[keep]]), np.concatenate([ys, probs[keep].argmax(1)]))
                out[f"self-train head M={m}"] = (100 * float((h.predict(xd) == dy).mean()), 100 * float((h.predict(xt) == ty).mean()))
        groups = {}
    if layer is not None:
        ll, ld, lt = (layer_embeddings(body, x, layer) for x in (xs, dx, tx))
        score("words x3", *(np.hstack([e, 3 * f]) for e, f in ((el, fl), (ed, fd), (et, ft))))
        score(f"+ layer {layer}", *(np.hstack([e, l, 3 * f]) for e, l, f in ((el, ll, fl), (ed, ld, fd), (et, lt, ft))))
        score(f"emb + layer {layer}", *(np.hstack([e, l]) for e, l in ((el, ll), (ed, ld), (et, lt))))
        groups = {}
    if mask:
        ml, md, mt = (mask_features(body, task, x, words) for x in (xs, dx, tx))
        score("words x3", *(np.hstack([e, 3 * f]) for e, f in ((el, fl), (ed, fd), (et, ft))))
        for s in SCALES:
            score(f"mask x{s}", *(np.hstack([e, s * m]) for e, m in ((el, ml), (ed, md), (et, mt))))
            score(f"words x3 + mask x{s}", *(np.hstack([e, 3 * f, s * m]) for e, f, m in ((el, fl, ml), (ed, fd, md), (et, ft, mt))))
        groups = {}
    for g, cols in groups.items():
        for s in SCALES:
            score(f"{g} x{s}", *(np.hstack([e, s * f[:, cols]]) for e, f in ((el, fl), (ed, fd), (et, ft))))
    print(f"{task} seed {seed} ({time.time() - started:.0f} s): "
          + " ".join(f"{n} {d:.1f}/{t:.1f}" for n, (d, t) in out.items()), flush=True)
    return out


def zero_shot(data, task):
    """Untrained encoder, no head: test accuracy of the nearest class word by the mask
    state and by the word anchors' highest cosine and top-3 mean (the test set is the
    same for every seed)."""
    from setfit import SetFitModel

    body = SetFitModel.from_pretrained(default_model()).model_body
    words = label_words(body, task)
    k = len(words)
    tx, ty = read_split(data, task, 13, "test")
    ty = np.array(ty)
    m = mask_features(body, task, tx, words)
    _, f = features(body, tx, words)
    acc = [100 * float((x.argmax(1) == ty).mean()) for x in (m[:, :k], f[:, :k], f[:, k:2 * k])]
    print(f"| {task} | {len(ty)} | " + " | ".join(f"{a:.1f}" for a in acc) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13,21")
    ap.add_argument("--frozen", action="store_true", help="no contrastive training: the untrained encoder")
    ap.add_argument("--mask", action="store_true",
                    help="heads with the mask state's features instead of the word-anchor subsets")
    ap.add_argument("--bodies", type=int, default=1,
                    help="N > 1: also train N - 1 more encoders (pair seeds seed + 1000 k) and average their words x3 heads")
    ap.add_argument("--untrained-too", action="store_true",
                    help="heads that also read the untrained encoder's embedding (and word features)")
    ap.add_argument("--layer", type=int,
                    help="heads that also read the mean-pooled hidden states of this layer (its embedding beside the last's)")
    ap.add_argument("--pool", type=int, default=0,
                    help="N > 0: self-training of the head on N unlabeled texts (glue_pretrain, less the split's texts), "
                         "the M = 16 and 64 most confident per class added to the training rows")
    ap.add_argument("--ordinal", action="store_true", help="also Frank and Hall's ordinal head (for sst-5's ordered classes)")
    ap.add_argument("--zero-shot", action="store_true",
                    help="untrained encoder, no head: nearest class word by the mask state and by the word anchors")
    ap.add_argument("--losses", help=f"comma-separated, of {', '.join(LOSSES)}: one encoder per contrastive loss, "
                                       "each with the default head (nothing else is scored)")
    ap.add_argument("--wise", help="comma-separated alphas: WiSE-FT, the tuned encoder's weights interpolated "
                                     "with the untrained one's, the default head at each (nothing else is scored)")
    ap.add_argument("--heads", action="store_true",
                    help="heads on one tuned encoder: the default, with the anchors as head rows, with max-pooled "
                         "and with [CLS] states beside the mean (nothing else is scored)")
    ap.add_argument("--e2e", help="comma-separated epoch counts: after the contrastive training, the encoder and a "
                                    "linear layer on the default head's input trained end to end by cross-entropy, "
                                    "scored at each count (nothing else is scored)")
    ap.add_argument("--spread", action="store_true",
                    help="label spreading of the default head over the split's inputs, by the untrained and by the "
                         "tuned encoder's neighbours (nothing else is scored)")
    ap.add_argument("--selftrain", help="comma-separated M: self-training with the anchored encoder retrained on the "
                                          "M most confident pool texts per class (2,000 drawn; nothing else is scored)")
    ap.add_argument("--threshold", type=float, default=0.0,
                    help="with --selftrain: keep only pool texts the head gives their class at least this probability")
    ap.add_argument("--descriptions", type=Path,
                    help="class descriptions (python/class_descriptions.json): the default with and without each "
                         "class's line as a second label anchor")
    a = ap.parse_args()
    if a.zero_shot:
        print("| task | test | mask state | word max | word top-3 |\n|---|---|---|---|---|")
        for t in a.tasks.split(","):
            zero_shot(a.data, t)
        return
    if a.losses:
        names = a.losses.split(",")
        if set(names) - set(LOSSES):
            ap.error(f"--losses: unknown {sorted(set(names) - set(LOSSES))}; known: {', '.join(LOSSES)}")
        rows = [run_losses(a.data, t, int(s), names) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.selftrain:
        ms = [int(x) for x in a.selftrain.split(",")]
        rows = [run_selftrain(a.data, t, int(s), ms, a.threshold) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.spread:
        rows = [run_spread(a.data, t, int(s)) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.heads:
        rows = [run_heads(a.data, t, int(s)) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.e2e:
        epochs = sorted({int(x) for x in a.e2e.split(",")})
        rows = [run_e2e(a.data, t, int(s), epochs) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.descriptions:
        rows = [run_descriptions(a.data, t, int(s), a.descriptions) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    elif a.wise:
        alphas = [float(x) for x in a.wise.split(",")]
        rows = [run_wise(a.data, t, int(s), alphas) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    else:
        rows = [run(a.data, t, int(s), a.frozen, a.mask, a.bodies, a.untrained_too, a.layer, a.pool, a.ordinal) for t in a.tasks.split(",") for s in a.seeds.split(",")]
    print("\n| head | mean dev | mean test |\n|---|---|---|")
    for h in rows[0]:
        print(f"| {h} | {np.mean([r[h][0] for r in rows]):.1f} | {np.mean([r[h][1] for r in rows]):.1f} |")


if __name__ == "__main__":
    main()
