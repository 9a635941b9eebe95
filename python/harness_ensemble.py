"""Cross-method ensembles from a harness folder's stored logits: a benchmark, not a test.

For each task and seed where every named method is stored, each method's test logits
are turned into probabilities with a temperature fitted on that run's dev logits (the
32-96 dev examples only; test is never looked at), averaged over the methods, and
scored by accuracy. Prints one markdown row per combination: mean (std) over the seeds
per task and the mean over the tasks. A split where a method diverged (its logits
stored as null) is left out and counted; a folder run with --test-limit N is scored on
its first N test inputs, as the harness scored them.

The temperature here is searched from 0.1 to about 1,700 and always applied; the
library's (0.05 to 20, withheld where the dev set cannot back it) came later, and the
ensemble rows in docs/harness.md were made with this one.

    .venv/bin/python python/harness_ensemble.py --harness runs/harness/minilm-gpu \\
        --data ../shared/data/lmbff/k-shot \\
        --combos plain,sentence-embedding prompt,sentence-embedding plain,prompt,sentence-embedding
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from setfit_compare import read_split


def softmax(row, temperature):
    z = [x / temperature for x in row]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]


def fit_temperature(rows, gold):
    """The temperature of least dev NLL on a geometric grid from 0.1 to about 1,700."""

    def nll(t):
        return -sum(math.log(max(softmax(r, t)[y], 1e-12)) for r, y in zip(rows, gold))

    return min((0.1 * 1.05**i for i in range(200)), key=nll)


DIVERGED = "diverged"


def finite(rows):
    return all(x is not None and math.isfinite(x) for r in rows for x in r)


def ensemble_accuracy(harness: Path, data: Path, task: str, seed: int, methods):
    """Accuracy in percent; None where a method's logits are not stored, DIVERGED where
    one method's are not all numbers."""
    runs = harness / "runs" / task
    if not all((runs / f"{seed}-{m}.logits.json").is_file() for m in methods):
        return None
    _, dev_gold = read_split(data, task, seed, "dev")
    _, gold = read_split(data, task, seed, "test")
    stored = [json.loads((runs / f"{seed}-{m}.logits.json").read_text()) for m in methods]
    if not all(finite(x["dev"]) and finite(x["test"]) for x in stored):
        return DIVERGED
    # --test-limit N stores the first N inputs' logits.
    n = min(len(x["test"]) for x in stored)
    gold = gold[:n]
    probs = []
    for logits in stored:
        t = fit_temperature(logits["dev"], dev_gold)
        probs.append([softmax(r, t) for r in logits["test"][:n]])
    right = 0
    for i, y in enumerate(gold):
        avg = [sum(p[i][k] for p in probs) for k in range(len(probs[0][i]))]
        right += max(range(len(avg)), key=avg.__getitem__) == y
    return 100.0 * right / len(gold)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--combos", nargs="+", required=True, help="comma-separated method lists")
    a = ap.parse_args()
    tasks, seeds = a.tasks.split(","), [int(s) for s in a.seeds.split(",")]
    print("| methods (dev-calibrated, averaged) | " + " | ".join(tasks) + " | mean |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for combo in a.combos:
        methods = combo.split(",")
        cells, means = [], []
        for t in tasks:
            got = [x for s in seeds if (x := ensemble_accuracy(a.harness, a.data, t, s, methods)) is not None]
            v = [x for x in got if x != DIVERGED]
            diverged = len(got) - len(v)
            note = f", {diverged} diverged" if diverged else ""
            if not v:
                cells.append(f"diverged ({diverged} of {diverged})" if diverged else "-")
                continue
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.1f} ({sd:.1f})" + ("" if len(got) == len(seeds) else f" [{len(got)}]") + note)
            means.append(statistics.mean(v))
        mean = f"{statistics.mean(means):.1f}" if len(means) == len(tasks) else "-"
        print(f"| {' + '.join(methods)} | " + " | ".join(cells) + f" | {mean} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
