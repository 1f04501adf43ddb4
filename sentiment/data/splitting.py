"""Splitting a source dataset into stratified train/dev/test with stable ids, and the leakage report."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.model_selection import train_test_split

from sentiment.config import DatasetConfig, Section, UserError
from sentiment.data.datasets import encode_labels
from sentiment.data.hub import LOCAL_SUFFIXES
from sentiment.paths import SPLITS, source_dir


class SplitConfig(Section):
    """params.yaml `split`."""

    seed: int
    dev_fraction: float = Field(gt=0, le=0.5)  # holdout: share of the train split carved out as dev
    pooled_dev_fraction: float = Field(gt=0, le=0.5)
    pooled_test_fraction: float = Field(gt=0, le=0.5)
    train_fraction: float = Field(gt=0, le=1)  # stratified subsample of train for quick runs
    drop_leaked: bool  # drop train/dev rows whose normalised text is in a later split


def untracked_source_warning(source: str, key: str) -> str | None:
    """A warning when `source` is a local file outside dataset `key`'s source folder, whose changes DVC cannot see."""
    path, tracked = Path(source), source_dir(key)
    if path.suffix.lower() not in LOCAL_SUFFIXES or path.resolve().is_relative_to(tracked.resolve()):
        return None
    return (
        f"warning: {source} is outside {tracked}/, the folder dvc.yaml tracks for dataset {key}'s local sources:"
        " DVC will not rerun split when this file changes"
    )


def normalise_for_dedup(text: pd.Series) -> pd.Series:
    """Lowercase, alphanumerics only, single spaces: the key for exact-duplicate detection."""
    return text.str.lower().map(lambda t: " ".join(re.findall(r"\w+", t)))


def standardise(frame: pd.DataFrame, ds: DatasetConfig, split: str) -> pd.DataFrame:
    """Source columns -> `id, text, label`; missing columns, NaN text or unknown labels fail."""
    where = f"{ds.source} [{split}]"
    text_col, label_col, id_col = ds.text_column, ds.label_column, ds.id_column
    for col in (text_col, label_col, id_col):
        if col is not None and col not in frame.columns:
            raise UserError(f"{where}: missing column {col!r} (has {list(frame.columns)})")
    labelled = frame[frame[label_col].astype(str) != "-1"]  # Hub test splits hide labels as -1
    if labelled[text_col].isna().any():
        raise UserError(f"{where}: column {text_col!r} has {int(labelled[text_col].isna().sum())} NaN texts")
    ids = labelled[id_col].astype(str) if id_col else pd.Series(range(len(labelled)), index=labelled.index)
    return pd.DataFrame(
        {
            "id": f"{split}:" + ids.astype(str).to_numpy(),
            "text": labelled[text_col].astype(str).to_numpy(),
            "label": encode_labels(labelled[label_col], ds.labels, f"{where} column {label_col!r}"),
        }
    )


def stratified_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held_out) with `fraction` of rows held out, stratified by label."""
    rest, held = train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame["label"])
    return rest.sort_values("id", kind="stable"), held.sort_values("id", kind="stable")


def make_splits(sources: dict[str, pd.DataFrame], ds: DatasetConfig, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """holdout: test is the source's `test_split`, dev carved from train; pooled: all labelled rows, then 70/15/15."""
    frames = {name: standardise(frame, ds, name) for name, frame in sources.items()}
    if ds.split == "holdout":
        if ds.test_split not in frames or ds.train_split not in frames:
            raise UserError(f"{ds.source}: needs splits {ds.train_split!r} and {ds.test_split!r}, has {sorted(frames)}")
        train, dev = stratified_split(frames[ds.train_split], cfg.dev_fraction, cfg.seed)
        test = frames[ds.test_split]
    else:
        labelled = [f for f in frames.values() if len(f)]
        if not labelled:
            raise UserError(f"{ds.source}: no labelled rows (splits {sorted(frames)} are empty)")
        pool = pd.concat(labelled, ignore_index=True)
        rest, test = stratified_split(pool, cfg.pooled_test_fraction, cfg.seed)
        train, dev = stratified_split(rest, cfg.pooled_dev_fraction / (1 - cfg.pooled_test_fraction), cfg.seed)
    if cfg.train_fraction < 1:
        _, train = stratified_split(train, cfg.train_fraction, cfg.seed)
    return {"train": train, "dev": dev, "test": test}


def find_leakage(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows of train/dev whose normalised text also occurs in a later split (dev, test)."""
    keys = {name: normalise_for_dedup(frame["text"]) for name, frame in splits.items()}
    rows = []
    for earlier, later in itertools.combinations(SPLITS, 2):
        hit = keys[earlier].isin(set(keys[later]))
        found = splits[earlier][hit.to_numpy()]
        rows.append(found.assign(split=earlier, duplicate_of=later)[["split", "duplicate_of", "id", "text", "label"]])
    return pd.concat(rows, ignore_index=True)


def drop_leaked(splits: dict[str, pd.DataFrame], leaks: pd.DataFrame) -> dict[str, int]:
    """Remove (in place) train/dev rows that leak into a later split; return the count per split."""
    dropped = {}
    for name in ("train", "dev"):
        leaked_ids = set(leaks.loc[leaks["split"] == name, "id"])
        dropped[name] = len(leaked_ids)
        splits[name] = splits[name][~splits[name]["id"].isin(leaked_ids)]
    return dropped


def split_report(splits: dict[str, pd.DataFrame], leaks: pd.DataFrame, dropped: dict[str, int], names: list[str]) -> dict:
    counts = {}
    for name, frame in splits.items():
        per_label = np.bincount(frame["label"], minlength=len(names))
        counts[name] = {"rows": len(frame), "per_label": {names[i]: int(n) for i, n in enumerate(per_label)}}
    pairs = leaks.groupby(["split", "duplicate_of"]).size()
    return {
        "splits": counts,
        "duplicates_found": {f"{a}_in_{b}": int(n) for (a, b), n in pairs.items()},
        "duplicates_dropped": dropped,
    }
