"""Dataset access shared by stages: paths under data/, label checks, the predictions format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common import StageError, read_parquet, write_csv

SPLITS = ("train", "dev", "test")


def split_dir(key: str) -> Path:
    return Path("data") / key / "split"


def clean_dir(key: str) -> Path:
    return Path("data") / key / "clean"


def predictions_path(key: str, model: str, split: str) -> Path:
    return Path("data") / key / "predictions" / f"{model}_{split}.csv"


def read_clean(key: str, split: str) -> pd.DataFrame:
    df = read_parquet(clean_dir(key) / f"{split}.parquet")
    if df.empty:
        raise StageError(f"split {split!r} of dataset {key!r} is empty: {clean_dir(key) / split}.parquet")
    return df


def label_names(ds: dict[str, Any]) -> list[str]:
    names = ds.get("labels")
    if not names or len(names) < 2 or len(set(names)) != len(names):
        raise StageError(f"invalid param labels={names!r}: expected at least two distinct label names")
    return list(names)


def encode_labels(values: pd.Series, names: list[str], where: str) -> np.ndarray:
    """Map a label column (ids or names) onto 0..K-1; unknown labels are an error naming them."""
    if values.isna().any():
        raise StageError(f"{where}: {int(values.isna().sum())} rows have no label")
    if pd.api.types.is_numeric_dtype(values):
        ids = values.to_numpy()
        bad = sorted(set(ids.tolist()) - set(range(len(names))))
        if bad or not np.all(np.equal(np.mod(ids, 1), 0)):
            raise StageError(f"{where}: unknown label ids {bad[:5]} (declared labels: {names})")
        return ids.astype(np.int64)
    lookup = {name: i for i, name in enumerate(names)}
    as_text = values.astype(str)
    bad = sorted(set(as_text) - set(lookup))
    if bad:
        raise StageError(f"{where}: unknown labels {bad[:5]} (declared labels: {names})")
    return as_text.map(lookup).to_numpy(np.int64)


# --- the one predictions format every model writes and evaluate reads ------------------


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


def write_predictions(frame: pd.DataFrame, path: Path) -> None:
    write_csv(frame, path)
