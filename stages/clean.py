"""clean: light cleaning for the encoder (`text`), normalised tokens for the baselines (`text_norm`);
with `clean.drop_label_issues`, train without the rows the label_issues stage flags.

python -m stages.clean <dataset key>
"""

import numpy as np
import pandas as pd

from sentiment.config import UserError, section
from sentiment.data.datasets import SPLITS
from sentiment.data.text import CleanConfig, WordLists, clean_split
from sentiment.io import read_parquet, write_json, write_parquet
from sentiment.paths import data_dir, metrics_file
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg = section(CleanConfig, run.params, "clean")
    normalize = cfg.normalizer(section(WordLists, run.params, "words").negation)
    cleaned, report = {}, {}
    for split in SPLITS:
        frame = read_parquet(data_dir(run.key, "split") / f"{split}.parquet")
        cleaned[split], dropped = clean_split(frame, cfg, normalize, dedup=split == "train" and cfg.dedup_train)
        if split == "train" and cfg.drop_label_issues:
            issues_file = data_dir(run.key, "label_issues") / "issues.csv"
            if not issues_file.exists():
                raise UserError(f"missing input file: {issues_file} (clean.drop_label_issues needs the label_issues stage)")
            flagged = pd.read_csv(issues_file, dtype={"id": str})["id"]
            issue = cleaned[split]["id"].astype(str).isin(set(flagged))
            cleaned[split], dropped["label_issue"] = cleaned[split][~issue].reset_index(drop=True), int(issue.sum())
        if cleaned[split].empty:
            raise UserError(f"split {split!r} of dataset {run.key!r} is empty after cleaning")
        counts = np.bincount(cleaned[split]["label"], minlength=len(run.labels))
        report[split] = {
            "rows": len(cleaned[split]),
            "dropped": dropped,
            "class_balance": {run.labels[i]: round(float(c) / counts.sum(), 4) for i, c in enumerate(counts)},
            "imbalance_ratio": float(counts.max() / counts.min()) if counts.min() else None,
        }
    for split in SPLITS:
        write_parquet(cleaned[split], data_dir(run.key, "clean") / f"{split}.parquet")
    write_json(metrics_file(run.key, "clean"), report)
    print(f"[clean:{run.key}] " + ", ".join(f"{s}={r['rows']} (dropped {r['dropped']})" for s, r in report.items()))


if __name__ == "__main__":
    run_stage(main, __doc__)
