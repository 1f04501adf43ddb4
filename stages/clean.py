"""clean stage: light cleaning for the encoder (`text`), normalised tokens for baselines (`text_norm`).

python -m stages.clean <dataset key>
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.common import (
    StageError,
    dataset_params,
    load_params,
    read_parquet,
    require_range,
    run_main,
    write_json,
    write_parquet,
)
from stages.data import SPLITS, clean_dir, label_names, split_dir
from stages.text import CleanConfig, clean_text, make_normalizer


def clean_split(frame: pd.DataFrame, cfg: dict[str, Any], normalize, *, dedup: bool) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean one split; return it and the rows dropped per reason."""
    light = CleanConfig(cfg["url_placeholder"], cfg["user_placeholder"], cfg["max_repeat"])
    out = frame.assign(text=frame["text"].map(lambda t: clean_text(t, light)))
    empty = out["text"] == ""
    out = out[~empty]
    dropped = {"empty_after_cleaning": int(empty.sum()), "duplicate_in_train": 0}
    if dedup:
        dup = out.duplicated("text", keep="first")
        dropped["duplicate_in_train"] = int(dup.sum())
        out = out[~dup]
    out = out.assign(text_norm=out["text"].map(normalize))
    return out[["id", "text", "text_norm", "label"]].reset_index(drop=True), dropped


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    ds, cfg = dataset_params(params, key), params["clean"]
    names = label_names(ds)
    require_range("clean.max_repeat", cfg["max_repeat"], 0, 100)
    normalize = make_normalizer(
        remove_stopwords=cfg["remove_stopwords"],
        keep_negations=cfg["keep_negations"],
        negations=cfg["negations"],
        lemmatize=cfg["lemmatize"],
        stem=cfg["stem"],
    )
    cleaned, report = {}, {}
    for split in SPLITS:
        frame = read_parquet(split_dir(key) / f"{split}.parquet")
        cleaned[split], dropped = clean_split(frame, cfg, normalize, dedup=split == "train" and cfg["dedup_train"])
        if cleaned[split].empty:
            raise StageError(f"split {split!r} of dataset {key!r} is empty after cleaning")
        counts = np.bincount(cleaned[split]["label"], minlength=len(names))
        report[split] = {
            "rows": len(cleaned[split]),
            "dropped": dropped,
            "class_balance": {names[i]: round(float(c) / counts.sum(), 4) for i, c in enumerate(counts)},
            "imbalance_ratio": float(counts.max() / counts.min()) if counts.min() else None,
        }
    for split in SPLITS:
        write_parquet(cleaned[split], clean_dir(key) / f"{split}.parquet")
    write_json(f"metrics/{key}/clean.json", report)
    print(f"[clean:{key}] " + ", ".join(f"{s}={r['rows']} (dropped {r['dropped']})" for s, r in report.items()))


if __name__ == "__main__":
    run_main(main)
