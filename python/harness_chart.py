"""Draws the harness report's chart: test metric per task, mean over the seeds with the
standard deviation as error bars, one bar per method, from <out>/results.json (written by
`lmbff harness --out <out>`). Writes <out>/chart.png.

    .venv/bin/python python/harness_chart.py runs/harness/minilm [--methods plain,prompt,...] [--seeds 13,21,42,87,100]

--seeds names the grid's seeds (scripts/harness-grid passes its own): a bar over fewer
of them is marked k/n, and the mean over the tasks waits for all of them. Without it,
the most seeds any task has stands in, which cannot tell a grid stopped with every task
at k of n seeds from a finished one.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_METHODS = "plain,prompt,prompt-demos,sentence-embedding"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the harness --out folder")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"methods to draw, in order (default {DEFAULT_METHODS})")
    ap.add_argument("--title", default=None)
    ap.add_argument("--seeds", default=None, help="the grid's seeds, comma-separated (default: the most any task has)")
    a = ap.parse_args()
    path = a.out / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"harness_chart: cannot read {path}: {e} (run `lmbff harness --out {a.out}` first)", file=sys.stderr)
        return 2
    methods = [m for m in a.methods.split(",") if any(r["method"] == m for r in results)]
    if not methods and a.methods == DEFAULT_METHODS:
        # A run of other methods only (say METHODS=full-data): draw those.
        methods = list(dict.fromkeys(r["method"] for r in results))
    tasks = list(dict.fromkeys(r["task"] for r in results))
    if not methods or not tasks:
        print(f"harness_chart: {path} has no results for {a.methods}", file=sys.stderr)
        return 2
    # A diverged run's test metric is NaN, stored as null: left out of its bar's mean, as
    # the report leaves it out of its cell's.
    for r in results:
        if r["method"] in methods and r.get("test") is None:
            print(f"harness_chart: {r['task']} seed {r['seed']} {r['method']} diverged (test metric null): left out of its bar", file=sys.stderr)

    def cell(task, method):
        """(mean, std, runs, diverged) over the runs that did not diverge (mean and std
        None where all did), or None without runs."""
        runs = [r for r in results if r["task"] == task and r["method"] == method]
        if not runs:
            return None
        v = [100 * r["test"] for r in runs if r.get("test") is not None]
        diverged = len(runs) - len(v)
        if not v:
            return None, None, len(runs), diverged
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(runs), diverged

    if a.seeds:
        wanted = {int(s) for s in a.seeds.split(",") if s.strip()}
        seeds = len(wanted)
        results = [r for r in results if r["seed"] in wanted]
        tasks = [t for t in tasks if any(r["task"] == t for r in results)]
        if not tasks:
            print(f"harness_chart: {path} has no results for seeds {a.seeds}", file=sys.stderr)
            return 2
    else:
        seeds = max(len({r["seed"] for r in results if r["task"] == t}) for t in tasks)
    # The mean over tasks only where every task has all seeds for the method.
    groups = tasks + ["mean of\nthese tasks"]
    fig, ax = plt.subplots(figsize=(1.3 * len(groups) + 2, 4.2), dpi=120)
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        xs, ys, es = [], [], []
        task_means, short = [], []
        for i, t in enumerate(tasks):
            c = cell(t, m)
            if c is None:
                continue
            mean, std, done, diverged = c
            xs.append(i + (k - (len(methods) - 1) / 2) * width)
            # Every run diverged: an empty bar, marked, and no mean over the tasks (as the
            # report's "diverged (k of k)" cell).
            ys.append(0.0 if mean is None else mean)
            es.append(0.0 if std is None else std)
            if done == seeds and mean is not None:
                task_means.append(mean)
            marks = [] if done == seeds else [f"{done}/{seeds}"]
            if mean is None:
                marks.append("diverged")
            elif diverged:
                marks.append(f"{diverged} diverged")
            if marks:
                short.append((xs[-1], ys[-1], ", ".join(marks)))
        if len(task_means) == len(tasks):
            xs.append(len(tasks) + (k - (len(methods) - 1) / 2) * width)
            ys.append(statistics.mean(task_means))
            es.append(0.0)
        else:
            print(f"harness_chart: {m}: no mean over the tasks ({len(task_means)} of {len(tasks)} tasks have all {seeds} seeds)", file=sys.stderr)
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=m)
        # A bar over fewer seeds than the others says how many, as the report's [k/n], and
        # how many of its runs diverged.
        for x, y, mark in short:
            ax.annotate(mark, (x, max(y, 0)), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("test metric (%)")
    # Below 0 only where a metric goes there (a negative correlation).
    ax.set_ylim(min(0, min((r["test"] * 100 for r in results if r["method"] in methods and r.get("test") is not None), default=0) - 5), 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=len(methods), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    n_runs = len([r for r in results if r["method"] in methods])
    up_to = "" if a.seeds else "up to "
    ax.set_title(a.title or f"K = 16 per class, mean (std) over {up_to}{seeds} seeds ({n_runs} runs)", fontsize=10)
    fig.tight_layout()
    png = a.out / "chart.png"
    fig.savefig(png)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
