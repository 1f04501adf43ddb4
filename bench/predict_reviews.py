"""`sentiment predict` on the 2,000 NLTK movie reviews (about 750 words each, read in windows), one form
after another in the same run: wall seconds, reviews/s, peak memory of the predicting process, and
agreement with the first form's labels. Each form runs `sentiment predict` in a process of its own.

    python bench/predict_reviews.py [--dataset sst2] [--forms torch auto] [--save NAME]
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

from record import describe, machine, save


def one(dataset: str, form: str, source: Path, target: Path) -> None:
    """In this process: `sentiment predict`, then a JSON line with its seconds and peak resident memory."""
    from sentiment.cli import main

    start = time.perf_counter()
    try:
        main(["predict", "--dataset", dataset, "--form", form, "--input", str(source), "--output", str(target)])
    except SystemExit as done:
        if done.code:
            raise
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--forms", nargs="+", default=["torch", "auto"])
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/predict_reviews_NAME.json")
    parser.add_argument("--one", nargs=3, metavar=("FORM", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.dataset, args.one[0], Path(args.one[1]), Path(args.one[2]))
        return
    from sentiment.external import nltk_corpus

    reviews = nltk_corpus("movie_reviews")
    rows, labels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.jsonl"
        reviews[["text"]].to_json(source, orient="records", lines=True, force_ascii=False)
        for form in args.forms:
            target = Path(tmp) / f"{form}.csv"
            command = [sys.executable, __file__, "--dataset", args.dataset, "--one", form, str(source), str(target)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows[form] = json.loads(done.stdout.strip().splitlines()[-1])
            rows[form]["form_used"] = next(line for line in done.stderr.splitlines() if line.startswith("form "))
            labels[form] = pd.read_csv(target)["label"].to_numpy()
    first = args.forms[0]
    for form, r in rows.items():
        r["reviews_per_s"] = len(reviews) / r["seconds"]
        r["speedup_vs_first"] = rows[first]["seconds"] / r["seconds"]
        r["labels_as_first"] = float((labels[form] == labels[first]).mean())
    m = machine()
    print(f"{describe(m)}; {len(reviews)} movie reviews through `sentiment predict --dataset {args.dataset}`")
    print("| form | used | seconds | reviews/s | vs first | peak MB | labels as first |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for form, r in rows.items():
        print(f"| {form} | {r['form_used']} | {r['seconds']:.0f} | {r['reviews_per_s']:.1f} | {r['speedup_vs_first']:.2f}x | "
              f"{r['peak_mb']:.0f} | {r['labels_as_first']:.4f} |")  # fmt: skip
    if args.save:
        record = {"command": f"python bench/predict_reviews.py --dataset {args.dataset} --forms {' '.join(args.forms)}",
                  "machine": m, "dataset": args.dataset, "reviews": len(reviews), "levels": [
                      {"form": form, **r} for form, r in rows.items()]}  # fmt: skip
        save("predict_reviews", args.save, record)


if __name__ == "__main__":
    main()
