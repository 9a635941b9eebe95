"""Methods side by side from several harness folders (stored results only; trains
nothing): a benchmark table, not a test. Each `--row LABEL=FOLDER:METHOD` names one
method's runs in one folder (`runs/<task>/<seed>-<method>.json`); the table gives test
mean (std) per task over the seeds every row has, the mean over the tasks, the mean dev
score, and each row's mean difference from the first row, paired by split.

    .venv/bin/python python/harness_compare.py --tasks SST-2,sst-5,mr,cr,mpqa,subj,trec \\
        --seeds 13,21,42,87,100 \\
        --row "plain FT=runs/harness/minilm-gpu:plain" \\
        --row "sentence-embedding=runs/harness/minilm-gpu:sentence-embedding" \\
        --row "+ label anchors=runs/harness/minilm-anchors:sentence-embedding-anchors"
"""

import argparse
import json
import statistics
from pathlib import Path


def load(folder: Path, method: str, task: str, seed: int):
    f = folder / "runs" / task / f"{seed}-{method}.json"
    return json.loads(f.read_text()) if f.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--row", action="append", required=True, help="LABEL=FOLDER:METHOD")
    a = ap.parse_args()
    tasks, seeds = a.tasks.split(","), [int(s) for s in a.seeds.split(",")]
    rows = []
    for spec in a.row:
        label, rest = spec.split("=", 1)
        folder, method = rest.rsplit(":", 1)
        rows.append((label, Path(folder), method))
    # The splits every row has (a task is left out where a row has none of its seeds).
    common = {t: [s for s in seeds if all(load(f, m, t, s) for _, f, m in rows)] for t in tasks}
    tasks = [t for t in tasks if common[t]]
    print("| method | " + " | ".join(tasks) + " | mean | mean dev | vs first |")
    print("|---" * (len(tasks) + 4) + "|")
    first = None
    for label, folder, method in rows:
        cells, means, devs, by_split = [], [], [], {}
        for t in tasks:
            rs = [load(folder, method, t, s) for s in common[t]]
            test = [100 * r["test"] for r in rs]
            devs += [100 * r["dev"] for r in rs if r.get("dev") is not None]
            by_split.update({(t, s): x for s, x in zip(common[t], test)})
            means.append(statistics.mean(test))
            std = statistics.stdev(test) if len(test) > 1 else 0.0
            cells.append(f"{means[-1]:.1f} ({std:.1f})")
        if first is None:
            first, diff = by_split, "-"
        else:
            d = [by_split[k] - first[k] for k in first]
            diff = f"{statistics.mean(d):+.1f}"
        dev = f"{statistics.mean(devs):.1f}" if devs else "-"
        print(f"| {label} | " + " | ".join(cells) + f" | {statistics.mean(means):.1f} | {dev} | {diff} |")
    print("\nsplits per task: " + ", ".join(f"{t} {len(common[t])}" for t in tasks))


if __name__ == "__main__":
    main()
