"""split stage: source dataset -> stratified train/dev/test with stable ids and a leakage report.

python -m stages.split <dataset key>
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from stages.common import (
    StageError,
    dataset_params,
    load_params,
    require_choice,
    require_range,
    run_main,
    write_csv,
    write_json,
    write_parquet,
)
from stages.data import SPLITS, encode_labels, label_names, split_dir
from stages.hub import LOCAL_SUFFIXES, load_source

STRATEGIES = ("holdout", "pooled")
SOURCES_DIR = Path("data/sources")  # a dep of every split stage in dvc.yaml


def untracked_source_warning(source: str) -> str | None:
    """A warning when `source` is a local file outside SOURCES_DIR, whose changes DVC cannot see."""
    path = Path(source)
    if path.suffix.lower() not in LOCAL_SUFFIXES or path.resolve().is_relative_to(SOURCES_DIR.resolve()):
        return None
    return (
        f"warning: {source} is outside {SOURCES_DIR}/, the directory dvc.yaml tracks for local sources:"
        " DVC will not rerun split when this file changes"
    )


def normalise_for_dedup(text: pd.Series) -> pd.Series:
    """Lowercase, alphanumerics only, single spaces: the key for exact-duplicate detection."""
    return text.str.lower().map(lambda t: " ".join(re.findall(r"\w+", t)))


def standardise(frame: pd.DataFrame, ds: dict[str, Any], split: str, names: list[str]) -> pd.DataFrame:
    """Source columns -> `id, text, label`; missing columns, NaN text or unknown labels fail."""
    where = f"{ds['source']} [{split}]"
    text_col, label_col, id_col = ds["text_column"], ds["label_column"], ds.get("id_column")
    for col in (text_col, label_col, id_col):
        if col is not None and col not in frame.columns:
            raise StageError(f"{where}: missing column {col!r} (has {list(frame.columns)})")
    labelled = frame[frame[label_col].astype(str) != "-1"]  # Hub test splits hide labels as -1
    if labelled[text_col].isna().any():
        raise StageError(f"{where}: column {text_col!r} has {int(labelled[text_col].isna().sum())} NaN texts")
    ids = labelled[id_col].astype(str) if id_col else pd.Series(range(len(labelled)), index=labelled.index)
    return pd.DataFrame(
        {
            "id": f"{split}:" + ids.astype(str).to_numpy(),
            "text": labelled[text_col].astype(str).to_numpy(),
            "label": encode_labels(labelled[label_col], names, f"{where} column {label_col!r}"),
        }
    )


def stratified_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held_out) with `fraction` of rows held out, stratified by label."""
    rest, held = train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame["label"])
    return rest.sort_values("id", kind="stable"), held.sort_values("id", kind="stable")


def make_splits(sources: dict[str, pd.DataFrame], ds: dict[str, Any], cfg: dict[str, Any]) -> dict[str, pd.DataFrame]:
    names = label_names(ds)
    strategy = require_choice("split strategy", ds.get("split"), STRATEGIES)
    seed = cfg["seed"]
    frames = {name: standardise(frame, ds, name, names) for name, frame in sources.items()}
    if strategy == "holdout":
        test_name = ds["test_split"]
        if test_name not in frames or ds.get("train_split", "train") not in frames:
            raise StageError(f"{ds['source']}: needs splits 'train' and {test_name!r}, has {sorted(frames)}")
        dev_fraction = require_range("split.dev_fraction", cfg["dev_fraction"], 0, 0.5, low_open=True)
        train, dev = stratified_split(frames[ds.get("train_split", "train")], dev_fraction, seed)
        test = frames[test_name]
    else:
        labelled = [f for f in frames.values() if len(f)]
        if not labelled:
            raise StageError(f"{ds['source']}: no labelled rows (splits {sorted(frames)} are empty)")
        pool = pd.concat(labelled, ignore_index=True)
        dev_frac, test_frac = cfg["pooled_dev_fraction"], cfg["pooled_test_fraction"]
        require_range("split.pooled_test_fraction", test_frac, 0, 0.5, low_open=True)
        require_range("split.pooled_dev_fraction", dev_frac, 0, 0.5, low_open=True)
        rest, test = stratified_split(pool, test_frac, seed)
        train, dev = stratified_split(rest, dev_frac / (1 - test_frac), seed)
    fraction = require_range("split.train_fraction", cfg["train_fraction"], 0, 1, low_open=True)
    if fraction < 1:
        _, train = stratified_split(train, fraction, seed)
    return {"train": train, "dev": dev, "test": test}


def find_leakage(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows of train/dev whose normalised text also occurs in a later split (dev, test)."""
    keys = {name: normalise_for_dedup(frame["text"]) for name, frame in splits.items()}
    rows = []
    for earlier, later in (("train", "dev"), ("train", "test"), ("dev", "test")):
        hit = keys[earlier].isin(set(keys[later]))
        found = splits[earlier][hit.to_numpy()]
        rows.append(found.assign(split=earlier, duplicate_of=later)[["split", "duplicate_of", "id", "text", "label"]])
    return pd.concat(rows, ignore_index=True)


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    ds, cfg = dataset_params(params, key), params["split"]
    if warning := untracked_source_warning(ds["source"]):
        print(warning, file=sys.stderr)
    splits = make_splits(load_source(ds["source"]), ds, cfg)
    leaks = find_leakage(splits)
    dropped = {"train": 0, "dev": 0}
    if cfg["drop_leaked"]:
        for name in dropped:
            leaked_ids = set(leaks.loc[leaks["split"] == name, "id"])
            dropped[name] = len(leaked_ids)
            splits[name] = splits[name][~splits[name]["id"].isin(leaked_ids)]
    names = label_names(ds)
    for name in SPLITS:
        if splits[name].empty:
            raise StageError(f"split {name!r} of dataset {key!r} is empty")
    out = split_dir(key)
    for name in SPLITS:
        write_parquet(splits[name].reset_index(drop=True), out / f"{name}.parquet")
    write_csv(leaks, out / "leakage.csv")
    counts = {}
    for name, frame in splits.items():
        per_label = np.bincount(frame["label"], minlength=len(names))
        counts[name] = {"rows": len(frame), "per_label": {names[i]: int(n) for i, n in enumerate(per_label)}}
    pairs = leaks.groupby(["split", "duplicate_of"]).size()
    write_json(
        f"metrics/{key}/split.json",
        {
            "splits": counts,
            "duplicates_found": {f"{a}_in_{b}": int(n) for (a, b), n in pairs.items()},
            "duplicates_dropped": dropped,
        },
    )
    print(f"[split:{key}] " + ", ".join(f"{n}={c['rows']}" for n, c in counts.items()) + f"; leaked rows dropped {dropped}")


if __name__ == "__main__":
    run_main(main)
