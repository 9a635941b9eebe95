"""Methods side by side from several harness folders (stored results only; trains
nothing): a benchmark table, not a test. Each `--row LABEL=FOLDER:METHOD` names one
method's runs in one folder (`runs/<task>/<seed>-<method>.json`); the table gives test
mean (std) per task over the seeds every row has, the mean over the tasks, the mean dev
score, and each row's mean difference from the first row, paired by split.
`--select LABEL=ROW,ROW,...` adds a row that takes, split by split, the named rows' run
with the best dev score (the first named on a tie): LM-BFF's choice of settings on dev;
a run without a dev score (diverged on dev, or an untrained method) is not chosen while
another run of its split has one, and a split where none has one stops it.
A diverged run (test metric null: NaN) is named on stderr and left out of its cell's mean
and of the paired difference; a cell whose runs all diverged reads "diverged".

    .venv/bin/python python/harness_compare.py --tasks SST-2,sst-5,mr,cr,mpqa,subj,trec \\
        --seeds 13,21,42,87,100 \\
        --row "plain FT=runs/harness/minilm-gpu:plain" \\
        --row "sentence-embedding=runs/harness/minilm-gpu:sentence-embedding" \\
        --row "+ label anchors=runs/harness/minilm-anchors:sentence-embedding-anchors" \\
        --row "plain FT 2e-5=runs/harness/sweep/plain-2e-5:plain" \\
        --select "plain FT, lr on dev=plain FT,plain FT 2e-5"
"""

import argparse
import json
import statistics
import sys
from pathlib import Path


def load(folder: Path, method: str, task: str, seed: int):
    f = folder / "runs" / task / f"{seed}-{method}.json"
    return json.loads(f.read_text()) if f.exists() else None


def parse_row(spec: str):
    """LABEL=FOLDER:METHOD (the folder may hold ':'; the method is after the last)."""
    label, eq, rest = spec.partition("=")
    folder, colon, method = rest.rpartition(":")
    if not (eq and colon and label and folder and method):
        raise SystemExit(f"--row {spec!r}: --row takes LABEL=FOLDER:METHOD")
    return label, Path(folder), method


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--row", action="append", required=True, help="LABEL=FOLDER:METHOD")
    ap.add_argument("--select", action="append", default=[], help="LABEL=ROW,ROW,...: per split, the row best on dev")
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds {a.seeds!r}: expected seeds separated by commas (13,21,42)")
    rows = [parse_row(spec) for spec in a.row]
    labels = [label for label, _, _ in rows]
    for label, folder, method in rows:
        if labels.count(label) > 1:
            raise SystemExit(f"--row: the label {label!r} names two rows")
        # A mistyped folder or method names itself, not an empty mean further down.
        if not any(load(folder, method, t, s) for t in tasks for s in seeds):
            raise SystemExit(f"--row {label}: no runs for {method} in {folder} (looked for {folder}/runs/<task>/<seed>-{method}.json, tasks {','.join(tasks)}, seeds {a.seeds})")
    # The splits every row has (a task is left out where a row has none of its seeds).
    common = {t: [s for s in seeds if all(load(f, m, t, s) for _, f, m in rows)] for t in tasks}
    dropped = [t for t in tasks if not common[t]]
    if dropped:
        print(f"left out (a row has none of their seeds): {', '.join(dropped)}", file=sys.stderr)
    tasks = [t for t in tasks if common[t]]
    if not tasks:
        raise SystemExit("no task has a seed that every --row has a run of: nothing to compare")
    # Rows paired split by split must score the same test rows with the same metric (a
    # folder run with --test-limit, or by an older metric, is another test set).
    for t in tasks:
        for s in common[t]:
            seen = {(r.get("metric"), r.get("n_test")) for r in (load(f, m, t, s) for _, f, m in rows)}
            if len(seen) > 1:
                print(f"warning: {t} seed {s}: the rows score different test sets or metrics {sorted(seen, key=str)}: "
                      "their cells and differences do not compare", file=sys.stderr)
    # Per row: (task, seed) -> (test, dev) in percent (dev None where a run has none,
    # test None where the run diverged).
    scores = {}
    for label, folder, method in rows:
        scores[label] = {}
        for t in tasks:
            for s in common[t]:
                r = load(folder, method, t, s)
                dev = 100 * r["dev"] if r.get("dev") is not None else None
                if r.get("test") is None:
                    print(f"{label}: {folder} {t} seed {s} {method} diverged (test metric null): left out of its cell's mean", file=sys.stderr)
                test = 100 * r["test"] if r.get("test") is not None else None
                scores[label][(t, s)] = (test, dev)
    order = [label for label, _, _ in rows]
    for spec in a.select:
        label, eq, names = spec.partition("=")
        if not (eq and label and names):
            raise SystemExit(f"--select {spec!r}: --select takes LABEL=ROW,ROW,...")
        if label in scores:
            raise SystemExit(f"--select {label}: a --row is named so already")
        names = names.split(",")
        missing = [n for n in names if n not in scores]
        if missing:
            raise SystemExit(f"--select {label}: no --row named {missing}")
        chosen = {}
        for k in scores[names[0]]:
            devs = [scores[n][k][1] for n in names]
            if all(d is None for d in devs):
                raise SystemExit(f"--select {label}: no run of {k} has a dev score to choose by")
            # A run whose dev score is null (diverged on dev, stored NaN as null; or an
            # untrained method) is not chosen while another has one.
            for n, d in zip(names, devs):
                if d is None:
                    print(f"--select {label}: {n} has no dev score at {k[0]} seed {k[1]} (diverged, or untrained): not chosen there", file=sys.stderr)
            best = max(range(len(names)), key=lambda i: (devs[i] is not None, devs[i] or 0.0, -i))
            chosen[k] = scores[names[best]][k]
        scores[label] = chosen
        order.append(label)
    print("| method | " + " | ".join(tasks) + " | mean | mean dev | vs first |")
    print("|---" * (len(tasks) + 4) + "|")
    first = scores[order[0]]
    for label in order:
        cells, means, devs = [], [], []
        for t in tasks:
            test = [scores[label][(t, s)][0] for s in common[t] if scores[label][(t, s)][0] is not None]
            diverged = len(common[t]) - len(test)
            # Dev as test: each task's mean, then the mean over the tasks (pooled over the
            # splits, a task with more seeds weighed more than in the mean column).
            task_devs = [scores[label][(t, s)][1] for s in common[t] if scores[label][(t, s)][1] is not None]
            if task_devs:
                devs.append(statistics.mean(task_devs))
            if not test:
                # As the harness report: no mean, and none for the row.
                cells.append(f"diverged ({diverged} of {diverged})")
                continue
            means.append(statistics.mean(test))
            std = statistics.stdev(test) if len(test) > 1 else 0.0
            cells.append(f"{means[-1]:.1f} ({std:.1f})" + (f", {diverged} of {len(common[t])} diverged" if diverged else ""))
        # Paired by split within each task (over the splits where neither run diverged),
        # then averaged over the tasks as the mean column is: pooled over all splits, a
        # task with more splits weighed more, and the column disagreed with the means.
        task_diffs = []
        for t in tasks:
            pairs = [scores[label][(t, s)][0] - first[(t, s)][0] for s in common[t]
                     if scores[label][(t, s)][0] is not None and first[(t, s)][0] is not None]
            if pairs:
                task_diffs.append(statistics.mean(pairs))
        diff = "-" if label == order[0] or len(task_diffs) != len(tasks) else f"{statistics.mean(task_diffs):+.1f}"
        dev = f"{statistics.mean(devs):.1f}" if devs else "-"
        mean = f"{statistics.mean(means):.1f}" if len(means) == len(tasks) else "-"
        print(f"| {label} | " + " | ".join(cells) + f" | {mean} | {dev} | {diff} |")
    print("\nsplits per task: " + ", ".join(f"{t} {len(common[t])}" for t in tasks)
          + (f"; left out: {', '.join(dropped)}" if dropped else "")
          + ("; the tasks have different seed counts: each task's mean is over its own" if len({len(common[t]) for t in tasks}) > 1 else "")
          + ". std: sample (n - 1); a diverged run (test null) is left out of its cell's mean and of the paired difference;"
          + " vs first: the mean over the tasks of each task's mean difference to the first row, paired by split;"
          + " mean dev: the mean over the tasks of each task's mean dev score.")


if __name__ == "__main__":
    main()
