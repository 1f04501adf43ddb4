"""`sentiment predict` on the 2,000 NLTK movie reviews (about 750 words each, read in windows), one run
after another in the same process tree: wall seconds, reviews/s, peak memory of the predicting process,
and agreement with the first run's labels. A run is FORM:BATCH_SIZE (`sentiment predict --form FORM
--batch-size BATCH_SIZE`, in a process of its own).

    python bench/predict_reviews.py [--dataset sst2] [--runs torch:64 auto:64 auto:16] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from record import save
from sentiment.machine import describe, machine


def one(dataset: str, form: str, batch_size: str, source: Path, target: Path) -> None:
    """In this process: `sentiment predict`, then a JSON line with its seconds and peak resident memory."""
    from sentiment.cli import main

    start = time.perf_counter()
    try:
        main(
            [
                "predict",
                "--dataset",
                dataset,
                "--form",
                form,
                "--batch-size",
                batch_size,
                "--input",
                str(source),
                "--output",
                str(target),
            ]
        )
    except SystemExit as done:
        if done.code:
            raise
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def default_run() -> str:
    """`sentiment predict`'s defaults as a run: FORM:BATCH_SIZE (the batch size params.yaml `predict` sets)."""
    from sentiment.cli import parser
    from sentiment.config import Params
    from sentiment.serving.long_text import PredictConfig

    args = parser().parse_args(["predict"])
    return f"{args.form}:{Params.load().section(PredictConfig, 'predict').batch_size}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--runs", nargs="+", default=["torch:64", "auto:64", "auto:16"], help="FORM:BATCH_SIZE each")
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/predict_reviews_NAME.json")
    parser.add_argument("--one", nargs=4, metavar=("FORM", "BATCH_SIZE", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.dataset, args.one[0], args.one[1], Path(args.one[2]), Path(args.one[3]))
        return
    from sentiment.evaluation.external import nltk_corpus

    reviews = nltk_corpus("movie_reviews")
    rows, labels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.jsonl"
        reviews[["text"]].to_json(source, orient="records", lines=True, force_ascii=False)
        for run in args.runs:
            form, batch_size = run.split(":")
            target = Path(tmp) / f"{form}-{batch_size}.csv"
            command = [sys.executable, __file__, "--dataset", args.dataset, "--one", form, batch_size, str(source), str(target)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows[run] = json.loads(done.stdout.strip().splitlines()[-1])
            rows[run]["form_used"] = next(line for line in done.stderr.splitlines() if line.startswith("form "))
            labels[run] = pd.read_csv(target)["label"].to_numpy()
    first = args.runs[0]
    for run, r in rows.items():
        r["reviews_per_s"] = len(reviews) / r["seconds"]
        r["speedup_vs_first"] = rows[first]["seconds"] / r["seconds"]
        r["labels_as_first"] = float((labels[run] == labels[first]).mean())
    m = machine()
    print(f"{describe(m)}; {len(reviews)} movie reviews through `sentiment predict --dataset {args.dataset}`")
    print("| run | used | seconds | reviews/s | vs first | peak MB | labels as first |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run, r in rows.items():
        print(f"| {run} | {r['form_used']} | {r['seconds']:.0f} | {r['reviews_per_s']:.1f} | {r['speedup_vs_first']:.2f}x | "
              f"{r['peak_mb']:.0f} | {r['labels_as_first']:.4f} |")  # fmt: skip
    if args.save:
        record = {"command": f"python bench/predict_reviews.py --dataset {args.dataset} --runs {' '.join(args.runs)}",
                  "machine": m, "dataset": args.dataset, "reviews": len(reviews), "default_run": default_run(), "levels": [
                      {"run": run, **r} for run, r in rows.items()]}  # fmt: skip
        save("predict_reviews", args.save, record)


if __name__ == "__main__":
    main()
