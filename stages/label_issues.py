"""label_issues: audit of the training labels by confident learning (cleanlab) on out-of-fold
probabilities: likely label errors ranked, the estimated joint of given and true labels, and the
audit's precision and recall on a seeded share of labels flipped on purpose.

Reads the split's train rows and cleans them as `clean` does, so `clean.drop_label_issues` can drop
the flagged rows there.

python -m stages.label_issues <dataset key>
"""

import time

import numpy as np

from sentiment.config import section
from sentiment.data.text import CleanConfig, WordLists, clean_split
from sentiment.evaluation.label_audit import (
    LabelIssuesConfig,
    audited_rows,
    class_report,
    flip_labels,
    issues,
    joint_table,
    precision_recall,
    ranked_issues,
)
from sentiment.io import atomic_dir, pyplot, read_parquet, save_figure, write_csv, write_json
from sentiment.models.baselines import BaselineConfig, out_of_fold_probs
from sentiment.models.light import LightBudget, with_overrides
from sentiment.paths import data_dir, metrics_file, plots_dir
from sentiment.stage import Run, run_stage


def noise_matrix_figure(joint: dict[str, dict[str, float]], names: list[str], title: str):
    plt = pyplot()
    grid = np.array([[joint[g][t] for t in names] for g in names])
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax.imshow(grid, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="white" if grid[i, j] > grid.max() / 2 else "black"
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="true label (estimated)", ylabel="given label", title=title)
    return fig


def main(run: Run) -> None:
    cfg, key, names, seed = section(LabelIssuesConfig, run.params, "label_issues"), run.key, run.labels, run.params["seed"]
    clean_cfg = section(CleanConfig, run.params, "clean")
    if cfg.model == "tfidf":
        baseline = section(BaselineConfig, run.params, "baseline")

        def out_of_fold(texts, labels):
            return out_of_fold_probs(texts["text_norm"], labels, baseline, cfg.tfidf_C, cfg.folds, seed, len(names))
    else:
        from sentiment.models import training  # torch and transformers load only for this model (5 s)

        light = with_overrides(run.params, section(LightBudget, run.params, "light"))

        def out_of_fold(texts, labels):
            return training.out_of_fold_probs(texts["text"], labels, light, cfg.folds, len(names))

    normalize = clean_cfg.normalizer(section(WordLists, run.params, "words").negation)
    train, _ = clean_split(
        read_parquet(data_dir(key, "split") / "train.parquet"), clean_cfg, normalize, dedup=clean_cfg.dedup_train
    )
    rows = audited_rows(train, cfg, seed)
    labels = rows["label"].to_numpy()
    start = time.perf_counter()
    probs = out_of_fold(rows, labels)
    flagged, quality = issues(labels, probs, cfg)
    report = {
        "model": cfg.model,
        "folds": cfg.folds,
        "filter_by": cfg.filter_by,
        "rows_audited": len(rows),
        "flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()),
        "out_of_fold_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        **class_report(labels, flagged, probs, names),
    }
    if cfg.inject_fraction:
        noisy, flipped = flip_labels(labels, len(names), cfg.inject_fraction, seed)
        noisy_flagged, _ = issues(noisy, out_of_fold(rows, noisy), cfg)
        scored = precision_recall(noisy_flagged, flipped)
        # rows the audit of the given labels flags too are probably wrong already: not held against precision
        natural = noisy_flagged & ~flipped & flagged
        scored["precision_beyond_natural_issues"] = scored["found"] / max(scored["flagged"] - int(natural.sum()), 1)
        report["injected"] = {"fraction": cfg.inject_fraction, "seed": seed, **scored}
    seconds = time.perf_counter() - start

    table = ranked_issues(rows, flagged, quality, probs, names)
    with atomic_dir(data_dir(key, "label_issues")) as out:
        write_csv(table, out / "issues.csv")
    with atomic_dir(plots_dir(key, "label_issues")) as out:
        write_csv(table.head(cfg.shown), out / "top_issues.csv")
        write_csv(joint_table(report["joint_given_true"]), out / "joint.csv")
        title = f"{key}: estimated P(given, true) on train ({cfg.model} out-of-fold)"
        save_figure(noise_matrix_figure(report["joint_given_true"], names, title), out / "noise_matrix.png")
    write_json(metrics_file(key, "label_issues"), report)
    injected = report.get("injected")
    print(
        f"[label_issues:{key}] {cfg.model} out-of-fold on {len(rows)} rows in {seconds:.0f}s: flagged {report['flagged']} "
        f"({report['flagged_rate']:.2%})"
        + (
            f"; on {injected['flipped']} injected flips precision {injected['precision']:.3f} recall {injected['recall']:.3f}"
            if injected
            else ""
        )
    )


if __name__ == "__main__":
    run_stage(main, __doc__)
