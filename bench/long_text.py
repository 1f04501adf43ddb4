"""Long texts, truncated or read in windows: accuracy with intervals and time, side by side in one run,
on full-length NLTK movie reviews (about 750 words each) with a dataset's fine-tuned model.

    python bench/long_text.py [--dataset sst2] [--form onnx_int8] [--reviews 200] [--save NAME]

Each mode scores the same seeded sample of reviews; each is timed twice and the faster run kept.
Timings are printed (and kept as docs/results/long_text_NAME.json with --save), never written to metrics/.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from record import save
from sentiment.config import Params
from sentiment.data.text import CleanConfig
from sentiment.evaluation.external import ExternalSet, read_set
from sentiment.machine import machine
from sentiment.metrics import bootstrap_interval
from sentiment.models.engine import windows
from sentiment.serving.forms import FORM_CHOICES
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.runtime import FinetuneScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--form", default="auto", choices=FORM_CHOICES)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--overlap", type=float, default=0.25, help="predict.window_overlap for chunk")
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/long_text_NAME.json (committed)")
    args = parser.parse_args()
    labels_of = {"neg": "negative", "pos": "positive"}
    spec = ExternalSet(source="nltk:movie_reviews", label_map=labels_of, max_rows=args.reviews)
    params = Params.load()
    predict = params.section(PredictConfig, "predict")
    modes = {
        "truncate": predict.model_copy(update={"long_text": "truncate", "batch_size": 64}),
        "chunk": predict.model_copy(update={"long_text": "chunk", "window_overlap": args.overlap, "batch_size": 64}),
    }
    cleaning = params.section(CleanConfig, "clean").light()
    predictors = {mode: FinetuneScorer(args.dataset, args.form, cleaning, reading, 64) for mode, reading in modes.items()}
    names = predictors["chunk"].labels
    frame, _ = read_set("movie_reviews", spec, names, seed=0)
    texts, labels = frame["text"].tolist(), frame["label"].to_numpy()
    results = {}
    for mode, predictor in predictors.items():
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            preds = predictor.logits(texts).argmax(axis=1)
            seconds.append(time.perf_counter() - start)
        n_windows = len(windows(predictor.tokenizer, texts, predictor.meta["max_length"], modes[mode])[0])
        results[mode] = {
            "accuracy": float(np.mean(preds == labels)),
            "accuracy_ci95": bootstrap_interval(labels, preds, "accuracy", len(predictor.meta["labels"]), 1000, 0),
            "seconds": min(seconds),
            "windows": n_windows,
            "reviews_per_s": len(texts) / min(seconds),
        }
        r = results[mode]
        print(
            f"{mode}: accuracy {r['accuracy']:.4f} {[round(x, 4) for x in r['accuracy_ci95']]}, "
            f"{r['windows']} windows, {r['seconds']:.1f} s ({r['reviews_per_s']:.1f} reviews/s)"
        )
    chunk, truncate = results["chunk"], results["truncate"]
    half_width = (chunk["accuracy_ci95"][1] - chunk["accuracy_ci95"][0]) / 2
    print(
        f"chunk - truncate: {chunk['accuracy'] - truncate['accuracy']:+.4f} accuracy (chunk interval half-width "
        f"{half_width:.4f}); chunk takes {chunk['seconds'] / truncate['seconds']:.1f}x the time"
    )
    record = {
        "machine": machine(),
        "dataset": args.dataset,
        "form": args.form,
        "reviews": len(texts),
        "max_length": predictors["chunk"].meta["max_length"],
        "window_overlap": args.overlap,
        "modes": results,
    }
    if args.save:
        save("long_text", args.save, record)


if __name__ == "__main__":
    main()
