"""Edge-case slices of test (word lists, length buckets): accuracy and F1-macro with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from sentiment.config import Section
from sentiment.data.datasets import prob_columns
from sentiment.data.text import has_any
from sentiment.io import pyplot, save_figure
from sentiment.metrics import accuracy_and_f1, bootstrap_interval


class SlicesConfig(Section):
    """params.yaml `slices` (the word-list slices come from `words`)."""

    length_bounds: list[int]  # whitespace tokens: [4, 8] gives <=4, 5-8, 9+
    bootstrap_resamples: int = Field(ge=1000, le=10**6)
    top_errors: int = Field(ge=0)

    @field_validator("length_bounds")
    @classmethod
    def _increasing(cls, bounds: list[int]) -> list[int]:
        if not bounds or sorted(set(bounds)) != bounds or bounds[0] < 1:
            raise ValueError("expected increasing positive integers")
        return bounds


def length_bucket(n_tokens: int, bounds: list[int]) -> str:
    """'≤4', '5–8', …, '33+' for bounds [4, 8, 16, 32]."""
    low = 1
    for high in bounds:
        if n_tokens <= high:
            return f"<={high}" if low == 1 else f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def slice_masks(texts: pd.Series, word_lists: dict[str, set[str]], bounds: list[int]) -> dict[str, np.ndarray]:
    """Boolean row masks per slice name: all, one per word list, one per length bucket."""
    masks = {"all": np.ones(len(texts), dtype=bool)}
    for name, vocab in word_lists.items():
        masks[name] = texts.map(lambda t, v=vocab: has_any(t, v)).to_numpy()
    lengths = texts.map(lambda t: len(t.split()))
    buckets = lengths.map(lambda n: length_bucket(n, bounds))
    labels = [length_bucket(b, bounds) for b in [*bounds, bounds[-1] + 1]]
    for label in labels:
        masks[f"length {label}"] = (buckets == label).to_numpy()
    return masks


def slice_table(
    frame: pd.DataFrame, masks: dict[str, np.ndarray], n_classes: int, resamples: int, seed: int
) -> list[dict[str, Any]]:
    """Accuracy and F1-macro (over the label list's `n_classes`) of each slice, their difference from the whole
    set's and a bootstrap interval."""
    labels, preds = frame["label"].to_numpy(), frame["pred"].to_numpy()
    overall = accuracy_and_f1(labels, preds, n_classes)
    rows = []
    for name, mask in masks.items():
        n = int(mask.sum())
        row: dict[str, Any] = {"slice": name, "n": n}
        if n == 0:
            rows.append({**row, "accuracy": None, "f1_macro": None, "note": "empty slice"})
            continue
        y, p = labels[mask], preds[mask]
        for metric, value in accuracy_and_f1(y, p, n_classes).items():
            row[metric] = value
            row[f"{metric}_delta"] = value - overall[metric]
            row[f"{metric}_ci95"] = bootstrap_interval(y, p, metric, n_classes, resamples, seed) if n >= 2 else [None, None]
        rows.append(row)
    return rows


def top_errors(frame: pd.DataFrame, test: pd.DataFrame, masks: dict[str, np.ndarray], names: list[str], k: int) -> pd.DataFrame:
    """The k highest-confidence errors of each slice."""
    confidence = frame[prob_columns(names)].to_numpy().max(axis=1)
    wrong = frame["label"].to_numpy() != frame["pred"].to_numpy()
    parts = []
    for name, mask in masks.items():
        rows = np.where(mask & wrong)[0]
        rows = rows[np.lexsort((test["id"].to_numpy()[rows], -confidence[rows]))][:k]
        parts.append(
            pd.DataFrame(
                {
                    "slice": name,
                    "id": test["id"].to_numpy()[rows],
                    "text": test["text"].to_numpy()[rows],
                    "label": [names[i] for i in frame["label"].to_numpy()[rows]],
                    "pred": [names[i] for i in frame["pred"].to_numpy()[rows]],
                    "confidence": confidence[rows],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_chart(path: Path, table: pd.DataFrame, key: str) -> None:
    pyplot()
    table = table.assign(accuracy=pd.to_numeric(table["accuracy"]))
    pivot = table.pivot(index="slice", columns="model", values="accuracy").reindex(table["slice"].unique())
    ax = pivot.plot.barh(figsize=(7, 0.45 * len(pivot) + 1.5), xlim=(0, 1))
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=7)
    ax.invert_yaxis()
    ax.set(title=f"{key}: test accuracy per slice", xlabel="accuracy", ylabel="")
    ax.figure.tight_layout()
    save_figure(ax.figure, path)
