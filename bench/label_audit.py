"""The training-label audit with folds grouped by text and ungrouped, side by side, per out-of-fold model:
the label_issues stage's own `label_audit.audit` on the same rows of clean's train, so the figures are the
stage's. Grouped folds keep a text and every train text inside it in one fold (SST-2's phrases of one
sentence); ungrouped, a held-out phrase's sub- and super-phrases sit in the training folds. Prints the
table; asserts nothing.

    python bench/label_audit.py --datasets sst2 tweets [--rows N] [--models tfidf encoder] [--save NAME]

Needs data/<key>/clean (`dvc repro clean@<key>`). Without --rows, all of train (the TF-IDF audit takes a
minute or two per setting on SST-2's 60k rows: three out-of-fold fits, the given labels and two kinds of
planted noise).
"""

from __future__ import annotations

import argparse
import time
from typing import get_args

from record import save
from sentiment.config import Params
from sentiment.data.datasets import read_clean
from sentiment.evaluation.label_audit import NOISE_KINDS, LabelIssuesConfig, audit, audited_rows
from sentiment.machine import describe, machine
from sentiment.models.baselines import BaselineConfig
from sentiment.models.out_of_fold import fold_model

KEPT = ("grouped_folds", "rows_sharing_a_text_group", "rows_audited", "flagged", "out_of_fold_accuracy", "natural_error_rate")
# on the plantable rows (those not flagged on the given labels), and `all_rows`: the ranking over every audited row
PLANTED = ("planted", "plantable_rows", "auroc", "average_precision", "recall_at_2x_budget", "budget", "precision_at_budget")
PLANTED += ("precision", "recall", "all_rows")


def run(key: str, params: Params, rows_wanted: int | None, models: list[str]) -> list[dict]:
    """The audit of one dataset's train rows per model, with folds grouped and ungrouped."""
    seed = params.seed
    names = params.dataset(key).labels
    cfg = params.section(LabelIssuesConfig, "label_issues").model_copy(update={"max_rows": rows_wanted})
    rows = audited_rows(read_clean(key, "train"), cfg, seed)
    results = []
    for model in models:
        out_of_fold = fold_model(
            model,
            seed,
            len(names),
            baseline=params.section(BaselineConfig, "baseline"),
            tfidf_C=cfg.tfidf_C,
            embeddings=cfg.embeddings,
            encoder=cfg.encoder.model,
            encoder_train=cfg.encoder.model_dump(exclude={"model"}),
        )
        for group_folds in (False, True):
            start = time.perf_counter()
            report, *_ = audit(rows, names, cfg.model_copy(update={"model": model}), out_of_fold, seed, group_folds)
            record = {"dataset": key, "model": model, **{k: report[k] for k in KEPT}}
            for kind in NOISE_KINDS:
                record[kind] = {k: report["planted"][kind][k] for k in PLANTED}
            record["seconds"] = round(time.perf_counter() - start, 1)
            results.append(record)
            u, c = record["uniform"], record["class_conditional"]
            print(
                f"{key} {model} {'grouped' if group_folds else 'ungrouped'}: out-of-fold accuracy "
                f"{record['out_of_fold_accuracy']:.3f}, flagged {record['flagged']} of {record['rows_audited']}, natural noise "
                f"{record['natural_error_rate']:.2%}; AUROC on plantable rows uniform {u['auroc']:.3f} class-conditional "
                f"{c['auroc']:.3f} (all rows {u['all_rows']['auroc']:.3f} {c['all_rows']['auroc']:.3f}); precision at budget "
                f"{u['precision_at_budget']:.3f} {c['precision_at_budget']:.3f}; {record['seconds']:.0f} s"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2"])
    parser.add_argument("--rows", type=int, default=None, help="a seeded stratified sample of train (default: all of it)")
    parser.add_argument(
        "--models", nargs="+", default=["tfidf"], choices=get_args(LabelIssuesConfig.model_fields["model"].annotation)
    )
    parser.add_argument("--save", metavar="NAME", help="write docs/results/label_audit_NAME.json")
    args = parser.parse_args()
    params = Params.load()
    results = [r for key in args.datasets for r in run(key, params, args.rows, args.models)]
    m = machine()
    print(describe(m))
    if args.save:
        command = f"python bench/label_audit.py --datasets {' '.join(args.datasets)}"
        command += (f" --rows {args.rows}" if args.rows else "") + f" --models {' '.join(args.models)}"
        save("label_audit", args.save, {"machine": m, "command": command, "runs": results})


if __name__ == "__main__":
    main()
