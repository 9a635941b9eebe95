"""Input-template probe (trains nothing; a benchmark, not a test): does wrapping each input
in the task's template before the sentence encoder embeds it (PromptBERT's idea, and
LM-BFF's: "<text> It was [MASK].") give the untrained MiniLM better features? For each
of three renderings of every input,

- `raw`: the text as it is (what the sentence-embedding method embeds);
- `mask`: the task's manual template with the mask ("<text> It was [MASK].", subj
  "<text> This is [MASK].", TREC "[MASK]: <text>");
- `nomask`: the same template without the mask token ("<text> It was."),

it prints the nearest label anchor's test accuracy (the anchors are the template's text
with each label word, as the method's label anchors) and a logistic head's (C = 1,
scikit-learn, the library's objective) dev and test accuracy, fitted on each seed's 16
examples per class of the normalised mean-pooled embeddings, mean over the seeds.

    OMP_NUM_THREADS=2 .venv/bin/python python/input_template_probe.py --data ../shared/data/lmbff/k-shot
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchor_probe import ANCHORS  # noqa: E402
from setfit_compare import default_model, read_split  # noqa: E402

TEMPLATES = {"subj": "{t} This is [MASK].", "trec": "[MASK]: {t}"}


def render(task, text, how):
    if how == "raw":
        return text
    template = TEMPLATES.get(task, "{t} It was [MASK].")
    if how == "nomask":
        template = template.replace(" [MASK]", "").replace("[MASK]", "")
    return template.format(t=text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    m = SentenceTransformer(default_model(), device="cpu")
    enc = lambda texts: m.encode(texts, normalize_embeddings=True, batch_size=64)  # noqa: E731
    rows = {}
    for task in a.tasks.split(","):
        tx, ty = read_split(a.data, task, 13, "test")  # the same for every seed
        ty = np.array(ty)
        anchors = enc([x + ":" if task == "trec" else x for x in ANCHORS[task]])
        for how in ("raw", "mask", "nomask"):
            et = enc([render(task, t, how) for t in tx])
            nearest = 100 * float(((et @ anchors.T).argmax(1) == ty).mean())
            dev, test = [], []
            for seed in (int(s) for s in a.seeds.split(",")):
                (xs, ys), (dx, dy) = (read_split(a.data, task, seed, s) for s in ("train", "dev"))
                h = LogisticRegression(max_iter=3000).fit(enc([render(task, t, how) for t in xs]), ys)
                dev.append(100 * float((h.predict(enc([render(task, t, how) for t in dx])) == np.array(dy)).mean()))
                test.append(100 * float((h.predict(et) == ty).mean()))
            rows.setdefault(how, {})[task] = (nearest, float(np.mean(dev)), float(np.mean(test)))
            print(f"{task} {how}: nearest anchor {nearest:.1f}, head dev {np.mean(dev):.1f} test {np.mean(test):.1f}", flush=True)
    tasks = a.tasks.split(",")
    print("\n| input | " + " | ".join(tasks) + " | mean nearest anchor | mean dev | mean test |")
    print("|---" * (len(tasks) + 4) + "|")
    for how, r in rows.items():
        means = [np.mean([r[t][i] for t in tasks]) for i in range(3)]
        print(f"| {how} | " + " | ".join(f"{r[t][1]:.1f} / {r[t][2]:.1f}" for t in tasks) + " | " + " | ".join(f"{v:.1f}" for v in means) + " |")


if __name__ == "__main__":
    main()
