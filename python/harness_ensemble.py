"""Cross-method ensembles from a harness folder's stored logits: a benchmark, not a test.

For each task and seed where every named method is stored, each method's test logits
are turned into probabilities with a temperature fitted on that run's dev logits (the
32-96 dev examples only; test is never looked at), averaged over the methods, and
scored by accuracy. Prints one markdown row per combination: mean (std) over the seeds
per task and the mean over the tasks. A split where a method diverged (its logits
stored as null) is left out and counted; a folder run with --test-limit N is scored on
its first N test inputs, as the harness scored them.

--temperature library (the default) fits each run's temperature by the library's rule
(src/metrics: searched from 0.05 to 20, and left at 1 where the dev set cannot back it,
as the harness and a host's predictor apply it); --temperature wide searches 0.1 to
about 1,700 and always applies it, the rule the ensemble rows in docs/harness.md were
made with before the library's came.

    .venv/bin/python python/harness_ensemble.py --harness runs/harness/minilm-gpu \\
        --data ../shared/data/lmbff/k-shot \\
        --combos plain,sentence-embedding prompt,sentence-embedding plain,prompt,sentence-embedding
"""

import argparse
import json
import math
import statistics
import struct
import sys
from pathlib import Path

from setfit_compare import read_split


def softmax(row, temperature):
    z = [x / temperature for x in row]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]


def fit_temperature_wide(rows, gold):
    """The temperature of least dev NLL on a geometric grid from 0.1 to about 1,700."""

    def nll(t):
        return -sum(math.log(max(softmax(r, t)[y], 1e-12)) for r, y in zip(rows, gold))

    return min((0.1 * 1.05**i for i in range(200)), key=nll)


TEMPERATURE_MIN, TEMPERATURE_MAX = 0.05, 20.0


def mean_nll(rows, gold, t):
    """Mean NLL of `gold` under the rows divided by t (a log-sum-exp per row), summed in
    order as the library sums (Python 3.12's sum() of floats compensates, and the search
    branches on the last bits)."""
    total = 0.0
    for r, y in zip(rows, gold):
        z = [x / t for x in r]
        m = max(z)
        s = 0.0
        for x in z:
            s += math.exp(x - m)
        total += m + math.log(s) - z[y]
    return total / max(len(rows), 1)


def f32(x):
    """x as the float32 the library stored (JSON holds its shortest decimal)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def fit_temperature_library(rows, gold):
    """The library's rule (src/metrics: fit_temperature, temperature_unsupported): a
    golden-section search of log t over [0.05, 20] for the least dev NLL, and 1 (no
    scaling) where no temperature fits (every row right, or every row wrong) or the NLL
    at a bound of the search is as low as at the fitted t."""
    rows = [[f32(x) for x in r] for r in rows]
    f = lambda u: mean_nll(rows, gold, math.exp(u))  # noqa: E731
    a, b = math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX)
    r = (math.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    t = math.exp((a + b) / 2)
    right = sum(all(j == y or v < row[y] for j, v in enumerate(row)) for row, y in zip(rows, gold))
    wrong = sum(any(v > row[y] for v in row) for row, y in zip(rows, gold))
    if rows and (right == len(rows) or wrong == len(rows)):
        return 1.0
    at_t = mean_nll(rows, gold, t)
    if any(mean_nll(rows, gold, bound) <= at_t + 1e-9 for bound in (TEMPERATURE_MIN, TEMPERATURE_MAX)):
        return 1.0
    return t


FIT = {"library": fit_temperature_library, "wide": fit_temperature_wide}


DIVERGED = "diverged"


def finite(rows):
    return all(x is not None and math.isfinite(x) for r in rows for x in r)


def ensemble_accuracy(harness: Path, data: Path, task: str, seed: int, methods, fit=fit_temperature_library):
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
        t = fit(logits["dev"], dev_gold)
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
    ap.add_argument("--temperature", choices=sorted(FIT), default="library", help="the calibration rule (see above)")
    a = ap.parse_args()
    tasks, seeds = a.tasks.split(","), [int(s) for s in a.seeds.split(",")]
    print("| methods (dev-calibrated, averaged) | " + " | ".join(tasks) + " | mean |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for combo in a.combos:
        methods = combo.split(",")
        cells, means = [], []
        for t in tasks:
            got = [x for s in seeds if (x := ensemble_accuracy(a.harness, a.data, t, s, methods, FIT[a.temperature])) is not None]
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
