"""How much of a dataset's dev split occurs verbatim inside training texts, and whether that overlap
explains why dev accuracy runs above test accuracy.

SST-2's Hub train split holds every parsed phrase of its training sentences, so a dev split carved
from it at random is mostly sub-phrases of training phrases, while the scored test split holds
whole, longer sentences from other reviews. For dev and test this prints the share of texts that
occur (whole words, ignoring case) inside some training text, the share of the others that contain
a whole training text of at least `--span` words, and the mean length in words; and, for each
predictions file, accuracy on dev texts found in train, on those not found, and on dev texts at least
`--long` words long. Reads the pipeline's outputs (run `dvc repro` first); writes nothing.

    python bench/dev_overlap.py [--dataset sst2] [--span 4] [--long 10] [PREDICTIONS.csv ...]

Without files it scores the finetune stage's dev predictions, data/<dataset>/finetune/finetune_dev.csv.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sentiment.data.datasets import read_clean
from sentiment.paths import SPLITS


def words_of(text: str) -> list[str]:
    """Lower-cased whitespace-separated words (SST-2 text is already tokenized with spaces)."""
    return text.lower().split()


def contained_in(texts: Sequence[str], corpus: Sequence[str]) -> np.ndarray:
    """Whether each text occurs as a run of whole words inside some corpus text (case-insensitive).

    One substring search per text over the corpus joined with word-boundary padding: plain `in`
    on one string is exact and, for SST-2's 6.7k dev phrases against 59k training phrases, takes
    seconds, so no n-gram index is needed.
    """
    joined = "\n".join(f" {' '.join(words_of(text))} " for text in corpus)
    return np.array([f" {' '.join(words_of(text))} " in joined for text in texts], dtype=bool)


def contains_one_of(texts: Sequence[str], corpus: Sequence[str], min_words: int) -> np.ndarray:
    """Whether each text has a proper sub-span of at least `min_words` words equal to a corpus text."""
    known = {" ".join(words_of(text)) for text in corpus}

    def contains(words: list[str]) -> bool:
        spans = ((i, j) for i in range(len(words)) for j in range(i + min_words, len(words) + 1))
        return any(" ".join(words[i:j]) in known for i, j in spans if j - i < len(words))

    return np.array([contains(words_of(text)) for text in texts], dtype=bool)


def subset_accuracy(correct: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, tuple[float, int]]:
    """(accuracy, size) of the correct/incorrect array on each boolean subset; NaN for an empty subset."""
    return {name: (float(correct[mask].mean()) if mask.any() else float("nan"), int(mask.sum())) for name, mask in masks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--span", type=int, default=4, help="fewest words of a training text found inside a dev/test text")
    parser.add_argument("--long", type=int, default=10, help="word count from which a dev text counts as long")
    parser.add_argument("predictions", nargs="*", type=Path, help="predictions CSVs with id, label and pred columns")
    args = parser.parse_args()
    train, dev, test = (read_clean(args.dataset, split) for split in SPLITS)
    corpus = train["text"].tolist()
    print(f"{args.dataset}: {len(train)} train texts, {train['text'].str.split().str.len().mean():.1f} words on average")
    inside_train = {}
    for name, frame in (("dev", dev), ("test", test)):
        inside = inside_train[name] = contained_in(frame["text"].tolist(), corpus)
        rest = frame["text"][~inside].tolist()
        containing = contains_one_of(rest, corpus, args.span).mean() if rest else float("nan")
        print(
            f"{name}: {len(frame)} texts, {frame['text'].str.split().str.len().mean():.1f} words on average; "
            f"{inside.mean():.1%} occur inside a training text, and {containing:.1%} of the others "
            f"contain a training text of >= {args.span} words"
        )
    seen = inside_train["dev"]
    words = dev["text"].str.split().str.len().to_numpy()
    masks = {
        "all": np.ones(len(dev), dtype=bool),
        "in train": seen,
        "not in train": ~seen,
        f">= {args.long} words": words >= args.long,
    }
    for path in args.predictions or [Path("data") / args.dataset / "finetune" / "finetune_dev.csv"]:
        preds = pd.read_csv(path).set_index("id").reindex(dev["id"])
        if preds["pred"].isna().any():
            raise SystemExit(f"{path}: no prediction for some dev ids (predictions of another split or dataset?)")
        scores = subset_accuracy((preds["pred"] == preds["label"]).to_numpy(), masks)
        print(f"{path}: dev accuracy " + ", ".join(f"{name} {acc:.4f} (n={n})" for name, (acc, n) in scores.items()))


if __name__ == "__main__":
    main()
