"""How well the training-label audit finds labels flipped on purpose, per out-of-fold model, side by
side on the same seeded sample of train: the label_issues stage's functions, on the TF-IDF pipeline
and on the encoder at the light budget. Prints the table; asserts nothing.

    python bench/label_audit.py --datasets sst2 tweets --rows 4000 [--models tfidf encoder] [--save NAME]

Needs data/<key>/clean (`dvc repro clean@<key>`). Precision counts every flag that is not a flip as
wrong, although some flag labels that were wrong before the flips; "beyond natural issues" leaves out
the flags the audit of the given labels raises too.
"""

from __future__ import annotations

import argparse
import time

from record import describe, machine, save
from sentiment.config import dataset, load_params, section
from sentiment.data.datasets import read_clean
from sentiment.evaluation.label_audit import LabelIssuesConfig, audited_rows, flip_labels, issues, precision_recall
from sentiment.models.baselines import BaselineConfig, out_of_fold_probs
from sentiment.models.light import LightBudget, with_overrides


def audit(key: str, params: dict, rows_wanted: int, models: list[str]) -> list[dict]:
    """Flip a seeded share of a train sample's labels; audit it with each model's out-of-fold probabilities."""
    seed = params["seed"]
    names = dataset(params, key).labels
    cfg = section(LabelIssuesConfig, params, "label_issues").model_copy(update={"max_rows": rows_wanted})
    rows = audited_rows(read_clean(key, "train"), cfg, seed)
    labels = rows["label"].to_numpy()
    noisy, flipped = flip_labels(labels, len(names), cfg.inject_fraction, seed)
    baseline = section(BaselineConfig, params, "baseline")
    light = with_overrides(params, section(LightBudget, params, "light"))
    results = []
    for model in models:
        if model == "tfidf":

            def out_of_fold(y):
                return out_of_fold_probs(rows["text_norm"], y, baseline, cfg.tfidf_C, cfg.folds, seed, len(names))
        else:
            from sentiment.models.training import out_of_fold_probs as encoder_out_of_fold

            def out_of_fold(y):
                return encoder_out_of_fold(rows["text"], y, light, cfg.folds, len(names))

        start = time.perf_counter()
        natural, _ = issues(labels, out_of_fold(labels), cfg)
        probs = out_of_fold(noisy)
        flagged, _ = issues(noisy, probs, cfg)
        seconds = time.perf_counter() - start
        scored = precision_recall(flagged, flipped)
        beyond = scored["found"] / max(scored["flagged"] - int((flagged & ~flipped & natural).sum()), 1)
        results.append(
            {
                "dataset": key,
                "model": model,
                "rows": len(rows),
                "out_of_fold_accuracy": float((probs.argmax(axis=1) == noisy).mean()),
                **scored,
                "precision_beyond_natural_issues": beyond,
                "seconds": round(seconds, 1),
            }
        )
        r = results[-1]
        print(
            f"{key} {model}: {r['flagged']} flagged of {r['rows']}, {r['flipped']} flipped: precision {r['precision']:.3f} "
            f"recall {r['recall']:.3f} (beyond natural issues {beyond:.3f}); {seconds:.0f} s"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2"])
    parser.add_argument("--rows", type=int, default=4000, help="seeded stratified sample of train")
    parser.add_argument("--models", nargs="+", default=["tfidf", "encoder"], choices=["tfidf", "encoder"])
    parser.add_argument("--save", metavar="NAME", help="write docs/results/label_audit_NAME.json")
    args = parser.parse_args()
    params = load_params()
    results = [r for key in args.datasets for r in audit(key, params, args.rows, args.models)]
    m = machine()
    print(describe(m))
    if args.save:
        command = f"python bench/label_audit.py --datasets {' '.join(args.datasets)} --rows {args.rows}"
        command += f" --models {' '.join(args.models)}"
        save("label_audit", args.save, {"machine": m, "command": command, "runs": results})


if __name__ == "__main__":
    main()
