"""External test sets: labelled text from outside the dataset (another Hub dataset, a local file, an
NLTK corpus), mapped onto the model's labels and scored like the in-domain test, with intervals and
calibration before and after the in-domain temperature."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt

from sentiment.config import Section, UserError
from sentiment.data.hub import LOCAL_SUFFIXES, ensure_nltk, load_source
from sentiment.metrics import accuracy_and_f1, bootstrap_interval, expected_calibration_error

NLTK_PREFIX = "nltk:"
LOCAL_SOURCES = Path("data") / "external"  # the external stage's dep for local files (not data/sources)


class ExternalSet(Section):
    """One labelled evaluation set."""

    source: str  # a Hub id, a local .csv/.tsv/.parquet file, or nltk:<categorised corpus> (label = category)
    split: str | None = None  # the Hub split read (default: test, else the only split)
    text_column: str = "text"
    label_column: str = "label"
    label_map: dict[str | int, str]  # the set's label -> the model's label name; rows with other labels are dropped
    max_rows: PositiveInt | None = None  # a seeded sample of this many rows (null: all)


class ExternalConfig(Section):
    """params.yaml `external`."""

    bootstrap_resamples: int = Field(ge=1000)
    ece_bins: int = Field(ge=2)
    sets: dict[str, dict[str, ExternalSet]]  # dataset key -> set name -> set


def nltk_corpus(name: str) -> pd.DataFrame:
    """A categorised NLTK corpus (movie_reviews, …) as one row per file: text, category as label."""
    import nltk.corpus

    ensure_nltk(f"corpora/{name}", name)
    corpus = getattr(nltk.corpus, name, None)
    if corpus is None or not hasattr(corpus, "categories"):
        raise UserError(f"{NLTK_PREFIX}{name} is not a categorised NLTK corpus")
    rows = [(fileid, corpus.raw(fileid), cat) for cat in corpus.categories() for fileid in corpus.fileids(cat)]
    return pd.DataFrame(rows, columns=["id", "text", "label"]).sort_values("id", kind="stable").reset_index(drop=True)


def read_set(name: str, spec: ExternalSet, labels: list[str], seed: int) -> tuple[pd.DataFrame, int]:
    """(`text, label` with label ids of the model, rows before the max_rows sample)."""
    where = f"external set {name!r}"
    local = Path(spec.source)
    if local.suffix.lower() in LOCAL_SUFFIXES and not local.resolve().is_relative_to(LOCAL_SOURCES.resolve()):
        print(
            f"warning: {where}: {spec.source} is outside {LOCAL_SOURCES}/, which dvc.yaml tracks: DVC will not see it change",
            file=sys.stderr,
        )
    if spec.source.startswith(NLTK_PREFIX):
        frame = nltk_corpus(spec.source.removeprefix(NLTK_PREFIX))
    else:
        splits = load_source(spec.source)
        split = spec.split or ("test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else None)
        if split not in splits:
            raise UserError(f"{where}: no split {split!r} in {spec.source} (has {sorted(splits)}); set its `split`")
        frame = splits[split]
    for column in (spec.text_column, spec.label_column):
        if column not in frame.columns:
            raise UserError(f"{where}: no column {column!r} in {spec.source} (has {list(frame.columns)})")
    unknown = sorted(set(spec.label_map.values()) - set(labels))
    if unknown:
        raise UserError(f"{where}: label_map maps onto {unknown}, which the model lacks (its labels: {labels})")
    mapping = {str(k): labels.index(v) for k, v in spec.label_map.items()}
    theirs = frame[spec.label_column].astype(str)
    kept = frame[theirs.isin(mapping)]
    if kept.empty:
        raise UserError(f"{where}: no row has a label in label_map {sorted(mapping)} (labels seen: {sorted(set(theirs))[:5]})")
    out = pd.DataFrame({"text": kept[spec.text_column].fillna("").astype(str), "label": theirs[kept.index].map(mapping)})
    total = len(out)
    if spec.max_rows and total > spec.max_rows:
        out = out.sample(n=spec.max_rows, random_state=seed).sort_index(kind="stable")
    return out.reset_index(drop=True), total


def set_metrics(
    labels: np.ndarray,
    preds: np.ndarray,
    probs: np.ndarray,
    scaled: np.ndarray,
    present: list[int],
    cfg: ExternalConfig,
    seed: int,
) -> dict[str, Any]:
    """Accuracy and F1-macro with 95% intervals, ECE before/after the in-domain temperature, and (when the set
    has fewer labels than the model) the share of predictions outside them and the accuracy restricted to them."""
    k, n, s = probs.shape[1], cfg.bootstrap_resamples, seed
    out: dict[str, Any] = {
        **accuracy_and_f1(labels, preds, k),
        "accuracy_ci95": bootstrap_interval(labels, preds, "accuracy", k, n, s),
        "f1_macro_ci95": bootstrap_interval(labels, preds, "f1_macro", k, n, s),
        "ece": expected_calibration_error(labels, probs, cfg.ece_bins),
        "ece_scaled": expected_calibration_error(labels, scaled, cfg.ece_bins),
    }
    out["temperature_helps_ece"] = out["ece_scaled"] < out["ece"]
    if len(present) < probs.shape[1]:
        restricted = np.asarray(present)[probs[:, present].argmax(axis=1)]
        out["predicted_outside_set_labels"] = float(np.mean(~np.isin(preds, present)))
        out["accuracy_within_set_labels"] = float(np.mean(labels == restricted))
    return out


def summary_chart(path: Path, table: pd.DataFrame, key: str) -> None:
    """Accuracy with 95% intervals per set (in-domain test first), one bar per model."""
    from sentiment.io import pyplot, save_figure

    plt = pyplot()
    sets = list(dict.fromkeys(table["set"]))
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.6 * len(sets) * len(models) / 2 + 3, 4))
    for j, model in enumerate(models):
        rows = table[table["model"] == model].set_index("set").reindex(sets)
        x = np.arange(len(sets)) + j * width
        err = np.vstack([rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]])
        ax.bar(x, rows["accuracy"], width, yerr=err, label=model, capsize=3)
    ax.set_xticks(np.arange(len(sets)) + width * (len(models) - 1) / 2, sets, rotation=15)
    ax.set(ylim=(0, 1), ylabel="accuracy (95% interval)", title=f"{key} models: in-domain test vs external sets")
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
