"""clean: light cleaning for the encoder (`text`), normalised tokens for the baselines (`text_norm`), and
train without duplicates. (`clean.drop_label_issues` is read by the training stages: the label audit reads
this stage's train split, so dropping what it flags happens after it, in `datasets.training_rows`.)

python -m stages.clean <dataset key>
"""

import numpy as np

from sentiment.config import UserError
from sentiment.data.text import NegationWords, TextCleaning, clean_split
from sentiment.io import read_parquet, write_parquet, write_results
from sentiment.paths import SPLITS, data_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg = run.section(TextCleaning, "clean")
    normalize = cfg.normalizer(run.section(NegationWords, "words").negation)
    cleaned, report = {}, {}
    for split in SPLITS:
        frame = read_parquet(data_dir(run.key, "split") / f"{split}.parquet")
        cleaned[split], dropped = clean_split(frame, cfg, normalize, dedup=split == "train" and cfg.dedup_train)
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
    headline = {
        "rows": sum(r["rows"] for r in report.values()),
        "dropped": sum(n for r in report.values() for n in r["dropped"].values()),
    }
    write_results(run.key, "clean", report, headline)
    print(f"[clean:{run.key}] " + ", ".join(f"{s}={r['rows']} (dropped {r['dropped']})" for s, r in report.items()))


if __name__ == "__main__":
    run_stage(main, __doc__)
