"""Dataset access shared by stages: the cleaned splits, label ids, and the one predictions format
every model writes (`id, label, pred, prob_<name>…[, logit_<name>…]`) and evaluation reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from sentiment.config import Section, UserError
from sentiment.io import read_parquet
from sentiment.paths import data_dir


def read_clean(key: str, split: str) -> pd.DataFrame:
    """One cleaned split (`id, text, text_norm, label`); an empty split is an error."""
    path = data_dir(key, "clean") / f"{split}.parquet"
    df = read_parquet(path)
    if df.empty:
        raise UserError(f"split {split!r} of dataset {key!r} is empty: {path}")
    return df


class TrainRows(Section):
    """params.yaml `clean.drop_label_issues`, read without the rest of `clean` (sentiment.data.text.CleanConfig)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    drop_label_issues: bool  # train rows that label_issues flags are dropped


def training_rows(key: str, drop_label_issues: bool) -> pd.DataFrame:
    """The cleaned train split the models learn from: with `drop_label_issues` (params.yaml
    `clean.drop_label_issues`), without the rows the label_issues stage flags."""
    train = read_clean(key, "train")
    if not drop_label_issues:
        return train
    issues_file = data_dir(key, "label_issues") / "issues.csv"
    if not issues_file.exists():
        raise UserError(f"missing input file: {issues_file} (clean.drop_label_issues needs the label_issues stage)")
    flagged = set(pd.read_csv(issues_file, dtype={"id": str}, usecols=["id"])["id"])
    return train[~train["id"].astype(str).isin(flagged)].reset_index(drop=True)


def encode_labels(values: pd.Series, names: list[str], where: str) -> np.ndarray:
    """Map a label column (ids or names) onto 0..K-1; unknown labels are an error naming them."""
    if values.isna().any():
        raise UserError(f"{where}: {int(values.isna().sum())} rows have no label")
    if pd.api.types.is_numeric_dtype(values):
        ids = values.to_numpy()
        bad = sorted(set(ids.tolist()) - set(range(len(names))))
        if bad or not np.all(np.equal(np.mod(ids, 1), 0)):
            raise UserError(f"{where}: unknown label ids {bad[:5]} (declared labels: {names})")
        return ids.astype(np.int64)
    lookup = {name: i for i, name in enumerate(names)}
    as_text = values.astype(str)
    bad = sorted(set(as_text) - set(lookup))
    if bad:
        raise UserError(f"{where}: unknown labels {bad[:5]} (declared labels: {names})")
    return as_text.map(lookup).to_numpy(np.int64)


def prob_columns(names: list[str]) -> list[str]:
    return [f"prob_{n}" for n in names]


def logit_columns(names: list[str]) -> list[str]:
    return [f"logit_{n}" for n in names]


def predictions_frame(
    ids: Any, labels: Any, probs: np.ndarray, names: list[str], logits: np.ndarray | None = None
) -> pd.DataFrame:
    """`id, label, pred, prob_<name>…` (+ `logit_<name>…` for models that have logits)."""
    probs = np.asarray(probs, dtype=np.float64)
    frame = pd.DataFrame({"id": list(ids), "label": np.asarray(labels, dtype=np.int64)})
    frame["pred"] = probs.argmax(axis=1)
    for i, col in enumerate(prob_columns(names)):
        frame[col] = probs[:, i]
    if logits is not None:
        for i, col in enumerate(logit_columns(names)):
            frame[col] = np.asarray(logits, dtype=np.float64)[:, i]
    return frame


def predictions_file(key: str, stage: str, model: str, split: str) -> Path:
    """Where `stage` wrote `model`'s predictions on `split`."""
    return data_dir(key, stage) / f"{model}_{split}.csv"


SKIPPED = "skipped.json"  # in a stage's out dir: {model: why it was not fitted}


def skipped_models(key: str, stage: str) -> dict[str, str]:
    """The models `stage` did not fit for this dataset, with the reason it wrote."""
    path = data_dir(key, stage) / SKIPPED
    return json.loads(path.read_text()) if path.exists() else {}


def load_predictions(path: Path, split: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Read one predictions file and check it against its split: same ids and labels, valid probabilities."""
    if not path.exists():
        raise UserError(f"missing predictions file: {path} (run `dvc repro` to build it)")
    frame = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ["id", "label", "pred", *prob_columns(names)] if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing}")
    if len(frame) != len(split) or set(frame["id"]) != set(split["id"]):
        extra = sorted(set(frame["id"]) - set(split["id"]))[:3]
        raise UserError(f"{path}: ids do not match the split ({len(frame)} rows vs {len(split)}; e.g. unknown {extra})")
    frame = frame.set_index("id").loc[split["id"]].reset_index()
    if not np.array_equal(frame["label"].to_numpy(), split["label"].to_numpy()):
        raise UserError(f"{path}: labels differ from the split's labels")
    probs = frame[prob_columns(names)].to_numpy()
    if np.isnan(probs).any() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
        worst = probs.sum(axis=1)[np.argmax(np.abs(probs.sum(axis=1) - 1))]
        raise UserError(f"{path}: probabilities are NaN or do not sum to 1 (a row sums to {worst:.4f})")
    frame[prob_columns(names)] = probs / probs.sum(axis=1, keepdims=True)  # undo CSV rounding
    return frame
